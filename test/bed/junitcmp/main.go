// Command junitcmp compares two critest (ginkgo) JUnit reports of the same suite: one run
// directly against the runtime, one through crishim. It prints one summary line per run and the
// wall-time ratio, lists every spec whose outcome differs, and exits 1 unless the set of specs
// that passed through crishim equals the set that passed directly.
//
//	junitcmp -direct direct.xml -crishim crishim.xml [-direct-wall 71.2 -crishim-wall 73.9]
//	         [-summary row.tsv] [-differing names.txt] [-rerun-direct d2.xml -rerun-crishim c2.xml]
//
// With the re-run reports (critest focused on the specs that differed, run again both ways), a
// spec whose re-runs agree counts as flaky, not as a difference.
package main

import (
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Run is the outcome of one critest run.
type Run struct {
	Label   string
	Seconds float64
	Status  map[string]string // spec name -> passed, failed or skipped
}

// Count returns how many specs ended with status.
func (r *Run) Count(status string) int {
	n := 0
	for _, s := range r.Status {
		if s == status {
			n++
		}
	}
	return n
}

// Summary is the one-line summary printed for a run.
func (r *Run) Summary() string {
	return fmt.Sprintf("%-8s %d passed, %d failed, %d skipped in %.1f s",
		r.Label+":", r.Count("passed"), r.Count("failed"), r.Count("skipped"), r.Seconds)
}

type junitSuites struct {
	Time   float64      `xml:"time,attr"`
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Time  float64     `xml:"time,attr"`
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string    `xml:"name,attr"`
	Status  string    `xml:"status,attr"`
	Failure *struct{} `xml:"failure"`
	Error   *struct{} `xml:"error"`
	Skipped *struct{} `xml:"skipped"`
}

// suiteNode reports whether a test case is a ginkgo suite-level node ([BeforeSuite],
// [SynchronizedAfterSuite], [ReportAfterSuite], ...) rather than a spec.
func suiteNode(name string) bool {
	return strings.HasPrefix(name, "[") && strings.Contains(strings.SplitN(name, "]", 2)[0], "Suite")
}

func caseStatus(c junitCase) string {
	switch {
	case c.Status == "passed" || c.Status == "failed" || c.Status == "skipped":
		return c.Status
	case c.Status == "pending" || c.Status == "disabled":
		return "skipped"
	case c.Status != "": // interrupted, aborted, panicked, timedout
		return "failed"
	case c.Failure != nil || c.Error != nil:
		return "failed"
	case c.Skipped != nil:
		return "skipped"
	}
	return "passed"
}

// Parse reads a JUnit report (a <testsuites> or a single <testsuite> document).
func Parse(label string, r io.Reader) (*Run, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s report: %w", label, err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("failed to parse %s report: %w", label, err)
	}
	if len(doc.Suites) == 0 { // a bare <testsuite> document
		var s junitSuite
		if err := xml.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("failed to parse %s report: %w", label, err)
		}
		doc = junitSuites{Time: s.Time, Suites: []junitSuite{s}}
	}
	run := &Run{Label: label, Seconds: doc.Time, Status: map[string]string{}}
	sum := 0.0
	for _, s := range doc.Suites {
		sum += s.Time
		for _, c := range s.Cases {
			if suiteNode(c.Name) {
				continue
			}
			run.Status[c.Name] = caseStatus(c)
		}
	}
	if run.Seconds == 0 {
		run.Seconds = sum
	}
	if len(run.Status) == 0 {
		return nil, fmt.Errorf("%s report has no specs", label)
	}
	return run, nil
}

// Diff lists the specs whose status differs between a and b, sorted by name.
func Diff(a, b *Run) []string {
	names := map[string]bool{}
	for n := range a.Status {
		names[n] = true
	}
	for n := range b.Status {
		names[n] = true
	}
	var out []string
	for n := range names {
		sa, sb := a.Status[n], b.Status[n]
		if sa == sb {
			continue
		}
		if sa == "" {
			sa = "absent"
		}
		if sb == "" {
			sb = "absent"
		}
		out = append(out, fmt.Sprintf("%s: %s %s, %s %s", n, a.Label, sa, b.Label, sb))
	}
	sort.Strings(out)
	return out
}

// SamePassed reports whether exactly the same specs passed in a and b.
func SamePassed(a, b *Run) bool {
	for n, s := range a.Status {
		if (s == "passed") != (b.Status[n] == "passed") {
			return false
		}
	}
	for n, s := range b.Status {
		if (s == "passed") != (a.Status[n] == "passed") {
			return false
		}
	}
	return true
}

