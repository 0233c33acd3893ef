package routing_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/routing"
	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
	"github.com/crishim/crishim/test/metricstest"
	"github.com/crishim/crishim/test/shimtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func q(s string) *resource.Quantity {
	v := resource.MustParse(s)
	return &v
}

var (
	testHandlers = []routing.RuntimeHandler{
		{Name: "runc", Default: true},
		{Name: "kata", Overhead: &routing.Overhead{CPU: q("250m"), Memory: q("160Mi")}, VMSizing: &routing.VMSizing{},
			Annotations: map[string]string{"io.katacontainers.config.hypervisor.enable_iommu": "false"}},
	}
	testRouting = routing.Routing{Rules: []routing.Rule{
		{Name: "untrusted-to-kata", Match: routing.Match{Namespaces: []string{"untrusted-*"}}, Handler: "kata"},
		{Name: "no-ci", Match: routing.Match{Namespaces: []string{"ci"}}, Deny: "CI pods run on the CI nodes"},
	}}
)

type sandboxEnv struct {
	*shimtest.Env
	inv *routing.Inventory
}

// newSandboxEnv runs crishim with the RunPodSandbox handler in front of a
// fake runtime. script runs before the inventory's first read.
func newSandboxEnv(t *testing.T, script func(f *fakecri.Server)) *sandboxEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := routing.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	log := shimtest.DiscardLogger()
	inv := routing.NewInventory(log, m, []string{"runc", "kata"}, time.Hour)
	runner := routing.NewSandboxRunner(routing.NewRouter(testHandlers, testRouting), inv, m, log)
	e := &sandboxEnv{Env: shimtest.Start(t, script, reg, runner.Handler()), inv: inv}
	if err := inv.Resync(context.Background(), runtimeapi.NewRuntimeServiceClient(e.Srv.ClientConn(shim.RuntimeUpstream))); err != nil {
		t.Fatal(err)
	}
	return e
}

func podRequest(ns, handler string, overhead *runtimeapi.LinuxContainerResources) *runtimeapi.RunPodSandboxRequest {
	return &runtimeapi.RunPodSandboxRequest{
		RuntimeHandler: handler,
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns, Uid: "u1"},
			Annotations: map[string]string{"user": "kept"},
			Linux: &runtimeapi.LinuxPodSandboxConfig{
				Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 150000, CpuShares: 1536, MemoryLimitInBytes: 1 << 30},
				Overhead:  overhead,
			},
		},
	}
}

