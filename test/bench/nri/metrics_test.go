package main

import (
	"maps"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(`# HELP crishim_nri_plugins_registered Connections.
# TYPE crishim_nri_plugins_registered gauge
crishim_nri_plugins_registered{plugin="10-bench-a"} 1
crishim_nri_plugins_registered{plugin="bench-b"} 2
crishim_nri_plugins_registered{plugin="bench-c"} 0
crishim_nri_plugin_events_total{event="CreateContainer",plugin="10-bench-a",result="ok"} 330
crishim_nri_plugin_events_total{event="CreateContainer",plugin="10-bench-a",result="timeout"} 2
crishim_nri_plugin_events_total{event="RunPodSandbox",plugin="bench-a",result="ok"} 1e+03
crishim_upstream_up{endpoint="unix:///x \"y\"",upstream="runtime"} 1
go_goroutines 12
`)
	if err != nil {
		t.Fatal(err)
	}
	// The index prefix is ignored: both labelling conventions match.
	if got, want := m.registered(), map[string]float64{"bench-a": 1, "bench-b": 2}; !maps.Equal(got, want) {
		t.Errorf("registered = %v, want %v", got, want)
	}
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"plugin": "bench-a"}, 1332},
		{map[string]string{"plugin": "bench-a", "result": "ok"}, 1330},
		{map[string]string{"plugin": "bench-a", "event": "CreateContainer", "result": "ok"}, 330},
		{map[string]string{"plugin": "bench-b"}, 0},
	} {
		if got := m.sum(metricEvents, c.labels); got != c.want {
			t.Errorf("sum(%v) = %g, want %g", c.labels, got, c.want)
		}
	}
	if m.sum("crishim_upstream_up", map[string]string{"endpoint": `unix:///x "y"`}) != 1 {
		t.Error("escaped label value not parsed")
	}
	if !m.has("go_goroutines") || m.has("crishim_nri_missing") {
		t.Error("has is wrong")
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, line := range []string{`x{a="b"`, `x{a="b} 1`, `x{a} 1`, `x`, `x 1 2 3`, `x abc`} {
		if _, err := parseMetrics(line); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}
