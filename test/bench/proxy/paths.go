package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/crishim/crishim/test/bench/benchproc"
)

// The paths from the load generator to an upstream, as named in -paths, the
// JSON report and the markdown's memory table.
const (
	// pathDirect is no hop at all: every ratio is to it.
	pathDirect = "direct"
	// pathSplice is an L4 byte splice: the physical floor of one more
	// unix-socket hop, with no protocol work at all.
	pathSplice = "splice"
	// pathFloor is the naive gRPC-go raw forwarder: the floor of a
	// forwarder that terminates gRPC.
	pathFloor = "floor"
	// pathCrishim is the crishim binary under test, as built and
	// configured like every benchmark's crishim (benchproc): its one
	// passthrough is the HTTP/2 frame router.
	pathCrishim = "crishim"
	// pathCompare is a second crishim binary (-compare), fake scenarios
	// only; -compare-label names it in the markdown.
	pathCompare = "crishim-b"
)

// allPaths are the paths -paths may name, in the report's order: from no
// hop, through the cheapest possible hop and a gRPC-terminating forwarder,
// to crishim.
var allPaths = []string{pathDirect, pathSplice, pathFloor, pathCrishim}

// reportPaths is the report's row order: allPaths and the -compare binary.
var reportPaths = append(slices.Clone(allPaths), pathCompare)

// isCrishim says whether a path is a crishim (the binary under test or
// -compare's), as opposed to direct, the splice and the floor.
func isCrishim(path string) bool { return path == pathCrishim || path == pathCompare }

// parsePaths reads -paths. direct is required because every ratio, and so
// every target, is to direct in the same run; unknown names are refused
// rather than ignored so that a typo cannot quietly drop a row.
func parsePaths(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(allPaths, p) {
			return nil, fmt.Errorf("-paths: unknown path %q (known: %s)", p, strings.Join(allPaths, ","))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if !slices.Contains(out, pathDirect) {
		return nil, fmt.Errorf("-paths %q: must include %s, the reference of every ratio", s, pathDirect)
	}
	// The report's order, whatever the flag's.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(allPaths, a) - slices.Index(allPaths, b) })
	return out, nil
}

// testbed is the set of processes one group of scenarios measures through,
// in front of one upstream socket.
type testbed struct {
	c       *config
	dir     string
	prefix  string // of process, log and socket names: the bed's differ from the fake's
	upSock  string
	targets []*target
}

// start starts path in front of tb's upstream with crishim configured as
// cfg, connects the load generator to it and adds it to tb.targets. The
// caller's stop ends what start started, even after an error.
func (tb *testbed) start(path string, cfg benchproc.CrishimConfig) (*target, error) {
	t, err := tb.startProc(path, cfg)
	if err != nil {
		return nil, err
	}
	tb.targets = append(tb.targets, t)
	if t.cc, err = dial(t.socket); err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	return t, nil
}

func (tb *testbed) startProc(path string, cfg benchproc.CrishimConfig) (*target, error) {
	c, name := tb.c, tb.prefix+path
	switch path {
	case pathDirect:
		return &target{name: path, socket: tb.upSock}, nil
	case pathSplice, pathFloor:
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		sock := filepath.Join(tb.dir, name+".sock")
		p, err := benchproc.Start(name, filepath.Join(tb.dir, name+".log"), c.proxyEnv, self, "-role", path, "-socket", sock, "-upstream", tb.upSock)
		if err != nil {
			return nil, err
		}
		if err := p.WaitSocket(sock); err != nil {
			p.Stop()
			return nil, err
		}
		return &target{name: path, socket: sock, proxy: p}, nil
	case pathCrishim, pathCompare:
		// Both binaries as given, with the configuration every benchmark's
		// crishim has: nothing is written that one of them may not know.
		bin, env := c.crishim, c.proxyEnv
		if path == pathCompare {
			bin, env = c.compare, append(slices.Clone(c.proxyEnv), c.compareEnv...)
		}
		p, sock, err := benchproc.StartCrishim(bin, tb.dir, name, env, cfg)
		if err != nil {
			return nil, fmt.Errorf("path %s (%s): %w", path, bin, err)
		}
		return &target{name: path, socket: sock, proxy: p}, nil
	}
	return nil, fmt.Errorf("unknown path %q", path)
}

// stop closes the load generator's connections and stops the processes,
// proxies first so that none sees its upstream go away under load.
func (tb *testbed) stop() {
	for _, t := range tb.targets {
		if t.cc != nil {
			t.cc.Close()
		}
		t.proxy.Stop() // nil for direct: a no-op
	}
}

// runSplice is the splice path: per accepted connection, one connection to
// the upstream and io.Copy both ways. It understands nothing of what it
// carries (no HTTP/2, no gRPC; SETTINGS, PING and WINDOW_UPDATE go end to
// end), so what any forwarder costs above it is protocol work, not the hop.
// io.Copy between unix sockets copies through a 32 KiB user-space buffer:
// for gRPC's small writes that is fewer syscalls than splice(2), which
// needs a pipe in between.
func runSplice(socket, upstream string) error {
	stopping := make(chan struct{})
	l, err := listenUntilSignal(socket, func(l net.Listener) {
		close(stopping)
		l.Close()
	})
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-stopping:
				return nil
			default:
				return err
			}
		}
		go spliceConn(c, upstream)
	}
}

// spliceConn carries one client connection. Whichever side ends first ends
// both: HTTP/2 never half-closes, so there is nothing to keep open for.
func spliceConn(c net.Conn, upstream string) {
	u, err := net.Dial("unix", upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "splice:", err)
		c.Close()
		return
	}
	go func() {
		_, _ = io.Copy(u, c)
		u.Close()
		c.Close()
	}()
	_, _ = io.Copy(c, u)
	c.Close()
	u.Close()
}