// forwarded decodes the RunPodSandbox requests the runtime received.
func forwarded(t *testing.T, f *fakecri.Server) []*runtimeapi.RunPodSandboxRequest {
	t.Helper()
	var out []*runtimeapi.RunPodSandboxRequest
	for _, c := range f.Calls(runtimeapi.RuntimeService_RunPodSandbox_FullMethodName) {
		r := &runtimeapi.RunPodSandboxRequest{}
		if err := proto.Unmarshal(c.Request, r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return metricstest.Value(t, g, name, want)
}

func TestRunPodSandboxRouting(t *testing.T) {
	e := newSandboxEnv(t, func(f *fakecri.Server) {
		f.Script(runtimeapi.RuntimeService_ListPodSandbox_FullMethodName, fakecri.Script{Response: &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
			{Id: "a", RuntimeHandler: "kata-as-runtime-says", Annotations: map[string]string{routing.HandlerAnnotation: "kata"}},
			{Id: "b", RuntimeHandler: "runc"},
			{Id: "c", RuntimeHandler: ""}, // CRI-O reports "" for every handler
		}}})
	})
	if got := metric(t, e.Reg, "crishim_sandbox_running", "handler", "kata"); got != 1 {
		t.Errorf("running{kata} after the first resync = %v, want 1 (from crishim's annotation, not the runtime's field)", got)
	}
	e.Fake.Script(runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, fakecri.Script{Response: &runtimeapi.RunPodSandboxResponse{PodSandboxId: "new"}})

	// A routed namespace lands on kata, with overhead and VM size.
	resp, err := e.RC.RunPodSandbox(context.Background(), podRequest("untrusted-web", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.PodSandboxId != "new" {
		t.Errorf("response %v", resp)
	}
	got := forwarded(t, e.Fake)
	if len(got) != 1 {
		t.Fatalf("runtime got %d RunPodSandbox", len(got))
	}
	r := got[0]
	if r.RuntimeHandler != "kata" {
		t.Errorf("runtime_handler = %q, want kata", r.RuntimeHandler)
	}
	ann := r.Config.Annotations
	for k, want := range map[string]string{
		routing.HandlerAnnotation: "kata", routing.RuleAnnotation: "untrusted-to-kata", "user": "kept",
		"io.katacontainers.config.hypervisor.enable_iommu": "false",
		routing.KataVCPUsAnnotation:                        "2",    // 1.5 CPU + 250m, rounded up
		routing.KataMemoryAnnotation:                       "1184", // 1Gi + 160Mi
	} {
		if ann[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, ann[k], want)
		}
	}
	o := r.Config.Linux.Overhead
	if o == nil || o.CpuQuota != 25000 || o.CpuShares != 256 || o.MemoryLimitInBytes != 160<<20 {
		t.Errorf("overhead not filled from the handler: %v", o)
	}
	if got := metric(t, e.Reg, "crishim_sandbox_running", "handler", "kata"); got != 2 {
		t.Errorf("running{kata} after a start = %v, want 2", got)
	}
	if got := metric(t, e.Reg, "crishim_sandbox_routing_decisions_total", "handler", "kata", "rule", "untrusted-to-kata", "result", "allowed"); got != 1 {
		t.Errorf("decisions{kata,allowed} = %v", got)
	}

	// No rule, no handler asked: the default handler.
	if _, err := e.RC.RunPodSandbox(context.Background(), podRequest("default", "", nil)); err != nil {
		t.Fatal(err)
	}
	if r := forwarded(t, e.Fake)[1]; r.RuntimeHandler != "runc" || r.Config.Annotations[routing.RuleAnnotation] != "default" {
		t.Errorf("default route: handler %q rule %q", r.RuntimeHandler, r.Config.Annotations[routing.RuleAnnotation])
	}
}

func TestRunPodSandboxRefusals(t *testing.T) {
	tests := []struct {
		desc     string
		reported []string // runtime_handlers in Status; nil: none reported
		req      *runtimeapi.RunPodSandboxRequest
		code     codes.Code
		msg      []string
		metric   []string
	}{
		{"deny rule", nil, podRequest("ci", "", nil), codes.PermissionDenied,
			[]string{"ci/p", `rule "no-ci"`, "CI pods run on the CI nodes"},
			[]string{"crishim_sandbox_routing_decisions_total", "rule", "no-ci", "result", "denied"}},
		{"handler not configured", nil, podRequest("default", "firecracker", nil), codes.InvalidArgument,
			[]string{`"firecracker"`, "not configured", "[kata runc]"},
			[]string{"crishim_sandbox_routing_decisions_total", "handler", "unknown", "result", "rejected"}},
		{"configured but the runtime lacks it", []string{"runc"}, podRequest("untrusted-x", "", nil), codes.InvalidArgument,
			[]string{`"kata"`, "runtime does not report", "[runc]"},
			[]string{"crishim_runtime_handler_missing", "handler", "kata"}},
		{"no metadata", nil, &runtimeapi.RunPodSandboxRequest{}, codes.InvalidArgument, []string{"metadata"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			e := newSandboxEnv(t, func(f *fakecri.Server) {
				if tc.reported != nil {
					st := &runtimeapi.StatusResponse{}
					for _, h := range append([]string{""}, tc.reported...) {
						st.RuntimeHandlers = append(st.RuntimeHandlers, &runtimeapi.RuntimeHandler{Name: h})
					}
					f.Script(runtimeapi.RuntimeService_Status_FullMethodName, fakecri.Script{Response: st})
				}
			})
			_, err := e.RC.RunPodSandbox(context.Background(), tc.req)
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			for _, m := range tc.msg {
				if !strings.Contains(st.Message(), m) {
					t.Errorf("message %q lacks %q", st.Message(), m)
				}
			}
			if n := len(forwarded(t, e.Fake)); n != 0 {
				t.Errorf("the runtime saw %d RunPodSandbox; a refused pod must never reach it", n)
			}
			if tc.metric != nil {
				if got := metric(t, e.Reg, tc.metric[0], tc.metric[1:]...); got != 1 {
					t.Errorf("%v = %v, want 1", tc.metric, got)
				}
			}
		})
	}
}

func TestRunPodSandboxOverheadMismatchKeepsRequest(t *testing.T) {
	e := newSandboxEnv(t, nil)
	theirs := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 320 << 20}
	if _, err := e.RC.RunPodSandbox(context.Background(), podRequest("untrusted-a", "", theirs)); err != nil {
		t.Fatal(err)
	}
	r := forwarded(t, e.Fake)[0]
	if !proto.Equal(r.Config.Linux.Overhead, theirs) {
		t.Errorf("overhead %v, want the request's %v kept", r.Config.Linux.Overhead, theirs)
	}
	if got := metric(t, e.Reg, "crishim_sandbox_overhead_mismatches_total", "handler", "kata"); got != 1 {
		t.Errorf("mismatches = %v, want 1", got)
	}
	// VM sizing uses the overhead that is actually applied.
	if v := r.Config.Annotations[routing.KataVCPUsAnnotation]; v != "2" {
		t.Errorf("vcpus %q", v)
	}
	if m := r.Config.Annotations[routing.KataMemoryAnnotation]; m != "1344" {
		t.Errorf("memory %q, want 1024+320", m)
	}

	// Matching overhead is no mismatch.
	same := &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 25000, CpuPeriod: 100000, MemoryLimitInBytes: 160 << 20}
	if _, err := e.RC.RunPodSandbox(context.Background(), podRequest("untrusted-b", "", same)); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, e.Reg, "crishim_sandbox_overhead_mismatches_total", "handler", "kata"); got != 1 {
		t.Errorf("mismatches = %v after a matching overhead, want still 1", got)
	}
}

func TestRunPodSandboxRuntimeErrorUnchanged(t *testing.T) {
	e := newSandboxEnv(t, nil)
	want := `failed to get sandbox runtime: no runtime for "kata" is configured`
	e.Fake.Script(runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, fakecri.Script{Err: status.Error(codes.Unknown, want)})
	_, err := e.RC.RunPodSandbox(context.Background(), podRequest("untrusted-a", "", nil))
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != want {
		t.Errorf("got %v, want the runtime's error unchanged", err)
	}
	if got := metric(t, e.Reg, "crishim_sandbox_started_total", "handler", "kata"); got != 0 {
		t.Errorf("started = %v for a failed start", got)
	}
}
