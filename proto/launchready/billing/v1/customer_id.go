package billingv1

import (
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// billingEventCustomerIDField is BillingEvent.customer_id's field number,
// taken from the generated descriptor (protoc-gen-go emits no constant for
// it), so that renumbering the field in event.proto moves this scan with it.
// It is read on first use: the descriptor is built by the generated init,
// which runs after this package's variables are initialised.
var billingEventCustomerIDField = sync.OnceValue(func() protowire.Number {
	return fieldNumber((*BillingEvent)(nil).ProtoReflect().Descriptor(), "customer_id")
})

// fieldNumber panics when the field does not exist: the generated code and
// this file disagree, and every test of the package says so at once.
func fieldNumber(md protoreflect.MessageDescriptor, name protoreflect.Name) protowire.Number {
	fd := md.Fields().ByName(name)
	if fd == nil {
		panic("billingv1: " + string(md.FullName()) + " has no field " + string(name))
	}
	return fd.Number()
}

// EncodedCustomerID reads customer_id from an encoded BillingEvent without
// decoding the rest of it: a consumer that routes messages by customer
// (see bus.ConsumerOptions.PartitionKey) pays for one field, not for the
// raw JSON every event carries. It returns "" when the field is absent or
// the bytes are not a valid encoding.
func EncodedCustomerID(b []byte) string {
	field := billingEventCustomerIDField()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == field && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}
