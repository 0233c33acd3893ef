package main

import (
	"strings"
	"testing"

	"github.com/crishim/crishim/test/bench/benchproc"
)

// row is a measured row for the tests: p50 and p99 in µs, the same
// throughput at 16 and 64, and the proxy's CPU per call at 64 (0: none, as
// for direct).
func row(sc, path string, p50, p99, rate, cpu float64) *Row {
	r := &Row{Scenario: sc, Path: path, Latency: benchproc.Latency{P50: p50, P99: p99}, Rate: map[int]float64{16: rate, 64: rate}, CPU: map[string]float64{}}
	if cpu > 0 {
		r.CPU["proxy"] = cpu
	}
	return r
}

// pathRows are a scenario's rows on every path: direct at p50 100 µs and
// 1000/s, crishim and the splice as given (p50 and throughput as a ratio to
// direct's, CPU), the floor and the -compare binary at fixed reference
// figures.
func pathRows(sc string, spliceX, p50X, rateX, cpu float64) []*Row {
	return []*Row{
		row(sc, pathDirect, 100, 200, 1000, 0),
		row(sc, pathSplice, 100*spliceX, 300, 1000/spliceX, 2),
		row(sc, pathFloor, 300, 600, 500, 40),
		row(sc, pathCrishim, 100*p50X, 400, 1000*rateX, cpu),
		row(sc, pathCompare, 250, 700, 400, 33),
	}
}

// allScenarios are the fake scenarios with crishim at the given figures:
// throughput tinyX of direct's for the tiny calls, bulkX for
// ListContainers and GetContainerEvents.
func allScenarios(p50X, tinyX, bulkX, cpu float64) []*Row {
	var rows []*Row
	for _, sc := range []string{"Version", "ContainerStatus"} {
		rows = append(rows, pathRows(sc, 1.4, p50X, tinyX, cpu)...)
	}
	for _, sc := range []string{"ListContainers 10k", "GetContainerEvents 100k"} {
		rows = append(rows, pathRows(sc, 1.1, 1.1, bulkX, cpu)...)
	}
	return rows
}

func memory(idle, streams float64) map[string]Memory {
	return map[string]Memory{
		pathSplice: {Idle: 12, Streams: 12}, pathFloor: {Idle: 14, Streams: 30},
		pathCrishim: {Idle: idle, Streams: streams}, pathCompare: {Idle: 23, Streams: 45},
	}
}

// targetNames are the names of issue 15's targets on allScenarios.
var targetNames = []string{
	"Version: p50 <= 1.6x direct",
	"Version: throughput at 64 >= 0.75x direct",
	"ContainerStatus: throughput at 64 >= 0.75x direct",
	"Version: forwarder CPU per call at 64 <= 12 µs",
	"ContainerStatus: forwarder CPU per call at 64 <= 12 µs",
	"ListContainers 10k: throughput at 64 >= 0.9x direct",
	"GetContainerEvents 100k: events/s at 64 >= 0.9x direct",
	"RSS idle <= 20 MiB",
	"RSS with 1000 open GetContainerEvents streams <= 80 MiB",
}

// verdicts maps every name of names to v.
func verdicts(v string, names ...string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		out[n] = v
	}
	return out
}

const compareLabel = "crishim 831507b (gRPC passthrough)"

// gone is what the report had before crishim had one passthrough: none of it
// may show.
var gone = []string{"crishim (grpc)", "crishim (frames)", "crishim-frames", "MISS", "Targets of this benchmark", "listen.passthrough"}

