package main

import (
	"fmt"
	"strings"
)

// rowsBy indexes rows by scenario and path.
func rowsBy(rows []*Row) (order []string, idx map[string]map[string]*Row) {
	idx = map[string]map[string]*Row{}
	for _, r := range rows {
		if idx[r.Scenario] == nil {
			idx[r.Scenario] = map[string]*Row{}
			order = append(order, r.Scenario)
		}
		idx[r.Scenario][r.Path] = r
	}
	return order, idx
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// evaluate checks the targets against the measured rows.
func evaluate(rep *Report) []Target {
	var out []Target
	add := func(name string, pass bool, format string, args ...any) {
		out = append(out, Target{Name: name, Pass: pass, Got: fmt.Sprintf(format, args...)})
	}
	order, idx := rowsBy(rep.Rows)
	for _, sc := range []string{"Version", "ContainerStatus"} {
		d, f, c := idx[sc]["direct"], idx[sc]["floor"], idx[sc]["crishim"]
		if d == nil || f == nil || c == nil {
			continue
		}
		add(sc+": added p50 no worse than the floor forwarder's", c.P50-d.P50 <= f.P50-d.P50,
			"crishim +%s, floor +%s", fmtUS(c.P50-d.P50), fmtUS(f.P50-d.P50))
		add(sc+": added p99 no worse than the floor forwarder's", c.P99-d.P99 <= f.P99-d.P99,
			"crishim +%s, floor +%s", fmtUS(c.P99-d.P99), fmtUS(f.P99-d.P99))
		add(sc+": p50 added <= 1x direct p50 (proxied <= 2x)", c.P50 <= 2*d.P50,
			"direct %s, crishim %s (%.2fx)", fmtUS(d.P50), fmtUS(c.P50), ratio(c.P50, d.P50))
	}
	for _, sc := range order {
		d, c := idx[sc]["direct"], idx[sc]["crishim"]
		if d == nil || c == nil || strings.HasPrefix(sc, "bed ") {
			continue
		}
		r := ratio(c.Rate[64], d.Rate[64])
		add(sc+": throughput at 64 >= 0.9x direct", r >= 0.9, "%.2fx (floor %.2fx)", r, ratio(idx[sc]["floor"].Rate[64], d.Rate[64]))
		if strings.HasPrefix(sc, "ListContainers") {
			for _, conc := range []int{16, 64} {
				r := ratio(c.Rate[conc], d.Rate[conc])
				add(fmt.Sprintf("%s: throughput at %d >= 0.95x direct", sc, conc), r >= 0.95, "%.2fx", r)
			}
			r := ratio(d.P50, c.P50)
			add(sc+": latency p50 >= 0.95x direct's speed", r >= 0.95, "direct %s, crishim %s (%.2fx the speed)", fmtUS(d.P50), fmtUS(c.P50), r)
		}
	}
	if m, ok := rep.Memory["crishim"]; ok {
		add("RSS idle <= 20 MiB", m.Idle <= 20, "%.1f MiB", m.Idle)
		add(fmt.Sprintf("RSS with %s open streams <= 80 MiB", rep.Settings["streams"]), m.Streams <= 80, "%.1f MiB", m.Streams)
	}
	return out
}

func fmtUS(v float64) string {
	neg := ""
	if v < 0 {
		neg, v = "-", -v
	}
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%s%.2f s", neg, v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%s%.1f ms", neg, v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%s%.2f ms", neg, v/1e3)
	}
	return fmt.Sprintf("%s%.0f µs", neg, v)
}

func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// paths are the rows of each scenario, in order; crishim-b only with -compare.
var paths = []string{"direct", "floor", "crishim", "crishim-b"}

