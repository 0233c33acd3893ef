//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A standalone kubelet (no API server) whose CRI endpoint is crishim runs one static pod.
// Pitfalls (shared/reference/kubelet-standalone.md): failCgroupV1 must be false on this cgroup v1
// machine; runtimeClassName in a static pod crashes a standalone kubelet (kubernetes#125561), so
// the pod uses the default handler.
const (
	kubeletNode   = "crishim-e2e-node"
	staticPodName = "crishim-static"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeAtomic writes a file the kubelet watches: a dotfile first, then a rename.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// kubeletCgroupRoot creates the cgroup the kubelet puts kubepods under, in every cgroup v1
// hierarchy (the kubelet refuses a cgroupRoot that does not exist); `bed.sh down` removes it.
func kubeletCgroupRoot(t *testing.T, b *bed, name string) string {
	t.Helper()
	root := "/" + b.cgroup + "/" + name
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	if len(dirs) == 0 { // cgroup v2
		dirs = []string{"/sys/fs/cgroup/cgroup.procs"}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Dir(d)+root, 0o755); err != nil {
			t.Fatalf("create cgroup %s: %v", filepath.Dir(d)+root, err)
		}
	}
	return root
}

// kubeletConfig fills in the bed's kubelet configuration template (shared
// with the demo), with the kubelet's default serial pulls.
func kubeletConfig(t *testing.T, criSock, dir, cgroupRoot string, port, healthz int) string {
	t.Helper()
	tmpl, err := os.ReadFile("../bed/kubelet.yaml.in")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("@DIR@", dir, "@CRI_SOCK@", criSock, "@CGROUP_ROOT@", cgroupRoot,
		"@PORT@", fmt.Sprint(port), "@HEALTHZ_PORT@", fmt.Sprint(healthz), "@SERIALIZE_PULLS@", "true").Replace(string(tmpl))
}

