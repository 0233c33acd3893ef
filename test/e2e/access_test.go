//go:build e2e

package e2e

// End-to-end tests of images.access (package handlers/access): a pod may run
// an image of a registry images.credentials.policy restricts only when its
// namespace proved access by a pull through crishim. Each test runs a
// crishim of its own with node credentials for the bed's htpasswd registry
// granted to team-* and the access record in a state directory of its own.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// accessDenied is how crishim's refusal of CreateContainer begins.
const accessDenied = "crishim: image access denied:"

// accessSetup is what both tests start from: the private image, a docker
// config.json with the node's credentials for the htpasswd registry, and
// crishim's configuration (credentials for team-*, images.access with
// stateDir under dir).
type accessSetup struct {
	ref    string // the private image
	auth   string // base64(user:pass), as in config.json
	config string // crishim's images: section
}

func (b *bed) accessSetup(t *testing.T, dir string) *accessSetup {
	t.Helper()
	if b.authRegistry == "" {
		t.Skip("AUTH_REGISTRY is not set")
	}
	unmountUnder(t, dir) // a kubelet's root dir left mounted by an earlier run
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &accessSetup{
		ref:  b.authRegistry + "/private/busybox:1.35",
		auth: base64.StdEncoding.EncodeToString([]byte(b.authUser + ":" + b.authPass)),
	}
	dockerConfig := filepath.Join(dir, "config.json")
	if err := os.WriteFile(dockerConfig, []byte(fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, b.authRegistry, s.auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.config = fmt.Sprintf(`images:
  credentials:
    dockerConfig:
      paths: [%s]
    policy:
      - registries: [%q]
        namespaces: ["team-*"]
  access:
    stateDir: %s
`, dockerConfig, b.authRegistry, filepath.Join(dir, "state"))
	return s
}

// noPassword fails the test when a crishim log holds the registry password
// (plain or as config.json's base64 auth).
func (s *accessSetup) noPassword(t *testing.T, b *bed, logs ...string) {
	t.Helper()
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			t.Errorf("read %s: %v", l, err)
			continue
		}
		if strings.Contains(string(data), b.authPass) || strings.Contains(string(data), s.auth) {
			t.Errorf("crishim's log %s contains the registry password", l)
		}
	}
}

// wantAccessDenied asserts crishim's refusal of a CreateContainer: PermissionDenied, crishim's
// message naming the image, the registry and the namespace.
func wantAccessDenied(t *testing.T, what string, err error, ref, registry, ns string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: CreateContainer succeeded, want crishim's PermissionDenied", what)
		return
	}
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied || !strings.HasPrefix(st.Message(), accessDenied) {
		t.Errorf("%s: got %s %q, want PermissionDenied %q...", what, st.Code(), st.Message(), accessDenied)
		return
	}
	for _, want := range []string{fmt.Sprintf("namespace %q", ns), "registry " + registry, ref} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("%s: the message %q does not name %s", what, st.Message(), want)
		}
	}
}

// runPodRemovedBy starts a sandbox through rs and removes it through cleanupRS when the test
// ends: the crishim that started it may be gone by then.
func runPodRemovedBy(ctx context.Context, t *testing.T, rs, cleanupRS internalapi.RuntimeService, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	id, err := rs.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox(%s/%s): %v", cfg.Metadata.Namespace, cfg.Metadata.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := cleanupRS.StopPodSandbox(ctx, id); err != nil {
			t.Errorf("cleanup: StopPodSandbox(%s): %v", id, err)
		}
		if err := cleanupRS.RemovePodSandbox(ctx, id); err != nil {
			t.Errorf("cleanup: RemovePodSandbox(%s): %v", id, err)
		}
	})
	return id
}

