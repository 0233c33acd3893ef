package plugins

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/stub"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPluginsConnectingTogether: plugins that connect at the same moment
// are each known by their own name (the name decides the operator's
// failure policy and whether a required plugin is there). Found by the
// NRI benchmark on containerd 2.x: one of three plugins started together
// was registered without a name.
func TestPluginsConnectingTogether(t *testing.T) {
	const n = 6
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("p%d", i))
	}
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			r := newRig(t, &Config{}, createScript)
			var wg sync.WaitGroup
			stubs := make([]stub.Stub, n)
			for i, name := range names {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := stub.New(&testPlugin{}, stub.WithPluginName(name), stub.WithPluginIdx(fmt.Sprintf("%02d", 10+i)), stub.WithSocketPath(r.sock))
					if err != nil {
						t.Error(err)
						return
					}
					if err := s.Start(context.Background()); err != nil {
						t.Error(err)
						return
					}
					stubs[i] = s
				}()
			}
			wg.Wait()
			t.Cleanup(func() {
				for _, s := range stubs {
					if s != nil {
						s.Stop()
					}
				}
			})
			for deadline := time.Now().Add(30 * time.Second); !slices.Equal(r.host.Connected(), names); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("connected %v, want %v", r.host.Connected(), names)
				}
			}
			for _, name := range names {
				if v := testutil.ToFloat64(r.host.metrics.registered.WithLabelValues(name)); v != 1 {
					t.Errorf("crishim_nri_plugins_registered{plugin=%q} = %v, want 1", name, v)
				}
			}
		})
	}
}
