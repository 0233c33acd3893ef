//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestVersionAndStatus(t *testing.T) {
	b := getBed(t)
	ctx := testContext(t, callTimeout)
	rs, _ := b.crishim(t)
	drs, _ := b.direct(t)

	v, err := rs.Version(ctx, "v1")
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	dv, err := drs.Version(ctx, "v1")
	if err != nil {
		t.Fatalf("Version (direct): %v", err)
	}
	if v.RuntimeName != dv.RuntimeName || v.RuntimeVersion != dv.RuntimeVersion || v.RuntimeApiVersion != "v1" {
		t.Errorf("Version through crishim = %s %s API %s, containerd says %s %s API %s",
			v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion, dv.RuntimeName, dv.RuntimeVersion, dv.RuntimeApiVersion)
	}
	t.Logf("runtime %s %s, CRI %s", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)

	st, err := rs.Status(ctx, true)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	conds := map[string]bool{}
	for _, c := range st.GetStatus().GetConditions() {
		conds[c.Type] = c.Status
	}
	for _, c := range []string{runtimeapi.RuntimeReady, runtimeapi.NetworkReady} {
		if !conds[c] {
			t.Errorf("Status condition %s = false (conditions %v)", c, st.GetStatus().GetConditions())
		}
	}
	if len(st.GetInfo()) == 0 {
		t.Error("Status(verbose) returned no info")
	}

	_, is := b.crishim(t)
	fs, err := is.ImageFsInfo(ctx)
	if err != nil {
		t.Fatalf("ImageFsInfo: %v", err)
	}
	// containerd fills used_bytes from a periodic snapshot scan: check where it points, not sizes
	if fss := fs.GetImageFilesystems(); len(fss) == 0 || !strings.HasPrefix(fss[0].GetFsId().GetMountpoint(), b.dir+"/") {
		t.Errorf("ImageFsInfo = %v, want a filesystem under %s", fs, b.dir)
	}
}

func TestPullImage(t *testing.T) {
	b := getBed(t)
	ctx := testContext(t, 2*callTimeout)
	_, is := b.crishim(t)
	ref := b.registry + "/k8s-staging-cri-tools/test-image-1:latest"
	spec := &runtimeapi.ImageSpec{Image: ref}
	if err := is.RemoveImage(ctx, spec); err != nil {
		t.Fatalf("RemoveImage(%s): %v", ref, err)
	}
	if st, err := is.ImageStatus(ctx, spec, false); err != nil || st.GetImage() != nil {
		t.Fatalf("ImageStatus after RemoveImage = %v, %v; want no image", st, err)
	}
	id, err := is.PullImage(ctx, spec, nil, nil)
	if err != nil {
		t.Fatalf("PullImage(%s): %v", ref, err)
	}
	// critest pulls the same image under its gcr.io name and expects one repo tag: leave nothing
	t.Cleanup(func() {
		if err := is.RemoveImage(context.Background(), spec); err != nil {
			t.Errorf("cleanup: RemoveImage(%s): %v", ref, err)
		}
	})
	if b.rt.pullReturnsDigest {
		if !strings.HasPrefix(id, b.registry+"/k8s-staging-cri-tools/test-image-1@sha256:") {
			t.Errorf("%s: PullImage returned %q, want the image's repo digest", b.rt.label, id)
		}
	} else if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("PullImage returned %q, want a sha256: image id", id)
	}
	st, err := is.ImageStatus(ctx, spec, false)
	if err != nil || !isImage(st.GetImage(), id) {
		t.Fatalf("ImageStatus(%s) = %v, %v; want id %s", ref, st, err, id)
	}
	imgs, err := is.ListImages(ctx, nil)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	found := false
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			found = found || tag == ref
		}
	}
	if !found {
		t.Errorf("ListImages lacks %s", ref)
	}
}

