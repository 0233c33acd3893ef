package credentials

import (
	"context"
	"encoding/json"
	"fmt"
)

// Credential is one registry credential to try for a pull.
type Credential struct {
	Username, Password string
	// Source says where it came from, for logs and metrics: "dockerconfig" or "plugin:<name>".
	Source string
	// Pattern is the config key / plugin auth key that matched (not secret), for logs.
	Pattern string
}

// Source values of a Credential.
const (
	// SourceDockerConfig marks credentials from a docker config.json or .dockercfg file.
	SourceDockerConfig = "dockerconfig"
	// SourcePluginPrefix starts the Source of credentials from an exec
	// plugin; the plugin's name follows.
	SourcePluginPrefix = "plugin:"
)

// String describes the credential without its password, e.g.
// "robot@registry.example (dockerconfig)". It is what every fmt verb and
// JSON encoding print, so an accidental %v, %+v or %#v in a log, or a
// credential in a logrus field under the JSON formatter, cannot leak the
// password.
func (c Credential) String() string {
	user := c.Username
	if user == "" {
		user = "<no username>"
	}
	return fmt.Sprintf("%s@%s (%s)", user, c.Pattern, c.Source)
}

// GoString implements fmt.GoStringer with the same redacted text as String.
func (c Credential) GoString() string { return c.String() }

// Format implements fmt.Formatter: every verb prints String, so no verb or
// flag (%v, %+v, %#v, %s, %q, %x) reaches the fields.
func (c Credential) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprintf(f, "%q", c.String())
	default:
		fmt.Fprint(f, c.String())
	}
}

// MarshalJSON encodes the redacted String, for structured (JSON) log
// formatters that would otherwise encode every field.
func (c Credential) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// Provider finds node credentials for an image reference as given (e.g.
// "busybox", "registry.example:5000/a/b:1").
type Provider interface {
	Lookup(ctx context.Context, image string) []Credential
}

var (
	_ Provider = (*DockerConfig)(nil)
	_ Provider = (*Plugins)(nil)
	_ Provider = chain(nil)
)

// Chain asks providers in order and concatenates their credentials (docker
// config first, then plugins, as the kubelet does: its keyring is
// UnionDockerKeyring{docker config keyring, external plugin keyring}, in
// pkg/kubelet/kuberuntime/kuberuntime_image.go). Nil providers are skipped.
// Duplicates are kept, as the kubelet keeps them: each is one pull attempt.
func Chain(providers ...Provider) Provider {
	c := make(chain, 0, len(providers))
	for _, p := range providers {
		if p != nil {
			c = append(c, p)
		}
	}
	return c
}

type chain []Provider

func (c chain) Lookup(ctx context.Context, image string) []Credential {
	var out []Credential
	for _, p := range c {
		out = append(out, p.Lookup(ctx, image)...)
	}
	return out
}
