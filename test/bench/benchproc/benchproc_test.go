package benchproc

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLatencyOf(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Microsecond)
	}
	l := LatencyOf(lat)
	if l != (Latency{Samples: 100, P50: 50, P90: 90, P99: 99}) {
		t.Errorf("LatencyOf = %+v, want 100 samples, p50 50, p90 90, p99 99 (nearest rank)", l)
	}
	if lat[0] != 100*time.Microsecond {
		t.Error("LatencyOf sorted its input in place")
	}
	if l := LatencyOf(nil); l != (Latency{}) {
		t.Errorf("LatencyOf(nil) = %+v, want zero", l)
	}
}

func TestCrishimConfig(t *testing.T) {
	got := CrishimConfig{RuntimeEndpoint: "unix:///r.sock", NRISocket: "/d/nri/nri.sock"}.yaml("/d/s.sock", "127.0.0.1:9")
	want := `listen:
  path: /d/s.sock
  mode: "0600"
runtimeEndpoint: unix:///r.sock
log:
  level: info
  format: text
metrics:
  address: 127.0.0.1:9
  pprof: false
nri:
  socket: /d/nri/nri.sock
`
	if got != want {
		t.Errorf("yaml:\n%s\nwant:\n%s", got, want)
	}
	got = CrishimConfig{RuntimeEndpoint: "unix:///r.sock", Pprof: true, Pulls: "{mode: serial}"}.yaml("/d/s.sock", "127.0.0.1:9")
	if !strings.Contains(got, "  pprof: true\nimages:\n  pulls: {mode: serial}\n") || strings.Contains(got, "nri:") {
		t.Errorf("yaml with pprof and pulls:\n%s", got)
	}
}

func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "p.log")
	p, err := Start("sh", log, []string{"BENCHPROC_TEST=x"}, "/bin/sh", "-c", "echo $BENCHPROC_TEST; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	// WaitSocket only dials: a socket served here will do.
	socket := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := p.WaitSocket(socket); err != nil {
		t.Error(err)
	}
	// The added variable reaches the child, whose output is in the log.
	for i := 0; Tail(log) == "" && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if got := Tail(log); got != "x\n" {
		t.Errorf("log %q, want the variable's value", got)
	}
	p.Stop()
	if !p.Exited() {
		t.Error("not exited after Stop")
	}
	var none *Proc
	none.Stop()
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte(strings.Repeat("a", 5000)+"end"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Tail(path); len(got) != 3000 || !strings.HasSuffix(got, "end") {
		t.Errorf("Tail: %d bytes, want the last 3000", len(got))
	}
}