// TestPullAuthRegistry pulls from the htpasswd registry: without credentials the pull fails with
// exactly containerd's error, with them it works.
func TestPullAuthRegistry(t *testing.T) {
	b := getBed(t)
	if b.authRegistry == "" {
		t.Skip("AUTH_REGISTRY is not set")
	}
	ctx := testContext(t, 2*callTimeout)
	_, is := b.crishim(t)
	_, dis := b.direct(t)
	ref := b.authRegistry + "/private/busybox:1.35"
	spec := &runtimeapi.ImageSpec{Image: ref}
	if err := is.RemoveImage(ctx, spec); err != nil {
		t.Fatalf("RemoveImage(%s): %v", ref, err)
	}

	_, err := is.PullImage(ctx, spec, nil, nil)
	if err == nil {
		t.Fatalf("PullImage(%s) without credentials succeeded, want an error", ref)
	}
	if !b.rt.isAuthDenied(err) {
		t.Errorf("PullImage without credentials: %v, want %s's authorization error (%q)", err, b.rt.label, b.rt.authDenied)
	}
	_, derr := dis.PullImage(ctx, spec, nil, nil)
	sameStatus(t, "PullImage without credentials", err, derr)

	_, err = is.PullImage(ctx, spec, &runtimeapi.AuthConfig{Username: b.authUser, Password: "wrong"}, nil)
	if err == nil {
		t.Errorf("PullImage(%s) with a wrong password succeeded", ref)
	}

	id, err := is.PullImage(ctx, spec, &runtimeapi.AuthConfig{Username: b.authUser, Password: b.authPass}, nil)
	if err != nil {
		t.Fatalf("PullImage(%s) with credentials: %v", ref, err)
	}
	st, err := is.ImageStatus(ctx, spec, false)
	if err != nil || !isImage(st.GetImage(), id) {
		t.Fatalf("ImageStatus(%s) = %v, %v; want id %s", ref, st, err, id)
	}
	if err := is.RemoveImage(ctx, spec); err != nil {
		t.Errorf("RemoveImage(%s): %v", ref, err)
	}
}

// netns returns the network namespace link of the current process or of a container.
func hostNetns(t *testing.T) string {
	t.Helper()
	l, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPodWithCNI(t *testing.T) {
	p := newTestPod(t)
	b, ctx, rs, podCfg, pod := p.bed, p.ctx, p.rs, p.cfg, p.id
	ctr := startContainer(ctx, t, rs, pod, podCfg, b.busyboxContainer("web",
		"mkdir -p /www && echo served-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"))

	st, err := rs.PodSandboxStatus(ctx, pod, false)
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	if got := st.GetStatus().GetState(); got != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("sandbox state = %s, want SANDBOX_READY", got)
	}
	ip := st.GetStatus().GetNetwork().GetIp()
	_, subnet, _ := net.ParseCIDR(envOr("CNI_SUBNET", "10.89.0.0/16"))
	if parsed := net.ParseIP(ip); parsed == nil || !subnet.Contains(parsed) {
		t.Fatalf("pod IP = %q, want an address in %s", ip, subnet)
	}
	out, _, err := rs.ExecSync(ctx, ctr, []string{"readlink", "/proc/self/ns/net"}, 10*time.Second)
	if err != nil {
		t.Fatalf("ExecSync readlink: %v", err)
	}
	if strings.TrimSpace(string(out)) == hostNetns(t) {
		t.Errorf("CNI pod shares the host network namespace %s", hostNetns(t))
	}
	// the pod is reachable from the host over the bed's bridge
	var body []byte
	waitFor(t, 10*time.Second, "HTTP from the pod at "+ip, func() (bool, error) {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(ip, "8080") + "/")
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err == nil, err
	})
	if got := strings.TrimSpace(string(body)); got != "served-from-pod" {
		t.Errorf("GET http://%s:8080/ = %q, want served-from-pod", ip, got)
	}
}

