//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeProfile is what one runtime of the bed (test/bed/bed.sh, RUNTIME=...) does where the
// runtimes differ and crishim must cope. Each fact is asserted by a test, on every runtime: a
// difference is an expectation to check, never a reason to skip.
type runtimeProfile struct {
	name  string // BED_RUNTIME
	label string // for messages

	// runtimeName is VersionResponse.runtime_name.
	runtimeName string
	// events: GetContainerEvents streams (containerd 1.6 answers Unimplemented; CRI-O only with
	// enable_pod_events, which the bed sets).
	events bool
	// eventsPerLifecycle is how many events one pod with one container produces from
	// RunPodSandbox to RemovePodSandbox (CRI-O sends no sandbox created/deleted events).
	eventsPerLifecycle int
	// reportsHandlers: StatusResponse.runtime_handlers lists the configured handlers.
	reportsHandlers bool
	// sandboxHandler: PodSandboxStatus.runtime_handler names a non-default handler (CRI-O
	// reports "" even then).
	sandboxHandler bool
	// unknownHandler is the runtime's error text for RunPodSandbox on an unknown handler (%s:
	// the handler).
	unknownHandler string
	// onlyAllowedAnnotations: a handler's OCI spec gets only the pod annotations the handler
	// allows (containerd pod_annotations); CRI-O copies every pod annotation (and label) into the
	// spec, and its allowed_annotations accepts only its own list (io.kubernetes.cri-o.*, ...).
	onlyAllowedAnnotations bool
	// authDenied: one of these is in the runtime's error for a pull the registry refuses (401).
	authDenied []string
	// pullReturnsDigest: PullImage answers with the image's repo digest (CRI-O), not its
	// sha256: id (containerd); both are valid image_ref values.
	pullReturnsDigest bool
	// overheadInSpec: the overhead a sandbox was started with is read back from the OCI spec's
	// io.kubernetes.cri-o.PodLinuxOverhead annotation (CRI-O), not from the sandbox config in
	// the verbose PodSandboxStatus info (containerd: info.config.linux.overhead).
	overheadInSpec bool
}

var runtimeProfiles = map[string]*runtimeProfile{
	"containerd1": {
		name: "containerd1", label: "containerd 1.6", runtimeName: "containerd",
		events: false, reportsHandlers: false, sandboxHandler: true,
		unknownHandler:         `no runtime for "%s" is configured`,
		onlyAllowedAnnotations: true,
		authDenied:             []string{"401", "unauthorized"},
	},
	"containerd2": {
		name: "containerd2", label: "containerd 2.x", runtimeName: "containerd",
		events: true, eventsPerLifecycle: 8, reportsHandlers: true, sandboxHandler: true,
		unknownHandler:         `no runtime for "%s" is configured`,
		onlyAllowedAnnotations: true,
		// "authorization failed: no basic auth credentials" without credentials, "401 Unauthorized" with wrong ones
		authDenied: []string{"401", "unauthorized", "no basic auth credentials"},
	},
	"crio": {
		name: "crio", label: "CRI-O", runtimeName: "cri-o",
		events: true, eventsPerLifecycle: 6, reportsHandlers: true, sandboxHandler: false,
		unknownHandler:         `failed to find runtime handler %s`,
		onlyAllowedAnnotations: false, overheadInSpec: true, pullReturnsDigest: true,
		// "reading manifest 1.35 in 127.0.0.1:5021/private/busybox: authentication required"
		authDenied: []string{"401", "unauthorized", "authentication required"},
	},
}

func profile(name string) (*runtimeProfile, error) {
	p, ok := runtimeProfiles[name]
	if !ok {
		return nil, fmt.Errorf("BED_RUNTIME=%q: unknown runtime (one of containerd1, containerd2, crio)", name)
	}
	return p, nil
}

