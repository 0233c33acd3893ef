//go:build e2e

package e2e

// End-to-end tests of crishim hosting unmodified NRI plugins (handlers/plugins): the test plugin
// of test/nriplugin, written only against NRI's upstream stub, connects to a crishim of the
// test's own (nri section, plugin socket in its directory) in front of the bed's runtime, and
// what it asks for is checked inside the containers. On containerd 2.x the same plugin binary
// with the same flags also runs against containerd's own NRI, and the containers must agree.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	nriPluginOnce sync.Once
	nriPluginPath string
	nriPluginErr  error
)

// nriPluginBinary builds test/nriplugin once per test binary.
func nriPluginBinary(t *testing.T, b *bed) string {
	t.Helper()
	nriPluginOnce.Do(func() {
		dir := filepath.Join(b.dir, "e2e-nri-bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			nriPluginErr = err
			return
		}
		out := filepath.Join(dir, "nriplugin")
		cmd := exec.Command("go", "build", "-tags", "nri_no_wasm", "-o", out, "./test/nriplugin")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			nriPluginErr = fmt.Errorf("build test/nriplugin: %v\n%s", err, o)
			return
		}
		nriPluginPath = out
	})
	if nriPluginErr != nil {
		t.Fatal(nriPluginErr)
	}
	return nriPluginPath
}

// nriPlugin is one process of the test plugin.
type nriPlugin struct {
	label  string // NN-name, as NRI and crishim name it
	events string // its -events file
	log    string // its stderr
	cmd    *exec.Cmd
	done   chan struct{} // closed when it exited
	err    error         // cmd.Wait's, once done
}

// startNRIPlugin runs the test plugin against socket with the given flags, waits until the
// runtime side synchronized it (its first Synchronize event), and stops it when the test ends.
func startNRIPlugin(t *testing.T, b *bed, socket, name, idx string, flags ...string) *nriPlugin {
	t.Helper()
	bin := nriPluginBinary(t, b)
	dir := filepath.Join(b.dir, "e2e-nri-plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("%s-%s-%d", idx, name, time.Now().UnixNano())
	p := &nriPlugin{label: idx + "-" + name, events: filepath.Join(dir, base+".events"),
		log: filepath.Join(dir, base+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-socket", socket, "-name", name, "-idx", idx, "-events", p.events}, flags...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start the NRI test plugin: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("NRI plugin %s (%v) log:\n%s", p.label, args, tail(p.log, 30))
		}
	})
	p.waitSynchronized(t)
	return p
}

func (p *nriPlugin) waitSynchronized(t *testing.T) {
	t.Helper()
	waitFor(t, 30*time.Second, "NRI plugin "+p.label+" registered and synchronized", func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("plugin %s exited (%v); log:\n%s", p.label, p.err, tail(p.log, 20))
		}
		return len(p.named(t, "Synchronize")) > 0, nil
	})
}

// stop ends the plugin: SIGTERM (it exits 0), SIGKILL after 5 s.
func (p *nriPlugin) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *nriPlugin) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode waits up to d for the plugin to exit and returns its exit status.
func (p *nriPlugin) exitCode(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("NRI plugin %s still running after %v; log:\n%s", p.label, d, tail(p.log, 20))
	}
	return p.cmd.ProcessState.ExitCode()
}

// nriEvent is one line of the plugin's -events file.
type nriEvent struct {
	Event      string `json:"event"`
	Pod        string `json:"pod"`
	Container  string `json:"container"`
	ID         string `json:"id"`
	PodID      string `json:"pod_id"`
	Pods       *int   `json:"pods"`
	Containers *int   `json:"containers"`
	Count      int    `json:"count"`
}

func (p *nriPlugin) eventList(t *testing.T) []nriEvent {
	t.Helper()
	data, err := os.ReadFile(p.events)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []nriEvent
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		var ev nriEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events file %s: line %q: %v", p.events, sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

func (p *nriPlugin) named(t *testing.T, event string) []nriEvent {
	t.Helper()
	var out []nriEvent
	for _, ev := range p.eventList(t) {
		if ev.Event == event {
			out = append(out, ev)
		}
	}
	return out
}

// podEvents returns the events about pod ("namespace/name"), in the order the plugin got them.
func (p *nriPlugin) podEvents(t *testing.T, pod string) []nriEvent {
	t.Helper()
	var out []nriEvent
	for _, ev := range p.eventList(t) {
		if ev.Pod == pod {
			out = append(out, ev)
		}
	}
	return out
}

func eventNames(evs []nriEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Event
	}
	return out
}

// isSubsequence reports whether want appears in got in order (other events may come between).
func isSubsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// startNRICrishim starts a crishim of the test's own with an nri section (its plugin socket in
// crishim's directory; extra holds further nri keys, indented by two spaces) and returns it
// with the plugin socket.
func (b *bed) startNRICrishim(t *testing.T, name, extra string) (*ownCrishim, string) {
	t.Helper()
	sock := filepath.Join(b.dir, "e2e-"+name, "nri.sock")
	c := b.startCrishim(t, name, fmt.Sprintf("nri:\n  socket: %s\n%s", sock, extra))
	return c, sock
}

// nriPod is a pod config in namespace ns for the NRI tests.
func (b *bed) nriPod(t *testing.T, name, ns string) *runtimeapi.PodSandboxConfig {
	t.Helper()
	cfg := b.podConfig(t, name)
	cfg.Metadata.Namespace = ns
	return cfg
}

// runPodCleanedBy starts a sandbox through rs and, when the test ends, stops and removes it
// through cleanup (the runtime itself: the crishim that started it may be gone), tolerating a
// sandbox the test removed already.
func runPodCleanedBy(ctx context.Context, t *testing.T, rs, cleanup internalapi.RuntimeService, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	id, err := rs.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox(%s/%s): %v", cfg.Metadata.Namespace, cfg.Metadata.Name, err)
	}
	cleanupPod(t, cleanup, id)
	return id
}

// cleanupPod stops and removes a sandbox when the test ends; NotFound is fine (the test removed it).
func cleanupPod(t *testing.T, rs internalapi.RuntimeService, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if _, err := rs.PodSandboxStatus(ctx, id, false); status.Code(err) == codes.NotFound {
			return
		}
		if err := rs.StopPodSandbox(ctx, id); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("cleanup: StopPodSandbox(%s): %v", id, err)
		}
		if err := rs.RemovePodSandbox(ctx, id); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("cleanup: RemovePodSandbox(%s): %v", id, err)
		}
	})
}

// sleeper is a busybox container that runs until stopped.
func (b *bed) sleeper(name string) *runtimeapi.ContainerConfig {
	return b.busyboxContainer(name, "trap 'exit 0' TERM; while true; do sleep 0.2; done")
}

// containersOf lists the runtime's containers of a sandbox.
func containersOf(ctx context.Context, t *testing.T, rs internalapi.RuntimeService, podID string) []*runtimeapi.Container {
	t.Helper()
	ctrs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("ListContainers(pod %s): %v", podID[:13], err)
	}
	return ctrs
}

// execOut runs cmd in the container and returns its stdout, trimmed, or an error with stderr.
func execOut(ctx context.Context, rs internalapi.RuntimeService, id string, cmd ...string) (string, error) {
	stdout, stderr, err := rs.ExecSync(ctx, id, cmd, 20*time.Second)
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(string(stderr)))
	}
	return strings.TrimSpace(string(stdout)), nil
}

// The adjustment every NRI fact test asks the plugin for.
const (
	nriEnvKey     = "NRI_E2E"
	nriEnvValue   = "set-by-plugin"
	nriAnnKey     = "e2e.nri.crishim.io/fact"
	nriAnnValue   = "annotated-by-plugin"
	nriMountDst   = "/mnt/nri-e2e"
	nriMountFile  = "fact.txt"
	nriCPUShares  = "512"
	nriMemLimit   = "67108864"
	absent        = "<absent>"
	selectedNS    = "nri-e2e"
	controlNS     = "nri-e2e-control"
	nriFactsIdx   = "10"
	nriFactsName  = "facts"
	nriFactsLabel = nriFactsIdx + "-" + nriFactsName
)

