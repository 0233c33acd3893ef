// Command proxy measures what crishim's extra hop costs: the same workload,
// in one run, directly against an upstream runtime, through a byte splice
// (the physical floor of one more unix-socket hop), through a minimal raw
// gRPC forwarder (the floor of a gRPC-terminating forwarder) and through
// crishim (the real binary, with its default interceptors: logging at info,
// metrics; its passthrough is the HTTP/2 frame router), optionally also
// through a second crishim binary (-compare, an A/B of a change), the paths
// taking turns.
//
// The upstream is a fake runtime in its own process answering from prebuilt
// bytes (Version, ContainerStatus, ListContainers with 10,000 containers,
// GetContainerEvents streaming 100,000 events, PullImage through crishim's
// pull scheduler with de-duplication off and on) and, when present, the real
// test bed's containerd (a RunPodSandbox + StopPodSandbox + RemovePodSandbox
// cycle, ListContainers, ImageStatus).
//
//	make build && go run ./test/bench/proxy -crishim bin/crishim [-duration 2s] [-rounds 4] \
//	    [-paths direct,splice,floor,crishim] [-compare OLD_BIN [-compare-label NAME]] \
//	    [-bed auto|on|off] [-json out.json] [-md out.md] [-pprof DIR]
//
// It prints a table (latency p50/p90/p99 at concurrency 1, throughput at 16
// and 64, ratios to direct, each proxy's CPU per call, RSS idle and with
// 1,000 open streams) and a PASS/FAIL per target of issue 15, judged on
// crishim, with the splice's, the floor's and -compare's figures alongside.
// A missed target does not fail it; a path that cannot start does, so that
// no report shows fewer paths than asked for: -paths asks for fewer.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/bench/benchproc"
)

type config struct {
	crishim     string
	duration    time.Duration
	rounds      int
	concs       []int
	containers  int
	events      int
	streams     int
	pullLatency time.Duration
	raw         bool
	bed         string
	bedDuration time.Duration
	jsonOut     string
	mdOut       string
	pprofDir    string
	only        *regexp.Regexp
	paths       []string
	proxyEnv    []string
	// compare is -compare's binary (path pathCompare), compareLabel its
	// name in the markdown.
	compare      string
	compareLabel string
	compareEnv   []string
}

// label is a path's name in the markdown: the path itself, -compare-label
// for the -compare binary.
func (c *config) label(path string) string {
	if path == pathCompare && c.compareLabel != "" {
		return c.compareLabel
	}
	return path
}