func staticPodManifest(b *bed) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
  labels:
    app: crishim-e2e
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", "echo kubelet-static-pod-started; touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
`, staticPodName, b.busybox())
}

// kubeletOptions parametrize startKubeletWith; the zero value is what startKubelet runs.
type kubeletOptions struct {
	criSock    string // CRI endpoint (runtime and image service); default the bed's crishim
	cgroupName string // the kubelet's cgroupRoot is /$BED_CGROUP/<cgroupName>; default "kubelet"
	verbosity  int    // --v; default 2
}

// startKubelet runs the kubelet until the test ends, with its pid in $BED_DIR/kubelet/kubelet.pid
// so that `bed.sh down` can stop a kubelet left behind by an interrupted test.
func startKubelet(t *testing.T, b *bed, dir string) {
	t.Helper()
	startKubeletWith(t, b, dir, kubeletOptions{})
}

// startKubeletWith is startKubelet with options; whatever dir is, the pid goes to
// $BED_DIR/kubelet/kubelet.pid, where `bed.sh down` looks.
func startKubeletWith(t *testing.T, b *bed, dir string, opts kubeletOptions) {
	t.Helper()
	if opts.criSock == "" {
		opts.criSock = b.crishimSock
	}
	if opts.cgroupName == "" {
		opts.cgroupName = "kubelet"
	}
	if opts.verbosity == 0 {
		opts.verbosity = 2
	}
	port, healthz := freePort(t), freePort(t)
	for _, d := range []string{"manifests", "root", "certs", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, filepath.Join(dir, "resolv.conf"), "nameserver 127.0.0.1\n")
	writeAtomic(t, filepath.Join(dir, "kubelet.yaml"), kubeletConfig(t, opts.criSock, dir, kubeletCgroupRoot(t, b, opts.cgroupName), port, healthz))
	logf, err := os.Create(filepath.Join(dir, "kubelet.log"))
	if err != nil {
		t.Fatal(err)
	}
	// the kubelet writes these outside its root dir; remove what this test made them create
	var created []string
	for _, p := range []string{"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet/device-plugins/kubelet.sock", "/var/log/containers"} {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			created = append(created, p)
		}
	}
	cmd := exec.Command(b.kubeletBin, "--config", filepath.Join(dir, "kubelet.yaml"),
		"--root-dir", filepath.Join(dir, "root"), "--cert-dir", filepath.Join(dir, "certs"),
		"--hostname-override", kubeletNode, fmt.Sprintf("--v=%d", opts.verbosity))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubelet: %v", err)
	}
	pidFile := filepath.Join(b.dir, "kubelet", "kubelet.pid")
	_ = os.MkdirAll(filepath.Dir(pidFile), 0o755)
	_ = os.WriteFile(pidFile, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		os.Remove(pidFile)
		// the kubelet's /var/log/containers symlinks of the static pod's containers
		links, _ := filepath.Glob("/var/log/containers/" + staticPodName + "-" + kubeletNode + "_default_*.log")
		for _, l := range links {
			os.Remove(l)
		}
		for i := len(created) - 1; i >= 0; i-- {
			_ = os.Remove(created[i]) // directories only when empty
		}
		t.Logf("kubelet log: %s", logf.Name())
	})
	start := time.Now()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("kubelet exited during startup (%v); last log lines:\n%s", err, tail(logf.Name(), 20))
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("kubelet healthz not ok after 60 s; last log lines:\n%s", tail(logf.Name(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("kubelet %s healthy after %v (CRI endpoint %s)", b.kubeletBin, time.Since(start).Round(time.Millisecond), opts.criSock)
}

func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// staticPodContainers lists the static pod's containers through CRI, using the kubelet's labels.
func staticPodContainers(ctx context.Context, rs internalapi.RuntimeService) ([]*runtimeapi.Container, error) {
	return rs.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{
		"io.kubernetes.pod.name":       staticPodName + "-" + kubeletNode,
		"io.kubernetes.pod.namespace":  "default",
		"io.kubernetes.container.name": "main",
	}})
}

func TestKubeletStaticPod(t *testing.T) {
	b := getBed(t)
	if b.kubeletBin == "" {
		t.Skip("KUBELET_BIN is not set: kubelet e2e skipped")
	}
	if _, err := os.Stat(b.kubeletBin); err != nil {
		t.Skipf("KUBELET_BIN %s: %v (build it with test/bed/bed.sh tools)", b.kubeletBin, err)
	}
	ctx := testContext(t, 5*time.Minute)
	rs, is := b.crishim(t)
	// pre-pull so that time to running measures the kubelet and crishim, not the registry
	ensureImage(ctx, t, is, b.busybox())
	dir := filepath.Join(b.dir, "kubelet")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeStaticPodSandboxes(t, rs) })
	// counters before the kubelet starts: it validates the runtime with Version and ImageFsInfo
	var before metricSet
	if b.metricsURL != "" {
		before = b.metrics(t)
	}
	startKubelet(t, b, dir)

	manifest := filepath.Join(dir, "manifests", staticPodName+".yaml")
	start := time.Now()
	writeAtomic(t, manifest, staticPodManifest(b))
	var ctr *runtimeapi.Container
	waitFor(t, 2*time.Minute, "the static pod's container running", func() (bool, error) {
		ctrs, err := staticPodContainers(ctx, rs)
		if err != nil {
			return false, err
		}
		for _, c := range ctrs {
			if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
				ctr = c
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("static pod container %s running %v after the manifest was written", ctr.Id[:13], time.Since(start).Round(time.Millisecond))

	st, err := rs.ContainerStatus(ctx, ctr.Id, false)
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	logText := readLog(t, st.GetStatus().GetLogPath(), "kubelet-static-pod-started")
	if !strings.HasPrefix(st.GetStatus().GetLogPath(), filepath.Join(dir, "pod-logs")+"/") {
		t.Errorf("log path %s is not under the kubelet's podLogsDir", st.GetStatus().GetLogPath())
	}
	t.Logf("container log: %s", strings.TrimSpace(logText))

	if b.metricsURL != "" {
		// the exec readiness probe reaches the runtime as ExecSync through crishim
		waitFor(t, 30*time.Second, "the kubelet's readiness probe (ExecSync) through crishim", func() (bool, error) {
			return b.metrics(t).calls(t, "ExecSync", "OK") > before.calls(t, "ExecSync", "OK"), nil
		})
		after := b.metrics(t)
		for _, m := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "ListPodSandbox", "ListContainers", "Version", "ImageFsInfo", "ExecSync"} {
			d := after.calls(t, m, "") - before.calls(t, m, "")
			if d <= 0 {
				t.Errorf("%s for %s did not grow while the kubelet ran", callsMetric(), m)
			}
			t.Logf("kubelet calls through crishim: %-16s +%v", m, d)
		}
	}

	// removing the manifest stops the container and the sandbox
	start = time.Now()
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the static pod's container stopped", func() (bool, error) {
		s, err := rs.ContainerStatus(ctx, ctr.Id, false)
		if err != nil {
			return false, err
		}
		return s.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED, nil
	})
	t.Logf("static pod container stopped %v after the manifest was removed", time.Since(start).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "the static pod's sandbox stopped", func() (bool, error) {
		s, err := rs.PodSandboxStatus(ctx, ctr.PodSandboxId, false)
		if err != nil {
			return false, err
		}
		return s.GetStatus().GetState() == runtimeapi.PodSandboxState_SANDBOX_NOTREADY, nil
	})
	if b.metricsURL != "" {
		// the sandbox is NOTREADY once its pause process exits, which can be before the kubelet's
		// StopPodSandbox returns; the cleanup's own StopPodSandbox must not race it (containerd
		// 1.6 fails two concurrent ones: "failed to destroy network for sandbox ... unknown FS magic")
		waitFor(t, 30*time.Second, "the kubelet's StopPodSandbox through crishim to return", func() (bool, error) {
			ms := b.metrics(t)
			return ms.calls(t, "StopPodSandbox", "") > before.calls(t, "StopPodSandbox", "") &&
				ms.value("crishim_grpc_server_in_flight", map[string]string{"grpc_method": "StopPodSandbox"}) == 0, nil
		})
	}
	// the kubelet removes stopped sandboxes in its once-a-minute cleanup: not waited for
}

// removeStaticPodSandboxes removes what the kubelet left (sandbox GC runs only once a minute).
func removeStaticPodSandboxes(t *testing.T, rs internalapi.RuntimeService) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	pods, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{
		"io.kubernetes.pod.name": staticPodName + "-" + kubeletNode}})
	if err != nil {
		t.Errorf("cleanup: ListPodSandbox: %v", err)
		return
	}
	var ids []string
	for _, p := range pods {
		if err := rs.StopPodSandbox(ctx, p.Id); err != nil {
			t.Errorf("cleanup: StopPodSandbox(%s): %v", p.Id, err)
		}
		if err := rs.RemovePodSandbox(ctx, p.Id); err != nil {
			t.Errorf("cleanup: RemovePodSandbox(%s): %v", p.Id, err)
		}
		ids = append(ids, p.Id[:13])
	}
	sort.Strings(ids)
	if len(ids) > 0 {
		t.Logf("cleanup: removed sandboxes %v", ids)
	}
}
