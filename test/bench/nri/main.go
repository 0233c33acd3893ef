// Command nri measures what crishim's NRI plugin hosting adds to the two
// calls plugins sit in front of with a reply the runtime waits for:
// CreateContainer (plugins adjust the container before the runtime sees it)
// and RunPodSandbox (plugins are told after the runtime made the sandbox).
//
//	make build && go run ./test/bench/nri -crishim bin/crishim [-n 300] [-warmup 30] [-rounds 5] \
//	    [-runtime-endpoint unix:///run/containerd/containerd.sock [-image IMAGE]] [-md out.md] [-json out.json]
//
// Rows, each its own path to the same runtime, all up at once:
//
//   - direct: the runtime's socket;
//   - crishim without an nri section (what the proxy benchmark measures);
//   - crishim with an nri section and no plugin connected;
//   - crishim with 1 plugin, and another crishim with 3 plugins: the test
//     plugin (test/nriplugin) as separate processes, each registering its own
//     name and index and adding one environment variable and one annotation
//     to every container.
//
// The runtime is, by default, test/fakecri in this process: it answers at
// once, so what is measured is crishim and the plugins, not a runtime. With
// -runtime-endpoint it is a real runtime (containerd, CRI-O) that must be
// able to run -image with host networking; it then makes real pods.
//
// One iteration is RunPodSandbox, then CreateContainer in that pod (both
// timed), then RemoveContainer, StopPodSandbox and RemovePodSandbox (not
// timed) through the same path, so that crishim's and the plugins' state
// stays as small as on a node. Iterations are sequential (concurrency 1);
// after a warm-up, the rows take turns in rounds, in rotating order, so that
// a drift of the machine (another job, frequency scaling) spreads over all
// rows instead of landing on one.
//
// The run fails, and writes nothing, unless the plugins were involved in
// every measured call: crishim must report every plugin registered before
// and after, its crishim_nri_plugin_events_total must have grown by exactly
// the measured calls for each plugin and both events with no failure, and
// the runtime must have received each plugin's environment variable and
// annotation on every CreateContainer of its rows and on none of the others
// (the fake's record of every call; against a real runtime, the annotations
// in ContainerStatus, checked once per round and row).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/bench/benchproc"
	"github.com/crishim/crishim/test/fakecri"
)

type config struct {
	crishim         string
	nriplugin       string
	runtimeEndpoint string
	image           string
	cgroupParent    string
	n, warmup       int
	rounds          int
	timeout         time.Duration
	mdOut, jsonOut  string
	keep            bool
}

func main() {
	var c config
	flag.StringVar(&c.crishim, "crishim", "", "crishim binary to run (default: go build ./cmd/crishim into a temporary directory)")
	flag.StringVar(&c.nriplugin, "nriplugin", "", "test plugin binary (default: go build ./test/nriplugin into a temporary directory)")
	flag.StringVar(&c.runtimeEndpoint, "runtime-endpoint", "", "a real runtime's CRI endpoint, unix:///path (default: the fake runtime, in process)")
	flag.StringVar(&c.image, "image", "registry.k8s.io/pause:3.10", "container image (a real runtime pulls it once, directly, if it lacks it)")
	flag.StringVar(&c.cgroupParent, "cgroup-parent", "", "pod cgroup parent for a real runtime (e.g. a systemd slice); default: the runtime's")
	flag.IntVar(&c.n, "n", 300, "measured iterations per row (each one RunPodSandbox and one CreateContainer)")
	flag.IntVar(&c.warmup, "warmup", 30, "unmeasured iterations per row first (connections, caches, the Go runtimes' heaps)")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds the measured iterations are split into; the rows take turns in each")
	flag.DurationVar(&c.timeout, "timeout", time.Minute, "timeout of each call")
	flag.StringVar(&c.mdOut, "md", "", "also write the report (markdown) to this file")
	flag.StringVar(&c.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (configs, logs) and print its path")
	flag.Parse()
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "bench nri: FAIL:", err)
		os.Exit(1)
	}
}

// pluginSpec is one test plugin: what it registers as and what it adds to
// every container. Distinct variables and annotations per plugin, because
// NRI refuses two plugins setting the same one (a conflict).
type pluginSpec struct {
	name, idx  string
	env, value string
	annotation string
}

// label is the name NRI gives the plugin, in logs and file names.
func (s pluginSpec) label() string { return s.idx + "-" + s.name }

