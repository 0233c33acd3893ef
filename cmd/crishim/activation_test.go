package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/daemontest"
)

// buildCrishim builds this command into dir.
func buildCrishim(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "crishim")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startActivated starts the crishim binary the way systemd does with socket
// activation: the listening socket as fd 3, LISTEN_FDS=1 and LISTEN_PID set
// to the new process's pid (the shell's, which exec keeps).
func startActivated(t *testing.T, bin, config string, listener *os.File, log *os.File) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, bin, "--config", config)
	cmd.ExtraFiles = []*os.File{listener}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestSocketActivationRestartRefusesNothing restarts crishim under a client
// calling in a loop, on a listening socket that outlives both processes (as
// systemd's crishim.socket does): no connection is refused and no call fails.
func TestSocketActivationRestartRefusesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	r := newRig(t)
	dir, fake := r.Dir, r.Fake
	bin := buildCrishim(t, dir)
	sock := filepath.Join(dir, "crishim.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lf, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	// listen.path differs from the activated socket on purpose: crishim must
	// serve the socket it was given and never touch listen.path.
	cfg := daemontest.WriteConfig(t, fmt.Sprintf("listen:\n  path: %s/unused.sock\nruntimeEndpoint: %s\nmetrics:\n  address: \"\"\n", dir, fake.Endpoint()))
	logf, err := os.Create(filepath.Join(dir, "crishim.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	first := startActivated(t, bin, cfg, lf, logf)

	var refused atomic.Int64
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "unix", sock)
		if err != nil {
			refused.Add(1)
		}
		return c, err
	}
	conn, err := grpc.NewClient("passthrough:///crishim", grpc.WithContextDialer(dial), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	loop := daemontest.StartCallLoop(t, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		return err
	})
	ok, failed := &loop.OK, &loop.Failed
	waitUntil := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for ok.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d calls succeeded", ok.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUntil(200)
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err != nil {
		t.Errorf("first crishim exited with %v after SIGTERM, want 0", err)
	}
	beforeRestart := ok.Load()
	time.Sleep(100 * time.Millisecond) // calls wait in the backlog meanwhile
	second := startActivated(t, bin, cfg, lf, logf)
	waitUntil(beforeRestart + 200)
	loop.Stop()
	_ = second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		t.Errorf("second crishim exited with %v, want 0", err)
	}
	t.Logf("calls: %d ok, %d failed; %d refused connections", ok.Load(), failed.Load(), refused.Load())
	if refused.Load() != 0 || failed.Load() != 0 {
		t.Errorf("%d refused connections and %d failed calls across the restart, want 0 and 0", refused.Load(), failed.Load())
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the activated socket is gone after crishim stopped: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "unused.sock")); !os.IsNotExist(err) {
		t.Errorf("crishim created listen.path although it was socket-activated")
	}
}