func TestEvaluate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rows   []*Row
		memory map[string]Memory
		// compare is -compare's binary (empty: none, no crishim-b rows
		// expected in the markdown).
		compare string
		// want are the verdicts by target name; a target not listed must
		// be absent.
		want map[string]string
		// floor is the Version p50 target's physical floor (the splice's
		// ratio), "" when there is no such target or no splice.
		floor string
		// md must be in the markdown, notMD must not.
		md, notMD []string
	}{{
		name: "within every target", rows: allScenarios(1.5, 0.8, 0.95, 5), memory: memory(14, 15), compare: "/var/tmp/crishim-old",
		want: verdicts("PASS", targetNames...), floor: "1.40x",
		md: []string{
			"**crishim**, the built binary, logging at info, metrics on: HTTP/2 frame passthrough.",
			"With -compare, **" + compareLabel + "** (path crishim-b), the binary /var/tmp/crishim-old",
			"| Version | direct |", "|  | splice | 140 µs |", "|  | floor | 300 µs |", "|  | crishim | 150 µs |", "|  | " + compareLabel + " | 250 µs |",
			"Targets of issue 15, judged on crishim (PASS/FAIL); splice, floor, " + compareLabel + " for reference",
			"| target | crishim | verdict | splice | floor | " + compareLabel + " |",
			"| Version: p50 <= 1.6x direct (physical floor: splice 1.40x) | 1.50x (150 µs) | PASS | 1.40x (140 µs) | 3.00x (300 µs) | 2.50x (250 µs) |",
			"| Version: forwarder CPU per call at 64 <= 12 µs | 5.0 µs | PASS | 2.0 µs | 40.0 µs | 33.0 µs |",
			"| RSS idle <= 20 MiB | 14.0 MiB | PASS | 12.0 MiB | 14.0 MiB | 23.0 MiB |",
			"| | splice | floor | crishim | " + compareLabel + " |",
		},
		notMD: append([]string{"FAIL |", "not run", "| crishim-b |"}, gone...),
	}, {
		name: "at every limit, which is met", rows: allScenarios(1.6, 0.75, 0.9, 12), memory: memory(20, 80),
		want: verdicts("PASS", targetNames...), floor: "1.40x",
		md: []string{"| Version: p50 <= 1.6x direct (physical floor: splice 1.40x) | 1.60x (160 µs) | PASS |"},
	}, {
		name: "just beyond every limit", rows: allScenarios(1.61, 0.74, 0.89, 12.1), memory: memory(20.1, 80.1),
		want: verdicts("FAIL", targetNames...), floor: "1.40x",
		md: []string{
			"| Version: throughput at 64 >= 0.75x direct | 0.74x (740/s) | FAIL |",
			"| RSS with 1000 open GetContainerEvents streams <= 80 MiB | 80.1 MiB | FAIL |",
			"| ListContainers 10k: throughput at 64 >= 0.9x direct | 0.89x (890/s) | FAIL |",
		},
		notMD: []string{"PASS |"},
	}, {
		name: "lists below 0.9, tiny calls fine, no memory figures",
		rows: append(append(pathRows("Version", 1.4, 1.5, 0.8, 5), pathRows("ListContainers 10k", 1.1, 1.2, 0.89, 3000)...),
			pathRows("GetContainerEvents 100k", 1.0, 1.0, 0.95, 0.3)...),
		want: map[string]string{
			"Version: p50 <= 1.6x direct":                            "PASS",
			"Version: throughput at 64 >= 0.75x direct":              "PASS",
			"Version: forwarder CPU per call at 64 <= 12 µs":         "PASS",
			"ListContainers 10k: throughput at 64 >= 0.9x direct":    "FAIL",
			"GetContainerEvents 100k: events/s at 64 >= 0.9x direct": "PASS",
		},
		floor: "1.40x",
	}, {
		name: "no CPU figure for crishim fails the CPU target",
		rows: pathRows("ContainerStatus", 1.4, 1.5, 0.8, 0),
		want: map[string]string{
			"ContainerStatus: throughput at 64 >= 0.75x direct":      "PASS",
			"ContainerStatus: forwarder CPU per call at 64 <= 12 µs": "FAIL",
		},
		md: []string{"| ContainerStatus: forwarder CPU per call at 64 <= 12 µs | - | FAIL |"},
	}, {
		name: "-paths direct,splice,floor: no verdicts, reference figures kept",
		rows: []*Row{
			row("Version", pathDirect, 100, 200, 1000, 0),
			row("Version", pathSplice, 140, 300, 800, 2),
			row("Version", pathFloor, 300, 600, 500, 40),
		},
		memory: map[string]Memory{pathSplice: {Idle: 12, Streams: 12}, pathFloor: {Idle: 14, Streams: 30}},
		want: verdicts("not run", "Version: p50 <= 1.6x direct", "Version: throughput at 64 >= 0.75x direct",
			"Version: forwarder CPU per call at 64 <= 12 µs", "RSS idle <= 20 MiB", "RSS with 1000 open GetContainerEvents streams <= 80 MiB"),
		floor: "1.40x",
		md: []string{
			"crishim was not run (-paths): no verdicts.",
			"| target | crishim | verdict | splice | floor |\n",
			"| Version: p50 <= 1.6x direct (physical floor: splice 1.40x) | - | not run | 1.40x (140 µs) | 3.00x (300 µs) |",
		},
		notMD: []string{"PASS |", "FAIL |", "With -compare"},
	}, {
		name: "-paths direct,crishim: no reference columns, no physical floor",
		rows: []*Row{row("Version", pathDirect, 100, 200, 1000, 0), row("Version", pathCrishim, 150, 300, 800, 6)},
		want: map[string]string{
			"Version: p50 <= 1.6x direct":                    "PASS",
			"Version: throughput at 64 >= 0.75x direct":      "PASS",
			"Version: forwarder CPU per call at 64 <= 12 µs": "PASS",
		},
		md:    []string{"judged on crishim (PASS/FAIL); no other proxy for reference", "| target | crishim | verdict |\n|---|---:|---|\n", "| Version: p50 <= 1.6x direct | 1.50x (150 µs) | PASS |\n"},
		notMD: []string{"physical floor:"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &Report{Rows: tc.rows, Settings: map[string]string{"streams": "1000", "paths": "direct,splice,floor,crishim"}, Memory: tc.memory,
				Labels: map[string]string{}}
			for _, p := range allPaths {
				rep.Labels[p] = p
			}
			if tc.compare != "" {
				rep.Settings["compare"], rep.Labels[pathCompare] = tc.compare, compareLabel
			}
			setRatios(rep.Rows)
			rep.Targets = evaluate(rep)
			got := map[string]Target{}
			for _, tg := range rep.Targets {
				if _, dup := got[tg.Name]; dup {
					t.Errorf("target %q twice", tg.Name)
				}
				got[tg.Name] = tg
				if tg.Path != pathCrishim {
					t.Errorf("target %q judged on %q, want crishim", tg.Name, tg.Path)
				}
				if _, ok := tg.Others[pathCrishim]; ok {
					t.Errorf("target %q: crishim among the references", tg.Name)
				}
				wantFloor := ""
				if tg.Name == "Version: p50 <= 1.6x direct" {
					wantFloor = tc.floor
				}
				if tg.Floor != wantFloor {
					t.Errorf("target %q: physical floor %q, want %q", tg.Name, tg.Floor, wantFloor)
				}
			}
			for name, verdict := range tc.want {
				tg, ok := got[name]
				if !ok {
					t.Errorf("target %q missing", name)
					continue
				}
				if tg.Verdict != verdict || tg.Pass != (verdict == verdictPass) {
					t.Errorf("target %q: verdict %q, pass %v (got %q), want %q", name, tg.Verdict, tg.Pass, tg.Got, verdict)
				}
			}
			for name := range got {
				if _, ok := tc.want[name]; !ok {
					t.Errorf("target %q not expected", name)
				}
			}
			md := markdown(rep)
			for _, s := range tc.md {
				if !strings.Contains(md, s) {
					t.Errorf("report lacks %q:\n%s", s, md)
				}
			}
			for _, s := range append(tc.notMD, gone...) {
				if strings.Contains(md, s) {
					t.Errorf("report has %q:\n%s", s, md)
				}
			}
		})
	}
}

func TestSetRatios(t *testing.T) {
	rows := pathRows("Version", 1.4, 1.5, 0.8, 5)
	rows = append(rows, row("Orphan", pathSplice, 1, 1, 1, 1)) // no direct row
	setRatios(rows)
	for _, tc := range []struct {
		path     string
		p50, r64 float64
	}{
		{pathDirect, 1, 1},
		{pathSplice, 1.4, 1 / 1.4},
		{pathFloor, 3, 0.5},
		{pathCrishim, 1.5, 0.8},
		{pathCompare, 2.5, 0.4},
	} {
		var r *Row
		for _, x := range rows {
			if x.Path == tc.path && x.Scenario == "Version" {
				r = x
			}
		}
		if r.VsDirect == nil {
			t.Errorf("%s: no ratios", tc.path)
			continue
		}
		if !near(r.VsDirect.P50, tc.p50) || !near(r.VsDirect.Rate[64], tc.r64) || !near(r.VsDirect.Rate[16], tc.r64) {
			t.Errorf("%s: ratios %+v, want p50 %.3f, throughput %.3f", tc.path, *r.VsDirect, tc.p50, tc.r64)
		}
	}
	if rows[len(rows)-1].VsDirect != nil {
		t.Error("a scenario without direct got ratios")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