var pluginSpecs = []pluginSpec{
	{name: "bench-a", idx: "10", env: "NRI_BENCH_A", value: "a", annotation: "nri-bench.crishim.io/a"},
	{name: "bench-b", idx: "20", env: "NRI_BENCH_B", value: "b", annotation: "nri-bench.crishim.io/b"},
	{name: "bench-c", idx: "30", env: "NRI_BENCH_C", value: "c", annotation: "nri-bench.crishim.io/c"},
}

// path is one row: a way to the runtime and what was measured through it.
type path struct {
	key, label string
	nri        bool
	plugins    []pluginSpec
	crishim    *benchproc.Proc   // nil for direct
	procs      []*benchproc.Proc // the plugins' processes
	nriSocket  string
	cc         *grpc.ClientConn
	rt         runtimeapi.RuntimeServiceClient
	seq        int
	// events is crishim_nri_plugin_events_total after the warm-up.
	events        metrics
	run, create   []time.Duration
	checkedStatus int // containers whose annotations were checked in ContainerStatus
}

// bench is one run.
type bench struct {
	c      *config
	dir    string
	fake   *fakecri.Server // nil against a real runtime
	direct runtimeapi.RuntimeServiceClient
	logDir string
	hostV  string // a host directory mounted into every container
	start  int64  // distinguishes pod UIDs between runs against a real runtime
	checks []string
}

