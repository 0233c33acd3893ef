package benchproc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a child process of a benchmark: a crishim, a plugin, a fake
// runtime or a forwarder. Its fields are read by the benchmarks for their
// own error messages and measurements (PIDs for CPU and memory, the metrics
// address for scrapes and profiles).
type Proc struct {
	// Name names the process in error messages.
	Name string
	// Cmd is the running command.
	Cmd *exec.Cmd
	// LogPath is the file that has the process's stdout and stderr, quoted
	// (and its end shown) when the process fails.
	LogPath string
	// Metrics is crishim's metrics listener (host:port), set by
	// StartCrishim; empty for other processes.
	Metrics string
}

// Start starts argv with its output in logPath and env added to the
// benchmark's own environment (nil: the same environment), so that an
// experiment can change a child's GOMAXPROCS or GOGC alone.
//
// The child gets its own process group, so that a ^C to the benchmark
// reaches it only through Stop (or through Pdeathsig when the benchmark
// dies): the benchmark decides the order, e.g. plugins before the crishim
// they are connected to.
func Start(name, logPath string, env []string, argv ...string) (*Proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// The child has its own copy of the descriptor once started.
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &Proc{Name: name, Cmd: cmd, LogPath: logPath}, nil
}

// Pid is the process's ID, for reading its CPU and memory from /proc.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended, so that a wait for it
// gives up at once instead of at its timeout. It does not reap the process
// (Stop does), and so it sees only a process that is reaped or gone: an
// ended child not yet reaped (a zombie) still answers kill(pid, 0).
func (p *Proc) Exited() bool {
	return p.Cmd.ProcessState != nil || syscall.Kill(p.Pid(), 0) != nil
}

// Stop ends the process with SIGTERM, then SIGKILL after 10 s, and reaps
// it. A nil Proc is a no-op, so that clean-ups need not know which
// processes were started.
func (p *Proc) Stop() {
	if p == nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-done
	}
}

// WaitSocket waits until the process accepts connections on the unix
// socket (200 tries, 25 ms apart), for children that have no readiness
// endpoint.
func (p *Proc) WaitSocket(socket string) error {
	for range 200 {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s did not serve %s (log %s):\n%s", p.Name, socket, p.LogPath, Tail(p.LogPath))
}

// WaitReady waits for crishim's /readyz on p.Metrics (400 tries, 50 ms
// apart), which answers 200 once crishim has reached its runtime: a call
// measured before would include crishim's start-up.
func (p *Proc) WaitReady() error {
	url := "http://" + p.Metrics + "/readyz"
	for range 400 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s (log %s):\n%s", p.Name, url, p.LogPath, Tail(p.LogPath))
}

// Tail returns the end of a log (3000 bytes at most), for error messages:
// the cause of a failure is usually in a child's last lines, and the log
// file goes away with the benchmark's temporary directory.
func Tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
