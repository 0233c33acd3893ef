package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/bench/benchproc"
)

// bedLock serializes use of the shared test bed between its users.
const bedLock = "/var/tmp/crishim-bed.lock"

// runBed runs the real-runtime scenarios on the test bed (containerd 1.6)
// when it is installed: it takes the bed lock, brings the bed up, measures,
// and tears the bed down before releasing the lock.
func runBed(c *config, dir string, rep *Report) error {
	root := benchproc.RepoRoot()
	bedSh := filepath.Join(root, "test/bed/bed.sh")
	switch c.bed {
	case "off":
		return fmt.Errorf("disabled (-bed off): %w", errSkip)
	case "on", "auto":
	default:
		return fmt.Errorf("-bed %q: want auto, on or off", c.bed)
	}
	if c.bed == "auto" {
		if os.Geteuid() != 0 {
			return fmt.Errorf("needs root (containerd, CNI, cgroups): %w", errSkip)
		}
		if _, err := exec.LookPath("containerd"); err != nil {
			return fmt.Errorf("not installed (make bed-up once installs it): %w", errSkip)
		}
		cache := os.Getenv("BED_CACHE")
		if cache == "" {
			cache = "/var/cache/crishim-bed"
		}
		if _, err := os.Stat(filepath.Join(cache, "bin/crictl")); err != nil {
			return fmt.Errorf("tools not built (make bed-up once builds them): %w", errSkip)
		}
	}
	if !c.only.MatchString("bed ") {
		return fmt.Errorf("not selected by -only: %w", errSkip)
	}

	lf, err := os.OpenFile(bedLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		fmt.Fprintf(os.Stderr, "waiting for the test bed lock %s ...\n", bedLock)
		if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	locked := time.Now()

	bedLog := filepath.Join(dir, "bed.log")
	bed := func(args ...string) ([]byte, error) {
		cmd := exec.Command(bedSh, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		f, _ := os.OpenFile(bedLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if f != nil {
			f.Write(out.Bytes())
			f.Close()
		}
		if err != nil {
			return out.Bytes(), fmt.Errorf("bed.sh %s: %w\n%s", strings.Join(args, " "), err, benchproc.Tail(bedLog))
		}
		return out.Bytes(), nil
	}
	fmt.Fprintf(os.Stderr, "%s: test bed up ...\n", time.Now().Format("15:04:05"))
	defer func() {
		if _, err := bed("down"); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		fmt.Fprintf(os.Stderr, "%s: test bed down (lock held %s)\n", time.Now().Format("15:04:05"), time.Since(locked).Round(time.Second))
	}()
	if _, err := bed("up"); err != nil {
		return err
	}
	envOut, err := bed("env")
	if err != nil {
		return err
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(envOut))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			env[k] = v
		}
	}
	ctrd, bedDir, cgroup, registry := env["CONTAINERD_SOCK"], env["BED_DIR"], env["BED_CGROUP"], env["REGISTRY"]
	if v := env["RUNTIME_SOCK"]; v != "" {
		ctrd = v
	}
	rep.Settings["bed_runtime"] = env["BED_RUNTIME"]
	if rep.Settings["bed_runtime"] == "" {
		rep.Settings["bed_runtime"] = "containerd1"
	}
	if ctrd == "" || bedDir == "" {
		return fmt.Errorf("bed.sh env gave no CONTAINERD_SOCK or BED_DIR")
	}
	return measureBed(c, dir, rep, ctrd, bedDir, cgroup, registry)
}

func measureBed(c *config, dir string, rep *Report, ctrd, bedDir, cgroup, registry string) error {
	// The same paths as in the fake scenarios (-compare's aside), in front
	// of containerd.
	tb := &testbed{c: c, dir: dir, prefix: "bed-", upSock: ctrd}
	defer tb.stop()
	for _, p := range c.paths {
		if _, err := tb.start(p, benchproc.CrishimConfig{RuntimeEndpoint: "unix://" + ctrd}); err != nil {
			return err
		}
	}
	targets := tb.targets
	direct := targets[0].cc

	image := registry + "/busybox:1.35"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := new(runtimeapi.ImageStatusResponse)
	if err := direct.Invoke(ctx, runtimeapi.ImageService_ImageStatus_FullMethodName, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}}, st); err != nil {
		return err
	}
	if st.GetImage() == nil {
		if err := direct.Invoke(ctx, runtimeapi.ImageService_PullImage_FullMethodName, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}, new(runtimeapi.PullImageResponse)); err != nil {
			return fmt.Errorf("pull %s: %w", image, err)
		}
	}
	logDir := filepath.Join(bedDir, "podlogs", "bench")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}

	var seq atomic.Int64
	podCycle := func(ctx context.Context, cc *grpc.ClientConn, w, i int) (int, error) {
		n := seq.Add(1)
		name := fmt.Sprintf("bench-%d-%d", w, n)
		cfg := &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "crishim-bench", Uid: fmt.Sprintf("%s-%d", name, time.Now().UnixNano())},
			Hostname:     name,
			LogDirectory: logDir,
			Labels:       map[string]string{"crishim-bench": "1"},
			Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/" + cgroup + "/bench"},
		}
		run := new(runtimeapi.RunPodSandboxResponse)
		if err := cc.Invoke(ctx, runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, &runtimeapi.RunPodSandboxRequest{Config: cfg}, run); err != nil {
			return 0, fmt.Errorf("RunPodSandbox: %w", err)
		}
		id := run.GetPodSandboxId()
		if err := cc.Invoke(ctx, runtimeapi.RuntimeService_StopPodSandbox_FullMethodName, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}, new(runtimeapi.StopPodSandboxResponse)); err != nil {
			return 0, fmt.Errorf("StopPodSandbox: %w", err)
		}
		if err := cc.Invoke(ctx, runtimeapi.RuntimeService_RemovePodSandbox_FullMethodName, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}, new(runtimeapi.RemovePodSandboxResponse)); err != nil {
			return 0, fmt.Errorf("RemovePodSandbox: %w", err)
		}
		return 1, nil
	}
	list := unaryOp(runtimeapi.RuntimeService_ListContainers_FullMethodName,
		func(int, int) proto.Message { return &runtimeapi.ListContainersRequest{} },
		func() proto.Message { return new(runtimeapi.ListContainersResponse) }, c.raw)
	imageStatus := unaryOp(runtimeapi.ImageService_ImageStatus_FullMethodName,
		func(int, int) proto.Message {
			return &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}}
		},
		func() proto.Message { return new(runtimeapi.ImageStatusResponse) }, c.raw)

	base := scenario{targets: targets, direct: direct, timeout: 2 * time.Minute, duration: c.bedDuration, unit: "calls"}
	for _, sc := range []scenario{
		with(base, func(s *scenario) {
			s.name, s.op, s.unit, s.minIters = "bed RunPodSandbox+Stop+Remove", podCycle, "cycles", 8
		}),
		with(base, func(s *scenario) { s.name, s.op = "bed ListContainers", list }),
		with(base, func(s *scenario) { s.name, s.op = "bed ImageStatus", imageStatus }),
	} {
		if !c.only.MatchString(sc.name) {
			continue
		}
		rows, err := measure(c, &sc)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	return nil
}
