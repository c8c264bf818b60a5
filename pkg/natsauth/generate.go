package natsauth

//go:generate go run ./internal/genconfig ../..

// SecretName is the Secret holding the server's copy of every user's
// password (one key per PasswordVar), beside the NATS server: in the dev
// overlay's namespace and in the prod release's.
const SecretName = "nats-auth" // #nosec G101 -- the name of a Kubernetes Secret, not its contents

// GeneratedFiles are the server configurations written from the model,
// relative to the repository root, with their content. The deploy tests
// fail while a committed copy differs.
func GeneratedFiles() map[string]string {
	return map[string]string{
		"deploy/nats/auth.conf":                   ServerConfig(),
		"k8s/overlays/dev/nats-auth.conf":         ServerConfig(),
		"k8s/overlays/prod/nats/auth-values.yaml": HelmValues(SecretName),
	}
}
