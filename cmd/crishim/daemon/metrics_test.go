package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/crishim/crishim/test/daemontest"
	"github.com/crishim/crishim/test/fakecri"
)

// TestMetricsLintAndReference scrapes a running crishim with every feature
// on (routing, pull scheduling, credentials), after calls that fill every
// labelled family, and checks the page with promlint (what promtool check
// metrics runs) and against the metrics reference in README.md: every
// crishim_ metric crishim serves is documented, and every documented one is
// served, so neither can drift from the other.
func TestMetricsLintAndReference(t *testing.T) {
	r := newRig(t)
	dockerConfig := filepath.Join(r.Dir, "config.json")
	if err := os.WriteFile(dockerConfig, []byte(`{"auths": {"registry.example": {"auth": "dTpw"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// The runtime reports runc and kata: gvisor is configured but missing.
	r.Fake.Script(runtimeapi.RuntimeService_Status_FullMethodName, fakecri.Script{Response: &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: ""}, {Name: "runc"}, {Name: "kata"}},
	}})
	r.Fake.Script(runtimeapi.ImageService_ImageStatus_FullMethodName, fakecri.Script{Response: &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: "sha256:x"}}})
	// Pulls take a while, so that identical ones meet.
	r.Fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Delay: 300 * time.Millisecond, Response: &runtimeapi.PullImageResponse{ImageRef: "sha256:x"}})
	cfg := daemontest.WriteConfig(t, r.Base()+fmt.Sprintf(`handlers:
  - name: runc
    default: true
  - name: kata
    overhead:
      cpu: 250m
      memory: 160Mi
  - name: gvisor
routing:
  rules:
    - name: allow-kata
      match:
        requestedHandlers: [kata]
      handler: kata
images:
  pulls:
    mode: parallel
  credentials:
    dockerConfig:
      paths: [%s]
    policy:
      - registries: ["registry.example"]
        namespaces: ["team-*"]
  access:
    stateDir: %s
nri:
  socket: %s
  plugins:
    - name: guard
      required: true
  exemptNamespaces: [team-a, other]
`, dockerConfig, filepath.Join(r.Dir, "state"), filepath.Join(r.Dir, "nri.sock")))
	srv := r.start(t, cfg, io.Discard)
	// An NRI plugin asking for what CRI cannot carry, in namespace nri.
	stopPlugin := startRlimitPlugin(t, filepath.Join(r.Dir, "nri.sock"), "nri", r.MetricsAddr)
	defer stopPlugin()
	conn, err := grpc.NewClient("unix://"+r.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	rc, ic := runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	pod := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "team-a", Uid: "u"}}
	if _, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod}); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	// kata with an overhead other than the configured one: a mismatch
	pod.Linux = &runtimeapi.LinuxPodSandboxConfig{Overhead: &runtimeapi.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: 1 << 20}}
	if _, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: "kata"}); err != nil {
		t.Fatalf("RunPodSandbox on kata: %v", err)
	}
	pod.Linux = nil
	var wg sync.WaitGroup
	for _, ns := range []string{"team-a", "team-a", "other"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns, Uid: "u"}}
			if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1"}, SandboxConfig: p}); err != nil {
				t.Errorf("PullImage: %v", err)
			}
		}()
	}
	wg.Wait()
	// a container of the pulled image, checked by image access
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		Config:        &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1"}},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "team-a", Uid: "u"}},
	}); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	// plugins: a pod refused for the missing required plugin, a container
	// refused for an adjustment CRI cannot carry
	nriPod := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "nri", Uid: "u"}}
	if _, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: nriPod}); err == nil {
		t.Fatal("RunPodSandbox in nri succeeded without the required plugin")
	}
	// (pulled in nri with its own credentials first, so that image access
	// lets it by)
	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1"},
		Auth: &runtimeapi.AuthConfig{Username: "nri", Password: "own"}, SandboxConfig: nriPod}); err != nil {
		t.Fatalf("PullImage in nri: %v", err)
	}
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "x",
		Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1"}}, SandboxConfig: nriPod}); err == nil {
		t.Fatal("CreateContainer with a plugin's rlimit succeeded")
	} else if !strings.Contains(err.Error(), "rlimits") {
		t.Fatalf("CreateContainer with a plugin's rlimit: %v, want the refusal", err)
	}
	srv.signal(syscall.SIGHUP) // a reload
	// The families appear as their first series does: the inventory's
	// first read and the reload are asynchronous.
	want := []string{"crishim_image_access_decisions_total", "crishim_runtime_handler_missing", "crishim_config_reloads_total", "crishim_image_pull_deduplicated_total", "crishim_sandbox_overhead_mismatches_total"}
	var page []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		page = scrape(t, r.MetricsAddr)
		if !slices.ContainsFunc(want, func(n string) bool { return !bytes.Contains(page, []byte("\n# TYPE "+n+" ")) }) || time.Now().After(deadline) {
			break
		}
	}

	problems, err := promlint.New(bytes.NewReader(page)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "crishim_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}

	served := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (crishim_\w+) `).FindAllSubmatch(page, -1) {
		served[string(m[1])] = true
	}
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(crishim_\\w+)` \\|").FindAllSubmatch(readme, -1) {
		documented[string(m[1])] = true
	}
	if len(served) < 20 {
		t.Fatalf("only %d crishim_ metrics served: not every feature is on", len(served))
	}
	for _, name := range sortedKeys(served) {
		if !documented[name] {
			t.Errorf("%s is served but not in README.md's metrics reference", name)
		}
	}
	for _, name := range sortedKeys(documented) {
		if !served[name] {
			t.Errorf("%s is in README.md's metrics reference but not served", name)
		}
	}

	checkDashboardAndAlerts(t, page)
}

// checkDashboardAndAlerts checks that every metric the Grafana dashboard
// and the Prometheus alerting rules under configs/ query is on page (a
// scrape of crishim with every feature on), so that renaming a metric
// cannot silently leave a panel empty or an alert unable to fire.
func checkDashboardAndAlerts(t *testing.T, page []byte) {
	t.Helper()
	types := map[string]string{} // every family on the page, go_ and process_ included
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\w+) (\w+)$`).FindAllSubmatch(page, -1) {
		types[string(m[1])] = string(m[2])
	}
	const (
		dashboard = "configs/grafana/crishim-dashboard.json"
		alerts    = "configs/prometheus/crishim-alerts.yaml"
	)
	exprs := map[string][]string{dashboard: dashboardExprs(t, "../../../"+dashboard), alerts: ruleExprs(t, "../../../"+alerts)}
	name := regexp.MustCompile(`\b(?:crishim|go|process)_[a-z0-9_]+`)
	for _, file := range []string{dashboard, alerts} {
		if len(exprs[file]) == 0 {
			t.Errorf("%s: no queries found", file)
		}
		used := map[string]bool{}
		for _, e := range exprs[file] {
			for _, n := range name.FindAllString(e, -1) {
				used[n] = true
			}
		}
		if !used["crishim_upstream_up"] {
			t.Errorf("%s: queries do not name crishim_upstream_up: not parsed right?", file)
		}
		for _, n := range sortedKeys(used) {
			if !servedSeries(types, n) {
				t.Errorf("%s uses %s, which crishim does not serve", file, n)
			}
		}
	}
}

