package credentials

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type oneCredential struct{}

func (oneCredential) Lookup(context.Context, string) []Credential {
	return []Credential{{Username: "u", Password: "p", Source: SourceDockerConfig}}
}

// TestInjectorAcceptsNil: NewInjector with nil metrics used to panic the
// first time the policy withheld credentials; nil metrics, provider or log
// must serve a pull.
func TestInjectorAcceptsNil(t *testing.T) {
	req := &runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: "registry.example/app:1"},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "other"}},
	}
	next := func(context.Context, *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
		return &runtimeapi.PullImageResponse{ImageRef: "sha256:x"}, nil
	}
	withhold := Policy{{Registries: []string{"*"}, Namespaces: []string{"team-*"}}}
	tests := []struct {
		desc     string
		provider Provider
		policy   Policy
	}{
		{"nil metrics and log, policy withholds", oneCredential{}, withhold},
		{"nil metrics and log, credentials injected", oneCredential{}, nil},
		{"nil provider", nil, withhold},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			i := NewInjector(tc.provider, tc.policy, nil, nil)
			if _, err := i.PullImage(context.Background(), req, next); err != nil {
				t.Errorf("PullImage: %v", err)
			}
		})
	}
}
