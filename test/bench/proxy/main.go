// Command proxy measures what crishim's extra hop costs: the same workload,
// in one run, directly against an upstream runtime, through a minimal raw
// forwarder (the floor reference) and through crishim (the real binary, with
// its default interceptors: logging at info, metrics), alternating the three.
//
// The upstream is a fake runtime in its own process answering from prebuilt
// bytes (Version, ContainerStatus, ListContainers with 10,000 containers,
// GetContainerEvents streaming 100,000 events, PullImage through crishim's
// pull scheduler with de-duplication off and on) and, when present, the real
// test bed's containerd (a RunPodSandbox + StopPodSandbox + RemovePodSandbox
// cycle, ListContainers, ImageStatus).
//
//	make build && go run ./test/bench/proxy -crishim bin/crishim [-duration 2s] [-rounds 4] \
//	    [-bed auto|on|off] [-json out.json] [-md out.md] [-pprof DIR]
//
// It prints a table (latency p50/p90/p99 at concurrency 1, throughput at 16
// and 64, ratios to direct, crishim's CPU per call, RSS idle and with 1,000
// open streams) and a PASS/MISS line per target. Misses do not fail it.
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
	proxyEnv    []string
	compare     string
	compareEnv  []string
}

func main() {
	role := flag.String("role", "", "internal: run as the fake upstream or the floor forwarder")
	socket := flag.String("socket", "", "internal: socket to serve on")
	upstream := flag.String("upstream", "", "internal: upstream socket (floor)")
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
	flag.StringVar(&c.compare, "compare", "", "a second crishim binary, measured as path crishim-b in the fake scenarios (A/B of a change)")
	compareEnv := flag.String("compare-env", "", "extra environment for the -compare crishim only, comma-separated")
	only := flag.String("only", "", "run only the scenarios whose name matches this regular expression")
	flag.Parse()

	var err error
	switch *role {
	case roleUpstream:
		err = runUpstream(*socket, c.containers, c.pullLatency)
	case roleFloor:
		err = runFloor(*socket, *upstream)
	case "":
		c.concs = []int{16, 64}
		c.raw = *client == "raw"
		c.proxyEnv, c.compareEnv = splitEnv(*proxyEnv), splitEnv(*compareEnv)
		if c.only, err = regexp.Compile(*only); err == nil {
			err = run(&c)
		}
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// target is one path to the upstream: direct, through the floor forwarder or
// through crishim.
type target struct {
	name   string
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
	Unit     string `json:"unit"`
	// Latency is at concurrency 1 (its fields are Row's in JSON).
	benchproc.Latency
	Rate map[int]float64    `json:"throughput_per_s"`
	CPU  map[string]float64 `json:"cpu_us_per_unit_at_max_concurrency"`
	// UpstreamPerCall is upstream calls per client call (pull scenarios).
	UpstreamPerCall float64 `json:"upstream_calls_per_call,omitempty"`
}

// Report is everything the run measured.
type Report struct {
	Machine  benchproc.Machine  `json:"machine"`
	Settings map[string]string  `json:"settings"`
	Rows     []*Row             `json:"rows"`
	Memory   map[string]Memory  `json:"memory"`
	CPUTotal map[string]float64 `json:"cpu_seconds_total"`
	Targets  []Target           `json:"targets"`
	Skipped  []string           `json:"skipped,omitempty"`
	benchproc.Timing
}

// Memory is a proxy's resident memory in MiB.
type Memory struct {
	Idle    float64 `json:"rss_idle_mib"`
	Streams float64 `json:"rss_with_streams_mib"`
	Peak    float64 `json:"rss_peak_mib"`
}

// Target is one of the targets and whether this run met it.
type Target struct {
	Name string `json:"name"`
	Got  string `json:"got"`
	Pass bool   `json:"pass"`
}

func run(c *config) error {
	rep := &Report{
		Timing:  benchproc.StartTiming(),
		Machine: benchproc.ThisMachine(),
		Settings: map[string]string{
			"duration": c.duration.String(), "rounds": fmt.Sprint(c.rounds), "client": map[bool]string{true: "raw", false: "typed"}[c.raw],
			"containers": fmt.Sprint(c.containers), "events": fmt.Sprint(c.events), "streams": fmt.Sprint(c.streams),
			"pull_latency": c.pullLatency.String(), "bed_duration": c.bedDuration.String(),
		},
		Memory:   map[string]Memory{},
		CPUTotal: map[string]float64{},
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
	rep.Targets = evaluate(rep)
	return benchproc.WriteReport(markdown(rep), rep, c.mdOut, c.jsonOut)
}

func splitEnv(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// runFake runs the fake-upstream scenarios: the fake and the floor as child
// processes of this binary, crishim as the built binary.
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
	floorSock := filepath.Join(dir, "floor.sock")
	floor, err := benchproc.Start("floor", filepath.Join(dir, "floor.log"), c.proxyEnv, self, "-role", roleFloor, "-socket", floorSock, "-upstream", upSock)
	if err != nil {
		return err
	}
	defer floor.Stop()
	if err := floor.WaitSocket(floorSock); err != nil {
		return err
	}
	upEndpoint := "unix://" + upSock
	cri, criSock, err := benchproc.StartCrishim(c.crishim, dir, "crishim", c.proxyEnv,
		benchproc.CrishimConfig{RuntimeEndpoint: upEndpoint, Pprof: c.pprofDir != ""})
	if err != nil {
		return err
	}
	defer cri.Stop()
	var criB *benchproc.Proc
	var criBSock string
	if c.compare != "" {
		if criB, criBSock, err = benchproc.StartCrishim(c.compare, dir, "crishim-b", append(c.proxyEnv, c.compareEnv...),
			benchproc.CrishimConfig{RuntimeEndpoint: upEndpoint}); err != nil {
			return err
		}
		defer criB.Stop()
	}

	direct := &target{name: "direct", socket: upSock}
	floorT := &target{name: "floor", socket: floorSock, proxy: floor}
	criT := &target{name: "crishim", socket: criSock, proxy: cri}
	three := []*target{direct, floorT, criT}
	if criB != nil {
		three = append(three, &target{name: "crishim-b", socket: criBSock, proxy: criB})
	}
	for _, t := range three {
		if t.cc, err = dial(t.socket); err != nil {
			return err
		}
		defer t.cc.Close()
	}
	// Idle: started, connected upstream (readyz asked Version), no load.
	time.Sleep(time.Second)
	idle := map[string]int64{}
	for _, t := range three[1:] {
		idle[t.name], _, _ = memStatus(t.proxy.Pid())
	}

	// Resident memory with many open watch streams, before any other load
	// has grown the heap; the peak is read at the end.
	for _, t := range three[1:] {
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

	base := scenario{targets: three, upstream: up, direct: direct.cc, timeout: time.Minute, duration: c.duration, unit: "calls"}
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
		if c.pprofDir != "" {
			if err := profile(c, &sc, criT); err != nil {
				return fmt.Errorf("%s: profile: %w", sc.name, err)
			}
		}
	}

	// PullImage through the scheduler: one crishim per de-duplication setting.
	for _, dedup := range []bool{false, true} {
		name := fmt.Sprintf("PullImage, parallel(8), dedup %s", map[bool]string{true: "on", false: "off"}[dedup])
		if !c.only.MatchString(name) {
			continue
		}
		pc, pSock, err := benchproc.StartCrishim(c.crishim, dir, fmt.Sprintf("crishim-pulls-%t", dedup), c.proxyEnv, benchproc.CrishimConfig{
			RuntimeEndpoint: upEndpoint, Pprof: c.pprofDir != "",
			Pulls: fmt.Sprintf("{mode: parallel, maxParallel: 8, deduplicate: %t}", dedup),
		})
		if err != nil {
			return err
		}
		pt := &target{name: "crishim", socket: pSock, proxy: pc}
		if pt.cc, err = dial(pSock); err != nil {
			pc.Stop()
			return err
		}
		sc := with(base, func(s *scenario) {
			s.name, s.op, s.countMethod = name, pull, runtimeapi.ImageService_PullImage_FullMethodName
			s.targets = []*target{direct, floorT, pt}
		})
		rows, err := measure(c, &sc)
		if err == nil && c.pprofDir != "" {
			err = profile(c, &sc, pt)
		}
		pt.cc.Close()
		pc.Stop()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rep.Rows = append(rep.Rows, rows...)
	}

	for _, t := range three[1:] {
		_, hwm, _ := memStatus(t.proxy.Pid())
		m := rep.Memory[t.name]
		m.Peak = mib(hwm)
		rep.Memory[t.name] = m
		rep.CPUTotal[t.name] = cpuTime(t.proxy.Pid()).Seconds()
	}
	rep.CPUTotal["upstream"] = cpuTime(up.Pid()).Seconds()
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
			Scenario: sc.name, Path: t.name, Unit: sc.unit, Latency: benchproc.LatencyOf(l.lat),
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

// profile captures CPU profiles of crishim while it carries the scenario at
// concurrency 1 and at the highest concurrency.
func profile(c *config, sc *scenario, t *target) error {
	const secs = 5
	for _, conc := range []int{1, c.concs[len(c.concs)-1]} {
		name := strings.NewReplacer(" ", "_", ",", "", "(", "", ")", "").Replace(sc.name)
		path := filepath.Join(c.pprofDir, fmt.Sprintf("%s-c%d.pprof", name, conc))
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