func run(c *config) error {
	if c.n < c.rounds || c.rounds < 1 || c.warmup < 0 {
		return fmt.Errorf("-n %d, -rounds %d, -warmup %d: want -n >= -rounds >= 1 and -warmup >= 0", c.n, c.rounds, c.warmup)
	}
	rep := &Report{
		Timing:  benchproc.StartTiming(),
		Machine: benchproc.ThisMachine(),
		Settings: Settings{
			Runtime: "fakecri (in process)", Iterations: c.n, Warmup: c.warmup, Rounds: c.rounds,
			Plugins: "test/nriplugin, each adding 1 env var and 1 annotation",
		},
	}
	// Short: NRI's socket path (dir/nri-3/nri.sock) must fit sun_path.
	dir, err := os.MkdirTemp("", "cbnri")
	if err != nil {
		return err
	}
	if c.keep {
		defer fmt.Fprintf(os.Stderr, "kept %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	for _, b := range []struct {
		bin *string
		pkg string
	}{{&c.crishim, "./cmd/crishim"}, {&c.nriplugin, "./test/nriplugin"}} {
		if *b.bin == "" {
			*b.bin = filepath.Join(dir, filepath.Base(b.pkg))
			if err := benchproc.Build(b.pkg, *b.bin, "nri_no_wasm"); err != nil {
				return err
			}
		}
		if *b.bin, err = filepath.Abs(*b.bin); err != nil {
			return err
		}
	}
	b := &bench{c: c, dir: dir, logDir: filepath.Join(dir, "podlogs"), hostV: filepath.Join(dir, "hostdata"), start: rep.StartedAt.UnixNano()}
	for _, d := range []string{b.logDir, b.hostV} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}

	endpoint := c.runtimeEndpoint
	if endpoint == "" {
		if b.fake, err = startFake(filepath.Join(dir, "fake.sock")); err != nil {
			return err
		}
		defer b.fake.Stop()
		endpoint = b.fake.Endpoint()
	} else {
		if !strings.HasPrefix(endpoint, "unix://") {
			endpoint = "unix://" + endpoint
		}
		rep.Settings.Runtime = endpoint + ", image " + c.image
	}

	paths := []*path{
		{key: "direct", label: "direct (runtime socket)"},
		{key: "no-nri", label: "crishim, no nri section"},
		{key: "nri-0", label: "crishim, nri, 0 plugins", nri: true},
		{key: "nri-1", label: "crishim, nri, 1 plugin", nri: true, plugins: pluginSpecs[:1]},
		{key: "nri-3", label: "crishim, nri, 3 plugins", nri: true, plugins: pluginSpecs[:3]},
	}
	// Stopped in reverse: plugins before their crishim, so that none sees
	// its connection lost; the connections before the processes.
	defer func() {
		for _, p := range slices.Backward(paths) {
			if p.cc != nil {
				p.cc.Close()
			}
			for _, pp := range p.procs {
				pp.Stop()
			}
			p.crishim.Stop()
		}
	}()
	for _, p := range paths {
		if err := b.startPath(p, endpoint); err != nil {
			return fmt.Errorf("%s: %w", p.label, err)
		}
	}
	b.direct = paths[0].rt
	if b.fake == nil {
		if err := b.ensureImage(paths[0].cc); err != nil {
			return err
		}
	}
	for _, p := range paths {
		if err := b.waitPlugins(p); err != nil {
			return fmt.Errorf("%s: %w", p.label, err)
		}
	}

	fmt.Fprintf(os.Stderr, "%s: warm-up, %d iterations per row ...\n", time.Now().Format("15:04:05"), c.warmup)
	for _, p := range paths {
		for range c.warmup {
			if err := b.cycle(p, false, false); err != nil {
				return fmt.Errorf("%s: warm-up: %w", p.label, err)
			}
		}
		if p.crishim != nil {
			if p.events, err = scrape(p.crishim.Metrics); err != nil {
				return fmt.Errorf("%s: %w", p.label, err)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "%s: measuring, %d iterations per row in %d rounds ...\n", time.Now().Format("15:04:05"), c.n, c.rounds)
	for r := range c.rounds {
		per := c.n / c.rounds
		if r < c.n%c.rounds {
			per++
		}
		for k := range paths {
			p := paths[(k+r)%len(paths)]
			for i := range per {
				if err := b.cycle(p, true, i == 0); err != nil {
					return fmt.Errorf("%s: round %d: %w", p.label, r, err)
				}
			}
		}
	}

	// The figures mean nothing unless the plugins were in every call.
	for _, p := range paths {
		if err := b.verifyEvents(p); err != nil {
			return fmt.Errorf("%s: plugins not involved as expected: %w", p.label, err)
		}
	}
	if b.fake != nil {
		if err := b.verifyFake(paths); err != nil {
			return fmt.Errorf("plugins not involved as expected: %w", err)
		}
	} else {
		for _, p := range paths {
			b.checks = append(b.checks, fmt.Sprintf("%s: the runtime's ContainerStatus showed exactly the annotations of the row's plugins on %d containers (1 per round)", p.key, p.checkedStatus))
		}
	}

	rep.Machine.LoadAfter = benchproc.LoadAvg()
	rep.Timing.End()
	rep.Checks = b.checks
	rep.Rows = rows(paths)
	return benchproc.WriteReport(markdown(rep), rep, c.mdOut, c.jsonOut)
}

// startFake serves the fake runtime, scripted so that crishim's plugin
// host has what a real runtime would give it: distinct sandbox and
// container IDs (the NRI RunPodSandbox event after the sandbox exists
// carries its ID, and crishim keeps per-ID state), a sandbox status with
// an IP, and a container event stream that stays open (one that ended at
// once would have crishim reconnect to it during the run).
func startFake(socket string) (*fakecri.Server, error) {
	f, err := fakecri.Start(socket)
	if err != nil {
		return nil, err
	}
	var ids atomic.Uint64
	id := func() string { return fmt.Sprintf("%064x", ids.Add(1)) }
	f.Script(runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, fakecri.Script{
		Respond: func(proto.Message) (proto.Message, error) {
			return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id()}, nil
		},
	})
	f.Script(runtimeapi.RuntimeService_CreateContainer_FullMethodName, fakecri.Script{
		Respond: func(proto.Message) (proto.Message, error) {
			return &runtimeapi.CreateContainerResponse{ContainerId: id()}, nil
		},
	})
	f.Script(runtimeapi.RuntimeService_PodSandboxStatus_FullMethodName, fakecri.Script{
		Respond: func(req proto.Message) (proto.Message, error) {
			return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{
				Id:      req.(*runtimeapi.PodSandboxStatusRequest).GetPodSandboxId(),
				State:   runtimeapi.PodSandboxState_SANDBOX_READY,
				Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.7"},
			}}, nil
		},
	})
	f.Script(runtimeapi.RuntimeService_GetContainerEvents_FullMethodName, fakecri.Script{Hold: true})
	return f, nil
}

