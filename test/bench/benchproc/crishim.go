package benchproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CrishimConfig is what a benchmark varies in crishim's configuration.
// Everything else is the shipped default (logging at info, metrics on,
// profiler off), the same for every benchmark, so that the crishim path of
// one benchmark is the crishim path of the other.
type CrishimConfig struct {
	// RuntimeEndpoint is the runtime crishim forwards to (unix:///path).
	RuntimeEndpoint string
	// Pprof serves Go's profiler on the metrics listener, for profiles
	// taken during a run.
	Pprof bool
	// Pulls is the images.pulls section as a YAML flow mapping (empty:
	// none, the kubelet's own pull scheduling).
	Pulls string
	// NRISocket is the nri section's socket (empty: no nri section, NRI
	// off).
	NRISocket string
}

// yaml is c as crishim's configuration file, listening on socket and
// serving metrics on metrics.
func (c CrishimConfig) yaml(socket, metrics string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  path: %s\n  mode: \"0600\"\n", socket)
	fmt.Fprintf(&b, "runtimeEndpoint: %s\n", c.RuntimeEndpoint)
	fmt.Fprintf(&b, "log:\n  level: info\n  format: text\n")
	fmt.Fprintf(&b, "metrics:\n  address: %s\n  pprof: %t\n", metrics, c.Pprof)
	if c.Pulls != "" {
		fmt.Fprintf(&b, "images:\n  pulls: %s\n", c.Pulls)
	}
	if c.NRISocket != "" {
		fmt.Fprintf(&b, "nri:\n  socket: %s\n", c.NRISocket)
	}
	return b.String()
}

// StartCrishim runs the crishim binary bin as name, with env added to its
// environment and cfg written to dir/name.yaml, and waits until it is
// ready. It returns the process and the socket crishim serves on
// (dir/name.sock); its log is dir/name.log.
func StartCrishim(bin, dir, name string, env []string, cfg CrishimConfig) (*Proc, string, error) {
	socket := filepath.Join(dir, name+".sock")
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg.yaml(socket, addr)), 0o600); err != nil {
		return nil, "", err
	}
	p, err := Start(name, filepath.Join(dir, name+".log"), env, bin, "--config", path)
	if err != nil {
		return nil, "", err
	}
	p.Metrics = addr
	if err := p.WaitReady(); err != nil {
		p.Stop()
		return nil, "", err
	}
	return p, socket, nil
}

// freePort returns a loopback address nothing listens on, for crishim's
// metrics: several crishims run at once. There is a race with other
// programs until crishim binds it; a clash fails WaitReady.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Build compiles a package of this module (e.g. ./cmd/crishim) into out,
// with the build tags given, for a benchmark run without a prebuilt
// binary. It builds from the module's root, so that a benchmark can be
// run from any directory of the module.
func Build(pkg, out string, tags ...string) error {
	fmt.Fprintf(os.Stderr, "building %s ...\n", pkg)
	args := []string{"build"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, "-o", out, pkg)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = RepoRoot(), os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// RepoRoot is the module's root: the nearest directory up from the working
// directory with a go.mod (the working directory when there is none), so
// that the benchmarks find the module's packages and scripts wherever they
// are run from.
func RepoRoot() string {
	d, _ := os.Getwd()
	for p := d; p != "/"; p = filepath.Dir(p) {
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p
		}
	}
	return d
}