func markdown(rep *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## crishim: the cost of the extra hop\n\n")
	b.WriteString(rep.Machine.Markdown(rep.Took))
	s := rep.Settings
	fmt.Fprintf(&b, "Settings: %s per scenario, path and phase in %s alternating rounds; client %s; fake ListContainers %s containers, GetContainerEvents %s events per stream, PullImage latency %s.\n\n",
		s["duration"], s["rounds"], s["client"], s["containers"], s["events"], s["pull_latency"])
	if r := s["bed_runtime"]; r != "" {
		fmt.Fprintf(&b, "Test bed (`bed ...` rows): runtime %s (test/bed, RUNTIME=%s), %s per scenario, path and phase.\n\n", r, r, s["bed_duration"])
	}
	fmt.Fprintf(&b, "Paths: **direct** to the upstream; **floor**, a naive raw forwarder (unknown-service handler, raw codec, one upstream stream and a goroutine per direction per call, no interceptors); **crishim**, the built binary with logging at info and metrics on.\n")
	fmt.Fprintf(&b, "Latency at concurrency 1 (per call; per whole stream for GetContainerEvents); throughput in %s per second at concurrency 16 and 64; x: ratio to direct; CPU: the proxy process's CPU per %s at concurrency 64.\n\n", "calls (events)", "call (event)")
	fmt.Fprintf(&b, "| scenario | path | p50 | p90 | p99 | p50 x | tput 16 | x | tput 64 | x | proxy CPU |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	order, idx := rowsBy(rep.Rows)
	for _, sc := range order {
		d := idx[sc]["direct"]
		for _, path := range paths {
			r := idx[sc][path]
			if r == nil {
				continue
			}
			name := sc
			if path != "direct" {
				name = ""
			}
			cpu := "-"
			if v, ok := r.CPU["proxy"]; ok {
				cpu = fmtUS(v)
			}
			extra := ""
			if r.UpstreamPerCall > 0 {
				extra = fmt.Sprintf(" (%.2f upstream pulls/call)", r.UpstreamPerCall)
			}
			fmt.Fprintf(&b, "| %s | %s%s | %s | %s | %s | %.2f | %s | %.2f | %s | %.2f | %s |\n", name, path, extra,
				fmtUS(r.P50), fmtUS(r.P90), fmtUS(r.P99), ratio(r.P50, d.P50),
				fmtRate(r.Rate[16]), ratio(r.Rate[16], d.Rate[16]), fmtRate(r.Rate[64]), ratio(r.Rate[64], d.Rate[64]), cpu)
		}
	}
	fmt.Fprintf(&b, "\nCPU per call (event) at concurrency 64, by process:\n\n| scenario | path | client | upstream | proxy |\n|---|---|---:|---:|---:|\n")
	for _, sc := range order {
		for _, path := range paths {
			r := idx[sc][path]
			if r == nil {
				continue
			}
			proxy := "-"
			if v, ok := r.CPU["proxy"]; ok {
				proxy = fmtUS(v)
			}
			up := "-"
			if v, ok := r.CPU["upstream"]; ok {
				up = fmtUS(v)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", sc, path, fmtUS(r.CPU["client"]), up, proxy)
		}
	}
	if len(rep.Memory) > 0 {
		var cols []string
		for _, p := range []string{"crishim", "floor", "crishim-b"} {
			if _, ok := rep.Memory[p]; ok {
				cols = append(cols, p)
			}
		}
		fmt.Fprintf(&b, "\nResident memory (VmRSS, /proc) and CPU of the proxy processes in the fake-upstream scenarios:\n\n| |%s|\n|---|%s\n", " "+strings.Join(cols, " | ")+" ", strings.Repeat("---:|", len(cols)))
		line := func(name string, f func(Memory, string) string) {
			fmt.Fprintf(&b, "| %s |", name)
			for _, p := range cols {
				fmt.Fprintf(&b, " %s |", f(rep.Memory[p], p))
			}
			b.WriteString("\n")
		}
		line("RSS idle", func(m Memory, _ string) string { return fmt.Sprintf("%.1f MiB", m.Idle) })
		line(fmt.Sprintf("RSS with %s open GetContainerEvents streams", s["streams"]), func(m Memory, _ string) string { return fmt.Sprintf("%.1f MiB", m.Streams) })
		line("RSS peak (VmHWM)", func(m Memory, _ string) string { return fmt.Sprintf("%.1f MiB", m.Peak) })
		line("CPU seconds, whole run", func(_ Memory, p string) string { return fmt.Sprintf("%.1f", rep.CPUTotal[p]) })
	}
	fmt.Fprintf(&b, "\nTargets:\n\n")
	for _, t := range rep.Targets {
		verdict := "MISS"
		if t.Pass {
			verdict = "PASS"
		}
		fmt.Fprintf(&b, "- %s %s: %s\n", verdict, t.Name, t.Got)
	}
	for _, sk := range rep.Skipped {
		fmt.Fprintf(&b, "\nSkipped: %s\n", sk)
	}
	return b.String()
}