func TestPodWithHostNetwork(t *testing.T) {
	b := getBed(t)
	ctx := testContext(t, 2*callTimeout)
	rs, is := b.crishim(t)
	ensureImage(ctx, t, is, b.busybox())
	podCfg := b.podConfig(t, t.Name())
	podCfg.Hostname = "" // as the kubelet does: no UTS namespace of its own, so no hostname to set
	podCfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	pod := runPod(ctx, t, rs, podCfg, "")
	ctr := startContainer(ctx, t, rs, pod, podCfg, b.busyboxContainer("sleeper", "exec sleep 3600"))
	out, _, err := rs.ExecSync(ctx, ctr, []string{"readlink", "/proc/self/ns/net"}, 10*time.Second)
	if err != nil {
		t.Fatalf("ExecSync readlink: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), hostNetns(t); got != want {
		t.Errorf("host-network container is in netns %s, want the host's %s", got, want)
	}
}

// TestContainerLifecycle covers create/start, ExecSync, logs, stats, list, stop and remove.
func TestContainerLifecycle(t *testing.T) {
	p := newTestPod(t)
	b, ctx, rs, podCfg, pod := p.bed, p.ctx, p.rs, p.cfg, p.id
	cfg := b.busyboxContainer("main", "echo hello-from-e2e; echo to-stderr >&2; trap 'exit 0' TERM; while true; do sleep 0.2; done")
	ctr := startContainer(ctx, t, rs, pod, podCfg, cfg)

	// ExecSync: output, stderr, exit code
	out, errOut, err := rs.ExecSync(ctx, ctr, []string{"sh", "-c", "echo out-$((6*7)); echo err >&2"}, 10*time.Second)
	if err != nil || string(out) != "out-42\n" || string(errOut) != "err\n" {
		t.Errorf("ExecSync = %q, %q, %v; want \"out-42\\n\", \"err\\n\", nil", out, errOut, err)
	}
	_, _, err = rs.ExecSync(ctx, ctr, []string{"sh", "-c", "exit 3"}, 10*time.Second)
	var exit interface{ ExitStatus() int }
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Errorf("ExecSync(exit 3) error = %v, want an exit error with status 3", err)
	}

	// logs
	st, err := rs.ContainerStatus(ctx, ctr, false)
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	if want := podCfg.LogDirectory + "/main.log"; st.GetStatus().GetLogPath() != want {
		t.Errorf("log path = %q, want %q", st.GetStatus().GetLogPath(), want)
	}
	logText := readLog(t, st.GetStatus().GetLogPath(), "to-stderr")
	for _, want := range []string{" stdout F hello-from-e2e", " stderr F to-stderr"} {
		if !strings.Contains(logText, want) {
			t.Errorf("log %q lacks %q", logText, want)
		}
	}
	if err := rs.ReopenContainerLog(ctx, ctr); err != nil {
		t.Errorf("ReopenContainerLog: %v", err)
	}

	// stats
	stats, err := rs.ContainerStats(ctx, ctr)
	if err != nil {
		t.Fatalf("ContainerStats: %v", err)
	}
	if stats.GetAttributes().GetId() != ctr || stats.GetMemory().GetWorkingSetBytes() == nil || stats.GetCpu() == nil {
		t.Errorf("ContainerStats = %v, want id %s with cpu and memory", stats, ctr)
	}
	list, err := rs.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{PodSandboxId: pod})
	if err != nil || len(list) != 1 || list[0].GetAttributes().GetId() != ctr {
		t.Errorf("ListContainerStats(pod) = %v, %v; want exactly %s", list, err, ctr)
	}
	drs, _ := b.direct(t)
	_, perr := rs.PodSandboxStats(ctx, pod)
	_, dperr := drs.PodSandboxStats(ctx, pod)
	sameStatus(t, "PodSandboxStats", perr, dperr)

	// list, by sandbox and by label
	ctrs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: pod})
	if err != nil || len(ctrs) != 1 || ctrs[0].Id != ctr || ctrs[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ListContainers(pod) = %v, %v; want %s running", ctrs, err, ctr)
	}
	ctrs, err = rs.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"crishim-e2e-container": "main"}})
	if err != nil || !hasContainer(ctrs, ctr) {
		t.Errorf("ListContainers(label) = %v, %v; want it to include %s", ctrs, err, ctr)
	}
	// the kubelet's streaming client falls back to unary List* calls when Stream* is Unimplemented
	srs := runtimeService(t, b.crishimSock, true)
	ctrs, err = srs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: pod})
	if err != nil || !hasContainer(ctrs, ctr) {
		t.Errorf("ListContainers with a streaming client = %v, %v; want %s", ctrs, err, ctr)
	}
	pods, err := srs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{Id: pod})
	if err != nil || len(pods) != 1 {
		t.Errorf("ListPodSandbox with a streaming client = %v, %v; want %s", pods, err, pod)
	}

	// stop and remove
	start := time.Now()
	if err := rs.StopContainer(ctx, ctr, 10); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("StopContainer took %v: the TERM trap should end it within a second", d)
	}
	st, err = rs.ContainerStatus(ctx, ctr, false)
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetStatus().GetExitCode() != 0 {
		t.Errorf("ContainerStatus after stop = %v, %v; want EXITED with code 0", st.GetStatus(), err)
	}
	if err := rs.RemoveContainer(ctx, ctr); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	_, err = rs.ContainerStatus(ctx, ctr, false)
	wantCode(t, "ContainerStatus after RemoveContainer", err, codes.NotFound)
	ctrs, err = rs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: pod})
	if err != nil || len(ctrs) != 0 {
		t.Errorf("ListContainers(pod) after remove = %v, %v; want none", ctrs, err)
	}
}

