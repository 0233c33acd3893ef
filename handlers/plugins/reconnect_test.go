package plugins

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/stub"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPluginReconnects: a plugin whose connection goes away is counted as
// disconnected, is no longer registered (a required plugin's pods wait
// again), and when it comes back it is synchronized with the runtime.
func TestPluginReconnects(t *testing.T) {
	r := newRig(t, &Config{Plugins: []PluginConfig{{Name: "flaky", Required: true}}}, createScript)
	first := &testPlugin{synced: make(chan int, 1)}
	s, err := stub.New(first, stub.WithPluginName("flaky"), stub.WithPluginIdx("10"), stub.WithSocketPath(r.sock))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.waitConnected(t, "flaky")
	<-first.synced
	s.Stop() // the plugin goes away
	for deadline := time.Now().Add(30 * time.Second); len(r.host.Connected()) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still connected after the plugin stopped: %v", r.host.Connected())
		}
	}
	if n := testutil.ToFloat64(r.host.metrics.disconnects.WithLabelValues("flaky")); n != 1 {
		t.Errorf("disconnects %v, want 1", n)
	}
	if n := testutil.ToFloat64(r.host.metrics.registered.WithLabelValues("flaky")); n != 0 {
		t.Errorf("registered %v, want 0", n)
	}
	if missing := r.host.tracker.missing([]string{"flaky"}); len(missing) != 1 {
		t.Errorf("missing %v, want the plugin", missing)
	}
	again := &testPlugin{synced: make(chan int, 1)}
	r.connect(t, "flaky", "10", again)
	select {
	case <-again.synced:
	case <-time.After(30 * time.Second):
		t.Fatal("the plugin that came back was not synchronized")
	}
	if n := testutil.ToFloat64(r.host.metrics.registered.WithLabelValues("flaky")); n != 1 {
		t.Errorf("registered %v after the reconnect, want 1", n)
	}
}