// TestImageAccessOnBed: team-a pulls the private image with the node's
// credentials; a pod of namespace other may not create a container from it
// (PermissionDenied, and the runtime never sees the call), team-a may; the
// record survives a restart of crishim; other's own pull with its own
// credentials proves its access, which survives a restart too.
func TestImageAccessOnBed(t *testing.T) {
	b := getBed(t)
	setup := b.accessSetup(t, filepath.Join(b.dir, "e2e-access"))
	ref := setup.ref
	ctx := testContext(t, 5*time.Minute)
	drs, dis := b.direct(t)
	var logs []string
	start := func(name string) (*ownCrishim, internalapi.RuntimeService, internalapi.ImageManagerService) {
		c := b.startCrishim(t, name, setup.config)
		logs = append(logs, c.log)
		return c, runtimeService(t, c.sock, false), imageService(t, c.sock)
	}
	decisions := func(c *ownCrishim, result string) float64 {
		return c.metrics(t).value("crishim_image_access_decisions_total", map[string]string{"result": result})
	}
	container := func(name, imageRef string) *runtimeapi.ContainerConfig {
		cfg := b.busyboxContainer(name, "echo started; trap 'exit 0' TERM; while true; do sleep 0.2; done")
		// as the kubelet does: the image the pull answered, and the reference the pod spec wrote
		cfg.Image = &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: ref}
		return cfg
	}
	noContainer := func(what, podID string) {
		t.Helper()
		ctrs, err := drs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: podID})
		if err != nil {
			t.Fatalf("ListContainers (runtime): %v", err)
		}
		if len(ctrs) != 0 {
			t.Errorf("%s: the runtime has %d containers in the pod, want none: %v", what, len(ctrs), ctrs)
		}
	}

	c1, rs, is := start("access")
	spec := &runtimeapi.ImageSpec{Image: ref}
	if err := is.RemoveImage(ctx, spec); err != nil {
		t.Fatalf("RemoveImage(%s) through crishim: %v", ref, err)
	}
	// registered first, so it runs after the pods' removal
	t.Cleanup(func() {
		if err := dis.RemoveImage(context.Background(), spec); err != nil {
			t.Errorf("cleanup: RemoveImage(%s): %v", ref, err)
		}
	})

	// (a) team-a pulls with no credentials of its own: crishim injects the node's.
	teamA := b.podConfig(t, "access-team-a")
	teamA.Metadata.Namespace = "team-a"
	imageRef, err := is.PullImage(ctx, spec, nil, teamA)
	if err != nil {
		t.Fatalf("(a) PullImage(%s) in team-a without credentials: %v, want the node's credentials injected", ref, err)
	}
	t.Logf("(a) team-a pulled %s with the node's credentials: image ref %s", ref, imageRef)

	// (b) other creates a container from it, as the kubelet would with IfNotPresent: refused.
	other := b.podConfig(t, "access-other")
	other.Metadata.Namespace = "other"
	otherID := runPodRemovedBy(ctx, t, rs, drs, other)
	_, err = rs.CreateContainer(ctx, otherID, container("denied", imageRef), other)
	wantAccessDenied(t, "(b) other, no pull", err, ref, b.authRegistry, "other")
	t.Logf("(b) other: %v", err)
	noContainer("(b) other, no pull", otherID)
	if got := decisions(c1, "denied"); got < 1 {
		t.Errorf("(b) crishim_image_access_decisions_total{result=denied} = %v, want at least 1", got)
	}

	// (c) team-a proved its access: its container runs.
	teamAID := runPodRemovedBy(ctx, t, rs, drs, teamA)
	startContainer(ctx, t, rs, teamAID, teamA, container("allowed", imageRef))
	if got := decisions(c1, "allowed"); got < 1 {
		t.Errorf("(c) crishim_image_access_decisions_total{result=allowed} = %v, want at least 1", got)
	}

	// (d) a restarted crishim keeps the record: other is still refused, team-a still allowed.
	c1.stop(t)
	c2, rs, is := start("access-restart1")
	_, err = rs.CreateContainer(ctx, otherID, container("denied-after-restart", imageRef), other)
	wantAccessDenied(t, "(d) other after a restart", err, ref, b.authRegistry, "other")
	noContainer("(d) other after a restart", otherID)
	if got := decisions(c2, "denied"); got < 1 {
		t.Errorf("(d) crishim_image_access_decisions_total{result=denied} = %v after the restart, want at least 1", got)
	}
	if _, err := rs.CreateContainer(ctx, teamAID, container("allowed-after-restart", imageRef), teamA); err != nil {
		t.Errorf("(d) CreateContainer in team-a after a restart: %v, want its recorded access to hold", err)
	}

	// (e) other pulls with its own credentials: that proves its access.
	ownRef, err := is.PullImage(ctx, spec, &runtimeapi.AuthConfig{Username: b.authUser, Password: b.authPass}, other)
	if err != nil {
		t.Fatalf("(e) PullImage(%s) in other with its own credentials: %v", ref, err)
	}
	startContainer(ctx, t, rs, otherID, other, container("own-credentials", ownRef))

	// (f) and that survives a restart too.
	c2.stop(t)
	c3, rs, _ := start("access-restart2")
	startContainer(ctx, t, rs, otherID, other, container("after-second-restart", ownRef))
	if got := decisions(c3, "denied"); got != 0 {
		t.Errorf("(f) crishim_image_access_decisions_total{result=denied} = %v, want 0", got)
	}
	if got := decisions(c3, "allowed"); got < 1 {
		t.Errorf("(f) crishim_image_access_decisions_total{result=allowed} = %v, want at least 1", got)
	}
	c3.stop(t)
	setup.noPassword(t, b, logs...)
}

