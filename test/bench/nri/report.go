package main

import (
	"fmt"
	"strings"

	"github.com/crishim/crishim/test/bench/benchproc"
)

// Report is what a run measured and how it knew the plugins were involved.
type Report struct {
	// Machine is where the run happened.
	Machine benchproc.Machine `json:"machine"`
	// Settings are the run's parameters.
	Settings Settings `json:"settings"`
	// Rows are the paths, direct first, then crishim without nri.
	Rows []Row `json:"rows"`
	// Checks are the verifications that passed (the run fails otherwise).
	Checks []string `json:"checks"`
	// Timing is when the run began and how long it took.
	benchproc.Timing
}

// Settings are the run's parameters.
type Settings struct {
	// Runtime is the fake, or a real runtime's endpoint and image.
	Runtime string `json:"runtime"`
	// Iterations is the measured iterations per row (-n).
	Iterations int `json:"iterations"`
	// Warmup is the unmeasured iterations per row before them.
	Warmup int `json:"warmup"`
	// Rounds is how many turns the rows took.
	Rounds int `json:"rounds"`
	// Plugins describes the plugins.
	Plugins string `json:"plugins"`
}

// Row is one path to the runtime.
type Row struct {
	// Path is the row's key: direct, no-nri, nri-0, nri-1, nri-3.
	Path string `json:"path"`
	// Label is the row's name in the tables.
	Label string `json:"label"`
	// NRI is whether crishim ran with an nri section.
	NRI bool `json:"nri"`
	// Plugins is the number of plugins connected to the row's crishim.
	Plugins int `json:"plugins"`
	// CreateContainer and RunPodSandbox are the two calls' latencies.
	CreateContainer Stats `json:"create_container"`
	RunPodSandbox   Stats `json:"run_pod_sandbox"`
}

// Stats is the latency of one call on one path, in microseconds.
type Stats struct {
	// Latency is the measured calls' count and p50/p90/p99 (its fields
	// are Stats's in JSON).
	benchproc.Latency
	// AddedP50 is P50 minus the direct row's P50.
	AddedP50 float64 `json:"added_p50_vs_direct_us"`
	// AddedP50NoNRI is P50 minus the P50 of crishim without an nri
	// section: what the plugin hosting alone adds.
	AddedP50NoNRI float64 `json:"added_p50_vs_no_nri_us"`
}

// rows computes the rows; paths[0] is direct and paths[1] crishim without
// an nri section, the two references.
func rows(paths []*path) []Row {
	var out []Row
	for _, p := range paths {
		out = append(out, Row{Path: p.key, Label: p.label, NRI: p.nri, Plugins: len(p.plugins),
			CreateContainer: Stats{Latency: benchproc.LatencyOf(p.create)}, RunPodSandbox: Stats{Latency: benchproc.LatencyOf(p.run)}})
	}
	for i := range out {
		c, r := &out[i].CreateContainer, &out[i].RunPodSandbox
		c.AddedP50, r.AddedP50 = c.P50-out[0].CreateContainer.P50, r.P50-out[0].RunPodSandbox.P50
		c.AddedP50NoNRI, r.AddedP50NoNRI = c.P50-out[1].CreateContainer.P50, r.P50-out[1].RunPodSandbox.P50
	}
	return out
}

func fmtUS(v float64) string {
	switch a := max(v, -v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2f s", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1f ms", v/1e3)
	}
	return fmt.Sprintf("%.0f µs", v)
}

func fmtAdded(v float64) string {
	if v >= 0 {
		return "+" + fmtUS(v)
	}
	return fmtUS(v)
}

func markdown(rep *Report) string {
	var b strings.Builder
	s := rep.Settings
	fmt.Fprintf(&b, "## crishim: the cost of hosting NRI plugins\n\n")
	b.WriteString(rep.Machine.Markdown(rep.Took))
	fmt.Fprintf(&b, "Runtime: %s. Plugins: %s, separate processes.\n", s.Runtime, s.Plugins)
	fmt.Fprintf(&b, "Per row: %d warm-up iterations, then %d measured ones in %d rounds in which the rows take turns (rotating order); "+
		"an iteration is RunPodSandbox then CreateContainer in that pod (timed, sequential, concurrency 1), then RemoveContainer, StopPodSandbox and RemovePodSandbox (not timed). "+
		"Latency as the client sees it; p50/p90/p99 are nearest-rank; added: p50 minus the reference row's p50. crishim: logging at info, metrics on.\n",
		s.Warmup, s.Iterations, s.Rounds)
	for _, call := range []struct {
		name string
		get  func(Row) Stats
	}{
		{"CreateContainer", func(r Row) Stats { return r.CreateContainer }},
		{"RunPodSandbox", func(r Row) Stats { return r.RunPodSandbox }},
	} {
		fmt.Fprintf(&b, "\n### %s\n\n", call.name)
		fmt.Fprintf(&b, "| path | p50 | p90 | p99 | added p50 vs direct | added p50 vs crishim without nri |\n")
		fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|\n")
		for i, r := range rep.Rows {
			st := call.get(r)
			added, addedNoNRI := fmtAdded(st.AddedP50), fmtAdded(st.AddedP50NoNRI)
			if i == 0 {
				added, addedNoNRI = "-", "-"
			}
			if i == 1 {
				addedNoNRI = "-"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Label, fmtUS(st.P50), fmtUS(st.P90), fmtUS(st.P99), added, addedNoNRI)
		}
	}
	fmt.Fprintf(&b, "\nPlugins involved (verified; the run fails otherwise):\n\n")
	for _, c := range rep.Checks {
		fmt.Fprintf(&b, "- %s\n", c)
	}
	return b.String()
}
