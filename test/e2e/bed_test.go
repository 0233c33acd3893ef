//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
)

// bed describes the running test bed, read from the environment that `bed.sh env` prints.
type bed struct {
	rt           *runtimeProfile // BED_RUNTIME: what the runtime under test does
	dir          string          // BED_DIR
	crishimSock  string          // CRISHIM_SOCK
	runtimeSock  string          // RUNTIME_SOCK (CONTAINERD_SOCK on older beds): the runtime itself
	registry     string          // REGISTRY: open registry host:port
	authRegistry string          // AUTH_REGISTRY: htpasswd registry host:port
	authUser     string          // AUTH_USER
	authPass     string          // AUTH_PASS
	metricsURL   string          // CRISHIM_METRICS_URL: http://host:port of crishim's metrics server
	kubeletBin   string          // KUBELET_BIN
	cgroup       string          // BED_CGROUP: cgroupfs parent for the tests' pods
}

// busybox is the image every test container runs.
func (b *bed) busybox() string { return b.registry + "/busybox:1.35" }

// getBed returns the bed, or skips the test when not root or when the bed's environment is missing.
func getBed(t *testing.T) *bed {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e tests need root (containerd, CNI, cgroups): skipped")
	}
	rt, err := profile(envOr("BED_RUNTIME", "containerd1"))
	if err != nil {
		t.Fatal(err)
	}
	b := &bed{
		rt:           rt,
		dir:          os.Getenv("BED_DIR"),
		crishimSock:  os.Getenv("CRISHIM_SOCK"),
		runtimeSock:  envOr("RUNTIME_SOCK", os.Getenv("CONTAINERD_SOCK")),
		registry:     os.Getenv("REGISTRY"),
		authRegistry: os.Getenv("AUTH_REGISTRY"),
		authUser:     envOr("AUTH_USER", "testuser"),
		authPass:     envOr("AUTH_PASS", "testpass"),
		metricsURL:   strings.TrimSuffix(os.Getenv("CRISHIM_METRICS_URL"), "/"),
		kubeletBin:   os.Getenv("KUBELET_BIN"),
		cgroup:       envOr("BED_CGROUP", "crishim-bed"),
	}
	for name, v := range map[string]string{"BED_DIR": b.dir, "CRISHIM_SOCK": b.crishimSock,
		"RUNTIME_SOCK": b.runtimeSock, "REGISTRY": b.registry} {
		if v == "" {
			t.Skipf("%s is not set: start the bed and crishim (make bed-up, test/bed/bed.sh crishim-up) and "+
				`eval "$(test/bed/bed.sh env)"`, name)
		}
	}
	for _, s := range []string{b.crishimSock, b.runtimeSock} {
		if fi, err := os.Stat(s); err != nil || fi.Mode()&os.ModeSocket == 0 {
			t.Skipf("socket %s is not there: is the bed up?", s)
		}
	}
	return b
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

const callTimeout = 60 * time.Second

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// runtimeService connects the kubelet's CRI client to a unix socket.
func runtimeService(t *testing.T, sock string, streaming bool) internalapi.RuntimeService {
	t.Helper()
	ctx := testContext(t, callTimeout)
	rs, err := remote.NewRemoteRuntimeServiceBuilder().
		WithEndpoint("unix://" + sock).
		WithConnectionTimeout(callTimeout).
		WithUseStreaming(streaming).
		Build(ctx)
	if err != nil {
		t.Fatalf("connect runtime service %s: %v", sock, err)
	}
	t.Cleanup(func() { _ = rs.Close(context.Background()) })
	return rs
}

func imageService(t *testing.T, sock string) internalapi.ImageManagerService {
	t.Helper()
	ctx := testContext(t, callTimeout)
	is, err := remote.NewRemoteImageServiceBuilder().
		WithEndpoint("unix://" + sock).
		WithConnectionTimeout(callTimeout).
		Build(ctx)
	if err != nil {
		t.Fatalf("connect image service %s: %v", sock, err)
	}
	t.Cleanup(func() { _ = is.Close(context.Background()) })
	return is
}

// crishim returns runtime and image clients connected to crishim.
func (b *bed) crishim(t *testing.T) (internalapi.RuntimeService, internalapi.ImageManagerService) {
	t.Helper()
	return runtimeService(t, b.crishimSock, false), imageService(t, b.crishimSock)
}