// nriFixture is what the fact tests inject: a host directory with a file, a host device that a
// default container does not have, and the plugin flags asking for all of it.
type nriFixture struct {
	hostDir string
	content string
	device  string
	devWant string // "c MAJOR:MINOR" of the host node
}

func newNRIFixture(t *testing.T, b *bed) *nriFixture {
	t.Helper()
	fx := &nriFixture{hostDir: filepath.Join(b.dir, "e2e-nri-mount"), content: fmt.Sprintf("nri-e2e-%d", time.Now().UnixNano())}
	if err := os.MkdirAll(fx.hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fx.hostDir, nriMountFile), []byte(fx.content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/dev/loop-control", "/dev/fuse"} {
		var st syscall.Stat_t
		if err := syscall.Stat(d, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFCHR {
			fx.device = d
			rdev := uint64(st.Rdev)
			fx.devWant = fmt.Sprintf("c %d:%d", (rdev>>8)&0xfff|(rdev>>32)&^0xfff, rdev&0xff|(rdev>>12)&^0xff)
			break
		}
	}
	if fx.device == "" {
		t.Fatal("neither /dev/loop-control nor /dev/fuse is a character device on this host: no device for the plugin to inject")
	}
	return fx
}

func (fx *nriFixture) pluginFlags(ns string) []string {
	return []string{"-namespace", ns,
		"-env", nriEnvKey + "=" + nriEnvValue,
		"-annotation", nriAnnKey + "=" + nriAnnValue,
		"-mount", fx.hostDir + ":" + nriMountDst,
		"-device", fx.device,
		"-cpu-shares", nriCPUShares,
		"-memory-limit", nriMemLimit,
	}
}

// factNames are the facts collected from a container, in table order; the ones marked * are
// logged, not compared.
var factNames = []string{"env " + nriEnvKey, "annotation " + nriAnnKey, "annotation seen in *", "mount: file", "mount: writable",
	"device node", "device opens", "cpu.shares", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
	"cpu.shares after CRI UpdateContainerResources(cpu_shares 300)", "memory.limit_in_bytes after CRI UpdateContainerResources"}

func comparedFact(name string) bool { return !strings.HasSuffix(name, "*") }

// want is what a container of the selected namespace must show; a control container must show
// none of it.
func (fx *nriFixture) want() map[string]string {
	return map[string]string{
		"env " + nriEnvKey:        nriEnvValue,
		"annotation " + nriAnnKey: nriAnnValue,
		"mount: file":             fx.content,
		"mount: writable":         "read-only",
		"device node":             fx.devWant,
		"device opens":            "opened",
		"cpu.shares":              nriCPUShares,
		"memory.limit_in_bytes":   nriMemLimit,
	}
}

// wantSelected adds what only the selected container of a fact run has: the CRI update.
func (fx *nriFixture) wantSelected() map[string]string {
	w := fx.want()
	w["cpu.shares after CRI UpdateContainerResources(cpu_shares 300)"] = "300"
	w["memory.limit_in_bytes after CRI UpdateContainerResources"] = nriMemLimit
	return w
}

var lsDeviceRE = regexp.MustCompile(`^([a-z-])\S*\s+\d+\s+\S+\s+\S+\s+(\d+),\s*(\d+)\s`)

// collectFacts reads what the plugin's adjustment changed, from inside the container (exec) and
// from the runtime's container status.
func (fx *nriFixture) collectFacts(ctx context.Context, t *testing.T, rs internalapi.RuntimeService, id string) map[string]string {
	t.Helper()
	f := map[string]string{}
	env, err := execOut(ctx, rs, id, "env")
	if err != nil {
		t.Fatalf("exec env: %v", err)
	}
	f["env "+nriEnvKey] = absent
	for _, l := range strings.Split(env, "\n") {
		if v, ok := strings.CutPrefix(l, nriEnvKey+"="); ok {
			f["env "+nriEnvKey] = v
		}
	}

	st, err := rs.ContainerStatus(ctx, id, true)
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	f["annotation "+nriAnnKey], f["annotation seen in *"] = absent, "-"
	var where []string
	if v, ok := st.GetStatus().GetAnnotations()[nriAnnKey]; ok {
		f["annotation "+nriAnnKey] = v
		where = append(where, "CRI status")
	}
	if v, ok := specAnnotations(t, st.GetInfo())[nriAnnKey]; ok {
		if f["annotation "+nriAnnKey] != absent && f["annotation "+nriAnnKey] != v {
			t.Errorf("annotation %s is %q in the CRI status and %q in the OCI spec", nriAnnKey, f["annotation "+nriAnnKey], v)
		}
		f["annotation "+nriAnnKey] = v
		where = append(where, "OCI spec")
	}
	if len(where) > 0 {
		f["annotation seen in *"] = strings.Join(where, " + ")
	}

	if out, err := execOut(ctx, rs, id, "cat", nriMountDst+"/"+nriMountFile); err == nil {
		f["mount: file"] = out
	} else {
		f["mount: file"] = absent
	}
	out, err := execOut(ctx, rs, id, "sh", "-c", fmt.Sprintf(
		"[ -d %[1]s ] || { echo '%[2]s'; exit 0; }; if touch %[1]s/probe 2>/dev/null; then rm -f %[1]s/probe; echo writable; else echo read-only; fi", nriMountDst, absent))
	if err != nil {
		t.Fatalf("exec mount probe: %v", err)
	}
	f["mount: writable"] = out

	out, err = execOut(ctx, rs, id, "sh", "-c", fmt.Sprintf("ls -l %s 2>/dev/null || echo '%s'", fx.device, absent))
	if err != nil {
		t.Fatalf("exec ls -l %s: %v", fx.device, err)
	}
	if m := lsDeviceRE.FindStringSubmatch(out); m != nil {
		f["device node"] = fmt.Sprintf("%s %s:%s", m[1], m[2], m[3])
	} else {
		f["device node"] = out
	}
	// read-only: `<>` would create a file where the node is missing
	out, err = execOut(ctx, rs, id, "sh", "-c", fmt.Sprintf("[ -c %[1]s ] || { echo '%[2]s'; exit 0; }; (exec 3<%[1]s) 2>&1 && echo opened", fx.device, absent))
	if err != nil {
		t.Fatalf("exec open %s: %v", fx.device, err)
	}
	if i := strings.LastIndex(out, ": "); out != "opened" && i >= 0 {
		out = "failed: " + out[i+2:]
	}
	f["device opens"] = out

	for _, c := range []struct {
		fact  string
		files []string
	}{
		// cgroup v1 (this machine): the container sees its own cgroup at
		// /sys/fs/cgroup/<controller>; cgroup v2 names last
		{"cpu.shares", []string{"cpu/cpu.shares", "cpu,cpuacct/cpu.shares", "cpu.weight"}},
		{"memory.limit_in_bytes", []string{"memory/memory.limit_in_bytes", "memory.max"}},
		{"memory.memsw.limit_in_bytes", []string{"memory/memory.memsw.limit_in_bytes", "memory.swap.max"}},
	} {
		out, err := execOut(ctx, rs, id, "sh", "-c", fmt.Sprintf(
			"for f in %s; do [ -r /sys/fs/cgroup/$f ] && { cat /sys/fs/cgroup/$f; exit 0; }; done; echo '%s'",
			strings.Join(c.files, " "), absent))
		if err != nil {
			t.Fatalf("exec read %s: %v", c.fact, err)
		}
		f[c.fact] = out
	}
	return f
}

// specAnnotations returns the OCI spec's annotations from a verbose status' info
// (info.runtimeSpec.annotations, as containerd and CRI-O report it).
func specAnnotations(t *testing.T, info map[string]string) map[string]string {
	t.Helper()
	for _, raw := range info {
		var v struct {
			RuntimeSpec struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"runtimeSpec"`
		}
		if json.Unmarshal([]byte(raw), &v) == nil && v.RuntimeSpec.Annotations != nil {
			return v.RuntimeSpec.Annotations
		}
	}
	return nil
}

// nriRun is what one pass of the fact test saw: the facts of a container in the selected
// namespace and of one in the control namespace, and the events the plugin got for the
// selected pod.
type nriRun struct {
	selected, control map[string]string
	update            map[string]string // runUpdate's facts
	events            []nriEvent
	podID             string
}

// run creates a pod with a container in the selected and in the control namespace through rs,
// collects the facts, then stops and removes both through rs (the plugin sees the whole
// lifecycle); cleanup removes what is left if the test fails half-way.
func (fx *nriFixture) run(t *testing.T, b *bed, label string, rs, cleanup internalapi.RuntimeService, is internalapi.ImageManagerService, p *nriPlugin) *nriRun {
	t.Helper()
	ctx := testContext(t, 3*callTimeout)
	ensureImage(ctx, t, is, b.busybox())
	r := &nriRun{}
	type pod struct {
		cfg *runtimeapi.PodSandboxConfig
		id  string
		ctr string
	}
	var pods []*pod
	for _, ns := range []string{selectedNS, controlNS} {
		cfg := b.nriPod(t, "facts-"+label, ns)
		id := runPodCleanedBy(ctx, t, rs, cleanup, cfg)
		ctr := startContainer(ctx, t, rs, id, cfg, b.sleeper("main"))
		pods = append(pods, &pod{cfg, id, ctr})
	}
	r.podID = pods[0].id
	r.selected = fx.collectFacts(ctx, t, rs, pods[0].ctr)
	r.control = fx.collectFacts(ctx, t, rs, pods[1].ctr)
	// the kubelet's UpdateContainerResources (NRI UpdateContainer, which the plugin answers
	// without changes): the new CPU shares, and the plugin's memory limit kept
	if err := rs.UpdateContainerResources(ctx, pods[0].ctr, &runtimeapi.ContainerResources{
		Linux: &runtimeapi.LinuxContainerResources{CpuShares: 300}}); err != nil {
		t.Errorf("UpdateContainerResources: %v", err)
	}
	updated := fx.collectFacts(ctx, t, rs, pods[0].ctr)
	r.selected["cpu.shares after CRI UpdateContainerResources(cpu_shares 300)"] = updated["cpu.shares"]
	r.selected["memory.limit_in_bytes after CRI UpdateContainerResources"] = updated["memory.limit_in_bytes"]
	for _, pd := range pods {
		if err := rs.StopContainer(ctx, pd.ctr, 2); err != nil {
			t.Errorf("StopContainer: %v", err)
		}
		if err := rs.RemoveContainer(ctx, pd.ctr); err != nil {
			t.Errorf("RemoveContainer: %v", err)
		}
		if err := rs.StopPodSandbox(ctx, pd.id); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
		if err := rs.RemovePodSandbox(ctx, pd.id); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	}
	podName := selectedNS + "/" + pods[0].cfg.Metadata.Name
	waitFor(t, 10*time.Second, "RemovePodSandbox in the plugin's events", func() (bool, error) {
		return slices.Contains(eventNames(p.podEvents(t, podName)), "RemovePodSandbox"), nil
	})
	r.events = p.podEvents(t, podName)
	return r
}

// check asserts a run's facts and events.
func (fx *nriFixture) check(t *testing.T, r *nriRun) {
	t.Helper()
	want, control := fx.wantSelected(), fx.want()
	for _, name := range factNames {
		if w, ok := want[name]; ok {
			if got := r.selected[name]; got != w {
				t.Errorf("container in %s: %s = %q, want %q", selectedNS, name, got, w)
			}
		}
		if w, ok := control[name]; ok {
			if got := r.control[name]; got == w {
				t.Errorf("container in %s (not selected by the plugin): %s = %q, the plugin's value", controlNS, name, got)
			}
		}
	}
	for _, name := range []string{"env " + nriEnvKey, "annotation " + nriAnnKey, "mount: file", "mount: writable", "device node"} {
		if got := r.control[name]; got != absent {
			t.Errorf("container in %s (not selected by the plugin): %s = %q, want %s", controlNS, name, got, absent)
		}
	}
	names := eventNames(r.events)
	lifecycle := []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}
	if !isSubsequence(names, lifecycle) {
		t.Errorf("the plugin's events for the pod: %v; want %v in this order", names, lifecycle)
	}
	// plugins keep their state by container ID: one ID from CreateContainer to RemoveContainer
	var ids []string
	for _, ev := range r.events {
		if ev.Container != "" && !slices.Contains(ids, ev.ID) {
			ids = append(ids, ev.ID)
		}
		if ev.PodID != r.podID {
			t.Errorf("event %s names pod ID %q, want the runtime's %q", ev.Event, ev.PodID, r.podID)
		}
	}
	if len(ids) != 1 || ids[0] == "" {
		t.Errorf("the container's events name container IDs %q, want one and the same throughout", ids)
	}
}

// updateNS is where the update plugin acts.
const updateNS = "nri-e2e-update"

// runUpdate starts a second plugin, selecting updateNS, that limits the memory of containers
// at CreateContainer and sends an update of its own after each start setting their CPU shares
// to 700; it returns the container's cgroup values once the update arrived (or after 15 s).
func runUpdate(t *testing.T, b *bed, fx *nriFixture, label, sock string, rs, cleanup internalapi.RuntimeService, is internalapi.ImageManagerService) map[string]string {
	t.Helper()
	p := startNRIPlugin(t, b, sock, "updater", "12", "-namespace", updateNS, "-memory-limit", nriMemLimit, "-update-shares", "700")
	ctx := testContext(t, 2*callTimeout)
	ensureImage(ctx, t, is, b.busybox())
	cfg := b.nriPod(t, "update-"+label, updateNS)
	pod := runPodCleanedBy(ctx, t, rs, cleanup, cfg)
	id := startContainer(ctx, t, rs, pod, cfg, b.sleeper("main"))
	var f map[string]string
	deadline := time.Now().Add(15 * time.Second)
	for {
		f = fx.collectFacts(ctx, t, rs, id)
		if f["cpu.shares"] == "700" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := map[string]string{
		"cpu.shares after the plugin's update":            f["cpu.shares"],
		"memory.limit_in_bytes after the plugin's update": f["memory.limit_in_bytes"],
		"the plugin's log on its update":                  "-",
	}
	if l := grepLines(t, p.log, "unsolicited update"); len(l) > 0 {
		out["the plugin's log on its update"] = regexp.MustCompile(`[0-9a-f]{64}`).ReplaceAllString(l[len(l)-1][strings.Index(l[len(l)-1], "unsolicited"):], "<id>")
	}
	if err := rs.StopContainer(ctx, id, 2); err != nil {
		t.Errorf("StopContainer: %v", err)
	}
	return out
}

// updateFacts are runUpdate's facts, in table order.
var updateFacts = []string{"cpu.shares after the plugin's update", "memory.limit_in_bytes after the plugin's update", "the plugin's log on its update"}

func checkUpdate(t *testing.T, f map[string]string) {
	t.Helper()
	for k, want := range map[string]string{
		"cpu.shares after the plugin's update":            "700",
		"memory.limit_in_bytes after the plugin's update": nriMemLimit,
		"the plugin's log on its update":                  "unsolicited update of <id> (cpu shares 700) applied",
	} {
		if f[k] != want {
			t.Errorf("%s: %q, want %q", k, f[k], want)
		}
	}
}

// TestNRIPluginOnBed: the test plugin, selecting one namespace, adds an environment variable,
// an annotation, a read-only bind mount, a host device, CPU shares and a memory limit to the
// containers created through crishim; every one is checked inside the container (and a
// container of another namespace has none of them), a CRI UpdateContainerResources and the
// plugin's own update reach the cgroups, crishim's metrics count the plugin and its events, and
// the plugin saw the pod's lifecycle in order. Also: a container that exits by itself gets its
// StopContainer, and a plugin in nri.pluginDir is started and stopped by crishim. On containerd
// 2.x the same binary with the same flags runs against containerd's own NRI with the same pods
// created directly, and the facts must agree.
func TestNRIPluginOnBed(t *testing.T) {
	b := getBed(t)
	fx := newNRIFixture(t, b)
	var viaCrishim *nriRun
	t.Run("crishim", func(t *testing.T) {
		c, sock := b.startNRICrishim(t, "nri-facts", "")
		rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
		drs := runtimeService(t, b.runtimeSock, false)
		p := startNRIPlugin(t, b, sock, nriFactsName, nriFactsIdx, fx.pluginFlags(selectedNS)...)
		if got := c.metrics(t).nri("crishim_nri_plugins_registered", map[string]string{"plugin": nriFactsLabel}); got != 1 {
			t.Errorf("crishim_nri_plugins_registered{plugin=%q} = %v, want 1", nriFactsLabel, got)
		}
		r := fx.run(t, b, "crishim", rs, drs, is, p)
		fx.check(t, r)
		ms := c.metrics(t)
		for _, ev := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"} {
			l := map[string]string{"plugin": nriFactsLabel, "event": ev, "result": "ok"}
			// two pods: the selected one and the control one
			if got := ms.nri("crishim_nri_plugin_events_total", l); got < 2 {
				t.Errorf("crishim_nri_plugin_events_total%v = %v, want at least 2", l, got)
			}
		}
		if got := ms.nri("crishim_nri_plugin_events_total", map[string]string{"plugin": nriFactsLabel, "result": "error"}) +
			ms.nri("crishim_nri_plugin_events_total", map[string]string{"plugin": nriFactsLabel, "result": "timeout"}); got != 0 {
			t.Errorf("crishim_nri_plugin_events_total{result=error|timeout} = %v, want 0", got)
		}
		if got := ms.nri("crishim_nri_plugin_adjustments_total", map[string]string{"plugin": nriFactsLabel, "kind": "adjust"}); got != 1 {
			t.Errorf("crishim_nri_plugin_adjustments_total{kind=adjust} = %v, want 1 (the selected container only)", got)
		}
		if got := ms.nri("crishim_nri_plugins_registered", map[string]string{"plugin": nriFactsLabel}); got != 1 {
			t.Errorf("crishim_nri_plugins_registered{plugin=%q} = %v after the pods, want 1", nriFactsLabel, got)
		}
		r.update = runUpdate(t, b, fx, "crishim", sock, rs, drs, is)
		checkUpdate(t, r.update)
		if !t.Failed() {
			viaCrishim = r
		}
		logFacts(t, "crishim", r, nil)
	})

	// a container that ends by itself (no StopContainer call) gets its NRI StopContainer, as
	// containerd sends on a task exit, once; containerd 1.6 has no container events, so crishim
	// lists exits every 5 s there
	t.Run("exit-on-its-own", func(t *testing.T) {
		c, sock := b.startNRICrishim(t, "nri-exit", "")
		rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
		drs := runtimeService(t, b.runtimeSock, false)
		p := startNRIPlugin(t, b, sock, "exits", "11")
		ctx := testContext(t, 2*callTimeout)
		ensureImage(ctx, t, is, b.busybox())
		cfg := b.nriPod(t, "exits", selectedNS)
		pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
		id, err := rs.CreateContainer(ctx, pod, b.busyboxContainer("job", "sleep 1; exit 3"), cfg)
		if err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		if err := rs.StartContainer(ctx, id); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		podName := selectedNS + "/" + cfg.Metadata.Name
		start := time.Now()
		waitFor(t, 30*time.Second, "the plugin's StopContainer for the container that exited", func() (bool, error) {
			return slices.Contains(eventNames(p.podEvents(t, podName)), "StopContainer"), nil
		})
		t.Logf("StopContainer reached the plugin %v after the start (the container runs 1 s)", time.Since(start).Round(time.Millisecond))
		st, err := drs.ContainerStatus(ctx, id, false)
		if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetStatus().GetExitCode() != 3 {
			t.Errorf("the runtime's status of the container: %v (%v), want exited with 3", st.GetStatus(), err)
		}
		if n := c.metrics(t).calls(t, "StopContainer", ""); n != 0 {
			t.Errorf("crishim handled %v StopContainer calls, want none: the container ended by itself", n)
		}
		if err := rs.RemoveContainer(ctx, id); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
		waitFor(t, 10*time.Second, "the plugin's RemoveContainer", func() (bool, error) {
			return slices.Contains(eventNames(p.podEvents(t, podName)), "RemoveContainer"), nil
		})
		names := eventNames(p.podEvents(t, podName))
		stops := 0
		for _, n := range names {
			if n == "StopContainer" {
				stops++
			}
		}
		if stops != 1 || !isSubsequence(names, []string{"StartContainer", "StopContainer", "RemoveContainer"}) {
			t.Errorf("the plugin's events for the pod: %v; want one StopContainer between StartContainer and RemoveContainer", names)
		}
	})

	// a plugin in nri.pluginDir, started by crishim itself (NRI's layout: an executable named
	// NN-name, here a script running the test plugin with its flags) and stopped with it
	t.Run("preinstalled", func(t *testing.T) {
		dir := filepath.Join(b.dir, "e2e-nri-preinstalled-plugins")
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		events := filepath.Join(dir, "events")
		script := fmt.Sprintf("#!/bin/sh\nexec %s -namespace %s -env NRI_PREINSTALLED=yes -events %s 2>>%s\n",
			nriPluginBinary(t, b), selectedNS, events, filepath.Join(dir, "log"))
		if err := os.WriteFile(filepath.Join(dir, "05-pre"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		c, _ := b.startNRICrishim(t, "nri-preinstalled", fmt.Sprintf("  pluginDir: %s\n", dir))
		rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
		drs := runtimeService(t, b.runtimeSock, false)
		if got := c.metrics(t).nri("crishim_nri_plugins_registered", map[string]string{"plugin": "05-pre"}); got != 1 {
			t.Errorf("crishim_nri_plugins_registered{plugin=pre} = %v once crishim is ready, want 1 (started and synchronized before the socket listens)", got)
		}
		ctx := testContext(t, 2*callTimeout)
		ensureImage(ctx, t, is, b.busybox())
		cfg := b.nriPod(t, "preinstalled", selectedNS)
		pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
		id := startContainer(ctx, t, rs, pod, cfg, b.sleeper("main"))
		env, err := execOut(ctx, rs, id, "env")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Split(env, "\n"), "NRI_PREINSTALLED=yes") {
			t.Errorf("the container lacks NRI_PREINSTALLED=yes from the pre-installed plugin; env:\n%s", env)
		}
		p := &nriPlugin{label: "05-pre", events: events}
		if got := eventNames(p.podEvents(t, selectedNS+"/"+cfg.Metadata.Name)); !isSubsequence(got, []string{"RunPodSandbox", "CreateContainer", "StartContainer"}) {
			t.Errorf("the pre-installed plugin's events for the pod: %v", got)
		}
		// crishim stops its plugins when it stops
		if err := rs.StopContainer(ctx, id, 2); err != nil {
			t.Errorf("StopContainer: %v", err)
		}
		pids := func() string {
			out, _ := exec.Command("pgrep", "-f", "^"+regexp.QuoteMeta(nriPluginBinary(t, b))+" -namespace "+selectedNS+" -env NRI_PREINSTALLED=yes").Output()
			return strings.TrimSpace(string(out))
		}
		if pids() == "" {
			t.Errorf("no pre-installed plugin process while crishim runs")
		}
		c.stop(t)
		waitFor(t, 10*time.Second, "the pre-installed plugin gone with crishim", func() (bool, error) { return pids() == "", nil })
	})

	t.Run("containerd-nri", func(t *testing.T) {
		if b.rt.name != "containerd2" {
			why := map[string]string{"containerd1": "containerd 1.6 has no NRI", "crio": "the bed runs CRI-O with enable_nri = false, and CRI-O reads it only at start"}[b.rt.name]
			t.Skipf("the comparison with the runtime's own NRI runs on containerd 2.x only: %s", why)
		}
		if viaCrishim == nil {
			t.Fatal("the crishim half failed: nothing to compare")
		}
		nriSock := b.enableContainerdNRI(t)
		drs, dis := b.direct(t)
		p := startNRIPlugin(t, b, nriSock, nriFactsName, nriFactsIdx, fx.pluginFlags(selectedNS)...)
		native := fx.run(t, b, "containerd", drs, drs, dis, p)
		fx.check(t, native)
		native.update = runUpdate(t, b, fx, "containerd", nriSock, drs, drs, dis)
		checkUpdate(t, native.update)
		logFacts(t, "containerd", native, viaCrishim)
		for _, name := range factNames {
			if !comparedFact(name) {
				continue
			}
			if viaCrishim.selected[name] != native.selected[name] {
				t.Errorf("selected container: %s through crishim %q, with containerd's NRI %q", name, viaCrishim.selected[name], native.selected[name])
			}
			if viaCrishim.control[name] != native.control[name] {
				t.Errorf("control container: %s through crishim %q, with containerd's NRI %q", name, viaCrishim.control[name], native.control[name])
			}
		}
		for _, name := range updateFacts {
			if viaCrishim.update[name] != native.update[name] {
				t.Errorf("%s: through crishim %q, with containerd's NRI %q", name, viaCrishim.update[name], native.update[name])
			}
		}
		if x, y := strings.Join(eventNames(viaCrishim.events), " "), strings.Join(eventNames(native.events), " "); x != y {
			t.Errorf("the plugin's events for the pod differ:\n  crishim:    %s\n  containerd: %s", x, y)
		}
	})
}

// logFacts logs a run's facts as a table; with other, a comparison table (crishim | containerd).
func logFacts(t *testing.T, label string, r, crishim *nriRun) {
	t.Helper()
	var sb strings.Builder
	if crishim == nil {
		fmt.Fprintf(&sb, "facts through %s (%s):\n| fact | selected (%s) | control (%s) |\n|---|---|---|\n", label, os.Getenv("BED_RUNTIME"), selectedNS, controlNS)
		for _, name := range factNames {
			ctl, ok := r.control[name]
			if !ok {
				ctl = "(not checked)"
			}
			fmt.Fprintf(&sb, "| %s | %s | %s |\n", name, r.selected[name], ctl)
		}
		fmt.Fprintf(&sb, "| plugin events for the pod | %s | |\n", strings.Join(eventNames(r.events), " "))
		for _, name := range updateFacts {
			fmt.Fprintf(&sb, "| %s (%s) | %s | |\n", name, updateNS, r.update[name])
		}
		t.Log(sb.String())
		return
	}
	fmt.Fprintf(&sb, "the same plugin binary and flags, hosted by crishim vs containerd 2.x's own NRI (* = not compared):\n")
	fmt.Fprintf(&sb, "| fact | crishim | containerd NRI | agree |\n|---|---|---|---|\n")
	row := func(name, a, b string) {
		agree := "yes"
		if a != b {
			agree = "NO"
		}
		if !comparedFact(name) {
			agree = "-"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", name, a, b, agree)
	}
	for _, name := range factNames {
		row(name+" ("+selectedNS+")", crishim.selected[name], r.selected[name])
	}
	for _, name := range factNames {
		if _, ok := r.control[name]; ok {
			row(name+" ("+controlNS+")", crishim.control[name], r.control[name])
		}
	}
	row("plugin events for the pod", strings.Join(eventNames(crishim.events), " "), strings.Join(eventNames(r.events), " "))
	for _, name := range updateFacts {
		row(name+" ("+updateNS+")", crishim.update[name], r.update[name])
	}
	t.Log(sb.String())
}

// bedRun runs a bed.sh subcommand for the bed under test.
func bedRun(args ...string) error {
	out, err := exec.Command("bash", append([]string{"../bed/bed.sh"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bed.sh %v: %v\n%s", args, err, out)
	}
	return nil
}

// enableContainerdNRI restarts the bed's containerd with its own NRI enabled and returns its NRI
// socket; when the test ends containerd is restarted with the bed's configuration (NRI off) and
// the bed's crishim serves again.
func (b *bed) enableContainerdNRI(t *testing.T) string {
	t.Helper()
	cfgPath := filepath.Join(b.dir, "containerd.toml")
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	saved := cfgPath + ".nri-e2e"
	if err := os.WriteFile(saved, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	enabled, err := enableNRISection(string(orig))
	if err != nil {
		t.Fatal(err)
	}
	nriSock := filepath.Join(b.dir, "nri", "nri.sock")
	t.Cleanup(func() {
		restartErr := bedRun("runtime-kill")
		// a killed containerd leaves its NRI socket behind; with NRI off nothing listens there
		_ = os.Remove(nriSock)
		if err := os.WriteFile(cfgPath, orig, 0o644); err != nil {
			t.Errorf("restore %s: %v (the original is in %s)", cfgPath, err, saved)
			return
		}
		if err := bedRun("runtime-start"); err != nil {
			t.Errorf("restart containerd with NRI off: %v (kill: %v)", err, restartErr)
			return
		}
		os.Remove(saved)
		b.waitBedServes(t)
		if _, err := os.Stat(nriSock); err == nil {
			t.Errorf("containerd created its NRI socket %s after the restart with NRI off", nriSock)
		}
	})
	if err := bedRun("runtime-kill"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(enabled), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := bedRun("runtime-start"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "containerd's NRI socket "+nriSock, func() (bool, error) {
		fi, err := os.Stat(nriSock)
		return err == nil && fi.Mode()&os.ModeSocket != 0, nil
	})
	b.waitBedServes(t)
	return nriSock
}

// enableNRISection turns `disable = true` of containerd's NRI plugin section into false.
func enableNRISection(cfg string) (string, error) {
	const header = "[plugins.'io.containerd.nri.v1.nri']"
	i := strings.Index(cfg, header)
	if i < 0 {
		return "", fmt.Errorf("containerd.toml has no %s section", header)
	}
	rest := cfg[i+len(header):]
	end := strings.Index(rest, "\n  [")
	if end < 0 {
		end = len(rest)
	}
	section := rest[:end]
	re := regexp.MustCompile(`(?m)^(\s*)disable\s*=\s*true\s*$`)
	if !re.MatchString(section) {
		return "", fmt.Errorf("the %s section has no `disable = true`: %q", header, section)
	}
	return cfg[:i+len(header)] + re.ReplaceAllString(section, "${1}disable = false") + rest[end:], nil
}

// waitBedServes waits until the bed's own crishim answers through to the runtime again and
// reports ready (it reconnects with a backoff after a runtime restart).
func (b *bed) waitBedServes(t *testing.T) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+b.crishimSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	waitFor(t, 60*time.Second, "the bed's crishim to serve again", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil {
			return false, nil
		}
		if _, err := rc.Status(ctx, &runtimeapi.StatusRequest{}); err != nil {
			return false, nil
		}
		if b.metricsURL == "" {
			return true, nil
		}
		resp, err := http.Get(b.metricsURL + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// wantStatus asserts err's code and that its message names every one of words.
func wantStatus(t *testing.T, what string, err error, code codes.Code, words ...string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code {
		t.Errorf("%s: got %v (%v), want %s", what, st.Code(), err, code)
		return
	}
	for _, w := range words {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("%s: the message %q does not name %s", what, st.Message(), w)
		}
	}
}

// TestNRIUnsupportedAndConflictOnBed: an rlimit, which CRI cannot carry, fails CreateContainer
// with FailedPrecondition naming the plugin and the field, and the runtime never gets a
// container; with unsupportedFields {rlimits: drop} the container is created without it (the
// rest of the adjustment applied), with a warning and a metric. Two plugins setting the same
// variable fail CreateContainer naming both.
func TestNRIUnsupportedAndConflictOnBed(t *testing.T) {
	b := getBed(t)
	nriPluginBinary(t, b)
	const ns, name, idx = "nri-rlimit", "rlim", "20"
	label := idx + "-" + name
	for _, tc := range []struct {
		name   string
		config string
		refuse bool
	}{
		{"refuse", "", true},
		{"drop", "  unsupportedFields:\n    rlimits: drop\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sock := b.startNRICrishim(t, "nri-rlimit-"+tc.name, tc.config)
			rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
			drs := runtimeService(t, b.runtimeSock, false)
			startNRIPlugin(t, b, sock, name, idx, "-namespace", ns, "-rlimit", "nofile=512:1024", "-env", "NRI_RLIMIT_TEST=kept")
			ctx := testContext(t, 2*callTimeout)
			ensureImage(ctx, t, is, b.busybox())
			cfg := b.nriPod(t, "rlimit-"+tc.name, ns)
			pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
			id, err := rs.CreateContainer(ctx, pod, b.sleeper("main"), cfg)
			ms := c.metrics(t)
			if tc.refuse {
				wantStatus(t, "CreateContainer with an rlimit", err, codes.FailedPrecondition, label, "rlimits")
				if n := len(containersOf(ctx, t, drs, pod)); n != 0 {
					t.Errorf("the runtime has %d containers in the pod after the refusal, want 0", n)
				}
				l := map[string]string{"plugin": label, "field": "rlimits", "action": "refused"}
				if got := ms.nri("crishim_nri_unsupported_adjustments_total", l); got < 1 {
					t.Errorf("crishim_nri_unsupported_adjustments_total%v = %v, want at least 1", l, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateContainer with unsupportedFields {rlimits: drop}: %v", err)
			}
			if err := rs.StartContainer(ctx, id); err != nil {
				t.Fatalf("StartContainer: %v", err)
			}
			waitFor(t, 30*time.Second, "the container running", func() (bool, error) {
				st, err := drs.ContainerStatus(ctx, id, false)
				return err == nil && st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING, err
			})
			env, err := execOut(ctx, rs, id, "env")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(strings.Split(env, "\n"), "NRI_RLIMIT_TEST=kept") {
				t.Errorf("the rest of the adjustment was not applied: env lacks NRI_RLIMIT_TEST=kept:\n%s", env)
			}
			if soft, err := execOut(ctx, rs, id, "sh", "-c", "ulimit -n"); err != nil || soft == "512" {
				t.Errorf("nofile soft limit in the container: %q (%v); want the runtime's default, the rlimit dropped", soft, err)
			}
			l := map[string]string{"plugin": label, "field": "rlimits", "action": "dropped"}
			if got := ms.nri("crishim_nri_unsupported_adjustments_total", l); got < 1 {
				t.Errorf("crishim_nri_unsupported_adjustments_total%v = %v, want at least 1", l, got)
			}
			warn := grepLines(t, c.log, "warn", label, "rlimits")
			if len(warn) == 0 {
				t.Errorf("crishim's log has no warning naming %s and rlimits; log:\n%s", label, tail(c.log, 30))
			} else {
				t.Logf("crishim's warning: %s", warn[0])
			}
		})
	}

	t.Run("conflict", func(t *testing.T) {
		const ns = "nri-conflict"
		c, sock := b.startNRICrishim(t, "nri-conflict", "")
		rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
		drs := runtimeService(t, b.runtimeSock, false)
		startNRIPlugin(t, b, sock, "a", "30", "-namespace", ns, "-env", "SAME=x")
		startNRIPlugin(t, b, sock, "b", "31", "-namespace", ns, "-env", "SAME=x")
		ctx := testContext(t, 2*callTimeout)
		ensureImage(ctx, t, is, b.busybox())
		cfg := b.nriPod(t, "conflict", ns)
		pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
		_, err := rs.CreateContainer(ctx, pod, b.sleeper("main"), cfg)
		wantStatus(t, "CreateContainer with two plugins setting SAME", err, codes.FailedPrecondition, "30-a", "31-b", "SAME")
		if n := len(containersOf(ctx, t, drs, pod)); n != 0 {
			t.Errorf("the runtime has %d containers in the pod after the conflict, want 0", n)
		}
	})
}

// TestNRIFailurePolicyOnBed: a plugin that hangs in CreateContainer (requestTimeout 1s) fails
// the call with Unavailable under failurePolicy fail and is passed by under ignore; a plugin
// that crashes in StartContainer does not fail the start, and when it comes back it is
// synchronized with the running container and gets its later events by the same ID (also after
// a restart of crishim); a plugin's own refusal fails the call naming the plugin and leaves
// nothing behind; a required plugin keeps pods out of other namespaces than the exempt ones
// until it registers.
func TestNRIFailurePolicyOnBed(t *testing.T) {
	b := getBed(t)
	nriPluginBinary(t, b)
	const ns = "nri-policy"
	for _, tc := range []struct {
		policy string
		fail   bool
	}{
		{"fail", true},
		{"ignore", false},
	} {
		t.Run("hang-"+tc.policy, func(t *testing.T) {
			const name, idx = "hang", "40"
			label := idx + "-" + name
			c, sock := b.startNRICrishim(t, "nri-hang-"+tc.policy, fmt.Sprintf(
				"  requestTimeout: 1s\n  plugins:\n    - name: %s\n      failurePolicy: %s\n", name, tc.policy))
			rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
			drs := runtimeService(t, b.runtimeSock, false)
			startNRIPlugin(t, b, sock, name, idx, "-namespace", ns, "-hang", "CreateContainer")
			ctx := testContext(t, 2*callTimeout)
			ensureImage(ctx, t, is, b.busybox())
			cfg := b.nriPod(t, "hang-"+tc.policy, ns)
			pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
			start := time.Now()
			id, err := rs.CreateContainer(ctx, pod, b.sleeper("main"), cfg)
			took := time.Since(start)
			t.Logf("CreateContainer with the plugin hanging returned after %v: %v", took.Round(time.Millisecond), err)
			if took < time.Second || took > 10*time.Second {
				t.Errorf("CreateContainer returned after %v, want just after the 1s request timeout", took)
			}
			ms := c.metrics(t)
			l := map[string]string{"plugin": label, "event": "CreateContainer", "result": "timeout"}
			if got := ms.nri("crishim_nri_plugin_events_total", l); got < 1 {
				t.Errorf("crishim_nri_plugin_events_total%v = %v, want at least 1", l, got)
			}
			if tc.fail {
				wantStatus(t, "CreateContainer with the plugin hanging (failurePolicy fail)", err, codes.Unavailable, label)
				if n := len(containersOf(ctx, t, drs, pod)); n != 0 {
					t.Errorf("the runtime has %d containers in the pod, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateContainer with the plugin hanging (failurePolicy ignore): %v, want created without the plugin", err)
			}
			if ctrs := containersOf(ctx, t, drs, pod); len(ctrs) != 1 || ctrs[0].Id != id {
				t.Errorf("the runtime's containers in the pod: %v, want %s", ctrs, id)
			}
		})
	}

	t.Run("crash-and-come-back", func(t *testing.T) {
		const name, idx = "crash", "50"
		label := idx + "-" + name
		c, sock := b.startNRICrishim(t, "nri-crash", "")
		rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
		drs := runtimeService(t, b.runtimeSock, false)
		first := startNRIPlugin(t, b, sock, name, idx, "-namespace", ns, "-exit-on", "StartContainer")
		ctx := testContext(t, 2*callTimeout)
		ensureImage(ctx, t, is, b.busybox())
		cfg := b.nriPod(t, "crash", ns)
		pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
		id := startContainer(ctx, t, rs, pod, cfg, b.sleeper("main"))
		if code := first.exitCode(t, 10*time.Second); code != 3 {
			t.Errorf("the plugin exited with %d, want 3 (-exit-on StartContainer)", code)
		}
		created := first.named(t, "CreateContainer")
		if len(created) != 1 {
			t.Fatalf("the first plugin process got %d CreateContainer events, want 1", len(created))
		}
		nriID := created[0].ID
		waitFor(t, 10*time.Second, "crishim to count the plugin's disconnect", func() (bool, error) {
			ms := c.metrics(t)
			return ms.nri("crishim_nri_plugin_disconnects_total", map[string]string{"plugin": label}) >= 1 &&
				ms.nri("crishim_nri_plugins_registered", map[string]string{"plugin": label}) == 0, nil
		})

		// what the runtime has, which the plugin must be told at Synchronize
		pods, err := drs.ListPodSandbox(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		all, err := drs.ListContainers(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, ctr := range all {
			if s := ctr.GetState(); s == runtimeapi.ContainerState_CONTAINER_CREATED || s == runtimeapi.ContainerState_CONTAINER_RUNNING {
				live++
			}
		}
		second := startNRIPlugin(t, b, sock, name, idx, "-namespace", ns)
		synced := second.named(t, "Synchronize")[0]
		t.Logf("the restarted plugin's Synchronize: %d pods, %d containers (the runtime: %d pods, %d created or running containers)",
			*synced.Pods, *synced.Containers, len(pods), live)
		if *synced.Pods != len(pods) || *synced.Containers != live || live < 1 {
			t.Errorf("Synchronize after the restart: %d pods, %d containers; want the runtime's %d pods and %d live containers (incl. the running one)",
				*synced.Pods, *synced.Containers, len(pods), live)
		}
		if got := c.metrics(t).nri("crishim_nri_plugins_registered", map[string]string{"plugin": label}); got != 1 {
			t.Errorf("crishim_nri_plugins_registered{plugin=%q} = %v after the restart, want 1", label, got)
		}
		// the container the restarted plugin learned at Synchronize is the one it sees stop
		if err := rs.StopContainer(ctx, id, 2); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		if err := rs.RemoveContainer(ctx, id); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
		for _, ev := range []string{"StopContainer", "RemoveContainer"} {
			got := second.named(t, ev)
			if len(got) != 1 || got[0].ID != nriID {
				t.Errorf("the restarted plugin's %s events: %+v; want one for container ID %s (the ID the first process got at CreateContainer)", ev, got, nriID)
			}
		}
	})

	// a plugin's own refusal fails the call with FailedPrecondition naming the event, the pod
	// and the plugin, and leaves nothing behind in the runtime
	for _, event := range []string{"RunPodSandbox", "CreateContainer", "StartContainer"} {
		t.Run("refuse-"+event, func(t *testing.T) {
			const name, idx = "refuser", "45"
			label := idx + "-" + name
			c, sock := b.startNRICrishim(t, "nri-refuse-"+strings.ToLower(event), "")
			rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
			drs := runtimeService(t, b.runtimeSock, false)
			p := startNRIPlugin(t, b, sock, name, idx, "-namespace", ns, "-fail-on", event)
			ctx := testContext(t, 2*callTimeout)
			ensureImage(ctx, t, is, b.busybox())
			cfg := b.nriPod(t, "refuse-"+strings.ToLower(event), ns)
			podName := ns + "/" + cfg.Metadata.Name
			what := event + " refused by the plugin"
			if event == "RunPodSandbox" {
				_, err := rs.RunPodSandbox(ctx, cfg, "")
				wantStatus(t, what, err, codes.FailedPrecondition, "NRI RunPodSandbox", podName, label)
				if pods, err := drs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: cfg.Labels}); err != nil || len(pods) != 0 {
					t.Errorf("the runtime has sandboxes %v (%v) of the refused pod, want none (stopped and removed)", pods, err)
				}
				if got := eventNames(p.podEvents(t, podName)); !slices.Equal(got, []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"}) {
					t.Errorf("the plugin's events for the refused pod: %v, want RunPodSandbox StopPodSandbox RemovePodSandbox", got)
				}
				return
			}
			pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
			id, err := rs.CreateContainer(ctx, pod, b.sleeper("main"), cfg)
			if event == "CreateContainer" {
				wantStatus(t, what, err, codes.FailedPrecondition, "NRI CreateContainer", podName, label)
				if n := len(containersOf(ctx, t, drs, pod)); n != 0 {
					t.Errorf("the runtime has %d containers in the pod, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateContainer: %v", err)
			}
			err = rs.StartContainer(ctx, id)
			wantStatus(t, what, err, codes.FailedPrecondition, "NRI StartContainer", podName, label)
			if st, err := drs.ContainerStatus(ctx, id, false); err != nil || st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("the runtime's container after the refused start: %v (%v), want not running", st.GetStatus().GetState(), err)
			}
			if got := eventNames(p.podEvents(t, podName)); !isSubsequence(got, []string{"CreateContainer", "StartContainer", "StopContainer"}) || slices.Contains(got, "PostStartContainer") {
				t.Errorf("the plugin's events: %v, want CreateContainer, StartContainer, then StopContainer and no PostStartContainer", got)
			}
		})
	}

	// crishim itself restarts: the plugin loses its connection (exit status 2), and when it
	// connects to the new crishim it is synchronized with the running container under the ID
	// it knew it by, and gets the container's later events by that ID
	t.Run("crishim-restart", func(t *testing.T) {
		const name, idx = "survivor", "55"
		c, sock := b.startNRICrishim(t, "nri-restart", "")
		rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
		drs := runtimeService(t, b.runtimeSock, false)
		first := startNRIPlugin(t, b, sock, name, idx, "-namespace", ns)
		ctx := testContext(t, 2*callTimeout)
		ensureImage(ctx, t, is, b.busybox())
		cfg := b.nriPod(t, "restart", ns)
		pod := runPodCleanedBy(ctx, t, rs, drs, cfg)
		id := startContainer(ctx, t, rs, pod, cfg, b.sleeper("main"))
		created := first.named(t, "CreateContainer")
		if len(created) != 1 {
			t.Fatalf("the plugin got %d CreateContainer events, want 1", len(created))
		}
		c.stop(t)
		if code := first.exitCode(t, 10*time.Second); code != 2 {
			t.Errorf("the plugin exited with %d when crishim stopped, want 2 (connection lost)", code)
		}
		c2, _ := b.startNRICrishim(t, "nri-restart", "")
		rs2 := runtimeService(t, c2.sock, false)
		second := startNRIPlugin(t, b, sock, name, idx, "-namespace", ns)
		if synced := second.named(t, "Synchronize")[0]; *synced.Containers < 1 || *synced.Pods < 1 {
			t.Errorf("the plugin's Synchronize after crishim's restart: %d pods, %d containers; want the running pod and container", *synced.Pods, *synced.Containers)
		}
		if err := rs2.StopContainer(ctx, id, 2); err != nil {
			t.Fatalf("StopContainer through the restarted crishim: %v", err)
		}
		if err := rs2.RemoveContainer(ctx, id); err != nil {
			t.Fatalf("RemoveContainer through the restarted crishim: %v", err)
		}
		for _, ev := range []string{"StopContainer", "RemoveContainer"} {
			got := second.named(t, ev)
			if len(got) != 1 || got[0].ID != created[0].ID || got[0].PodID != pod {
				t.Errorf("the plugin's %s events after crishim's restart: %+v; want one for container %s in pod %s (the IDs it got at CreateContainer)", ev, got, created[0].ID, pod)
			}
		}
	})

	t.Run("required", func(t *testing.T) {
		const name = "guard"
		c, sock := b.startNRICrishim(t, "nri-required", fmt.Sprintf(
			"  plugins:\n    - name: %s\n      required: true\n  exemptNamespaces: [kube-system]\n", name))
		rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
		drs := runtimeService(t, b.runtimeSock, false)
		ctx := testContext(t, 2*callTimeout)
		ensureImage(ctx, t, is, b.busybox())
		teamA := b.nriPod(t, "guarded", "team-a")
		_, err := rs.RunPodSandbox(ctx, teamA, "")
		wantStatus(t, "RunPodSandbox in team-a without the required plugin", err, codes.Unavailable, `"guard"`)
		if pods, err := drs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: teamA.Labels}); err != nil || len(pods) != 0 {
			t.Errorf("the runtime has sandboxes %v (%v) of the refused pod, want none", pods, err)
		}
		if got := c.metrics(t).nri("crishim_nri_required_plugin_refusals_total", map[string]string{"plugin": name}); got < 1 {
			t.Errorf("crishim_nri_required_plugin_refusals_total{plugin=guard} = %v, want at least 1", got)
		}
		runPodCleanedBy(ctx, t, rs, drs, b.nriPod(t, "exempt", "kube-system"))

		startNRIPlugin(t, b, sock, name, "60")
		pod := runPodCleanedBy(ctx, t, rs, drs, teamA)
		startContainer(ctx, t, rs, pod, teamA, b.sleeper("main"))
	})
}

// TestNRIKubeletOnBed: a real kubelet (standalone, static pods) in front of a crishim hosting the
// test plugin, which adds NRI_KUBELET=1 (and the fact tests' adjustment) to the containers of
// the static pod's namespace: the container the kubelet creates has them, keeps the kubelet's
// own mounts and annotations, and is not recreated.
func TestNRIKubeletOnBed(t *testing.T) {
	b := getBed(t)
	if b.kubeletBin == "" {
		t.Skip("KUBELET_BIN is not set: kubelet e2e skipped")
	}
	if _, err := os.Stat(b.kubeletBin); err != nil {
		t.Skipf("KUBELET_BIN %s: %v (build it with test/bed/bed.sh tools)", b.kubeletBin, err)
	}
	const podName, ns = "nri-static", "nri-kubelet"
	dir := filepath.Join(b.dir, "e2e-nri-kubelet")
	kdir := filepath.Join(dir, "kubelet")
	unmountUnder(t, kdir) // a kubelet root dir an earlier run left mounted
	if err := os.RemoveAll(kdir); err != nil {
		t.Fatal(err)
	}
	c, sock := b.startNRICrishim(t, "nri-kubelet", "")
	rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
	drs := runtimeService(t, b.runtimeSock, false)
	// the fact tests' adjustment too, laid over what the kubelet asks for (its mounts, CPU shares 2)
	fx := newNRIFixture(t, b)
	p := startNRIPlugin(t, b, sock, "kubelet", "70", append(fx.pluginFlags(ns), "-env", "NRI_KUBELET=1")...)
	ctx := testContext(t, 5*time.Minute)
	ensureImage(ctx, t, is, b.busybox())
	labels := map[string]string{"io.kubernetes.pod.name": podName + "-" + kubeletNode, "io.kubernetes.pod.namespace": ns}
	// registered before the kubelet starts, so it runs after the kubelet stopped
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		pods, err := drs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: labels})
		if err != nil {
			t.Errorf("cleanup: ListPodSandbox: %v", err)
		}
		for _, s := range pods {
			if err := drs.StopPodSandbox(ctx, s.Id); err != nil {
				t.Errorf("cleanup: StopPodSandbox(%s): %v", s.Id, err)
			}
			if err := drs.RemovePodSandbox(ctx, s.Id); err != nil {
				t.Errorf("cleanup: RemovePodSandbox(%s): %v", s.Id, err)
			}
		}
		links, _ := filepath.Glob("/var/log/containers/" + podName + "-" + kubeletNode + "_*.log")
		for _, l := range links {
			os.Remove(l)
		}
		unmountUnder(t, kdir)
	})
	startKubeletWith(t, b, kdir, kubeletOptions{criSock: c.sock, cgroupName: "kubelet-nri"})
	manifest := filepath.Join(kdir, "manifests", podName+".yaml")
	writeAtomic(t, manifest, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
`, podName, ns, b.busybox()))
	var ctr *runtimeapi.Container
	waitFor(t, 2*time.Minute, "the static pod's container running", func() (bool, error) {
		ctrs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: labels,
			State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
		if err != nil || len(ctrs) == 0 {
			return false, err
		}
		ctr = ctrs[0]
		return true, nil
	})
	env, err := execOut(ctx, rs, ctr.Id, "env")
	if err != nil {
		t.Fatalf("exec env in the static pod's container: %v", err)
	}
	if !slices.Contains(strings.Split(env, "\n"), "NRI_KUBELET=1") {
		t.Errorf("the kubelet's container lacks NRI_KUBELET=1 from the plugin; env:\n%s", env)
	}
	facts := fx.collectFacts(ctx, t, rs, ctr.Id)
	for k, want := range fx.want() {
		if facts[k] != want {
			t.Errorf("the kubelet's container: %s = %q, want %q", k, facts[k], want)
		}
	}
	// the kubelet's own parts of the request survive the plugin's adjustment: its managed
	// /etc/hosts (a mount), and its annotations (container hash, restart count), without which
	// it would recreate the container
	if hosts, err := execOut(ctx, rs, ctr.Id, "cat", "/etc/hosts"); err != nil || !strings.Contains(hosts, "Kubernetes-managed hosts file") {
		t.Errorf("/etc/hosts in the kubelet's container is not the kubelet's (%v):\n%s", err, hosts)
	}
	st, err := drs.ContainerStatus(ctx, ctr.Id, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"io.kubernetes.container.hash", "io.kubernetes.container.restartCount", "io.kubernetes.pod.terminationGracePeriod"} {
		if _, ok := st.GetStatus().GetAnnotations()[k]; !ok {
			t.Errorf("the container lacks the kubelet's annotation %s: %v", k, st.GetStatus().GetAnnotations())
		}
	}
	time.Sleep(3 * time.Second)
	if all, err := drs.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: labels}); err != nil || len(all) != 1 ||
		all[0].Id != ctr.Id || all[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("the pod's containers 3 s later: %v (%v); want the one container, still running (the kubelet did not recreate it)", all, err)
	}
	if lines := grepLines(t, filepath.Join(kdir, "kubelet.log"), "CreateContainer", "failed"); len(lines) > 0 {
		t.Errorf("the kubelet logged failed CreateContainer calls: %v", lines)
	}
	evs := eventNames(p.podEvents(t, ns+"/"+podName+"-"+kubeletNode))
	if !isSubsequence(evs, []string{"RunPodSandbox", "CreateContainer", "StartContainer"}) {
		t.Errorf("the plugin's events for the kubelet's pod: %v, want RunPodSandbox, CreateContainer, StartContainer", evs)
	}
	t.Logf("the plugin's events for the kubelet's pod: %v", evs)

	// the kubelet stops the pod; its StopPodSandbox must return before the cleanup's own
	stopsBefore := c.metrics(t).calls(t, "StopPodSandbox", "")
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the static pod's sandbox stopped by the kubelet", func() (bool, error) {
		pods, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: labels,
			State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
		return err == nil && len(pods) == 0, err
	})
	waitFor(t, 30*time.Second, "the kubelet's StopPodSandbox through crishim to return", func() (bool, error) {
		ms := c.metrics(t)
		return ms.calls(t, "StopPodSandbox", "") > stopsBefore &&
			ms.value("crishim_grpc_server_in_flight", map[string]string{"grpc_method": "StopPodSandbox"}) == 0, nil
	})
	waitFor(t, 10*time.Second, "StopContainer in the plugin's events", func() (bool, error) {
		return slices.Contains(eventNames(p.podEvents(t, ns+"/"+podName+"-"+kubeletNode)), "StopContainer"), nil
	})
}

var pluginIndexRE = regexp.MustCompile(`^[0-9]{2}-`)

// nri is value for crishim's NRI metrics, whose plugin label is the name a plugin registers
// with: a plugin given as NN-name (NRI's name for it, which errors use) matches its series with
// or without the index.
func (ms metricSet) nri(name string, labels map[string]string) float64 {
	p, ok := labels["plugin"]
	if !ok || !pluginIndexRE.MatchString(p) {
		return ms.value(name, labels)
	}
	bare := map[string]string{}
	for k, v := range labels {
		bare[k] = v
	}
	bare["plugin"] = pluginIndexRE.ReplaceAllString(p, "")
	return ms.value(name, labels) + ms.value(name, bare)
}
