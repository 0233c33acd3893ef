package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is the shared test rig (test/daemontest) and what this package's
// tests add to it.
type rig struct{ *daemontest.Rig }

func newRig(t *testing.T) *rig { return &rig{daemontest.NewRig(t)} }

func TestServeRejectsBadConfigBeforeListening(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	err := run(context.Background(), []string{"--listen", sock, "--log-level", "loud"}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket created despite the bad config")
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "crishim "+shim.Version) {
		t.Errorf("version printed %q", out.String())
	}
}
