// Command junitcmp compares two critest (ginkgo) JUnit reports of the same suite: one run
// directly against the runtime, one through crishim. It prints one summary line per run and the
// wall-time ratio, lists every spec whose outcome differs, and exits 1 unless the set of specs
// that passed through crishim equals the set that passed directly.
//
//	junitcmp -direct direct.xml -crishim crishim.xml [-direct-wall 71.2 -crishim-wall 73.9]
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *directPath == "" || *crishimPath == "" {
		return errors.New("both -direct and -crishim are required")
	}
	direct, err := load("direct", *directPath, *directWall)
	if err != nil {
		return err
	}
	crishim, err := load("crishim", *crishimPath, *crishimWall)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, direct.Summary())
	fmt.Fprintln(stdout, crishim.Summary())
	if direct.Seconds > 0 {
		fmt.Fprintf(stdout, "wall-time ratio crishim/direct: %.2f\n", crishim.Seconds/direct.Seconds)
	}
	for _, d := range Diff(direct, crishim) {
		fmt.Fprintln(stdout, "  differs: "+d)
	}
	if !SamePassed(direct, crishim) {
		return errors.New("the specs that passed through crishim differ from those that passed directly")
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