// servedSeries reports whether a query's metric name n is served: a family
// on the page, or a _bucket, _sum or _count series of a histogram.
func servedSeries(types map[string]string, n string) bool {
	if _, ok := types[n]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(n, suffix); ok && types[base] == "histogram" {
			return true
		}
	}
	return false
}

// dashboardExprs returns the queries of a Grafana dashboard: every panel
// target's expr (rows' nested panels included) and the template
// variables' queries.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []any `json:"panels"`
		Templating struct {
			List []struct {
				Type       string `json:"type"`
				Definition string `json:"definition"`
				Query      any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		out = append(out, v.Definition)
		switch q := v.Query.(type) {
		case string:
			out = append(out, q)
		case map[string]any:
			if s, ok := q["query"].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// ruleExprs returns the expr of every rule of a Prometheus rule file.
func ruleExprs(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Expr string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

func scrape(t *testing.T, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// rlimitPlugin is an NRI plugin (upstream stub API) that gives containers
// of one namespace an rlimit, which CRI cannot carry.
type rlimitPlugin struct{ ns string }

func (p *rlimitPlugin) CreateContainer(_ context.Context, pod *api.PodSandbox, _ *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	a := &api.ContainerAdjustment{}
	if pod.GetNamespace() == p.ns {
		a.AddRlimit("RLIMIT_NOFILE", 1024, 512)
	}
	return a, nil, nil
}

// startRlimitPlugin connects an rlimitPlugin to crishim's plugin socket.
func startRlimitPlugin(t *testing.T, sock, ns, metricsAddr string) func() {
	t.Helper()
	var s stub.Stub
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if s, err = stub.New(&rlimitPlugin{ns: ns}, stub.WithPluginName("limits"), stub.WithPluginIdx("10"), stub.WithSocketPath(sock)); err == nil {
			if err = s.Start(context.Background()); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("NRI plugin: %v", err)
		}
	}
	// registered once crishim's metric says so
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the NRI plugin did not register")
		}
		if strings.Contains(string(scrape(t, metricsAddr)), `crishim_nri_plugins_registered{plugin="limits"} 1`) {
			break
		}
	}
	return s.Stop
}
