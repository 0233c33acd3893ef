package routing

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestConstructorsAcceptNil: given nil for what they later use (router,
// inventory, metrics, logger), the constructors serve a call without
// panicking.
func TestConstructorsAcceptNil(t *testing.T) {
	tests := []struct {
		desc string
		call func() error
	}{
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
