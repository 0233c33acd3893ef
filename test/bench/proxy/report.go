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

// setRatios sets every row's VsDirect from the direct row of its scenario.
func setRatios(rows []*Row) {
	_, idx := rowsBy(rows)
	for _, r := range rows {
		d := idx[r.Scenario][pathDirect]
		if d == nil {
			continue
		}
		v := &Ratios{P50: ratio(r.P50, d.P50), P90: ratio(r.P90, d.P90), P99: ratio(r.P99, d.P99), Rate: map[int]float64{}}
		for conc, rate := range r.Rate {
			v.Rate[conc] = ratio(rate, d.Rate[conc])
		}
		r.VsDirect = v
	}
}

// Verdicts of a target.
const (
	verdictPass   = "PASS"
	verdictFail   = "FAIL"
	verdictNotRun = "not run"
)

// rowTarget is one of issue 15's targets on a scenario's rows: figure is a
// row's value (with direct's row at hand) and its text, ok whether the value
// meets the target. floor says the splice's value is the target's physical
// floor, to be shown with it (Target.Floor).
type rowTarget struct {
	name   string
	figure func(r, direct *Row) (float64, string)
	ok     func(float64) bool
	floor  bool
}

// Figures of issue 15's targets.
var (
	p50VsDirect = func(r, d *Row) (float64, string) {
		v := ratio(r.P50, d.P50)
		return v, fmt.Sprintf("%.2fx (%s)", v, fmtUS(r.P50))
	}
	rate64VsDirect = func(r, d *Row) (float64, string) {
		v := ratio(r.Rate[64], d.Rate[64])
		return v, fmt.Sprintf("%.2fx (%s/s)", v, fmtRate(r.Rate[64]))
	}
	proxyCPU = func(r, _ *Row) (float64, string) {
		v, ok := r.CPU["proxy"]
		if !ok {
			return 0, "-"
		}
		return v, fmt.Sprintf("%.1f µs", v)
	}
)

// issue15 are issue 15's targets on the fake-upstream scenarios, in the
// issue's order, by the scenario's name (a prefix: the ListContainers and
// GetContainerEvents names carry their sizes). "Tiny calls" are Version and
// ContainerStatus; "of direct" for ListContainers and GetContainerEvents is
// throughput at concurrency 64, as for the tiny calls.
var issue15 = []struct {
	scenario string
	rowTarget
}{
	{"Version", rowTarget{"p50 <= 1.6x direct", p50VsDirect, func(v float64) bool { return v <= 1.6 }, true}},
	{"Version", rowTarget{"throughput at 64 >= 0.75x direct", rate64VsDirect, func(v float64) bool { return v >= 0.75 }, false}},
	{"ContainerStatus", rowTarget{"throughput at 64 >= 0.75x direct", rate64VsDirect, func(v float64) bool { return v >= 0.75 }, false}},
	{"Version", rowTarget{"forwarder CPU per call at 64 <= 12 µs", proxyCPU, func(v float64) bool { return v > 0 && v <= 12 }, false}},
	{"ContainerStatus", rowTarget{"forwarder CPU per call at 64 <= 12 µs", proxyCPU, func(v float64) bool { return v > 0 && v <= 12 }, false}},
	{"ListContainers", rowTarget{"throughput at 64 >= 0.9x direct", rate64VsDirect, func(v float64) bool { return v >= 0.9 }, false}},
	{"GetContainerEvents", rowTarget{"events/s at 64 >= 0.9x direct", rate64VsDirect, func(v float64) bool { return v >= 0.9 }, false}},
}