// accessPodManifest is a static pod of namespace ns running the private image with
// imagePullPolicy IfNotPresent.
func accessPodManifest(name, ns, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels:
    app: crishim-e2e-access
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", "echo access-pod-started; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
`, name, ns, image)
}

// unmountUnder unmounts everything mounted below dir, deepest first (a kubelet leaves its root
// dir mounted).
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			mounts = append(mounts, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if err := syscall.Unmount(m, 0); err != nil {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				t.Logf("unmount %s: %v", m, err)
			}
		}
	}
}

// grepLines returns the lines of path that contain every one of words.
func grepLines(t *testing.T, path string, words ...string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, w := range words {
			if !strings.Contains(sc.Text(), w) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

// TestImageAccessKubeletOnBed: a real kubelet (standalone, static pods, no credentials of its
// own) in front of a crishim with images.access. A team-a pod pulls the private image with the
// node's credentials crishim injects and runs; a pod of namespace other with the same image and
// imagePullPolicy IfNotPresent is not pulled for (the image is present) and crishim refuses its
// CreateContainer, which the kubelet reports in its log.
func TestImageAccessKubeletOnBed(t *testing.T) {
	b := getBed(t)
	if b.kubeletBin == "" {
		t.Skip("KUBELET_BIN is not set: kubelet e2e skipped")
	}
	if _, err := os.Stat(b.kubeletBin); err != nil {
		t.Skipf("KUBELET_BIN %s: %v (build it with test/bed/bed.sh tools)", b.kubeletBin, err)
	}
	// startCrishim's own directory for "access-kubelet"
	dir := filepath.Join(b.dir, "e2e-access-kubelet")
	setup := b.accessSetup(t, dir)
	ref := setup.ref
	c := b.startCrishim(t, "access-kubelet", setup.config)
	ctx := testContext(t, 5*time.Minute)
	rs, is := runtimeService(t, c.sock, false), imageService(t, c.sock)
	drs, dis := b.direct(t)
	spec := &runtimeapi.ImageSpec{Image: ref}
	if err := is.RemoveImage(ctx, spec); err != nil {
		t.Fatalf("RemoveImage(%s) through crishim: %v", ref, err)
	}
	t.Cleanup(func() {
		if err := dis.RemoveImage(context.Background(), spec); err != nil {
			t.Errorf("cleanup: RemoveImage(%s): %v", ref, err)
		}
	})

	type pod struct{ name, ns string }
	teamA, other := pod{"access-team-a", "team-a"}, pod{"access-other", "other"}
	podLabels := func(p pod) map[string]string {
		return map[string]string{"io.kubernetes.pod.name": p.name + "-" + kubeletNode, "io.kubernetes.pod.namespace": p.ns}
	}
	kdir := filepath.Join(dir, "kubelet")
	// registered before the kubelet starts, so it runs after the kubelet stopped
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		for _, p := range []pod{teamA, other} {
			pods, err := drs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: podLabels(p)})
			if err != nil {
				t.Errorf("cleanup: ListPodSandbox: %v", err)
				continue
			}
			for _, s := range pods {
				if err := drs.StopPodSandbox(ctx, s.Id); err != nil {
					t.Errorf("cleanup: StopPodSandbox(%s): %v", s.Id, err)
				}
				if err := drs.RemovePodSandbox(ctx, s.Id); err != nil {
					t.Errorf("cleanup: RemovePodSandbox(%s): %v", s.Id, err)
				}
			}
		}
		links, _ := filepath.Glob("/var/log/containers/access-*-" + kubeletNode + "_*.log")
		for _, l := range links {
			os.Remove(l)
		}
		unmountUnder(t, kdir)
	})
	// --v=3: the kubelet logs its pod events (Pulling, Pulled, Failed) only from level 3 when it
	// has no API server to send them to
	startKubeletWith(t, b, kdir, kubeletOptions{criSock: c.sock, cgroupName: "kubelet-access", verbosity: 3})
	klog := filepath.Join(kdir, "kubelet.log")
	manifest := func(p pod) string { return filepath.Join(kdir, "manifests", p.name+".yaml") }

	// team-a: the kubelet pulls without credentials, crishim injects the node's; the container runs.
	writeAtomic(t, manifest(teamA), accessPodManifest(teamA.name, teamA.ns, ref))
	waitFor(t, 2*time.Minute, "the team-a pod's container running", func() (bool, error) {
		ctrs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: podLabels(teamA),
			State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
		return len(ctrs) > 0, err
	})
	for _, l := range grepLines(t, klog, teamA.name+"-"+kubeletNode, "image") {
		t.Logf("kubelet on the team-a pod: %s", l)
	}
	before := c.metrics(t)
	if got := before.value("crishim_image_pull_credentials_total", map[string]string{"source": "dockerconfig"}); got < 1 {
		t.Errorf("crishim_image_pull_credentials_total{source=dockerconfig} = %v, want the team-a pull made with the node's credentials", got)
	}

	// other: image present, IfNotPresent: no pull, and crishim refuses the CreateContainer.
	writeAtomic(t, manifest(other), accessPodManifest(other.name, other.ns, ref))
	waitFor(t, 2*time.Minute, "crishim's refusal in the kubelet's log", func() (bool, error) {
		data, err := os.ReadFile(klog)
		return strings.Contains(string(data), accessDenied), err
	})
	after := c.metrics(t)
	// the kubelet's image decision for the pod, then every line carrying crishim's refusal
	for _, l := range grepLines(t, klog, other.name+"-"+kubeletNode, `reason="Pulled"`) {
		t.Logf("kubelet on the other pod: %s", l)
	}
	denied := grepLines(t, klog, accessDenied)
	for _, l := range denied {
		t.Logf("kubelet on the other pod: %s", l)
	}
	if !strings.Contains(denied[0], `namespace \"other\"`) && !strings.Contains(denied[0], `namespace "other"`) {
		t.Errorf("the kubelet's log line does not carry the namespace of crishim's message: %s", denied[0])
	}
	ctrs, err := drs.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: podLabels(other)})
	if err != nil {
		t.Fatalf("ListContainers (runtime): %v", err)
	}
	if len(ctrs) != 0 {
		t.Errorf("the runtime has %d containers of the other pod, want none: %v", len(ctrs), ctrs)
	}
	sandboxes, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: podLabels(other)})
	if err != nil || len(sandboxes) == 0 {
		t.Fatalf("the other pod's sandbox: %v, %v", sandboxes, err)
	}
	for _, s := range sandboxes {
		if ctrs, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: s.Id}); err != nil || len(ctrs) != 0 {
			t.Errorf("sandbox %s of the other pod has containers %v (%v), want none", s.Id[:13], ctrs, err)
		}
	}
	if d := after.calls(t, "PullImage", "") - before.calls(t, "PullImage", ""); d != 0 {
		t.Errorf("the kubelet called PullImage %v times for the other pod, want none (IfNotPresent, image present)", d)
	}
	if got := after.value("crishim_image_access_decisions_total", map[string]string{"result": "denied"}); got < 1 {
		t.Errorf("crishim_image_access_decisions_total{result=denied} = %v, want at least 1", got)
	}
	if got := after.value("crishim_image_access_decisions_total", map[string]string{"result": "allowed"}); got < 1 {
		t.Errorf("crishim_image_access_decisions_total{result=allowed} = %v, want at least 1 (team-a)", got)
	}
	t.Logf("crishim's decisions: allowed %v, denied %v",
		after.value("crishim_image_access_decisions_total", map[string]string{"result": "allowed"}),
		after.value("crishim_image_access_decisions_total", map[string]string{"result": "denied"}))

	// Remove both pods through the kubelet and wait for its StopPodSandbox calls to return before
	// the cleanup's own (containerd 1.6 fails two concurrent ones).
	stopsBefore := c.metrics(t).calls(t, "StopPodSandbox", "")
	for _, p := range []pod{teamA, other} {
		if err := os.Remove(manifest(p)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "both pods' sandboxes stopped by the kubelet", func() (bool, error) {
		for _, p := range []pod{teamA, other} {
			pods, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: podLabels(p),
				State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
			if err != nil || len(pods) != 0 {
				return false, err
			}
		}
		return true, nil
	})
	waitFor(t, 30*time.Second, "the kubelet's StopPodSandbox calls through crishim to return", func() (bool, error) {
		ms := c.metrics(t)
		return ms.calls(t, "StopPodSandbox", "") >= stopsBefore+2 &&
			ms.value("crishim_grpc_server_in_flight", map[string]string{"grpc_method": "StopPodSandbox"}) == 0, nil
	})
	setup.noPassword(t, b, c.log)
}
