package main

import (
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePaths(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: strings.Join(allPaths, ","), want: []string{"direct", "splice", "floor", "crishim"}},
		{in: "crishim, floor,direct,crishim,", want: []string{"direct", "floor", "crishim"}},
		{in: "direct", want: []string{"direct"}},
		{in: "splice,crishim", wantErr: "must include direct"},
		{in: "", wantErr: "must include direct"},
		// The passthroughs of before the frame router are gone.
		{in: "direct,crishim-frames", wantErr: `unknown path "crishim-frames"`},
		{in: "direct,crishim-grpc", wantErr: `unknown path "crishim-grpc"`},
		{in: "direct,crishim-b", wantErr: `unknown path "crishim-b"`}, // -compare's, not -paths'
	} {
		got, err := parsePaths(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parsePaths(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parsePaths(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestSpliceConn carries bytes both ways through spliceConn to an echo
// upstream, and checks that the client's close ends the upstream's
// connection (no connection left behind per client).
func TestSpliceConn(t *testing.T) {
	up := filepath.Join(t.TempDir(), "up.sock")
	l, err := net.Listen("unix", up)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	upClosed := make(chan struct{})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(c, c) // echo until the splice closes its end
		c.Close()
		close(upClosed)
	}()
	client, server := net.Pipe()
	go spliceConn(server, up)
	msg := []byte(strings.Repeat("frame", 20000)) // more than one copy buffer
	go func() { _, _ = client.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatal("echo differs from what was sent")
	}
	client.Close()
	select {
	case <-upClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream connection still open after the client closed")
	}
}

func TestLabels(t *testing.T) {
	for _, tc := range []struct {
		compareLabel, path, want string
		crishim                  bool
	}{
		{compareLabel: "crishim 831507b (gRPC passthrough)", path: pathCompare, want: "crishim 831507b (gRPC passthrough)", crishim: true},
		{compareLabel: "", path: pathCompare, want: pathCompare, crishim: true},
		{compareLabel: "old", path: pathCrishim, want: "crishim", crishim: true},
		{compareLabel: "old", path: pathSplice, want: "splice"},
		{compareLabel: "old", path: pathFloor, want: "floor"},
		{compareLabel: "old", path: pathDirect, want: "direct"},
	} {
		c := &config{compareLabel: tc.compareLabel}
		if got := c.label(tc.path); got != tc.want {
			t.Errorf("label(%q) with -compare-label %q = %q, want %q", tc.path, tc.compareLabel, got, tc.want)
		}
		rep := &Report{Labels: map[string]string{tc.path: c.label(tc.path)}}
		if got := rep.label(tc.path); got != tc.want {
			t.Errorf("Report.label(%q) = %q, want %q", tc.path, got, tc.want)
		}
		if got := isCrishim(tc.path); got != tc.crishim {
			t.Errorf("isCrishim(%q) = %v, want %v", tc.path, got, tc.crishim)
		}
	}
	if got := (&Report{}).label(pathCompare); got != pathCompare {
		t.Errorf("label without Labels = %q, want the path", got)
	}
}