// direct returns runtime and image clients connected to the runtime itself.
func (b *bed) direct(t *testing.T) (internalapi.RuntimeService, internalapi.ImageManagerService) {
	t.Helper()
	return runtimeService(t, b.runtimeSock, false), imageService(t, b.runtimeSock)
}

// ensureImage pulls ref unless it is present.
func ensureImage(ctx context.Context, t *testing.T, is internalapi.ImageManagerService, ref string) {
	t.Helper()
	st, err := is.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false)
	if err == nil && st.GetImage() != nil {
		return
	}
	if _, err := is.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil); err != nil {
		t.Fatalf("PullImage(%s): %v", ref, err)
	}
}

var nameSanitizer = regexp.MustCompile(`[^a-z0-9-]+`)

// podConfig is a sandbox config unique to the test, logging under $BED_DIR/podlogs and living
// in the bed's cgroup.
func (b *bed) podConfig(t *testing.T, name string) *runtimeapi.PodSandboxConfig {
	t.Helper()
	name = nameSanitizer.ReplaceAllString(strings.ToLower(name), "-")
	uid := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	logDir := fmt.Sprintf("%s/podlogs/e2e/%s", b.dir, uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "crishim-e2e", Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"crishim-e2e": name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/" + b.cgroup + "/e2e",
		},
	}
}

// testPod is what most tests start with: the bed, the kubelet's clients
// through crishim, busybox present, and a pod of the test's own that is
// removed when the test ends.
type testPod struct {
	bed *bed
	ctx context.Context
	rs  internalapi.RuntimeService
	is  internalapi.ImageManagerService
	cfg *runtimeapi.PodSandboxConfig
	id  string
}

func newTestPod(t *testing.T) *testPod {
	t.Helper()
	p := &testPod{bed: getBed(t), ctx: testContext(t, 2*callTimeout)}
	p.rs, p.is = p.bed.crishim(t)
	ensureImage(p.ctx, t, p.is, p.bed.busybox())
	p.cfg = p.bed.podConfig(t, t.Name())
	p.id = runPod(p.ctx, t, p.rs, p.cfg, "")
	return p
}

// runPod starts a sandbox and removes it when the test ends.
func runPod(ctx context.Context, t *testing.T, rs internalapi.RuntimeService, cfg *runtimeapi.PodSandboxConfig, handler string) string {
	t.Helper()
	id, err := rs.RunPodSandbox(ctx, cfg, handler)
	if err != nil {
		t.Fatalf("RunPodSandbox(%s, handler %q): %v", cfg.Metadata.Name, handler, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := rs.StopPodSandbox(ctx, id); err != nil {
			t.Errorf("cleanup: StopPodSandbox(%s): %v", id, err)
		}
		if err := rs.RemovePodSandbox(ctx, id); err != nil {
			t.Errorf("cleanup: RemovePodSandbox(%s): %v", id, err)
		}
	})
	return id
}

// busyboxContainer is a container config running the shell script in busybox.
func (b *bed) busyboxContainer(name, script string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		// the kubelet sets user_specified_image; CRI-O refuses a container without it ("user
		// specified image not specified, cannot verify image signature")
		Image:   &runtimeapi.ImageSpec{Image: b.busybox(), UserSpecifiedImage: b.busybox()},
		Command: []string{"/bin/sh", "-c", script},
		LogPath: name + ".log",
		Labels:  map[string]string{"crishim-e2e-container": name},
		Linux:   &runtimeapi.LinuxContainerConfig{},
	}
}

// startContainer creates and starts a container and waits until it is running.
func startContainer(ctx context.Context, t *testing.T, rs internalapi.RuntimeService, podID string,
	podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id, err := rs.CreateContainer(ctx, podID, cfg, podCfg)
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", cfg.Metadata.Name, err)
	}
	if err := rs.StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer(%s): %v", id, err)
	}
	waitFor(t, 30*time.Second, "container "+cfg.Metadata.Name+" running", func() (bool, error) {
		st, err := rs.ContainerStatus(ctx, id, false)
		if err != nil {
			return false, err
		}
		return st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING, nil
	})
	return id
}