func main() {
	role := flag.String("role", "", "internal: run as the fake upstream, the splice or the floor forwarder")
	socket := flag.String("socket", "", "internal: socket to serve on")
	upstream := flag.String("upstream", "", "internal: upstream socket (splice, floor)")
	var c config
	flag.StringVar(&c.crishim, "crishim", "", "crishim binary to run (default: go build ./cmd/crishim into a temporary directory)")
	flag.DurationVar(&c.duration, "duration", 2*time.Second, "measuring time per scenario, path and phase (split over the rounds)")
	flag.IntVar(&c.rounds, "rounds", 4, "rounds per phase; the paths take turns in each round, in rotating order")
	flag.IntVar(&c.containers, "containers", 10000, "containers in the fake's ListContainers answer")
	flag.IntVar(&c.events, "events", 100000, "events per GetContainerEvents stream")
	flag.IntVar(&c.streams, "streams", 1000, "GetContainerEvents streams held open for the RSS figure")
	flag.DurationVar(&c.pullLatency, "pull-latency", 0, "time the fake runtime takes per PullImage")
	client := flag.String("client", "typed", "typed: decode responses like the kubelet's CRI client; raw: take the bytes")
	flag.StringVar(&c.bed, "bed", "auto", "real test bed scenarios: auto (when root and the bed is installed), on, off")
	flag.DurationVar(&c.bedDuration, "bed-duration", 3*time.Second, "measuring time per bed scenario, path and phase")
	flag.StringVar(&c.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&c.mdOut, "md", "", "also write the report (markdown) to this file")
	flag.StringVar(&c.pprofDir, "pprof", "", "capture a CPU profile of crishim per fake scenario (at concurrency 64) into this directory")
	proxyEnv := flag.String("proxy-env", "", "extra environment for crishim and the floor, comma-separated (e.g. GOMAXPROCS=1), for experiments")
	flag.StringVar(&c.compare, "compare", "", "a second crishim binary, measured as path "+pathCompare+" in the fake scenarios (A/B of a change), configured like crishim")
	flag.StringVar(&c.compareLabel, "compare-label", pathCompare, "the -compare binary's name in the markdown (e.g. \"crishim 831507b (gRPC passthrough)\")")
	compareEnv := flag.String("compare-env", "", "extra environment for the -compare crishim only, comma-separated")
	only := flag.String("only", "", "run only the scenarios whose name matches this regular expression")
	paths := flag.String("paths", strings.Join(allPaths, ","), "the paths to measure, comma-separated (direct is required: every ratio is to it)")
	flag.Parse()

	var err error
	switch *role {
	case roleUpstream:
		err = runUpstream(*socket, c.containers, c.pullLatency)
	case roleFloor:
		err = runFloor(*socket, *upstream)
	case roleSplice:
		err = runSplice(*socket, *upstream)
	case "":
		c.concs = []int{16, 64}
		c.raw = *client == "raw"
		c.proxyEnv, c.compareEnv = splitEnv(*proxyEnv), splitEnv(*compareEnv)
		if c.paths, err = parsePaths(*paths); err == nil {
			if c.only, err = regexp.Compile(*only); err == nil {
				err = run(&c)
			}
		}
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// target is one path to the upstream: direct, through the splice, the floor
// forwarder or a crishim.
type target struct {
	name   string // the path, as in allPaths
	socket string
	proxy  *benchproc.Proc // nil for direct
	cc     *grpc.ClientConn
}

type scenario struct {
	name, unit  string
	op          op
	cancellable bool // a stream: cut at the deadline
	minIters    int
	timeout     time.Duration
	duration    time.Duration
	targets     []*target
	upstream    *benchproc.Proc // the fake, for CPU accounting (nil: not ours)
	direct      *grpc.ClientConn
	countMethod string // upstream calls of this method are counted per call
	tiny        bool   // a tiny unary call: the added-latency targets apply
	list        bool   // the ListContainers 10k target applies
}

// Row is the result of one scenario on one path.
type Row struct {
	Scenario string `json:"scenario"`
	Path     string `json:"path"`
	// Label is the path's name in the markdown: the path, or
	// -compare-label for the -compare binary.
	Label string `json:"label"`
	Unit  string `json:"unit"`
	// Latency is at concurrency 1 (its fields are Row's in JSON).
	benchproc.Latency
	Rate map[int]float64    `json:"throughput_per_s"`
	CPU  map[string]float64 `json:"cpu_us_per_unit_at_max_concurrency"`
	// UpstreamPerCall is upstream calls per client call (pull scenarios).
	UpstreamPerCall float64 `json:"upstream_calls_per_call,omitempty"`
	// VsDirect is the row's figures over direct's in the same scenario and
	// run (setRatios): across runs the baseline itself moves too much.
	VsDirect *Ratios `json:"vs_direct,omitempty"`
}

// Ratios are a row's figures divided by direct's (latency quantiles at
// concurrency 1, throughput by concurrency); 0 where direct's is 0.
type Ratios struct {
	P50  float64         `json:"p50"`
	P90  float64         `json:"p90"`
	P99  float64         `json:"p99"`
	Rate map[int]float64 `json:"throughput"`
}

// Report is everything the run measured.
type Report struct {
	Machine  benchproc.Machine  `json:"machine"`
	Settings map[string]string  `json:"settings"`
	Rows     []*Row             `json:"rows"`
	Memory   map[string]Memory  `json:"memory"`
	CPUTotal map[string]float64 `json:"cpu_seconds_total"`
	Targets  []Target           `json:"targets"`
	// Labels are the markdown's names of the paths run, by path (see
	// config.label).
	Labels  map[string]string `json:"labels"`
	Skipped []string          `json:"skipped,omitempty"`
	benchproc.Timing
}

// label is a path's name in the markdown.
func (rep *Report) label(path string) string {
	if l := rep.Labels[path]; l != "" {
		return l
	}
	return path
}

// Memory is a proxy's resident memory in MiB, by path in Report.Memory.
type Memory struct {
	Idle    float64 `json:"rss_idle_mib"`
	Streams float64 `json:"rss_with_streams_mib"`
	Peak    float64 `json:"rss_peak_mib"`
}

// Target is one of issue 15's targets and whether this run met it.
type Target struct {
	Name string `json:"name"`
	// Path is the path the target is judged on: crishim.
	Path string `json:"path"`
	// Got is Path's figure; empty when Path was not run (-paths).
	Got string `json:"got"`
	// Pass says whether Got meets the target; false when Path was not run.
	Pass bool `json:"pass"`
	// Verdict is Pass in words: PASS, FAIL, or "not run".
	Verdict string `json:"verdict"`
	// Floor is the splice's figure where it is the target's physical
	// floor (the Version p50 ratio): one more hop and no protocol work,
	// which no forwarder can beat.
	Floor string `json:"floor,omitempty"`
	// Others are the same figure on the other paths of the run, for
	// reference: how far the target is from the floor.
	Others map[string]string `json:"others,omitempty"`
}

func run(c *config) error {
	rep := &Report{
		Timing:  benchproc.StartTiming(),
		Machine: benchproc.ThisMachine(),
		Settings: map[string]string{
			"duration": c.duration.String(), "rounds": fmt.Sprint(c.rounds), "client": map[bool]string{true: "raw", false: "typed"}[c.raw],
			"containers": fmt.Sprint(c.containers), "events": fmt.Sprint(c.events), "streams": fmt.Sprint(c.streams),
			"pull_latency": c.pullLatency.String(), "bed_duration": c.bedDuration.String(),
			"paths": strings.Join(c.paths, ","),
		},
		Memory:   map[string]Memory{},
		CPUTotal: map[string]float64{},
		Labels:   map[string]string{},
	}
	for _, p := range c.paths {
		rep.Labels[p] = c.label(p)
	}
	dir, err := os.MkdirTemp("", "cb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if c.crishim == "" {
		c.crishim = filepath.Join(dir, "crishim")
		if err := benchproc.Build("./cmd/crishim", c.crishim); err != nil {
			return err
		}
	}
	if c.crishim, err = filepath.Abs(c.crishim); err != nil {
		return err
	}
	if c.compare != "" {
		if c.compare, err = filepath.Abs(c.compare); err != nil {
			return err
		}
		rep.Settings["compare"], rep.Labels[pathCompare] = c.compare, c.label(pathCompare)
	}
	if c.pprofDir != "" {
		if err := os.MkdirAll(c.pprofDir, 0o755); err != nil {
			return err
		}
	}
	if err := runFake(c, dir, rep); err != nil {
		return err
	}
	if err := runBed(c, dir, rep); err != nil {
		if !errors.Is(err, errSkip) {
			return fmt.Errorf("bed: %w", err)
		}
		rep.Skipped = append(rep.Skipped, "real test bed: "+strings.TrimSuffix(err.Error(), ": "+errSkip.Error()))
	}
	rep.Machine.LoadAfter = benchproc.LoadAvg()
	rep.Timing.End()
	setRatios(rep.Rows)
	rep.Targets = evaluate(rep)
	return benchproc.WriteReport(markdown(rep), rep, c.mdOut, c.jsonOut)
}

func splitEnv(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// runFake runs the fake-upstream scenarios: the fake, the splice and the
// floor as child processes of this binary, crishim as the built binary and
// -compare's binary as given.
func runFake(c *config, dir string, rep *Report) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	upSock := filepath.Join(dir, "up.sock")
	up, err := benchproc.Start("upstream", filepath.Join(dir, "upstream.log"), nil, self, "-role", roleUpstream, "-socket", upSock,
		"-containers", fmt.Sprint(c.containers), "-pull-latency", c.pullLatency.String())
	if err != nil {
		return err
	}
	defer up.Stop()
	if err := up.WaitSocket(upSock); err != nil {
		return err
	}
	upEndpoint := "unix://" + upSock
	cfg := benchproc.CrishimConfig{RuntimeEndpoint: upEndpoint, Pprof: c.pprofDir != ""}
	tb := &testbed{c: c, dir: dir, upSock: upSock}
	defer tb.stop()
	paths := c.paths
	if c.compare != "" {
		paths = append(slices.Clone(paths), pathCompare)
	}
	for _, p := range paths {
		pc := cfg
		if p == pathCompare {
			pc.Pprof = false // profiles are taken of the crishims under test only
		}
		if _, err := tb.start(p, pc); err != nil {
			return err
		}
	}
	all := tb.targets
	direct := all[0] // parsePaths puts it first
	proxies := all[1:]
	// Idle: started, connected upstream (readyz asked Version), no load.
	time.Sleep(time.Second)
	idle := map[string]int64{}
	for _, t := range proxies {
		idle[t.name], _, _ = memStatus(t.proxy.Pid())
	}

	// Resident memory with many open watch streams, before any other load
	// has grown the heap; the peak is read at the end.
	for _, t := range proxies {
		rss, err := holdStreams(t, c.streams)
		if err != nil {
			return fmt.Errorf("%d streams through %s: %w", c.streams, t.name, err)
		}
		rep.Memory[t.name] = Memory{Idle: mib(idle[t.name]), Streams: mib(rss)}
	}

	raw := c.raw
	version := unaryOp(runtimeapi.RuntimeService_Version_FullMethodName,
		func(int, int) proto.Message { return &runtimeapi.VersionRequest{Version: "v1"} },
		func() proto.Message { return new(runtimeapi.VersionResponse) }, raw)
	cstatus := unaryOp(runtimeapi.RuntimeService_ContainerStatus_FullMethodName,
		func(int, int) proto.Message { return &runtimeapi.ContainerStatusRequest{ContainerId: hexID(3)} },
		func() proto.Message { return new(runtimeapi.ContainerStatusResponse) }, raw)
	list := unaryOp(runtimeapi.RuntimeService_ListContainers_FullMethodName,
		func(int, int) proto.Message { return &runtimeapi.ListContainersRequest{} },
		func() proto.Message { return new(runtimeapi.ListContainersResponse) }, raw)
	events := streamOp(runtimeapi.RuntimeService_GetContainerEvents_FullMethodName, &runtimeapi.GetEventsRequest{},
		metadata.Pairs(mdEvents, fmt.Sprint(c.events)), func() proto.Message { return new(runtimeapi.ContainerEventResponse) }, raw)
	pull := unaryOp(runtimeapi.ImageService_PullImage_FullMethodName,
		func(w, i int) proto.Message {
			return &runtimeapi.PullImageRequest{
				Image:         &runtimeapi.ImageSpec{Image: fmt.Sprintf("registry.example/team/app-%d:1.0", (w+i)%8)},
				SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "team-a", Uid: "u"}},
			}
		},
		func() proto.Message { return new(runtimeapi.PullImageResponse) }, raw)

	base := scenario{targets: all, upstream: up, direct: direct.cc, timeout: time.Minute, duration: c.duration, unit: "calls"}
	scenarios := []scenario{
		with(base, func(s *scenario) { s.name, s.op, s.tiny = "Version", version, true }),
		with(base, func(s *scenario) { s.name, s.op, s.tiny = "ContainerStatus", cstatus, true }),
		with(base, func(s *scenario) {
			s.name, s.op, s.list, s.minIters = fmt.Sprintf("ListContainers %s", count(c.containers)), list, true, 20
		}),
		with(base, func(s *scenario) {
			s.name, s.op, s.unit, s.cancellable, s.minIters = fmt.Sprintf("GetContainerEvents %s", count(c.events)), events, "events", true, 3
		}),
	}
	for _, sc := range scenarios {
		if !c.only.MatchString(sc.name) {
			continue
		}
		rows, err := measure(c, &sc)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		rep.Rows = append(rep.Rows, rows...)
		if err := profileAll(c, &sc); err != nil {
			return err
		}
	}

	// PullImage through the scheduler: the crishims (-compare's too) per
	// de-duplication setting, the other paths as above (the splice and the
	// floor have no scheduler: they show what the upstream alone does).
	var l4 []*target
	for _, t := range all {
		if !isCrishim(t.name) {
			l4 = append(l4, t)
		}
	}
	for _, dedup := range []bool{false, true} {
		name := fmt.Sprintf("PullImage, parallel(8), dedup %s", map[bool]string{true: "on", false: "off"}[dedup])
		if !c.only.MatchString(name) {
			continue
		}
		if err := measurePulls(c, dir, rep, upSock, cfg, paths, dedup, with(base, func(s *scenario) {
			s.name, s.op, s.countMethod, s.targets = name, pull, runtimeapi.ImageService_PullImage_FullMethodName, l4
		})); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	for _, t := range proxies {
		_, hwm, _ := memStatus(t.proxy.Pid())
		m := rep.Memory[t.name]
		m.Peak = mib(hwm)
		rep.Memory[t.name] = m
		rep.CPUTotal[t.name] = cpuTime(t.proxy.Pid()).Seconds()
	}
	rep.CPUTotal["upstream"] = cpuTime(up.Pid()).Seconds()
	return nil
}

// measurePulls measures a PullImage scenario whose targets so far are the
// paths without a pull scheduler: it starts the crishims among paths with
// the scheduler configured (de-duplication dedup), adds them, and stops
// them after.
func measurePulls(c *config, dir string, rep *Report, upSock string, cfg benchproc.CrishimConfig, paths []string, dedup bool, sc scenario) error {
	cfg.Pulls = fmt.Sprintf("{mode: parallel, maxParallel: 8, deduplicate: %t}", dedup)
	tb := &testbed{c: c, dir: dir, prefix: fmt.Sprintf("pulls-%t-", dedup), upSock: upSock}
	defer tb.stop()
	for _, p := range paths {
		if isCrishim(p) {
			pc := cfg
			if p == pathCompare {
				pc.Pprof = false
			}
			if _, err := tb.start(p, pc); err != nil {
				return err
			}
		}
	}
	sc.targets = append(slices.Clone(sc.targets), tb.targets...)
	rows, err := measure(c, &sc)
	if err != nil {
		return err
	}
	rep.Rows = append(rep.Rows, rows...)
	return profileAll(c, &sc)
}

// profileAll profiles crishim (not -compare's) while it carries sc, when
// -pprof asks for it.
func profileAll(c *config, sc *scenario) error {
	if c.pprofDir == "" {
		return nil
	}
	for _, t := range sc.targets {
		if t.name == pathCrishim {
			if err := profile(c, sc, t); err != nil {
				return fmt.Errorf("%s: profile %s: %w", sc.name, t.name, err)
			}
		}
	}
	return nil
}

func with(s scenario, f func(*scenario)) scenario { f(&s); return s }

func count(n int) string {
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// measure runs a scenario on every path: a warm-up, then latency at
// concurrency 1 and throughput at each concurrency, each phase in rounds in
// which the paths take turns in rotating order.
func measure(c *config, sc *scenario) ([]*Row, error) {
	fmt.Fprintf(os.Stderr, "%s: %s ...\n", time.Now().Format("15:04:05"), sc.name)
	for _, t := range sc.targets {
		if _, err := throughput(t.cc, sc.op, 16, min(sc.duration/4, 500*time.Millisecond), sc.cancellable, sc.timeout); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w", t.name, err)
		}
	}
	per := sc.duration / time.Duration(c.rounds)
	minPer := (sc.minIters + c.rounds - 1) / c.rounds
	lat := map[string]*sample{}
	rate := map[int]map[string]*sample{}
	upCalls := map[string][2]int64{} // upstream calls, client units (at max concurrency)
	for _, t := range sc.targets {
		lat[t.name] = &sample{}
	}
	phases := append([]int{1}, c.concs...)
	for _, conc := range phases {
		if conc > 1 {
			rate[conc] = map[string]*sample{}
			for _, t := range sc.targets {
				rate[conc][t.name] = &sample{}
			}
		}
		for r := 0; r < c.rounds; r++ {
			for k := range sc.targets {
				t := sc.targets[(k+r)%len(sc.targets)]
				meter := cpuMeter{"client": 0}
				if sc.upstream != nil {
					meter["upstream"] = sc.upstream.Pid()
				}
				if t.proxy != nil {
					meter["proxy"] = t.proxy.Pid()
				}
				before, upBefore := meter.read(), upstreamCalls(sc)
				var s sample
				var err error
				if conc == 1 {
					s, err = latency(t.cc, sc.op, per, minPer, sc.timeout)
				} else {
					s, err = throughput(t.cc, sc.op, conc, per, sc.cancellable, sc.timeout)
				}
				if err != nil {
					return nil, fmt.Errorf("%s at concurrency %d: %w", t.name, conc, err)
				}
				s.cpu = since(before, meter.read())
				if conc == 1 {
					lat[t.name].add(s)
				} else {
					rate[conc][t.name].add(s)
				}
				if conc == phases[len(phases)-1] && sc.countMethod != "" {
					u := upCalls[t.name]
					upCalls[t.name] = [2]int64{u[0] + upstreamCalls(sc) - upBefore, u[1] + int64(s.units)}
				}
			}
		}
	}
	var rows []*Row
	maxConc := phases[len(phases)-1]
	for _, t := range sc.targets {
		l := lat[t.name]
		row := &Row{
			Scenario: sc.name, Path: t.name, Label: c.label(t.name), Unit: sc.unit, Latency: benchproc.LatencyOf(l.lat),
			Rate: map[int]float64{}, CPU: map[string]float64{},
		}
		for _, conc := range c.concs {
			row.Rate[conc] = rate[conc][t.name].rate()
		}
		top := rate[maxConc][t.name]
		if maxConc == 1 {
			top = l
		}
		for _, p := range []string{"client", "upstream", "proxy"} {
			if _, ok := top.cpu[p]; ok {
				row.CPU[p] = benchproc.Microseconds(top.cpuPerUnit(p))
			}
		}
		if u := upCalls[t.name]; u[1] > 0 {
			row.UpstreamPerCall = float64(u[0]) / float64(u[1])
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// upstreamCalls asks the fake how often it was called with the scenario's
// counted method.
func upstreamCalls(sc *scenario) int64 {
	if sc.countMethod == "" {
		return 0
	}
	out := new(rawMsg)
	if err := sc.direct.Invoke(context.Background(), countsMethod, canned(nil), out); err != nil {
		return 0
	}
	var counts map[string]int64
	_ = json.Unmarshal(out.data.Materialize(), &counts)
	out.data.Free()
	return counts[sc.countMethod]
}

// holdStreams opens n GetContainerEvents streams through t that the fake
// holds open, and returns t's resident memory while they are open.
func holdStreams(t *target, n int) (int64, error) {
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(context.Background(), metadata.Pairs(mdHold, "1")))
	defer cancel()
	errs := make(chan error, n)
	for range n {
		go func() {
			cs, err := t.cc.NewStream(ctx, serverStream, runtimeapi.RuntimeService_GetContainerEvents_FullMethodName)
			if err == nil {
				if err = cs.SendMsg(&runtimeapi.GetEventsRequest{}); err == nil {
					_, err = cs.Header()
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	time.Sleep(500 * time.Millisecond)
	rss, _, err := memStatus(t.proxy.Pid())
	return rss, err
}

// profile captures CPU profiles of a crishim while it carries the scenario
// at concurrency 1 and at the highest concurrency.
func profile(c *config, sc *scenario, t *target) error {
	const secs = 5
	for _, conc := range []int{1, c.concs[len(c.concs)-1]} {
		name := strings.NewReplacer(" ", "_", ",", "", "(", "", ")", "").Replace(sc.name)
		path := filepath.Join(c.pprofDir, fmt.Sprintf("%s-%s-c%d.pprof", name, t.name, conc))
		done := make(chan error, 1)
		go func() {
			done <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.proxy.Metrics, secs), path)
		}()
		if _, err := throughput(t.cc, sc.op, conc, time.Duration(secs)*time.Second+500*time.Millisecond, sc.cancellable, sc.timeout); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "profile: %s\n", path)
		if conc == 1 {
			// Allocations since crishim started, by call site.
			path = strings.TrimSuffix(path, ".pprof") + "-allocs.pprof"
			if err := fetch(fmt.Sprintf("http://%s/debug/pprof/allocs", t.proxy.Metrics), path); err != nil {
				return err
			}
		}
	}
	return nil
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
