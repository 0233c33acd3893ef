package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/cmd/crishim/daemon"
	"github.com/crishim/crishim/test/daemontest"
)

// metric returns the value of the unlabelled metric name on the
// /metrics page at addr, and whether it is there.
func metric(t *testing.T, addr, name string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// rssKiB is a process's resident set size (VmRSS) in KiB.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	return procStatusKiB(t, pid, "VmRSS")
}

// procStatusKiB reads a field in KiB of /proc/PID/status.
func procStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s %q: %v", field, v, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// http2Preface is what a gRPC client sends first: the HTTP/2 connection
// preface and an empty SETTINGS frame. A storm connection that sends it
// costs crishim a whole gRPC transport, as a real idle client does.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00")

// TestConnectionStorm opens 10,000 idle client connections to the real
// binary running on its default limits: crishim never serves more than
// listen.maxConnections at once (the rest wait in the socket's backlog, or
// are refused by the kernel once the backlog is full), a well-behaved
// client is served once the storm is over, and crishim's memory falls back
// close to what it was before the storm. A client connected before the
// storm, as the kubelet is, is served throughout.
func TestConnectionStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const storm = 10000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < storm+1000 && lim.Max >= storm+1000 {
		lim.Cur = storm + 1000
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if lim.Cur < storm+1000 {
		t.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, storm)
	}

	r := newRig(t)
	bin := buildCrishim(t, r.Dir)
	p := startProcess(t, bin, daemontest.WriteConfig(t, r.Base()), r.Sock)
	pid := p.cmd.Process.Pid
	rc := runtimeapi.NewRuntimeServiceClient(dialCrishim(t, r.Sock))
	for range 10 {
		if _, err := rc.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	limit, ok := metric(t, r.MetricsAddr, "crishim_server_connections_limit")
	if def := daemon.DefaultConfig().Listen.MaxConnections; !ok || limit != float64(def) {
		t.Fatalf("crishim_server_connections_limit = %v (exported: %v), want the default %d", limit, ok, def)
	}
	open := func() float64 {
		t.Helper()
		v, ok := metric(t, r.MetricsAddr, "crishim_server_connections_open")
		if !ok {
			t.Fatal("crishim_server_connections_open is not exported")
		}
		return v
	}
	idle := rssKiB(t, pid)

	// The storm: connect, send the preface, stay idle.
	conns := make([]net.Conn, 0, storm)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused, peakOpen := 0, 0.0
	check := func() {
		t.Helper()
		n := open()
		peakOpen = max(peakOpen, n)
		if n > limit {
			t.Fatalf("%v connections open, over the limit of %v", n, limit)
		}
	}
	for i := range storm {
		c, err := net.Dial("unix", r.Sock)
		if err != nil {
			// The socket's backlog (net.core.somaxconn) is full too: the
			// kernel refuses the connection (EAGAIN).
			refused++
			continue
		}
		conns = append(conns, c)
		if _, err := c.Write(http2Preface); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%500 == 0 {
			check()
		}
	}
	p.waitFor("the open connections to reach the limit", func() bool { check(); return peakOpen == limit })
	check()
	during := rssKiB(t, pid)
	// A client connected before the storm, as the kubelet is, is still
	// served at the limit.
	ctx, cancel := context.WithTimeout(context.Background(), safetyTimeout)
	defer cancel()
	if _, err := rc.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("a client connected before the storm, at the limit: %v", err)
	}

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	p.waitFor("the storm's connections to close", func() bool { check(); return open() <= 2 })
	if _, err := runtimeapi.NewRuntimeServiceClient(dialCrishim(t, r.Sock)).Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("a new client after the storm: %v", err)
	}
	// A memory bound, not a timing goal: the deadline is generous.
	margin := max(idle/4, 8<<10)
	after := rssKiB(t, pid)
	p.waitFor(fmt.Sprintf("RSS to fall back within %d KiB of the idle %d KiB", margin, idle), func() bool {
		after = rssKiB(t, pid)
		return after <= idle+margin
	})
	t.Logf("%d connections (%d accepted by the kernel, %d refused with a full backlog), limit %v, peak open %v; RSS idle %d KiB, at the limit %d KiB, peak %d KiB (VmHWM: the backlog's connections are accepted and closed in turn after the storm), after %d KiB",
		storm, storm-refused, refused, limit, peakOpen, idle, during, procStatusKiB(t, pid, "VmHWM"), after)
}
