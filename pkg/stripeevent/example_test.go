package stripeevent_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
)

func Example() {
	// A signing secret as Stripe issues it; generated here, never written down.
	secret := "whsec_" + rand.Text()
	body := []byte(`{"id":"evt_1","object":"event","type":"customer.subscription.updated","api_version":"2025-03-31.basil",
		"created":1745000000,"data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_1","status":"active",
		"items":{"data":[{"current_period_end":1747000000,"price":{"id":"price_1","product":"prod_1"}}]}}}}`)
	now := time.Unix(1745000000, 0)
	header := stripeevent.Sign(body, secret, now)

	// Ingress: verify against every configured secret, then normalise.
	if err := stripeevent.Verify(body, header, []string{"whsec_old", secret}, 5*time.Minute, now); err != nil {
		fmt.Println("refused:", err)
		return
	}
	ev, err := stripeevent.Normalize(body)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println(ev.GetType(), ev.GetCustomerId(), ev.GetStatus(), ev.GetCurrentPeriodEnd().AsTime().Format(time.DateOnly))
	// Output: customer.subscription.updated cus_1 active 2025-05-11
}
