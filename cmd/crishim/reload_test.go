package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers"
	"github.com/crishim/crishim/test/fakecri"
)

// TestReloadUnderLoad reloads 100 times, alternating valid and invalid
// files, while clients call in a loop: no call fails, every valid file
// applies (a deny rule comes and goes), and no invalid file ever applies
// (their deny rule for another namespace never takes effect).
func TestReloadUnderLoad(t *testing.T) {
	old := watchInterval
	watchInterval = time.Hour // SIGHUP only: one reload per signal
	defer func() { watchInterval = old }()

	dir, err := os.MkdirTemp("", "cr")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fake, err := fakecri.Start(filepath.Join(dir, "up.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Stop()
	sock := filepath.Join(dir, "crishim.sock")
	metricsAddr := freePort(t)
	base := fmt.Sprintf("listen:\n  path: %s\nruntimeEndpoint: %s\nmetrics:\n  address: %s\nhandlers:\n  - name: runc\n    default: true\n", sock, fake.Endpoint(), metricsAddr)
	valid := func(deny bool) string {
		if !deny {
			return base
		}
		return base + "routing:\n  rules:\n    - name: flip\n      match: {namespaces: [flip]}\n      deny: flipped\n"
	}
	// Invalid, with a rule that would deny "other" if it were ever applied.
	invalid := []string{
		base + "routing:\n  rules:\n    - name: other\n      match: {namespaces: [other]}\n      deny: applied an invalid file\nbogusKey: 1\n",
		base + "routing:\n  rules:\n    - name: other\n      match: {namespaces: [other]}\n      deny: applied an invalid file\n    - name: bad\n      handler: nosuch\n",
		base + "routing:\n  rules:\n    - name: other\n      match: {namespaces: [other]}\n      deny: applied an invalid file\nlog:\n  level: loud\n",
	}
	path := filepath.Join(dir, "config.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(valid(true))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config", path}, io.Discard, io.Discard) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := rc.Version(ctx, &runtimeapi.VersionRequest{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("crishim never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The client loop: ordinary calls and sandboxes in an unaffected namespace.
	var failed, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err1 := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				_, err2 := rc.RunPodSandbox(ctx, pod("steady"))
				calls.Add(2)
				if err1 != nil || err2 != nil {
					failed.Add(1)
					t.Logf("call failed during reloads: %v / %v", err1, err2)
				}
			}
		}()
	}

	reloads := func() float64 {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var sum float64
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "crishim_config_reloads_total{") {
				var v float64
				fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
				sum += v
			}
		}
		return sum
	}
	deny := true
	for i := 0; i < 100; i++ {
		if i%2 == 0 {
			deny = !deny
			write(valid(deny))
		} else {
			write(invalid[i%len(invalid)])
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		until := time.Now().Add(10 * time.Second)
		for reloads() < float64(i+1) {
			if time.Now().After(until) {
				t.Fatalf("reload %d did not happen", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		_, err := rc.RunPodSandbox(ctx, pod("flip"))
		if deny != (status.Code(err) == codes.PermissionDenied) {
			t.Fatalf("after reload %d (valid config denies flip: %v): RunPodSandbox(flip) = %v", i, deny, err)
		}
		if _, err := rc.RunPodSandbox(ctx, pod("other")); err != nil {
			t.Fatalf("after reload %d: an invalid file was applied: RunPodSandbox(other) = %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("100 reloads: %d calls from the client loop, %d failed", calls.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d calls failed during the reloads, want 0", failed.Load())
	}
	if calls.Load() < 100 {
		t.Errorf("only %d calls ran during the reloads: the loop proves little", calls.Load())
	}
}

func pod(ns string) *runtimeapi.RunPodSandboxRequest {
	return &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns, Uid: ns}}}
}

// TestReloadReportsRestartOnly changes a setting that needs a restart: the
// rest applies, the log says which setting waits for a restart.
func TestReloadReportsRestartOnly(t *testing.T) {
	cfg := &Config{}
	*cfg = *defaultConfig()
	n := &node{}
	n.cfg.Store(cfg)
	next := *cfg
	next.RuntimeEndpoint = "unix:///run/other.sock"
	next.Handlers = nil
	keys := n.restartOnly(&next)
	if len(keys) != 1 || keys[0] != "runtimeEndpoint" {
		t.Errorf("restart-only settings %v, want [runtimeEndpoint]", keys)
	}
	next.Images.Pulls = &handlers.PullConfig{Mode: "serial"}
	if keys := n.restartOnly(&next); len(keys) != 2 || !strings.Contains(keys[1], "images.pulls") {
		t.Errorf("turning scheduling on: %v", keys)
	}
}

// TestReloadOnFileChange: editing the file is enough, no signal needed.
func TestReloadOnFileChange(t *testing.T) {
	old := watchInterval
	watchInterval = 20 * time.Millisecond
	defer func() { watchInterval = old }()
	dir, err := os.MkdirTemp("", "cw")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fake, err := fakecri.Start(filepath.Join(dir, "up.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Stop()
	sock := filepath.Join(dir, "crishim.sock")
	base := fmt.Sprintf("listen:\n  path: %s\nruntimeEndpoint: %s\nmetrics:\n  address: \"\"\nhandlers:\n  - name: runc\n    default: true\n", sock, fake.Endpoint())
	path := writeConfig(t, base)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config", path}, io.Discard, io.Discard) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	waitCode := func(want codes.Code) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := rc.RunPodSandbox(ctx, pod("edited"))
			if status.Code(err) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("RunPodSandbox(edited) = %v, want %s", err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCode(codes.OK)
	if err := os.WriteFile(path, []byte(base+"routing:\n  rules:\n    - name: edit\n      match: {namespaces: [edited]}\n      deny: edited in place\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitCode(codes.PermissionDenied)
}
