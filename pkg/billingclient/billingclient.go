// Package billingclient connects to billing-state's gRPC API the way every
// caller inside the product does (the operator's commands and the staff
// console): plaintext or TLS on system roots, and a bearer token on each
// call.
package billingclient

import (
	"context"
	"crypto/tls"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Dial returns a client connection to billing-state's gRPC API at addr
// (host:port), with TLS on system roots when useTLS. The connection is
// lazy: nothing is dialled before the first call.
func Dial(addr string, useTLS bool, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if useTLS {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)...)
}

// WithToken makes ctx's calls carry tok as their bearer token.
func WithToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// Bearer sends tok as the bearer token of every call of a connection, for a
// long-lived client such as a service's. Like WithToken, it sends it over
// plaintext too when the connection has no TLS (a loopback, or a mesh that
// encrypts); Dial's useTLS decides.
func Bearer(tok string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearer(tok))
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
