package main

import (
	"strings"
	"testing"

	"github.com/crishim/crishim/test/bench/benchproc"
)

func TestEvaluate(t *testing.T) {
	rows := []*Row{
		{Scenario: "Version", Path: "direct", Latency: benchproc.Latency{P50: 100, P99: 200}, Rate: map[int]float64{16: 1000, 64: 1000}},
		{Scenario: "Version", Path: "floor", Latency: benchproc.Latency{P50: 300, P99: 600}, Rate: map[int]float64{16: 500, 64: 500}},
		{Scenario: "Version", Path: "crishim", Latency: benchproc.Latency{P50: 190, P99: 700}, Rate: map[int]float64{16: 950, 64: 950}},
	}
	rep := &Report{Rows: rows, Settings: map[string]string{"streams": "1000"},
		Memory: map[string]Memory{"crishim": {Idle: 15, Streams: 90}}}
	rep.Targets = evaluate(rep)
	got := map[string]bool{}
	for _, tg := range rep.Targets {
		got[tg.Name] = tg.Pass
	}
	want := map[string]bool{
		"Version: added p50 no worse than the floor forwarder's": true,
		"Version: added p99 no worse than the floor forwarder's": false,
		"Version: p50 added <= 1x direct p50 (proxied <= 2x)":    true,
		"Version: throughput at 64 >= 0.9x direct":               true,
		"RSS idle <= 20 MiB":                   true,
		"RSS with 1000 open streams <= 80 MiB": false,
	}
	for name, pass := range want {
		if p, ok := got[name]; !ok || p != pass {
			t.Errorf("target %q: pass = %v (present %v), want %v", name, p, ok, pass)
		}
	}
	md := markdown(rep)
	for _, s := range []string{"| Version | direct |", "PASS Version: p50 added", "MISS RSS with 1000 open streams"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
}