func hasContainer(ctrs []*runtimeapi.Container, id string) bool {
	for _, c := range ctrs {
		if c.Id == id {
			return true
		}
	}
	return false
}

// TestRuntimeHandler runs a sandbox on the kata-sim handler: the handler is kept (runc runs it
// from kata-sim's root; containerd reports kata-sim, CRI-O "") and the io.katacontainers.*
// annotations reach the OCI spec (only they on containerd, whose handler passes only them); an
// unknown handler fails exactly as directly.
func TestRuntimeHandler(t *testing.T) {
	b := getBed(t)
	ctx := testContext(t, 2*callTimeout)
	rs, is := b.crishim(t)
	drs, _ := b.direct(t)
	ensureImage(ctx, t, is, b.busybox())
	podCfg := b.podConfig(t, t.Name())
	podCfg.Annotations = map[string]string{
		"io.katacontainers.config.hypervisor.default_vcpus": "2",
		"example.com/not-passed":                            "x",
	}
	pod := runPod(ctx, t, rs, podCfg, "kata-sim")
	st, err := rs.PodSandboxStatus(ctx, pod, true)
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	if got, want := st.GetStatus().GetRuntimeHandler(), b.rt.wantSandboxHandler("kata-sim"); got != want {
		t.Errorf("%s: runtime handler = %q, want %q", b.rt.label, got, want)
	}
	b.runsOn(t, pod, "kata-sim")
	ann := b.ociAnnotations(t, st)
	if ann["io.katacontainers.config.hypervisor.default_vcpus"] != "2" {
		t.Errorf("OCI spec annotations %v lack io.katacontainers.config.hypervisor.default_vcpus=2", ann)
	}
	if _, ok := ann["example.com/not-passed"]; ok != !b.rt.onlyAllowedAnnotations {
		if b.rt.onlyAllowedAnnotations {
			t.Errorf("OCI spec annotations %v contain example.com/not-passed, which the handler does not pass", ann)
		} else {
			t.Errorf("%s: OCI spec annotations %v lack example.com/not-passed; CRI-O copies every pod annotation", b.rt.label, ann)
		}
	}

	bad := b.podConfig(t, t.Name()+"-unknown")
	_, err = rs.RunPodSandbox(ctx, bad, "no-such-handler")
	if err == nil || !strings.Contains(err.Error(), b.rt.unknownHandlerError("no-such-handler")) {
		t.Errorf("RunPodSandbox(no-such-handler) error = %v, want %s's unknown-handler error %q", err, b.rt.label, b.rt.unknownHandlerError("no-such-handler"))
	}
	bad2 := b.podConfig(t, t.Name()+"-unknown-direct")
	_, derr := drs.RunPodSandbox(ctx, bad2, "no-such-handler")
	// containerd 2.x names the sandbox id it generated: different for the two calls
	sameStatusExceptIDs(t, "RunPodSandbox(no-such-handler)", err, derr)
}

