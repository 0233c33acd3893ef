package h2spec_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crishim/crishim/shim"
)

// excluded lists the h2spec cases, by id ("http2/6.9.2/1": the group's id and
// the case's number in it, as h2spec numbers them), that do not apply to the
// router, each with the reason. Their failures are logged, not reported.
// Keep it as short as honest: a case is excluded only when what it checks is
// not the router's to do, never because the router gets it wrong.
var excluded = map[string]string{}

// Environment the test reads.
const (
	// envBinary is the path to the h2spec binary.
	envBinary = "H2SPEC"
	// envRequired, set to 1, makes a missing binary a failure: `make h2spec`
	// sets it so the target cannot pass by skipping.
	envRequired = "H2SPEC_REQUIRED"
	// envArgs holds extra h2spec arguments, split at spaces: "-v
	// http2/6.9.1/1" reruns one case showing its frames. The output is then
	// logged whole.
	envArgs = "H2SPEC_ARGS"
)

// caseTimeout is h2spec's wait, in seconds, for each frame or close it
// expects (its -o; 2 is its default). Only a case that does not pass waits
// it out, so it costs a bad router's run time, not a good one's; keeping
// h2spec's default leaves a busy 2-core machine room to answer late.
const caseTimeout = 2

// responseBody is the upstream's answer to every request, a few KiB.
// h2spec's flow-control cases need DATA from the server (one sets
// SETTINGS_INITIAL_WINDOW_SIZE to 1 and expects a 1-byte DATA frame, another
// needs at least 5 bytes) and skip without it; a body larger than the
// windows they set also makes the router split it.
var responseBody = bytes.Repeat([]byte("h2spec through crishim's frame router\n"), 100)

// TestH2spec runs h2spec against a frame router in front of a cleartext
// HTTP/2 upstream and fails listing every case that did not pass.
func TestH2spec(t *testing.T) {
	bin := binary(t)
	up, requests := startUpstream(t)
	addr := startCrishim(t, up)
	extra := strings.Fields(os.Getenv(envArgs))

	out, cases, runErr := runH2spec(t, bin, addr, extra)
	if len(extra) > 0 {
		t.Logf("h2spec %s:\n%s", strings.Join(extra, " "), out)
	}

	summary := summaryRE.FindStringSubmatch(out)
	if summary == nil {
		t.Fatalf("h2spec printed no summary line; its output:\n%s", out)
	}
	t.Log("h2spec: " + summary[0])
	t.Logf("%d requests went through the router to the upstream", requests.Load())
	if total, _ := strconv.Atoi(summary[1]); total != len(cases) || total == 0 {
		t.Fatalf("h2spec's summary counts %s cases, its JUnit report %d: has its report format changed?", summary[1], len(cases))
	}
	// h2spec's well-formed requests go through to the upstream, which alone
	// answers with a body: none reaching it would mean the router answered
	// h2spec itself, and the run tested nothing of the forwarding.
	if requests.Load() == 0 {
		t.Errorf("no request reached the upstream")
	}

	annotate(cases, out)
	ids := map[string]bool{}
	var bad []string
	allPassed := true
	for _, c := range cases {
		ids[c.id] = true
		why, isExcluded := excluded[c.id]
		if c.outcome == casePassed {
			if isExcluded {
				t.Logf("excluded case %s passes: %s", c.id, c.desc)
			}
			continue
		}
		msg := fmt.Sprintf("%s %s: %s (%s)", c.outcome, c.id, c.desc, c.section)
		if c.requirement != "" {
			msg += "\n    requirement: " + c.requirement
		}
		allPassed = false
		if c.outcome == caseSkipped {
			// h2spec skips only the cases that need response DATA when a
			// GET's response has too little: the router lost the body.
			msg += "\n    skipped: h2spec saw too little response DATA to run it (the upstream sends " +
				strconv.Itoa(len(responseBody)) + " bytes)"
		}
		if c.expected != "" {
			msg += "\n    expected: " + strings.ReplaceAll(c.expected, "\n", "\n              ")
		}
		if c.actual != "" {
			msg += "\n    actual:   " + c.actual
		}
		if isExcluded {
			t.Logf("excluded case, not applicable (%s):\n%s", why, msg)
			continue
		}
		bad = append(bad, msg)
	}
	if len(extra) == 0 {
		for id := range excluded {
			if !ids[id] {
				t.Errorf("excluded case %s is not in h2spec's report: stale or mistyped id", id)
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d h2spec case(s) did not pass (rerun one with %s='-v ID' for its frames):\n%s",
			len(bad), envArgs, strings.Join(bad, "\n"))
	}
	if runErr != nil && allPassed {
		t.Errorf("h2spec: %v, yet every case passed; its output:\n%s", runErr, out)
	}
}

// binary returns the h2spec binary's path from the environment, or skips
// (fails under H2SPEC_REQUIRED=1) when it is not set.
func binary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(envBinary)
	if bin == "" {
		if os.Getenv(envRequired) == "1" {
			t.Fatalf("%s=1 but %s is not set: run `make h2spec`, which installs bin/h2spec and sets it", envRequired, envBinary)
		}
		t.Skipf("%s is not set: `make h2spec` installs h2spec and runs this test", envBinary)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=%s: %v", envBinary, bin, err)
	}
	return bin
}