// waitFor polls cond every 100 ms until it is true, fails the test on error or timeout.
func waitFor(t *testing.T, timeout time.Duration, desc string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", desc, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, desc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readLog waits until the container's CRI log file contains want and returns the file.
func readLog(t *testing.T, path, want string) string {
	t.Helper()
	var data []byte
	waitFor(t, 10*time.Second, fmt.Sprintf("%q in %s", want, path), func() (bool, error) {
		var err error
		data, err = os.ReadFile(path)
		if os.IsNotExist(err) {
			return false, nil
		}
		return strings.Contains(string(data), want), err
	})
	return string(data)
}

// sameStatus asserts that crishim answered exactly what containerd answered: the same gRPC code
// and the same message (crishim must never rewrap a runtime's error).
func sameStatus(t *testing.T, what string, viaCrishim, direct error) {
	t.Helper()
	sc, sd := status.Convert(viaCrishim), status.Convert(direct)
	if sc.Code() != sd.Code() || sc.Message() != sd.Message() {
		t.Errorf("%s: crishim answered %s %q, containerd %s %q", what, sc.Code(), sc.Message(), sd.Code(), sd.Message())
	}
}

var sandboxIDRE = regexp.MustCompile(`[0-9a-f]{64}`)

// sameStatusExceptIDs is sameStatus for errors that name an id the runtime generated per call
// (containerd 2.x's unknown-handler error names the new sandbox's id).
func sameStatusExceptIDs(t *testing.T, what string, viaCrishim, direct error) {
	t.Helper()
	sc, sd := status.Convert(viaCrishim), status.Convert(direct)
	mc, md := sandboxIDRE.ReplaceAllString(sc.Message(), "<id>"), sandboxIDRE.ReplaceAllString(sd.Message(), "<id>")
	if sc.Code() != sd.Code() || mc != md {
		t.Errorf("%s: crishim answered %s %q, the runtime %s %q", what, sc.Code(), sc.Message(), sd.Code(), sd.Message())
	}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: got code %s (%v), want %s", what, got, err, want)
	}
}

// metrics scrapes crishim's /metrics; it skips the test when CRISHIM_METRICS_URL is not set.
func (b *bed) metrics(t *testing.T) metricSet {
	t.Helper()
	if b.metricsURL == "" {
		t.Skip("CRISHIM_METRICS_URL is not set: metrics not checked")
	}
	resp, err := http.Get(b.metricsURL + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", b.metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %s", b.metricsURL, resp.Status)
	}
	return parseMetrics(t, resp.Body)
}

// metricSet is a parsed Prometheus text exposition: one sample per line.
type metricSet []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

func parseMetrics(t *testing.T, r io.Reader) metricSet {
	t.Helper()
	var ms metricSet
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			s.name = line[:i]
			for _, m := range labelRE.FindAllStringSubmatch(line[i+1:j], -1) {
				s.labels[m[1]] = m[2]
			}
			rest = strings.TrimSpace(line[j+1:])
		} else {
			f := strings.Fields(line)
			s.name, rest = f[0], strings.Join(f[1:], " ")
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s.value = v
		ms = append(ms, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ms
}

// callsMetric names the counter of handled calls; CRISHIM_CALLS_METRIC overrides it.
func callsMetric() string { return envOr("CRISHIM_CALLS_METRIC", "crishim_grpc_server_handled_total") }

// calls sums the handled-calls counter over every sample whose grpc_method is method (and
// grpc_code is code, when code is not empty). It fails the test when crishim exports no such
// counter at all, listing the crishim_ metrics it has.
func (ms metricSet) calls(t *testing.T, method, code string) float64 {
	t.Helper()
	name, found, sum := callsMetric(), false, 0.0
	have := map[string]bool{}
	for _, s := range ms {
		if strings.HasPrefix(s.name, "crishim_") {
			have[s.name] = true
		}
		if s.name != name {
			continue
		}
		found = true
		if s.labels["grpc_method"] == method && (code == "" || s.labels["grpc_code"] == code) {
			sum += s.value
		}
	}
	if !found {
		t.Fatalf("crishim exports no %s (set CRISHIM_CALLS_METRIC); its crishim_ metrics: %v", name, keys(have))
	}
	return sum
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
