package handlers

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/credentials"
)

type oneCredential struct{}

func (oneCredential) Lookup(context.Context, string) []credentials.Credential {
	return []credentials.Credential{{Username: "u", Password: "p", Source: "dockerconfig"}}
}

// TestConstructorsAcceptNil: every constructor given nil for what it later
// uses (logger, metrics, router, inventory, provider) must serve a call
// without panicking. WithCredentials with nil metrics used to panic the
// first time the policy withheld credentials.
func TestConstructorsAcceptNil(t *testing.T) {
	pullReq := &runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: "registry.example/app:1"},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "other"}},
	}
	pullNext := func(context.Context, *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
		return &runtimeapi.PullImageResponse{ImageRef: "sha256:x"}, nil
	}
	withhold := CredentialPolicy{{Registries: []string{"*"}, Namespaces: []string{"team-*"}}}
	tests := []struct {
		desc string
		call func() error
	}{
		{"puller: nil log, nil credential metrics, policy withholds", func() error {
			p := NewImagePuller(nil, WithCredentials(oneCredential{}, withhold, nil))
			_, err := p.PullImage(context.Background(), pullReq, pullNext)
			return err
		}},
		{"puller: nil credential metrics, credentials injected", func() error {
			p := NewImagePuller(nil, WithCredentials(oneCredential{}, nil, nil))
			_, err := p.PullImage(context.Background(), pullReq, pullNext)
			return err
		}},
		{"puller: nil provider", func() error {
			p := NewImagePuller(nil, WithCredentials(nil, withhold, nil))
			_, err := p.PullImage(context.Background(), pullReq, pullNext)
			return err
		}},
		{"puller: scheduler with nil metrics", func() error {
			s := NewPullScheduler(PullLimits{MaxParallel: 1, MaxParallelPerRegistry: 1}, true, nil)
			defer s.Close()
			p := NewImagePuller(nil, WithScheduler(s, nil))
			_, err := p.PullImage(context.Background(), pullReq, pullNext)
			return err
		}},
		{"sandbox runner: nil router, inventory, metrics and log", func() error {
			s := NewSandboxRunner(nil, nil, nil, nil)
			s.SetRouter(NewRouter(nil, Routing{}))
			req := &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns"}}}
			_, err := s.RunPodSandbox(context.Background(), req, func(_ context.Context, r *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
				if !proto.Equal(r.GetConfig().GetMetadata(), req.GetConfig().GetMetadata()) {
					t.Errorf("metadata changed")
				}
				return &runtimeapi.RunPodSandboxResponse{PodSandboxId: "x"}, nil
			})
			return err
		}},
		{"inventory: nil log and metrics", func() error {
			inv := NewInventory(nil, nil, []string{"runc"}, 0)
			inv.SetConfigured([]string{"kata"})
			inv.setReported([]string{"runc"})
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			if err := tc.call(); err != nil {
				t.Errorf("call failed: %v", err)
			}
		})
	}
}
