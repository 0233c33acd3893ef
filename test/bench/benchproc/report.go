package benchproc

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine describes where a run happened: the figures are only comparable
// between runs on the same machine at a similar load.
type Machine struct {
	// CPUs is the number of CPUs Go sees.
	CPUs int `json:"nproc"`
	// CPUModel is /proc/cpuinfo's model name.
	CPUModel string `json:"cpu_model"`
	// LoadBefore and LoadAfter are the load averages (1, 5, 15 minutes)
	// around the run: a busy machine shows in p90 and p99 first.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	// Go is the benchmark's Go version.
	Go string `json:"go"`
}

// ThisMachine describes the machine at the start of a run; the benchmark
// sets LoadAfter (LoadAvg) at its end.
func ThisMachine() Machine {
	return Machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), LoadBefore: LoadAvg(), Go: runtime.Version()}
}

// Markdown is the report's line about the machine, with took, how long the
// run took, so that every report states it the same way.
func (m Machine) Markdown(took string) string {
	return fmt.Sprintf("Machine: %d CPUs, %s, %s; load average %s before, %s after; run took %s.\n",
		m.CPUs, m.CPUModel, m.Go, m.LoadBefore, m.LoadAfter, took)
}

// LoadAvg returns the load averages (1, 5, 15 minutes), "?" when
// /proc/loadavg cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// cpuModel returns /proc/cpuinfo's first model name, "?" when there is
// none.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// Timing is when a run began and how long it took. The benchmarks embed
// it last in their reports, so that its fields end their JSON.
type Timing struct {
	// StartedAt is when the run began.
	StartedAt time.Time `json:"started_at"`
	// Took is how long the whole run took, start-up and checks included,
	// to the second: what matters is whether a run takes seconds or
	// minutes.
	Took string `json:"took"`
}

// StartTiming is the Timing of a run that begins now.
func StartTiming() Timing { return Timing{StartedAt: time.Now()} }

// End sets Took, at the end of the run.
func (t *Timing) End() { t.Took = time.Since(t.StartedAt).Round(time.Second).String() }

// Latency is the latency of one call on one path, in microseconds. It is
// embedded in the benchmarks' rows, so that their JSON fields are named
// alike.
type Latency struct {
	// Samples is the number of measured calls.
	Samples int `json:"samples"`
	// P50, P90 and P99 are nearest-rank quantiles.
	P50 float64 `json:"p50_us"`
	P90 float64 `json:"p90_us"`
	P99 float64 `json:"p99_us"`
}

// LatencyOf computes the Latency of the durations lat, which it leaves as
// they are (it sorts a copy).
func LatencyOf(lat []time.Duration) Latency {
	l := slices.Clone(lat)
	slices.Sort(l)
	return Latency{Samples: len(l), P50: Microseconds(quantile(l, .5)), P90: Microseconds(quantile(l, .9)), P99: Microseconds(quantile(l, .99))}
}

// quantile is the nearest-rank quantile of sorted (0 for none): always one
// of the measured durations, never an interpolation.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// Microseconds is d in microseconds, the reports' unit: the calls measured
// take tens of microseconds to seconds.
func Microseconds(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// WriteReport prints the markdown report md on stdout and, when the paths
// are set, also writes it to mdOut and rep as indented JSON to jsonOut, for
// documents and for comparing runs.
func WriteReport(md string, rep any, mdOut, jsonOut string) error {
	fmt.Print(md)
	if mdOut != "" {
		if err := os.WriteFile(mdOut, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if jsonOut != "" {
		j, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(jsonOut, append(j, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
