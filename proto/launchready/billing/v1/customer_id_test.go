package billingv1

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestEncodedCustomerIDReadsOnlyTheCustomerField(t *testing.T) {
	if n := billingEventCustomerIDField(); n != 10 {
		t.Fatalf("customer_id is field %d in the descriptor; event.proto says 10", n)
	}
	ev := &BillingEvent{EventId: "evt_1", Type: "invoice.paid", CustomerId: "cus_Part1", RawJson: []byte(`{"id":"evt_1"}`),
		Email: "a@example.com", Amount: 1200}
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := EncodedCustomerID(b); got != "cus_Part1" {
		t.Fatalf("EncodedCustomerID = %q", got)
	}
	ev.CustomerId = ""
	b, _ = proto.Marshal(ev)
	if got := EncodedCustomerID(b); got != "" {
		t.Fatalf("no customer: EncodedCustomerID = %q", got)
	}
	if got := EncodedCustomerID([]byte{0xff, 0xff, 0xff}); got != "" {
		t.Fatalf("garbage: EncodedCustomerID = %q", got)
	}
}

func TestFieldNumberRefusesAnUnknownField(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("fieldNumber accepted a field BillingEvent does not have")
		}
	}()
	fieldNumber((*BillingEvent)(nil).ProtoReflect().Descriptor(), "no_such_field")
}

func BenchmarkEncodedCustomerID(b *testing.B) {
	data, err := proto.Marshal(&BillingEvent{EventId: "evt_bench", Type: "invoice.payment_succeeded", CustomerId: "cus_bench",
		SubscriptionId: "sub_bench", RawJson: make([]byte, 3000)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if EncodedCustomerID(data) != "cus_bench" {
			b.Fatal("wrong customer")
		}
	}
}
