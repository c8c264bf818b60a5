package telemetry_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/telemetry"
)

// A service reads OTEL_* through its injected environment, builds its own
// provider and wraps what it serves and calls. With no endpoint set,
// nothing leaves the process.
func Example() {
	getenv := config.Map(map[string]string{"OTEL_SERVICE_NAME": "crm-sync"})
	e := config.New(getenv)
	cfg := telemetry.ConfigFromEnv(e, "crm-sync")
	if err := e.Err(); err != nil {
		fmt.Println(err)
		return
	}
	tel, err := telemetry.Setup(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tel.Shutdown(context.Background())

	mux := http.NewServeMux()
	handler := tel.HTTPHandler(mux, "crm-sync")               // /healthz, /readyz, /metrics untraced
	client := &http.Client{Transport: tel.HTTPTransport(nil)} // vendor calls, URLs redacted
	queryTracer := tel.PgxTracer()                            // pg.Open(ctx, url, pg.WithTracer(queryTracer))
	grpcStats := tel.GRPCServerHandler()                      // grpc.NewServer(grpc.StatsHandler(grpcStats))
	_, _, _, _ = handler, client, queryTracer, grpcStats

	fmt.Println(cfg.ServiceName, "exporting:", tel.Exporting())
	// Output: crm-sync exporting: false
}