// isAuthDenied reports whether err is the runtime's error for a pull the registry refused.
func (p *runtimeProfile) isAuthDenied(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	for _, s := range p.authDenied {
		if strings.Contains(msg, strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// wantSandboxHandler is what PodSandboxStatus.runtime_handler says for a sandbox on handler.
func (p *runtimeProfile) wantSandboxHandler(handler string) string {
	if p.sandboxHandler {
		return handler
	}
	return ""
}

// runsOn asserts that runc keeps the sandbox's state under the handler's own runc root (the bed
// gives each handler one: $BED_DIR/HANDLER-root), which tells the handler a sandbox really runs
// on whatever the runtime reports in PodSandboxStatus.
func (b *bed) runsOn(t *testing.T, sandbox, handler string) {
	t.Helper()
	root := filepath.Join(b.dir, handler+"-root")
	// containerd: ROOT/NAMESPACE/ID; CRI-O: ROOT/ID
	for _, p := range []string{filepath.Join(root, sandbox), filepath.Join(root, "k8s.io", sandbox)} {
		if _, err := os.Stat(filepath.Join(p, "state.json")); err == nil {
			return
		}
	}
	entries, _ := filepath.Glob(filepath.Join(root, "*"))
	t.Errorf("sandbox %s has no runc state under %s (handler %s); there: %s", sandbox[:13], root, handler, strings.Join(entries, " "))
}

// unknownHandlerError is the runtime's own error text for RunPodSandbox on handler.
func (p *runtimeProfile) unknownHandlerError(handler string) string {
	return fmt.Sprintf(p.unknownHandler, handler)
}

// TestRuntimeProfile checks the runtime is the one the bed says, and that Version and Status
// (runtime_handlers and features included) come back through crishim exactly as directly.
func TestRuntimeProfile(t *testing.T) {
	b := getBed(t)
	ctx := testContext(t, callTimeout)
	direct, through := rawRuntime(t, b.runtimeSock), rawRuntime(t, b.crishimSock)
	dv, err := direct.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("Version (direct): %v", err)
	}
	if dv.GetRuntimeName() != b.rt.runtimeName {
		t.Fatalf("BED_RUNTIME=%s, but the runtime says it is %s %s", b.rt.name, dv.GetRuntimeName(), dv.GetRuntimeVersion())
	}
	cv, err := through.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || !proto.Equal(cv, dv) {
		t.Errorf("Version through crishim = %v, %v; directly %v", cv, err, dv)
	}
	ds, err := direct.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status (direct): %v", err)
	}
	cs, err := through.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status through crishim: %v", err)
	}
	// CRI-O lists its handlers in map order, different from one call to the
	// next: compare them sorted.
	byName := func(hs []*runtimeapi.RuntimeHandler) []*runtimeapi.RuntimeHandler {
		out := slices.Clone(hs)
		slices.SortFunc(out, func(a, b *runtimeapi.RuntimeHandler) int { return strings.Compare(a.GetName(), b.GetName()) })
		return out
	}
	if !proto.Equal(&runtimeapi.StatusResponse{RuntimeHandlers: byName(cs.RuntimeHandlers), Features: cs.Features},
		&runtimeapi.StatusResponse{RuntimeHandlers: byName(ds.RuntimeHandlers), Features: ds.Features}) {
		t.Errorf("Status through crishim: handlers %v features %v; directly %v %v", cs.RuntimeHandlers, cs.Features, ds.RuntimeHandlers, ds.Features)
	}
	var names []string
	for _, h := range ds.GetRuntimeHandlers() {
		names = append(names, fmt.Sprintf("%q", h.GetName()))
	}
	t.Logf("%s %s: runtime_handlers [%s], features %v", dv.GetRuntimeName(), dv.GetRuntimeVersion(), strings.Join(names, " "), ds.GetFeatures())
	if b.rt.reportsHandlers {
		for _, want := range []string{`"runc"`, `"kata-sim"`} {
			if !slices.Contains(names, want) {
				t.Errorf("%s reports runtime_handlers [%s], want %s among them", b.rt.label, strings.Join(names, " "), want)
			}
		}
	} else if len(names) != 0 {
		t.Errorf("%s reports runtime_handlers [%s]; the bed expects none from it", b.rt.label, strings.Join(names, " "))
	}
}

const inventoryConfig = `
handlers:
  - name: runc
    default: true
  - name: kata-sim
  - name: missing-vm
routing:
  rules:
    - name: vm-namespaces
      match: {namespaces: ["vm-*"]}
      handler: missing-vm
    - name: sim-namespaces
      match: {namespaces: ["sim-*"]}
      handler: kata-sim
`

const missingHandlerLog = "configured runtime handler is not reported by the runtime"