// startPath starts the row's crishim and plugins and connects to it.
func (b *bench) startPath(p *path, endpoint string) error {
	socket := strings.TrimPrefix(endpoint, "unix://")
	if p.key != "direct" {
		if p.nri {
			// Its own directory: crishim makes it 0700.
			p.nriSocket = filepath.Join(b.dir, p.key, "nri.sock")
		}
		var err error
		cfg := benchproc.CrishimConfig{RuntimeEndpoint: endpoint, NRISocket: p.nriSocket}
		if p.crishim, socket, err = benchproc.StartCrishim(b.c.crishim, b.dir, p.key, nil, cfg); err != nil {
			return err
		}
		if p.nri {
			// The plugin host listens: the nri section is in effect, with
			// or without plugins.
			if _, err := os.Stat(p.nriSocket); err != nil {
				return fmt.Errorf("crishim is ready but its NRI socket is not there: %w", err)
			}
		}
	}
	for _, s := range p.plugins {
		pp, err := benchproc.Start(p.key+"/"+s.label(), filepath.Join(b.dir, p.key+"-"+s.label()+".log"), nil, b.c.nriplugin,
			"-socket", p.nriSocket, "-name", s.name, "-idx", s.idx,
			"-env", s.env+"="+s.value, "-annotation", s.annotation+"="+s.idx)
		if err != nil {
			return err
		}
		p.procs = append(p.procs, pp)
	}
	cc, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	cc.Connect()
	p.cc, p.rt = cc, runtimeapi.NewRuntimeServiceClient(cc)
	return nil
}

// waitPlugins waits until crishim reports exactly the row's plugins
// registered and connected (crishim_nri_plugins_registered), so that no
// measured call runs before a plugin is in place.
func (b *bench) waitPlugins(p *path) error {
	if p.crishim == nil {
		return nil
	}
	want := map[string]float64{}
	for _, s := range p.plugins {
		want[s.name] = 1
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := scrape(p.crishim.Metrics)
		if err != nil {
			return err
		}
		got := m.registered()
		if maps.Equal(got, want) {
			if len(want) > 0 {
				b.checks = append(b.checks, fmt.Sprintf("%s: %s showed %s before the warm-up", p.key, metricRegistered, fmtRegistered(got)))
			}
			return nil
		}
		for _, pp := range p.procs {
			if pp.Exited() {
				return fmt.Errorf("plugin %s exited (log %s):\n%s", pp.Name, pp.LogPath, benchproc.Tail(pp.LogPath))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s shows %s after 30s, want %s (crishim log %s):\n%s",
				metricRegistered, fmtRegistered(got), fmtRegistered(want), p.crishim.LogPath, benchproc.Tail(p.crishim.LogPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fmtRegistered(m map[string]float64) string {
	if len(m) == 0 {
		return "no plugin"
	}
	var s []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s = append(s, fmt.Sprintf("%s=%g", k, m[k]))
	}
	return strings.Join(s, ", ")
}

// ensureImage pulls the image directly if a real runtime lacks it, so
// that no CreateContainer waits for a pull.
func (b *bench) ensureImage(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img := runtimeapi.NewImageServiceClient(cc)
	spec := &runtimeapi.ImageSpec{Image: b.c.image}
	st, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec})
	if err != nil {
		return fmt.Errorf("ImageStatus %s: %w", b.c.image, err)
	}
	if st.GetImage() != nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "pulling %s ...\n", b.c.image)
	if _, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
		return fmt.Errorf("PullImage %s: %w", b.c.image, err)
	}
	return nil
}

// podPrefix starts every benchmark pod's name; the row's key follows, so
// that a call the runtime received tells which row sent it.
const podPrefix = "nri-bench-"

// podConfig is a pod as the kubelet describes it, with host networking so
// that a real runtime needs no CNI.
func (b *bench) podConfig(p *path) *runtimeapi.PodSandboxConfig {
	p.seq++
	name := fmt.Sprintf("%s%s-%d", podPrefix, p.key, p.seq)
	uid := fmt.Sprintf("%x-%s-%d", b.start, p.key, p.seq)
	ns := "crishim-bench"
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: ns, Uid: uid},
		// no hostname: the pod shares the node's network and UTS namespaces,
		// where a runtime refuses to set one (runc: "unable to set hostname
		// without a private UTS namespace")
		LogDirectory: b.logDir,
		Labels: map[string]string{
			"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.uid": uid, "app": "nri-bench",
		},
		Annotations: map[string]string{
			"kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "2025-01-01T00:00:00Z",
		},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: b.c.cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

