package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process of the benchmark: the fake upstream, the floor
// forwarder or a crishim.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	// metrics is crishim's metrics listener (host:port), empty for others.
	metrics string
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func startProc(name, logPath string, env []string, argv ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a ^C to the benchmark reaches children only
	// through stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	lf.Close()
	return &proc{name: name, cmd: cmd, logPath: logPath}, nil
}

// stop ends the process with SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// waitSocket waits until the process accepts connections on socket.
func (p *proc) waitSocket(socket string) error {
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return nil
		}
		if p.cmd.ProcessState != nil || syscall.Kill(p.pid(), 0) != nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s did not serve %s (log %s):\n%s", p.name, socket, p.logPath, tail(p.logPath))
}

// waitReady waits for crishim's /readyz.
func (p *proc) waitReady() error {
	url := "http://" + p.metrics + "/readyz"
	for i := 0; i < 200; i++ {
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
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s (log %s):\n%s", p.name, url, p.logPath, tail(p.logPath))
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// crishimConfig is what the benchmark runs crishim with: the shipped
// defaults (logging at info, metrics on) plus the scenario's pull policy.
func crishimConfig(socket, upstream, metrics string, pprof bool, pulls string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  path: %s\n  mode: \"0600\"\n", socket)
	fmt.Fprintf(&b, "runtimeEndpoint: unix://%s\n", upstream)
	fmt.Fprintf(&b, "log:\n  level: info\n  format: text\n")
	fmt.Fprintf(&b, "metrics:\n  address: %s\n  pprof: %t\n", metrics, pprof)
	if pulls != "" {
		fmt.Fprintf(&b, "images:\n  pulls: %s\n", pulls)
	}
	return b.String()
}

// startCrishim runs the built crishim binary with a config file in dir.
func startCrishim(bin, dir, name, upstream string, env []string, pprof bool, pulls string) (*proc, string, error) {
	socket := filepath.Join(dir, name+".sock")
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(crishimConfig(socket, upstream, addr, pprof, pulls)), 0o600); err != nil {
		return nil, "", err
	}
	p, err := startProc(name, filepath.Join(dir, name+".log"), env, bin, "--config", cfg)
	if err != nil {
		return nil, "", err
	}
	p.metrics = addr
	if err := p.waitReady(); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, socket, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// memStatus returns VmRSS and VmHWM (peak RSS) of pid in bytes.
func memStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm, nil
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime returns the user+system CPU time pid has used (0 for "self" means
// the benchmark itself).
func cpuTime(pid int) time.Duration {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * clockTick
}

// cpuMeter snapshots the CPU time of a set of processes.
type cpuMeter map[string]int // name -> pid (0: the benchmark itself)

func (m cpuMeter) read() map[string]time.Duration {
	out := make(map[string]time.Duration, len(m))
	for name, pid := range m {
		out[name] = cpuTime(pid)
	}
	return out
}

func since(before, after map[string]time.Duration) map[string]time.Duration {
	out := make(map[string]time.Duration, len(after))
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// loadAvg returns the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

var errSkip = errors.New("skipped")
