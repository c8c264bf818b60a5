package doctor

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// probeCustomer is looked up to prove a token: no customer has this id.
const probeCustomer = "cus_launchreadydoctorprobe"

// checkGRPC checks the status API as the mobile backend reaches it:
// PUBLIC_GRPC_ADDR answers health, its certificate is good for 21 days
// or more, and the read token DOCTOR_STATUS_TOKEN is accepted.
// DOCTOR_GRPC_PLAINTEXT=true checks a listener without TLS (a dev
// machine); it is a warning, since the API carries bearer tokens.
func (d *Doctor) checkGRPC(ctx context.Context) ([]Check, error) {
	addr := d.env.Lookup("PUBLIC_GRPC_ADDR")
	if addr == "" {
		return nil, skip("PUBLIC_GRPC_ADDR is not set")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return []Check{fail("grpc", fmt.Sprintf("PUBLIC_GRPC_ADDR %q is not host:port", addr), "set host:port")}, nil
	}
	var out []Check
	creds := insecure.NewCredentials()
	if d.env.Bool("DOCTOR_GRPC_PLAINTEXT", false) {
		out = append(out, warn("grpc/tls "+addr, "checked without TLS (DOCTOR_GRPC_PLAINTEXT): tokens cross the network in clear",
			"serve the API with GRPC_TLS_CERT and GRPC_TLS_KEY, or behind a TLS-terminating proxy"))
	} else {
		c := d.certCheck(ctx, "grpc/tls "+addr, addr, host)
		out = append(out, c)
		if c.Status == Fail {
			return out, nil
		}
		roots, err := d.roots()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(&tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return append(out, fail("grpc/health "+addr, oneLine(err.Error()), "fix PUBLIC_GRPC_ADDR")), nil
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: billingv1.BillingStatusService_ServiceDesc.ServiceName})
	switch {
	case err != nil:
		return append(out, fail("grpc/health "+addr, "no answer: "+oneLine(err.Error()), "make billing-state's gRPC port reachable at PUBLIC_GRPC_ADDR")), nil
	case hr.GetStatus() != healthpb.HealthCheckResponse_SERVING:
		out = append(out, fail("grpc/health "+addr, "billing-state reports "+hr.GetStatus().String(), "read billing-state's /readyz and logs"))
	default:
		out = append(out, pass("grpc/health "+addr, "billing-state is SERVING"))
	}
	tok := d.env.Lookup("DOCTOR_STATUS_TOKEN")
	if tok == "" {
		return append(out, warn("grpc/token", "no token to try", "set DOCTOR_STATUS_TOKEN to the read token the mobile backend uses")), nil
	}
	cctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	_, err = billingv1.NewBillingStatusServiceClient(conn).GetCustomerStatus(cctx,
		&billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: probeCustomer}})
	switch code := status.Code(err); code {
	case codes.OK, codes.NotFound:
		out = append(out, pass("grpc/token", "the read token is accepted"))
	case codes.Unauthenticated, codes.PermissionDenied:
		out = append(out, fail("grpc/token", "the token is refused ("+code.String()+")",
			"DOCTOR_STATUS_TOKEN must be one of STATUS_API_TOKENS with the read role"))
	default:
		out = append(out, fail("grpc/token", "lookup failed: "+oneLine(err.Error()), "read billing-state's logs"))
	}
	return out, nil
}