// startUpstream starts a cleartext HTTP/2 server (prior knowledge, no
// upgrade and no HTTP/1: what a runtime's gRPC socket speaks) on a unix
// socket, answering every request with 200 and responseBody, and returns
// its endpoint and the count of requests it answered. It is net/http's
// server, which bundles golang.org/x/net/http2 (whose own Server is
// deprecated for it).
func startUpstream(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	dir, err := os.MkdirTemp("", "h2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "up.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	requests := new(atomic.Int64)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protocols,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			answer(w, r)
		}),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("upstream's Serve: %v", err)
		}
	})
	return "unix://" + sock, requests
}

// answer reads the request to its end, as a gRPC server reads its request
// message, then answers 200 with responseBody and no trailers. Reading
// first keeps the answer from racing a request body that is still
// arriving: a handler that returns early makes Go's server reset the
// stream, which h2spec would see instead of the response it waits for.
func answer(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return // the stream was reset: nobody to answer
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(responseBody)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(responseBody)
}

// startCrishim starts crishim's server, as the daemon builds it with its
// default limits, in front of upstream, on a loopback TCP port (h2spec
// speaks TCP; the server serves any listener), and returns the port's
// address. h2spec's paths are methods crishim does not know: the frame
// router forwards them to the runtime endpoint.
func startCrishim(t *testing.T, upstream string) string {
	t.Helper()
	srv, err := shim.New(shim.Config{RuntimeEndpoint: upstream, MaxConnections: 256, MaxConcurrentStreams: 1000})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("crishim's Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// outcome is how an h2spec case ended.
type outcome string

const (
	casePassed  outcome = "passed"
	caseSkipped outcome = "skipped"
	caseFailed  outcome = "failed"
)

// caseResult is one h2spec case from its JUnit report.
type caseResult struct {
	// id is h2spec's own, as its arguments take it to run the case alone:
	// group's id and the case's number in the group ("http2/6.9.2/1").
	id string
	// group is the group's id ("http2/6.9.2") and section its title
	// ("6.9.2. Initial Flow-Control Window Size").
	group, section string
	desc           string
	outcome        outcome
	// expected and actual are what h2spec waited for and what it got; an
	// error without an expectation (a timeout in the handshake) has only
	// actual.
	expected, actual string
	// requirement is the RFC's words the case checks, from h2spec's
	// output, which prints it for failures only.
	requirement string
}

// runH2spec runs h2spec against addr with extra arguments and returns its
// output, the cases of its JUnit report and its exit error, failing the
// test when there is no report.
func runH2spec(t *testing.T, bin, addr string, extra []string) (string, []caseResult, error) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	// A run of a good router takes well under a minute; bound a bad one's
	// by the test's own deadline, leaving time to report.
	deadline := time.Now().Add(8 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	report := filepath.Join(t.TempDir(), "h2spec.xml")
	// -S (strict) adds the one case h2spec holds back by default, a
	// SHOULD: GOAWAY before closing on a connection error. The router
	// means to do it, so it is checked too.
	args := append([]string{"-h", host, "-p", port, "-S", "-o", strconv.Itoa(caseTimeout), "-j", report}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	// Plain text whatever the terminal: the output is parsed.
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	start := time.Now()
	raw, runErr := cmd.CombinedOutput()
	// Progress lines end in \r and are overwritten by the case's result:
	// keep what a terminal would show.
	out := terminalText(string(raw))
	t.Logf("h2spec ran for %s", time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("h2spec did not finish by %s; its output:\n%s", deadline.Format(time.TimeOnly), out)
	}
	// h2spec exits 1 both when cases fail and when it cannot run at all:
	// the report tells which.
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("h2spec wrote no report (%v, exit: %v); its output:\n%s", err, runErr, out)
	}
	cases, err := parseJUnit(data)
	if err != nil {
		t.Fatalf("h2spec's report: %v; its output:\n%s", err, out)
	}
	return out, cases, runErr
}

// junitSuites is the part of h2spec's JUnit report that the test reads:
// one testsuite per group of cases, the group's id in package and its title
// in name; each testcase's description in classname. A failure's text is
// h2spec's error as is: the expected lines, then the actual one.
type junitSuites struct {
	Suites []struct {
		Package string `xml:"package,attr"`
		Name    string `xml:"name,attr"`
		Cases   []struct {
			Desc    string  `xml:"classname,attr"`
			Skipped *string `xml:"skipped"`
			Failure *string `xml:"failure"`
			Error   *string `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// parseJUnit returns the cases of an h2spec JUnit report.
func parseJUnit(data []byte) ([]caseResult, error) {
	var rep junitSuites
	if err := xml.Unmarshal(data, &rep); err != nil {
		return nil, err
	}
	var cases []caseResult
	for _, s := range rep.Suites {
		// Cases are numbered from 1 in their group. The report holds the
		// cases that ran, in order, without their numbers: the position is
		// the number when every case ran, and annotate corrects it from the
		// output when some did not.
		for i, tc := range s.Cases {
			c := caseResult{id: s.Package + "/" + strconv.Itoa(i+1), group: s.Package, section: s.Name,
				desc: tc.Desc, outcome: casePassed}
			switch {
			case tc.Skipped != nil:
				c.outcome = caseSkipped
			case tc.Failure != nil:
				// h2spec's format for a failure: "Expect:\n...\nActual:\n...".
				c.outcome = caseFailed
				exp, act, _ := strings.Cut(strings.TrimPrefix(*tc.Failure, "Expect:\n"), "\nActual:\n")
				c.expected, c.actual = exp, act
			case tc.Error != nil:
				// What every failure of v2.2.1 comes as (its errors are
				// *TestError, which its report does not recognise): the
				// expected lines, then the actual one; or a bare error.
				c.outcome = caseFailed
				text := strings.TrimSpace(*tc.Error)
				if i := strings.LastIndexByte(text, '\n'); i >= 0 {
					c.expected, c.actual = text[:i], text[i+1:]
				} else {
					c.actual = text
				}
			}
			cases = append(cases, c)
		}
	}
	return cases, nil
}

// summaryRE matches h2spec's closing line: total, passed, skipped, failed.
var summaryRE = regexp.MustCompile(`(?m)^[ \t]*(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed[ \t]*$`)

var (
	// sectionRE matches a group's title line: "6.9.2. Initial Flow-Control
	// Window Size".
	sectionRE = regexp.MustCompile(`^\s*(\d+(?:\.\d+)*\. .+?)\s*$`)
	// caseRE matches a case's result line: "✔ 1: Sends ..." when passed,
	// "× 1: ..." when failed, "1: ..." when skipped.
	caseRE = regexp.MustCompile(`^\s*(?:[✔×] )?(\d+): (.+?)\s*$`)
	// requirementRE matches the requirement line under a failed case's:
	// "-> The endpoint MUST ...".
	requirementRE = regexp.MustCompile(`^\s*-> (.+?)\s*$`)
)

// annotate completes cases from h2spec's output (as terminalText returns
// it): each case's number in its group, which the report leaves out, and
// the requirement a failed case checks. Cases are matched by group title
// and description.
func annotate(cases []caseResult, out string) {
	type key struct{ section, desc string }
	seqs := map[key]string{}
	reqs := map[key]string{}
	var section string
	var last *key // the case whose requirement may follow
	for line := range strings.SplitSeq(out, "\n") {
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			section, last = m[1], nil
		} else if m := caseRE.FindStringSubmatch(line); m != nil {
			last = &key{section, m[2]}
			seqs[*last] = m[1]
		} else if m := requirementRE.FindStringSubmatch(line); m != nil && last != nil {
			reqs[*last] = m[1]
			last = nil
		}
	}
	for i := range cases {
		k := key{cases[i].section, cases[i].desc}
		if seq, ok := seqs[k]; ok {
			cases[i].id = cases[i].group + "/" + seq
		}
		cases[i].requirement = reqs[k]
	}
}

// terminalText returns out as a terminal shows it: of each line, what
// follows its last carriage return.
func terminalText(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if j := strings.LastIndexByte(l, '\r'); j >= 0 {
			lines[i] = l[j+1:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestParseReport checks the reading of h2spec's report and output on a
// sample of v2.2.1's, so that failures are reported right even in runs
// where none happens. It needs no binary.
func TestParseReport(t *testing.T) {
	// A report of two groups: in the first, only case 2 ran (as with the
	// argument generic/2/2); the second has each kind of outcome, and
	// failures both as v2.2.1 writes them (error) and as its format means
	// to (failure).
	const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="2. Streams and Multiplexing" package="generic/2" id="2" tests="1" skipped="0" failures="0" errors="1">
    <testcase package="generic/2" classname="Sends a WINDOW_UPDATE frame on half-closed (remote) stream" time="2.0013">
      <error>DATA frame
HEADERS Frame (length:71, flags:0x05, stream_id:1)</error>
    </testcase>
  </testsuite>
  <testsuite name="8.1.2.6. Malformed Requests and Responses" package="http2/8.1.2.6" id="8.1.2.6" tests="5" skipped="1" failures="1" errors="2">
    <testcase package="http2/8.1.2.6" classname="Sends a HEADERS frame with the &#34;content-length&#34; header field" time="2.0012">
      <error>GOAWAY Frame (Error Code: PROTOCOL_ERROR)
RST_STREAM Frame (Error Code: PROTOCOL_ERROR)
Connection closed
HEADERS Frame (length:71, flags:0x05, stream_id:1)</error>
    </testcase>
    <testcase package="http2/8.1.2.6" classname="Passed" time="0.0003"></testcase>
    <testcase package="http2/8.1.2.6" classname="Skipped" time="0.0003">
      <skipped></skipped>
    </testcase>
    <testcase package="http2/8.1.2.6" classname="Timed out" time="2.0000">
      <error>Timeout</error>
    </testcase>
    <testcase package="http2/8.1.2.6" classname="Failure element" time="0.0001">
      <failure>Expect:
A
B
Actual:
C</failure>
    </testcase>
  </testsuite>
</testsuites>`
	// The output of the same run, as h2spec prints it to a pipe: each
	// progress line overwritten after a carriage return by the case's
	// result, then the failures again, then the summary.
	const out = "Generic tests for HTTP/2 server\n" +
		"  2. Streams and Multiplexing\n" +
		"      2: Sends a WINDOW_UPDATE frame on half-closed (remote) stream\r    × 2: Sends a WINDOW_UPDATE frame on half-closed (remote) stream\n" +
		"      -> The endpoint MUST accept WINDOW_UPDATE frame.\n" +
		"         Expected: DATA frame\n" +
		"           Actual: HEADERS Frame (length:71, flags:0x05, stream_id:1)\n" +
		"\n" +
		"Hypertext Transfer Protocol Version 2 (HTTP/2)\n" +
		"  8. HTTP Message Exchanges\n" +
		"        8.1.2.6. Malformed Requests and Responses\n" +
		"            1: Sends a HEADERS frame with the \"content-length\" header field\r          × 1: Sends a HEADERS frame with the \"content-length\" header field\n" +
		"            -> The endpoint MUST treat this as a stream error of type PROTOCOL_ERROR.\n" +
		"               Expected: GOAWAY Frame (Error Code: PROTOCOL_ERROR)\n" +
		"                 Actual: HEADERS Frame (length:71, flags:0x05, stream_id:1)\n" +
		"            2: Passed\r          ✔ 2: Passed\n" +
		"            3: Skipped\r          3: Skipped\n" +
		"            4: Timed out\r          × 4: Timed out\n" +
		"            Error: Timeout\n" +
		"            5: Failure element\r          × 5: Failure element\n" +
		"            -> R\n" +
		"\n" +
		"Finished in 10.0768 seconds\n" +
		"6 tests, 1 passed, 1 skipped, 4 failed\n"

	got, err := parseJUnit([]byte(report))
	if err != nil {
		t.Fatal(err)
	}
	text := terminalText(out)
	if strings.Contains(text, "\r") || !strings.Contains(text, "\n    × 2: Sends a WINDOW_UPDATE") {
		t.Errorf("terminalText kept the overwritten progress:\n%s", text)
	}
	annotate(got, text)
	const (
		streams   = "2. Streams and Multiplexing"
		malformed = "8.1.2.6. Malformed Requests and Responses"
	)
	want := []caseResult{
		{id: "generic/2/2", group: "generic/2", section: streams, desc: "Sends a WINDOW_UPDATE frame on half-closed (remote) stream",
			outcome: caseFailed, expected: "DATA frame", actual: "HEADERS Frame (length:71, flags:0x05, stream_id:1)",
			requirement: "The endpoint MUST accept WINDOW_UPDATE frame."},
		{id: "http2/8.1.2.6/1", group: "http2/8.1.2.6", section: malformed, desc: `Sends a HEADERS frame with the "content-length" header field`,
			outcome:     caseFailed,
			expected:    "GOAWAY Frame (Error Code: PROTOCOL_ERROR)\nRST_STREAM Frame (Error Code: PROTOCOL_ERROR)\nConnection closed",
			actual:      "HEADERS Frame (length:71, flags:0x05, stream_id:1)",
			requirement: "The endpoint MUST treat this as a stream error of type PROTOCOL_ERROR."},
		{id: "http2/8.1.2.6/2", group: "http2/8.1.2.6", section: malformed, desc: "Passed", outcome: casePassed},
		{id: "http2/8.1.2.6/3", group: "http2/8.1.2.6", section: malformed, desc: "Skipped", outcome: caseSkipped},
		{id: "http2/8.1.2.6/4", group: "http2/8.1.2.6", section: malformed, desc: "Timed out", outcome: caseFailed, actual: "Timeout"},
		{id: "http2/8.1.2.6/5", group: "http2/8.1.2.6", section: malformed, desc: "Failure element", outcome: caseFailed,
			expected: "A\nB", actual: "C", requirement: "R"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d cases, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("case %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if m := summaryRE.FindStringSubmatch(text); m == nil || m[0] != "6 tests, 1 passed, 1 skipped, 4 failed" {
		t.Errorf("summary: got %q", m)
	}
}
