package ingress_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
)

// BenchmarkAcceptedEvent measures the whole accept path in one process:
// HTTP, verify, normalise, publish to JetStream on file storage, PubAck.
// `make bench` (test/load/cmd/ingressbench) is the honest figure, with
// ingress in its own process; this one is for profiling:
//
//	go test -run XXX -bench AcceptedEvent -cpuprofile cpu.out .
func BenchmarkAcceptedEvent(b *testing.B) {
	bb := setup(b, map[string]string{"LOG_LEVEL": "warn"})
	payload := fixture(b, subscriptionFixture, "evt_bench_template")
	var seq atomic.Int64
	b.SetParallelism(8) // 16 clients on 2 cores, as in the load test
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		for pb.Next() {
			body := bytes.Replace(payload, []byte(`"evt_bench_template"`), []byte(`"evt_b_`+strconv.FormatInt(seq.Add(1), 10)+`"`), 1)
			req, _ := http.NewRequest(http.MethodPost, bb.base+"/webhooks/stripe", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
			req.Header.Set("Stripe-Signature", stripeevent.Sign(body, bb.secrets[0], time.Now()))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
