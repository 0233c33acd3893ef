package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const reportDirect = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="1" errors="0" failures="1" time="70.5">
  <testsuite name="CRI validation" package="/critest" tests="5" disabled="1" skipped="0" errors="0" failures="1" time="70.5">
    <testcase name="[SynchronizedBeforeSuite]" classname="CRI validation" status="passed" time="0.1"></testcase>
    <testcase name="[It] [k8s.io] Runtime info runtime should support returning runtime info" classname="CRI validation" status="passed" time="0.01"></testcase>
    <testcase name="[It] [k8s.io] Image Manager public image should be pulled" classname="CRI validation" status="passed" time="1.2"></testcase>
    <testcase name="[It] [k8s.io] PodSandbox should stop twice" classname="CRI validation" status="failed" time="0.3"><failure message="NotFound" type="failed">x</failure></testcase>
    <testcase name="[It] [k8s.io] Windows only" classname="CRI validation" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
  </testsuite>
</testsuites>`

func TestParse(t *testing.T) {
	r, err := Parse("direct", strings.NewReader(reportDirect))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status string
		want   int
	}{{"passed", 2}, {"failed", 1}, {"skipped", 1}} {
		if got := r.Count(tc.status); got != tc.want {
			t.Errorf("Count(%q) = %d, want %d", tc.status, got, tc.want)
		}
	}
	if r.Seconds != 70.5 {
		t.Errorf("Seconds = %v, want 70.5", r.Seconds)
	}
	if got, want := r.Summary(), "direct:  2 passed, 1 failed, 1 skipped in 70.5 s"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}

func TestParseEmpty(t *testing.T) {
	if _, err := Parse("x", strings.NewReader(`<testsuites></testsuites>`)); err == nil {
		t.Error("Parse of a report without specs: got nil error")
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	direct := filepath.Join(dir, "direct.xml")
	if err := os.WriteFile(direct, []byte(reportDirect), 0o644); err != nil {
		t.Fatal(err)
	}
	regressed := strings.Replace(reportDirect,
		`should be pulled" classname="CRI validation" status="passed"`,
		`should be pulled" classname="CRI validation" status="failed"`, 1)
	improved := strings.Replace(reportDirect,
		`should stop twice" classname="CRI validation" status="failed"`,
		`should stop twice" classname="CRI validation" status="passed"`, 1)
	for _, tc := range []struct {
		desc    string
		crishim string
		wantErr bool
		wantOut string
	}{
		{"same", reportDirect, false, "same specs passed"},
		{"regression", regressed, true, "differs: [It] [k8s.io] Image Manager public image should be pulled: direct passed, crishim failed"},
		{"extra pass", improved, true, "differs: [It] [k8s.io] PodSandbox should stop twice: direct failed, crishim passed"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(dir, tc.desc+".xml")
			if err := os.WriteFile(p, []byte(tc.crishim), 0o644); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			err := run([]string{"-direct", direct, "-crishim", p, "-crishim-wall", "141"}, &out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("run() error = %v, want error %v", err, tc.wantErr)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output %q does not contain %q", out.String(), tc.wantOut)
			}
			if !strings.Contains(out.String(), "wall-time ratio crishim/direct: 2.00") {
				t.Errorf("output %q lacks the wall-time ratio 2.00", out.String())
			}
		})
	}
}

func TestSummaryRow(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	direct := write("direct.xml", reportDirect)
	regressed := write("regressed.xml", strings.Replace(reportDirect,
		`should be pulled" classname="CRI validation" status="passed"`,
		`should be pulled" classname="CRI validation" status="failed"`, 1))
	const pulled = `[It] [k8s.io] Image Manager public image should be pulled`
	rerun := func(name, st string) string {
		return write(name, `<testsuites><testsuite time="2"><testcase name="`+pulled+`" status="`+st+`"></testcase></testsuite></testsuites>`)
	}
	for _, tc := range []struct {
		desc, crishim string
		rerun         []string
		wantErr       bool
		want          string
	}{
		{"same", direct, nil, false, "2/1/1, 70 s\t2/1/1, 141 s\tyes\t2.00\n"},
		{"regression", regressed, nil, true, "2/1/1, 70 s\t1/2/1, 141 s\tno\t2.00\n"},
		{"flaky", regressed, []string{rerun("d1.xml", "passed"), rerun("c1.xml", "passed")}, false, "2/1/1, 70 s\t1/2/1, 141 s\tyes, 1 flaky\t2.00\n"},
		{"regression confirmed", regressed, []string{rerun("d2.xml", "passed"), rerun("c2.xml", "failed")}, true, "2/1/1, 70 s\t1/2/1, 141 s\tno\t2.00\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			summary, differing := filepath.Join(dir, tc.desc+".tsv"), filepath.Join(dir, tc.desc+".txt")
			args := []string{"-direct", direct, "-direct-wall", "70.4", "-crishim", tc.crishim, "-crishim-wall", "140.8",
				"-summary", summary, "-differing", differing}
			if tc.rerun != nil {
				args = append(args, "-rerun-direct", tc.rerun[0], "-rerun-crishim", tc.rerun[1])
			}
			var out strings.Builder
			if err := run(args, &out); (err != nil) != tc.wantErr {
				t.Fatalf("run() error = %v, want error %v; output:\n%s", err, tc.wantErr, out.String())
			}
			got, err := os.ReadFile(summary)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("summary = %q, want %q", got, tc.want)
			}
			names, _ := os.ReadFile(differing)
			if want := map[bool]string{true: "", false: pulled + "\n"}[tc.crishim == direct]; string(names) != want {
				t.Errorf("differing = %q, want %q", names, want)
			}
		})
	}
}