// Differing lists the specs that passed in one run and not in the other, sorted.
func Differing(a, b *Run) []string {
	var out []string
	for n := range union(a, b) {
		if (a.Status[n] == "passed") != (b.Status[n] == "passed") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func union(a, b *Run) map[string]bool {
	names := map[string]bool{}
	for n := range a.Status {
		names[n] = true
	}
	for n := range b.Status {
		names[n] = true
	}
	return names
}

// Settled is the comparison after the specs that differed were run again, directly and through
// crishim: Flaky agreed on the re-run (a runtime or timing flake, e.g. containerd 1.6's OOM
// reason under load), Real did not or were not re-run.
type Settled struct {
	Real, Flaky []string
}

// Settle re-judges the specs that differ between direct and crishim with the re-runs' outcomes;
// rerunDirect and rerunCrishim may be nil (no re-run: every difference is real).
func Settle(direct, crishim, rerunDirect, rerunCrishim *Run) Settled {
	var s Settled
	for _, n := range Differing(direct, crishim) {
		if rerunDirect != nil && rerunCrishim != nil {
			d, c := rerunDirect.Status[n], rerunCrishim.Status[n]
			if d != "" && c != "" && (d == "passed") == (c == "passed") {
				s.Flaky = append(s.Flaky, n)
				continue
			}
		}
		s.Real = append(s.Real, n)
	}
	return s
}

// Row is the comparison as one tab-separated line for the runtime matrix (test/bed/lib/matrix.sh):
// the direct run, the run through crishim (each "passed/failed/skipped, seconds s"), whether the
// same specs passed ("yes", "yes, N flaky" when re-runs agreed, "no") and the wall-time ratio
// crishim/direct.
func Row(direct, crishim *Run, s Settled) string {
	cell := func(r *Run) string {
		return fmt.Sprintf("%d/%d/%d, %.0f s", r.Count("passed"), r.Count("failed"), r.Count("skipped"), r.Seconds)
	}
	same, ratio := "yes", "-"
	switch {
	case len(s.Real) > 0:
		same = "no"
	case len(s.Flaky) > 0:
		same = fmt.Sprintf("yes, %d flaky", len(s.Flaky))
	}
	if direct.Seconds > 0 {
		ratio = fmt.Sprintf("%.2f", crishim.Seconds/direct.Seconds)
	}
	return strings.Join([]string{cell(direct), cell(crishim), same, ratio}, "\t")
}

func load(label, path string, wall float64) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := Parse(label, f)
	if err != nil {
		return nil, err
	}
	if wall > 0 {
		r.Seconds = wall
	}
	return r, nil
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("junitcmp", flag.ContinueOnError)
	directPath := fs.String("direct", "", "JUnit report of the run directly against the runtime")
	crishimPath := fs.String("crishim", "", "JUnit report of the run through crishim")
	directWall := fs.Float64("direct-wall", 0, "wall time of the direct run in seconds (default: the report's)")
	crishimWall := fs.Float64("crishim-wall", 0, "wall time of the crishim run in seconds (default: the report's)")
	summaryPath := fs.String("summary", "", "also write the comparison to this file as one tab-separated line (see Row)")
	differingPath := fs.String("differing", "", "also write the names of the specs whose outcome differs to this file, one a line")
	rerunDirectPath := fs.String("rerun-direct", "", "JUnit report of a direct re-run of the differing specs")
	rerunCrishimPath := fs.String("rerun-crishim", "", "JUnit report of a re-run through crishim of the differing specs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *directPath == "" || *crishimPath == "" {
		return errors.New("both -direct and -crishim are required")
	}
	if (*rerunDirectPath == "") != (*rerunCrishimPath == "") {
		return errors.New("-rerun-direct and -rerun-crishim go together")
	}
	direct, err := load("direct", *directPath, *directWall)
	if err != nil {
		return err
	}
	crishim, err := load("crishim", *crishimPath, *crishimWall)
	if err != nil {
		return err
	}
	var rerunDirect, rerunCrishim *Run
	if *rerunDirectPath != "" {
		if rerunDirect, err = load("direct re-run", *rerunDirectPath, 0); err != nil {
			return err
		}
		if rerunCrishim, err = load("crishim re-run", *rerunCrishimPath, 0); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, direct.Summary())
	fmt.Fprintln(stdout, crishim.Summary())
	if direct.Seconds > 0 {
		fmt.Fprintf(stdout, "wall-time ratio crishim/direct: %.2f\n", crishim.Seconds/direct.Seconds)
	}
	for _, d := range Diff(direct, crishim) {
		fmt.Fprintln(stdout, "  differs: "+d)
	}
	settled := Settle(direct, crishim, rerunDirect, rerunCrishim)
	for _, n := range settled.Flaky {
		fmt.Fprintf(stdout, "  flaky: %s: re-run %s directly, %s through crishim\n", n, rerunDirect.Status[n], rerunCrishim.Status[n])
	}
	if *differingPath != "" {
		var b strings.Builder
		for _, n := range Differing(direct, crishim) {
			b.WriteString(n + "\n")
		}
		if err := os.WriteFile(*differingPath, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if *summaryPath != "" {
		if err := os.WriteFile(*summaryPath, []byte(Row(direct, crishim, settled)+"\n"), 0o644); err != nil {
			return err
		}
	}
	if len(settled.Real) > 0 {
		return errors.New("the specs that passed through crishim differ from those that passed directly")
	}
	if len(settled.Flaky) > 0 {
		fmt.Fprintf(stdout, "same specs passed directly and through crishim (%d flaky: the re-runs agreed)\n", len(settled.Flaky))
		return nil
	}
	fmt.Fprintln(stdout, "same specs passed directly and through crishim")
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "junitcmp:", err)
		os.Exit(1)
	}
}