// containerConfig is a container of the size the kubelet sends (a few
// variables, labels, annotations, a mount, resources): what plugins and
// crishim convert on every call grows with it.
func (b *bench) containerConfig(pod *runtimeapi.PodSandboxConfig) *runtimeapi.ContainerConfig {
	md := pod.GetMetadata()
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: b.c.image},
		Envs: []*runtimeapi.KeyValue{
			{Key: "KUBERNETES_SERVICE_HOST", Value: []byte("10.96.0.1")}, {Key: "KUBERNETES_SERVICE_PORT", Value: []byte("443")},
			{Key: "KUBERNETES_PORT", Value: []byte("tcp://10.96.0.1:443")}, {Key: "POD_NAME", Value: []byte(md.GetName())},
			{Key: "POD_NAMESPACE", Value: []byte(md.GetNamespace())}, {Key: "APP_MODE", Value: []byte("bench")},
		},
		Labels: map[string]string{
			"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": md.GetName(),
			"io.kubernetes.pod.namespace": md.GetNamespace(), "io.kubernetes.pod.uid": md.GetUid(),
		},
		Annotations: map[string]string{
			"io.kubernetes.container.hash": "5d3c2f1a", "io.kubernetes.container.restartCount": "0",
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File", "io.kubernetes.pod.terminationGracePeriod": "30",
		},
		Mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: b.hostV, Readonly: true}},
		LogPath: md.GetName() + "-app.log",
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 102, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 1000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

// cycle runs one iteration through p: RunPodSandbox and CreateContainer,
// timed when record is set, then the clean-up. With checkStatus against a
// real runtime, the container's annotations are read back directly first.
func (b *bench) cycle(p *path, record, checkStatus bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.c.timeout)
	defer cancel()
	pod := b.podConfig(p)
	t0 := time.Now()
	run, err := p.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod})
	dRun := time.Since(t0)
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	podID := run.GetPodSandboxId()
	if podID == "" {
		return errors.New("RunPodSandbox returned no sandbox ID")
	}
	t1 := time.Now()
	created, err := p.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: b.containerConfig(pod), SandboxConfig: pod})
	dCreate := time.Since(t1)
	if err != nil {
		b.cleanup(ctx, p, podID, "")
		return fmt.Errorf("CreateContainer: %w", err)
	}
	if record {
		p.run, p.create = append(p.run, dRun), append(p.create, dCreate)
	}
	if checkStatus && b.fake == nil {
		if err := b.checkStatus(ctx, p, created.GetContainerId()); err != nil {
			b.cleanup(ctx, p, podID, created.GetContainerId())
			return err
		}
	}
	return b.cleanup(ctx, p, podID, created.GetContainerId())
}

// cleanup removes what an iteration made, through the same path: the
// plugins get the stop and remove events a node's pods give them.
func (b *bench) cleanup(ctx context.Context, p *path, podID, ctrID string) error {
	var errs []error
	if ctrID != "" {
		if _, err := p.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
			errs = append(errs, fmt.Errorf("RemoveContainer: %w", err))
		}
	}
	if _, err := p.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		errs = append(errs, fmt.Errorf("StopPodSandbox: %w", err))
	}
	if _, err := p.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		errs = append(errs, fmt.Errorf("RemovePodSandbox: %w", err))
	}
	return errors.Join(errs...)
}

// checkStatus reads a container's annotations from a real runtime,
// directly: it must carry exactly the row's plugins' annotations.
func (b *bench) checkStatus(ctx context.Context, p *path, ctrID string) error {
	st, err := b.direct.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil {
		return fmt.Errorf("ContainerStatus (direct): %w", err)
	}
	ann := st.GetStatus().GetAnnotations()
	for _, s := range pluginSpecs {
		got, ok := ann[s.annotation]
		want := slices.Contains(p.plugins, s)
		if want && got != s.idx || !want && ok {
			return fmt.Errorf("container %s: annotation %s is %q (present %t), want present %t: plugins not involved as expected", ctrID, s.annotation, got, ok, want)
		}
	}
	p.checkedStatus++
	return nil
}