// evaluate checks issue 15's targets on crishim against the measured rows
// (whose VsDirect setRatios has set), with the other proxies' figures for
// reference. A scenario not run (-only) has no targets; a crishim not run
// (-paths) has them with the verdict "not run", so that the reference
// figures still show.
func evaluate(rep *Report) []Target {
	var out []Target
	judge := func(name, floor string, got map[string]string, pass bool) {
		t := Target{Name: name, Path: pathCrishim, Verdict: verdictNotRun, Floor: floor, Others: map[string]string{}}
		for p, v := range got {
			if p == pathCrishim {
				t.Got, t.Pass, t.Verdict = v, pass, verdictFail
				if pass {
					t.Verdict = verdictPass
				}
			} else {
				t.Others[p] = v
			}
		}
		out = append(out, t)
	}
	order, idx := rowsBy(rep.Rows)
	for _, it := range issue15 {
		for _, sc := range order {
			if !strings.HasPrefix(sc, it.scenario) {
				continue
			}
			d := idx[sc][pathDirect]
			if d == nil {
				continue
			}
			got, pass, floor := map[string]string{}, false, ""
			for p, r := range idx[sc] {
				if p == pathDirect {
					continue
				}
				v, text := it.figure(r, d)
				got[p] = text
				switch {
				case p == pathCrishim:
					pass = it.ok(v)
				case p == pathSplice && it.floor:
					floor = fmt.Sprintf("%.2fx", v)
				}
			}
			judge(sc+": "+it.name, floor, got, pass)
		}
	}
	if len(rep.Memory) > 0 {
		idle, streams := map[string]string{}, map[string]string{}
		for p, m := range rep.Memory {
			idle[p], streams[p] = fmt.Sprintf("%.1f MiB", m.Idle), fmt.Sprintf("%.1f MiB", m.Streams)
		}
		m := rep.Memory[pathCrishim]
		judge("RSS idle <= 20 MiB", "", idle, m.Idle <= 20)
		judge(fmt.Sprintf("RSS with %s open GetContainerEvents streams <= 80 MiB", rep.Settings["streams"]), "", streams, m.Streams <= 80)
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
	fmt.Fprintf(&b, "Paths (-paths %s): **direct** to the upstream; **splice**, a byte splice (io.Copy both ways per unix connection, its own process: the physical floor of one more hop); "+
		"**floor**, a naive raw gRPC forwarder (unknown-service handler, raw codec, one upstream stream and a goroutine per direction per call, no interceptors); "+
		"**crishim**, the built binary, logging at info, metrics on: HTTP/2 frame passthrough. ", s["paths"])
	if bin := s["compare"]; bin != "" {
		fmt.Fprintf(&b, "With -compare, **%s** (path %s), the binary %s, configured as crishim, in the fake-upstream scenarios. ", rep.label(pathCompare), pathCompare, bin)
	}
	b.WriteString("The paths take turns in each round, in rotating order.\n")
	fmt.Fprintf(&b, "Latency at concurrency 1 (per call; per whole stream for GetContainerEvents); throughput in %s per second at concurrency 16 and 64; x: ratio to direct in this run; CPU: the proxy process's CPU per %s at concurrency 64.\n\n", "calls (events)", "call (event)")
	fmt.Fprintf(&b, "| scenario | path | p50 | p90 | p99 | p50 x | tput 16 | x | tput 64 | x | proxy CPU |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	order, idx := rowsBy(rep.Rows)
	for _, sc := range order {
		first := true
		for _, path := range reportPaths {
			r := idx[sc][path]
			if r == nil {
				continue
			}
			name := ""
			if first {
				name, first = sc, false
			}
			cpu := "-"
			if v, ok := r.CPU["proxy"]; ok {
				cpu = fmtUS(v)
			}
			extra := ""
			if r.UpstreamPerCall > 0 {
				extra = fmt.Sprintf(" (%.2f upstream pulls/call)", r.UpstreamPerCall)
			}
			p50x, x16, x64 := "-", "-", "-"
			if v := r.VsDirect; v != nil {
				p50x, x16, x64 = fmt.Sprintf("%.2f", v.P50), fmt.Sprintf("%.2f", v.Rate[16]), fmt.Sprintf("%.2f", v.Rate[64])
			}
			fmt.Fprintf(&b, "| %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, rep.label(path), extra,
				fmtUS(r.P50), fmtUS(r.P90), fmtUS(r.P99), p50x, fmtRate(r.Rate[16]), x16, fmtRate(r.Rate[64]), x64, cpu)
		}
	}
	fmt.Fprintf(&b, "\nCPU per call (event) at concurrency 64, by process:\n\n| scenario | path | client | upstream | proxy |\n|---|---|---:|---:|---:|\n")
	for _, sc := range order {
		for _, path := range reportPaths {
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
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", sc, rep.label(path), fmtUS(r.CPU["client"]), up, proxy)
		}
	}
	if len(rep.Memory) > 0 {
		var cols, heads []string
		for _, p := range reportPaths {
			if _, ok := rep.Memory[p]; ok {
				cols, heads = append(cols, p), append(heads, rep.label(p))
			}
		}
		fmt.Fprintf(&b, "\nResident memory (VmRSS, /proc) and CPU of the proxy processes in the fake-upstream scenarios:\n\n| |%s|\n|---|%s\n", " "+strings.Join(heads, " | ")+" ", strings.Repeat("---:|", len(cols)))
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
	targetsMarkdown(&b, rep)
	for _, sk := range rep.Skipped {
		fmt.Fprintf(&b, "\nSkipped: %s\n", sk)
	}
	return b.String()
}

// targetsMarkdown writes issue 15's targets as a table: the verdict on
// crishim, and the same figure on the other proxies for reference.
func targetsMarkdown(b *strings.Builder, rep *Report) {
	if len(rep.Targets) == 0 {
		return
	}
	others := map[string]bool{}
	run := false
	for _, t := range rep.Targets {
		run = run || t.Verdict != verdictNotRun
		for p := range t.Others {
			others[p] = true
		}
	}
	var cols, heads []string
	for _, p := range reportPaths {
		if others[p] {
			cols, heads = append(cols, p), append(heads, rep.label(p))
		}
	}
	ref := "no other proxy"
	if len(heads) > 0 {
		ref = strings.Join(heads, ", ")
	}
	fmt.Fprintf(b, "\nTargets of issue 15, judged on %s (PASS/FAIL); %s for reference; x: ratio to direct in this run:\n\n", rep.label(pathCrishim), ref)
	if !run {
		fmt.Fprintf(b, "%s was not run (-paths): no verdicts.\n\n", rep.label(pathCrishim))
	}
	fmt.Fprintf(b, "| target | %s | verdict |", rep.label(pathCrishim))
	for _, h := range heads {
		fmt.Fprintf(b, " %s |", h)
	}
	fmt.Fprintf(b, "\n|---|---:|---|%s\n", strings.Repeat("---:|", len(cols)))
	for _, t := range rep.Targets {
		got := t.Got
		if got == "" {
			got = "-"
		}
		name := t.Name
		if t.Floor != "" {
			name += fmt.Sprintf(" (physical floor: %s %s)", rep.label(pathSplice), t.Floor)
		}
		fmt.Fprintf(b, "| %s | %s | %s |", name, got, t.Verdict)
		for _, p := range cols {
			v := t.Others[p]
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(b, " %s |", v)
		}
		b.WriteString("\n")
	}
}