// TestGetContainerEvents: containerd 1.6 does not implement the event stream; the client must see
// exactly codes.Unimplemented through crishim, as it does directly. On the runtimes that stream
// (containerd 2.x, CRI-O with enable_pod_events) both streams must stay open instead; what they
// carry is TestContainerEventsThroughCrishim's.
func TestGetContainerEvents(t *testing.T) {
	b := getBed(t)
	if b.rt.events {
		for label, sock := range map[string]string{"direct": b.runtimeSock, "crishim": b.crishimSock} {
			s := subscribe(t, label, rawRuntime(t, sock))
			time.Sleep(2 * time.Second)
			if done, err := s.ended(); done {
				t.Errorf("%s: GetContainerEvents %s ended with %v, want a stream that stays open", b.rt.label, label, err)
			}
		}
		return
	}
	rs, _ := b.crishim(t)
	drs, _ := b.direct(t)
	events := func(label string, call func(context.Context, chan *runtimeapi.ContainerEventResponse) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ch := make(chan *runtimeapi.ContainerEventResponse, 100)
		err := call(ctx, ch)
		if ctx.Err() != nil {
			t.Fatalf("%s: GetContainerEvents still streaming after 10 s (err %v): containerd 1.6 should answer Unimplemented", label, err)
		}
		return err
	}
	err := events("crishim", func(ctx context.Context, ch chan *runtimeapi.ContainerEventResponse) error {
		return rs.GetContainerEvents(ctx, ch, nil)
	})
	derr := events("direct", func(ctx context.Context, ch chan *runtimeapi.ContainerEventResponse) error {
		return drs.GetContainerEvents(ctx, ch, nil)
	})
	wantCode(t, "GetContainerEvents (direct)", derr, codes.Unimplemented)
	wantCode(t, "GetContainerEvents through crishim", err, codes.Unimplemented)
	sameStatus(t, "GetContainerEvents", err, derr)
}

// TestMetrics checks that crishim counts calls by method and answers its health endpoints.
func TestMetrics(t *testing.T) {
	b := getBed(t)
	ctx := testContext(t, callTimeout)
	rs, _ := b.crishim(t)
	before := b.metrics(t).calls(t, "Version", "OK")
	const n = 3
	for i := 0; i < n; i++ {
		if _, err := rs.Version(ctx, "v1"); err != nil {
			t.Fatalf("Version: %v", err)
		}
	}
	after := b.metrics(t).calls(t, "Version", "OK")
	if after-before < n {
		t.Errorf("%s{grpc_method=Version,grpc_code=OK} went from %v to %v after %d calls", callsMetric(), before, after, n)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(b.metricsURL + p)
		if err != nil {
			t.Errorf("GET %s: %v", p, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %s, want 200", p, resp.Status)
		}
	}
}

// TestUnimplementedPassThrough: methods containerd 1.6 does not know reach it and come back with
// its own status (code and message), as the kubelet's fallbacks expect.
func TestUnimplementedPassThrough(t *testing.T) {
	b := getBed(t)
	ctx := testContext(t, callTimeout)
	rs, _ := b.crishim(t)
	drs, _ := b.direct(t)
	for _, tc := range []struct {
		desc string
		call func(rs internalapi.RuntimeService) error
	}{
		{"RuntimeConfig", func(rs internalapi.RuntimeService) error { _, err := rs.RuntimeConfig(ctx); return err }},
		{"UpdatePodSandboxResources", func(rs internalapi.RuntimeService) error {
			_, err := rs.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "none"})
			return err
		}},
		{"CheckpointContainer", func(rs internalapi.RuntimeService) error {
			return rs.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: "none"})
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err, derr := tc.call(rs), tc.call(drs)
			if derr == nil {
				t.Skipf("%s works on this runtime", tc.desc)
			}
			sameStatus(t, tc.desc, err, derr)
		})
	}
}

// ociAnnotations returns the annotations of a sandbox's OCI spec: from the verbose status where
// the runtime puts the spec (containerd: info.runtimeSpec; CRI-O: info.runtimeSpec too).
func (b *bed) ociAnnotations(t *testing.T, st *runtimeapi.PodSandboxStatusResponse) map[string]string {
	t.Helper()
	var info struct {
		RuntimeSpec struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		t.Fatalf("PodSandboxStatus verbose info %q: %v", st.GetInfo()["info"], err)
	}
	return info.RuntimeSpec.Annotations
}

// isImage reports whether img is the image PullImage answered with ref: its id (containerd) or
// one of its repo digests (CRI-O).
func isImage(img *runtimeapi.Image, ref string) bool {
	if img == nil {
		return false
	}
	return img.GetId() == ref || slices.Contains(img.GetRepoDigests(), ref)
}