// TestHandlerInventory: crishim configured with a handler the runtime lacks. Where the runtime
// reports its handlers (StatusResponse.runtime_handlers), crishim says so at start, before any
// pod: a log line at error and crishim_runtime_handler_missing{handler}=1, and a pod routed there
// gets crishim's InvalidArgument without reaching the runtime. Where it does not (containerd 1.6),
// crishim cannot know: no such line or metric, and the runtime's own error comes back. Sandboxes
// are counted per handler from crishim's crishim.io/handler annotation, so a fresh crishim counts
// a routed sandbox right even where PodSandboxStatus.runtime_handler is "" (CRI-O).
func TestHandlerInventory(t *testing.T) {
	b := getBed(t)
	c := b.startCrishim(t, "inventory", inventoryConfig)
	ctx := testContext(t, 3*callTimeout)
	// the inventory reads the runtime right after start: crishim_sandbox_running appears then
	waitFor(t, 10*time.Second, "crishim's first inventory of the runtime", func() (bool, error) {
		ms := c.metrics(t)
		for _, s := range ms {
			if s.name == "crishim_sandbox_running" && s.labels["handler"] == "missing-vm" {
				return true, nil
			}
		}
		return false, nil
	})
	ms := c.metrics(t)
	logText, _ := os.ReadFile(c.log)
	var logLine string
	for _, l := range strings.Split(string(logText), "\n") {
		if strings.Contains(l, missingHandlerLog) {
			logLine = l
		}
	}
	missing := func(h string) float64 {
		return ms.value("crishim_runtime_handler_missing", map[string]string{"handler": h})
	}
	if b.rt.reportsHandlers {
		for h, want := range map[string]float64{"missing-vm": 1, "runc": 0, "kata-sim": 0} {
			if got := missing(h); got != want {
				t.Errorf("crishim_runtime_handler_missing{handler=%q} = %v, want %v", h, got, want)
			}
		}
		if !strings.Contains(logLine, "level=error") || !strings.Contains(logLine, "handler=missing-vm") {
			t.Errorf("crishim's start-up log lacks an error line %q with handler=missing-vm; got %q", missingHandlerLog, logLine)
		}
		t.Logf("start-up log: %s", logLine)
	} else {
		if got := missing("missing-vm"); got != 0 {
			t.Errorf("crishim_runtime_handler_missing{missing-vm} = %v on %s, which reports no handlers: want no series", got, b.rt.label)
		}
		if logLine != "" {
			t.Errorf("crishim logged %q on %s, which reports no handlers", logLine, b.rt.label)
		}
		t.Logf("%s reports no runtime handlers: crishim cannot see missing-vm is missing before a pod asks for it", b.rt.label)
	}

	rs := runtimeService(t, c.sock, false)
	drs := runtimeService(t, b.runtimeSock, false)
	ensureImage(ctx, t, imageService(t, c.sock), b.busybox())

	// a pod routed to the missing handler
	vm := b.podConfig(t, "to-missing")
	vm.Metadata.Namespace = "vm-e2e"
	_, err := rs.RunPodSandbox(ctx, vm, "")
	if err == nil {
		t.Fatal("RunPodSandbox routed to missing-vm succeeded")
	}
	if b.rt.reportsHandlers {
		wantCode(t, "RunPodSandbox routed to missing-vm", err, codes.InvalidArgument)
		if !strings.Contains(err.Error(), `"missing-vm", which crishim knows but the runtime does not report`) {
			t.Errorf("RunPodSandbox routed to missing-vm: %v, want crishim's rejection naming the handler", err)
		}
	} else if !strings.Contains(err.Error(), b.rt.unknownHandlerError("missing-vm")) {
		t.Errorf("RunPodSandbox routed to missing-vm on %s: %v, want the runtime's %q", b.rt.label, err, b.rt.unknownHandlerError("missing-vm"))
	}
	pods, err := drs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"crishim-e2e": vm.Labels["crishim-e2e"]}})
	if err != nil || len(pods) != 0 {
		t.Errorf("after the rejection the runtime has %d sandboxes (%v), want 0", len(pods), err)
	}

	// a pod routed to kata-sim, counted by crishim's annotation
	sim := b.podConfig(t, "to-sim")
	sim.Metadata.Namespace = "sim-e2e"
	pod := runPod(ctx, t, rs, sim, "")
	st, err := drs.PodSandboxStatus(ctx, pod, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.GetStatus().GetRuntimeHandler(), b.rt.wantSandboxHandler("kata-sim"); got != want {
		t.Errorf("%s: PodSandboxStatus.runtime_handler = %q for a kata-sim sandbox, want %q", b.rt.label, got, want)
	}
	if a := st.GetStatus().GetAnnotations(); a["crishim.io/handler"] != "kata-sim" || a["crishim.io/routing-rule"] != "sim-namespaces" {
		t.Errorf("sandbox annotations %v lack crishim's decision", a)
	}
	b.runsOn(t, pod, "kata-sim")
	if got := c.metrics(t).value("crishim_sandbox_running", map[string]string{"handler": "kata-sim"}); got != 1 {
		t.Errorf("crishim_sandbox_running{kata-sim} = %v after starting one, want 1", got)
	}
	// a fresh crishim rebuilds the count from ListPodSandbox
	fresh := b.startCrishim(t, "inventory-fresh", inventoryConfig)
	waitFor(t, 10*time.Second, "the fresh crishim counting the kata-sim sandbox", func() (bool, error) {
		return fresh.metrics(t).value("crishim_sandbox_running", map[string]string{"handler": "kata-sim"}) == 1, nil
	})
	if b.rt.reportsHandlers {
		if got := fresh.metrics(t).value("crishim_runtime_handler_missing", map[string]string{"handler": "missing-vm"}); got != 1 {
			t.Errorf("fresh crishim: crishim_runtime_handler_missing{missing-vm} = %v, want 1", got)
		}
	}
}

// sandboxOverhead returns the linux overhead the runtime started a sandbox with, read back from
// where the runtime keeps it (see overheadInSpec).
func (b *bed) sandboxOverhead(t *testing.T, st *runtimeapi.PodSandboxStatusResponse) map[string]any {
	t.Helper()
	var overhead map[string]any
	if b.rt.overheadInSpec {
		raw := b.ociAnnotations(t, st)["io.kubernetes.cri-o.PodLinuxOverhead"]
		if err := json.Unmarshal([]byte(raw), &overhead); err != nil {
			t.Fatalf("OCI annotation io.kubernetes.cri-o.PodLinuxOverhead %q: %v", raw, err)
		}
		return overhead
	}
	var info struct {
		Config struct {
			Linux struct {
				Overhead map[string]any `json:"overhead"`
			} `json:"linux"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		t.Fatalf("verbose info: %v", err)
	}
	return info.Config.Linux.Overhead
}
