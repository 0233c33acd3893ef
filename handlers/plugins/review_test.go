package plugins

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRefusedCreateIsUndone: when the plugins fail a CreateContainer (here
// a later plugin's rlimit is refused), the plugins that already handled it
// hear that the container will not exist, as containerd's NRI does; else a
// resource manager would keep what it reserved on every kubelet retry.
func TestRefusedCreateIsUndone(t *testing.T) {
	r := newRig(t, &Config{}, createScript)
	p := &lifeWatcher{events: make(chan string, 8)}
	r.connect(t, "reserver", "10", p)
	r.connect(t, "limits", "20", &testPlugin{adjust: func(a *api.ContainerAdjustment) { a.AddRlimit("RLIMIT_NOFILE", 2, 1) }})
	if _, err := r.RC.CreateContainer(context.Background(), createReq()); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err %v, want the refusal", err)
	}
	for _, want := range []string{"StopContainer", "RemoveContainer"} {
		select {
		case got := <-p.events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s after the refused create", want)
		}
	}
}

func TestMemoryLimitMovesSwap(t *testing.T) {
	r := newRig(t, &Config{}, createScript)
	r.connect(t, "mem", "10", &testPlugin{adjust: func(a *api.ContainerAdjustment) { a.SetLinuxMemoryLimit(2 << 30) }})
	if _, err := r.RC.CreateContainer(context.Background(), createReq()); err != nil {
		t.Fatal(err)
	}
	res := sentCreate(t, r.Fake)[0].GetConfig().GetLinux().GetResources()
	// the kubelet sent limit = swap = 1 GiB (no swap); a raised limit above
	// the old swap limit would be refused by cgroup v1 (memsw < limit)
	if res.GetMemoryLimitInBytes() != 2<<30 || res.GetMemorySwapLimitInBytes() != 2<<30 {
		t.Fatalf("limit %d, swap %d: want both 2 GiB", res.GetMemoryLimitInBytes(), res.GetMemorySwapLimitInBytes())
	}
}

func TestKubeletAnnotationsProtected(t *testing.T) {
	set := func(a *api.ContainerAdjustment) {
		a.AddAnnotation("io.kubernetes.container.hash", "plugin")
		a.AddAnnotation("plugin.example/ok", "yes")
	}
	for _, tc := range []struct {
		desc string
		drop bool
	}{{"refused", false}, {"dropped", true}} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := &Config{}
			if tc.drop {
				cfg.UnsupportedFields = map[string]string{"annotations.kubelet": UnsupportedDrop}
			}
			r := newRig(t, cfg, createScript)
			r.connect(t, "annotator", "10", &testPlugin{adjust: set})
			_, err := r.RC.CreateContainer(context.Background(), createReq())
			if !tc.drop {
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "plugin 10-annotator set annotations.kubelet (io.kubernetes.container.hash)") {
					t.Fatalf("err %v, want the refusal naming plugin and field", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ann := sentCreate(t, r.Fake)[0].GetConfig().GetAnnotations()
			if ann["io.kubernetes.container.hash"] != "abc" || ann["plugin.example/ok"] != "yes" {
				t.Fatalf("annotations %v: want the kubelet's hash kept and the plugin's own added", ann)
			}
		})
	}
}

// TestIDAnnotationCannotBeSpoofed: crishim's container-ID annotation comes
// from crishim only. A client that sets it would pass, after a restart or
// to a plugin connecting later, as another container.
func TestIDAnnotationCannotBeSpoofed(t *testing.T) {
	const spoofed = "0000000000000000000000000000000000000000000000000000000000000001"
	for _, withPlugin := range []bool{false, true} {
		t.Run(map[bool]string{false: "no plugin", true: "plugin"}[withPlugin], func(t *testing.T) {
			r := newRig(t, &Config{}, createScript)
			if withPlugin {
				r.connect(t, "any", "10", &testPlugin{})
			}
			req := createReq()
			req.Config.Annotations[IDAnnotation] = spoofed
			if _, err := r.RC.CreateContainer(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			got := sentCreate(t, r.Fake)[0].GetConfig().GetAnnotations()[IDAnnotation]
			if got == spoofed {
				t.Fatalf("the runtime got the client's %s", IDAnnotation)
			}
			if withPlugin == (got == "") {
				t.Fatalf("%s = %q: want crishim's own with a plugin, none without", IDAnnotation, got)
			}
		})
	}
}