// verifyEvents checks crishim's own count of plugin events: over the
// measured iterations, each of the row's plugins handled exactly one
// CreateContainer and one RunPodSandbox per iteration, and no event
// failed; and every plugin is still registered.
func (b *bench) verifyEvents(p *path) error {
	if p.crishim == nil {
		return nil
	}
	after, err := scrape(p.crishim.Metrics)
	if err != nil {
		return err
	}
	want := map[string]float64{}
	for _, s := range p.plugins {
		want[s.name] = 1
	}
	if got := after.registered(); !maps.Equal(got, want) {
		return fmt.Errorf("%s shows %s after the run, want %s", metricRegistered, fmtRegistered(got), fmtRegistered(want))
	}
	if !p.nri {
		if after.has(metricEvents) || after.has(metricRegistered) {
			return fmt.Errorf("crishim without an nri section exposes NRI metrics")
		}
		return nil
	}
	delta := func(labels map[string]string) float64 {
		return after.sum(metricEvents, labels) - p.events.sum(metricEvents, labels)
	}
	var got []string
	for _, s := range p.plugins {
		for _, ev := range []string{"CreateContainer", "RunPodSandbox"} {
			d := delta(map[string]string{"plugin": s.name, "event": ev, "result": "ok"})
			if d != float64(b.c.n) {
				return fmt.Errorf("%s{plugin=%q,event=%q,result=\"ok\"} grew by %g over %d measured iterations, want %d", metricEvents, s.label(), ev, d, b.c.n, b.c.n)
			}
			got = append(got, fmt.Sprintf("%s %s +%g", s.label(), ev, d))
		}
		if failed := delta(map[string]string{"plugin": s.name}) - delta(map[string]string{"plugin": s.name, "result": "ok"}); failed != 0 {
			return fmt.Errorf("plugin %s failed %g events during the run (log %s)", s.label(), failed, p.crishim.LogPath)
		}
	}
	if len(got) > 0 {
		b.checks = append(b.checks, fmt.Sprintf("%s: %s grew by exactly the measured iterations with result ok (%s), no failed event", p.key, metricEvents, strings.Join(got, ", ")))
	}
	return nil
}

// verifyFake checks every CreateContainer the fake runtime received: the
// row (from the pod name) must have sent exactly warm-up + measured calls,
// each with every variable and annotation of the row's plugins and none of
// the other plugins'.
func (b *bench) verifyFake(paths []*path) error {
	byKey := map[string]*path{}
	for _, p := range paths {
		byKey[p.key] = p
	}
	count := map[string]int{}
	for i, call := range b.fake.Calls(runtimeapi.RuntimeService_CreateContainer_FullMethodName) {
		req := new(runtimeapi.CreateContainerRequest)
		if err := proto.Unmarshal(call.Request, req); err != nil {
			return fmt.Errorf("CreateContainer %d the fake received: %w", i, err)
		}
		name := strings.TrimPrefix(req.GetSandboxConfig().GetMetadata().GetName(), podPrefix)
		key := name[:max(strings.LastIndexByte(name, '-'), 0)]
		p := byKey[key]
		if p == nil {
			return fmt.Errorf("CreateContainer %d the fake received is from no row (pod %q)", i, req.GetSandboxConfig().GetMetadata().GetName())
		}
		count[key]++
		env := map[string]string{}
		for _, kv := range req.GetConfig().GetEnvs() {
			env[kv.GetKey()] = string(kv.GetValue())
		}
		ann := req.GetConfig().GetAnnotations()
		for _, s := range pluginSpecs {
			want := slices.Contains(p.plugins, s)
			gotEnv, okEnv := env[s.env]
			gotAnn, okAnn := ann[s.annotation]
			if want && (gotEnv != s.value || gotAnn != s.idx) || !want && (okEnv || okAnn) {
				return fmt.Errorf("%s: a CreateContainer reached the runtime with %s=%q (present %t) and annotation %s=%q (present %t), want present %t",
					p.label, s.env, gotEnv, okEnv, s.annotation, gotAnn, okAnn, want)
			}
		}
	}
	for _, p := range paths {
		if want := b.c.warmup + b.c.n; count[p.key] != want {
			return fmt.Errorf("%s: the fake received %d CreateContainer calls, want %d", p.label, count[p.key], want)
		}
		what := "none of the plugins' variables or annotations"
		if len(p.plugins) > 0 {
			var added []string
			for _, s := range p.plugins {
				added = append(added, fmt.Sprintf("%s=%s and %s=%s", s.env, s.value, s.annotation, s.idx))
			}
			what = strings.Join(added, ", ") + ", and no other plugin's"
		}
		b.checks = append(b.checks, fmt.Sprintf("%s: all %d CreateContainer calls the fake received carried %s", p.key, count[p.key], what))
	}
	return nil
}
