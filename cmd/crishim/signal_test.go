package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/daemontest"
	"github.com/crishim/crishim/test/fakecri"
)

// safetyTimeout bounds every wait of the subprocess tests: far beyond what
// the waits take, only there so a broken crishim fails the test instead of
// hanging it.
const safetyTimeout = time.Minute

// process is the crishim binary running as a subprocess.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *daemontest.LockedBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// startProcess runs the crishim binary with config and returns once it
// answers calls on sock.
func startProcess(t *testing.T, bin, config, sock string) *process {
	t.Helper()
	p := &process{t: t, cmd: exec.Command(bin, "--config", config), logs: &daemontest.LockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("crishim's log:\n%s", p.logs)
		}
	})
	rc := runtimeapi.NewRuntimeServiceClient(dialCrishim(t, sock))
	p.waitFor("crishim to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := rc.Version(ctx, &runtimeapi.VersionRequest{})
		return err == nil
	})
	return p
}

func dialCrishim(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (p *process) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitFor polls cond until it holds; crishim exiting first fails the test.
func (p *process) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(safetyTimeout)
	for !cond() {
		select {
		case <-p.exited:
			p.t.Fatalf("crishim exited (%v) while the test waited for %s", p.err, what)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %s within %v", what, safetyTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits until crishim's log has logged text n times.
func (p *process) waitLog(text string, n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d log lines with %q", n, text), func() bool { return strings.Count(p.logs.String(), text) >= n })
}

// wait returns crishim's exit error (nil for exit 0), killing it after the
// safety timeout.
func (p *process) wait() error {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(safetyTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Fatalf("crishim still running %v after the signals; killed", safetyTimeout)
		return nil
	}
}

// Log texts the signal tests synchronize on (logged by daemon.Run; the
// daemon package's TestSignalsInProcess uses the same).
const (
	logShuttingDown = "shutting down: no new calls"
	logIgnored      = "no reload while shutting down"
	logSecondSignal = "second stop signal while shutting down"
)

// TestSignalsWhileDraining runs the real binary, as systemd does, with
// calls in flight when the first stop signal arrives and further signals
// during the drain. A SIGHUP while draining (systemctl reload racing a
// stop) must neither reload nor end the process: the calls complete and
// crishim exits 0. A second SIGTERM or SIGINT ends the grace period at once:
// the calls are cancelled (Unavailable, as when the grace period runs out)
// and crishim exits 0 without waiting out the hour-long grace period.
func TestSignalsWhileDraining(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildCrishim(t, t.TempDir())
	tests := []struct {
		name   string
		first  syscall.Signal
		during []syscall.Signal // sent one at a time once the drain began
		// hold keeps the calls in the fake runtime until every signal was
		// handled, then lets them complete; otherwise they would take an
		// hour and only a cut grace period ends them.
		hold     bool
		wantCode codes.Code
	}{
		{"SIGHUP while draining is ignored", syscall.SIGTERM, []syscall.Signal{syscall.SIGHUP, syscall.SIGHUP, syscall.SIGHUP}, true, codes.OK},
		{"SIGHUP after SIGINT is ignored", syscall.SIGINT, []syscall.Signal{syscall.SIGHUP}, true, codes.OK},
		{"second SIGTERM ends the grace period", syscall.SIGTERM, []syscall.Signal{syscall.SIGTERM}, false, codes.Unavailable},
		{"second SIGINT ends the grace period", syscall.SIGINT, []syscall.Signal{syscall.SIGINT}, false, codes.Unavailable},
		{"SIGINT after SIGTERM ends the grace period", syscall.SIGTERM, []syscall.Signal{syscall.SIGINT}, false, codes.Unavailable},
		{"SIGHUP ignored, then SIGTERM ends the grace period", syscall.SIGTERM, []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM}, false, codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			method := runtimeapi.RuntimeService_StopContainer_FullMethodName
			release := make(chan struct{})
			var releaseOnce sync.Once
			t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the fake stops
			if tc.hold {
				r.Fake.Script(method, fakecri.Script{Respond: func(proto.Message) (proto.Message, error) {
					<-release
					return &runtimeapi.StopContainerResponse{}, nil
				}})
			} else {
				r.Fake.Script(method, fakecri.Script{Delay: time.Hour})
			}
			cfg := daemontest.WriteConfig(t, r.Base()+"shutdownGracePeriod: 1h\n")
			p := startProcess(t, bin, cfg, r.Sock)
			rc := runtimeapi.NewRuntimeServiceClient(dialCrishim(t, r.Sock))

			const calls = 6
			codesc := make(chan codes.Code, calls)
			for i := range calls {
				go func() {
					_, err := rc.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: fmt.Sprint("c", i)})
					codesc <- status.Code(err)
				}()
			}
			p.waitFor("every call to reach the runtime", func() bool { return len(r.Fake.Calls(method)) == calls })

			p.signal(tc.first)
			p.waitLog(logShuttingDown, 1)
			hups := 0
			for _, sig := range tc.during {
				p.signal(sig)
				if sig == syscall.SIGHUP {
					hups++
					p.waitLog(logIgnored, hups)
				}
			}
			if tc.hold {
				releaseOnce.Do(func() { close(release) })
			}
			if err := p.wait(); err != nil {
				t.Errorf("crishim exited with %v, want exit 0", err)
			}
			for range calls {
				if got := <-codesc; got != tc.wantCode {
					t.Errorf("in-flight StopContainer ended with %s, want %s", got, tc.wantCode)
				}
			}
			logs := p.logs.String()
			if strings.Contains(logs, "reloading the configuration") || strings.Contains(logs, "configuration reloaded") {
				t.Errorf("crishim reloaded while shutting down:\n%s", logs)
			}
			if cut := tc.wantCode != codes.OK; cut != strings.Contains(logs, logSecondSignal) {
				t.Errorf("log says a second signal cut the grace period: %v, want %v:\n%s", !cut, cut, logs)
			}
		})
	}
}
