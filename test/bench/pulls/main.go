// Command pulls measures crishim's pull scheduling against a fake runtime
// with a fixed per-pull latency: the wall time of a burst of PullImage calls
// under serial and parallel(k) scheduling, with and without de-duplication,
// against the ideal, and how many upstream pulls each made.
//
//	go run ./test/bench/pulls [-latency 200ms] [-images 8] [-copies 4] [-out results.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/pulls"
	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
)

type scenario struct {
	name     string
	parallel int // 0: serial
	dedup    bool
}

func main() {
	latency := flag.Duration("latency", 200*time.Millisecond, "time the fake runtime takes per pull")
	images := flag.Int("images", 8, "distinct images in the burst")
	copies := flag.Int("copies", 4, "concurrent requests per image (pods sharing an image)")
	out := flag.String("out", "", "also write the table (markdown) to this file")
	flag.Parse()
	if err := run(*latency, *images, *copies, *out); err != nil {
		fmt.Fprintln(os.Stderr, "pulls:", err)
		os.Exit(1)
	}
}

func run(latency time.Duration, images, copies int, out string) error {
	scenarios := []scenario{
		{"serial, no de-duplication (the kubelet's default)", 0, false},
		{"serial, de-duplicated", 0, true},
		{"parallel(2), de-duplicated", 2, true},
		{"parallel(4), no de-duplication", 4, false},
		{"parallel(4), de-duplicated", 4, true},
		{fmt.Sprintf("parallel(%d), de-duplicated", images), images, true},
	}
	n := images * copies
	var b strings.Builder
	fmt.Fprintf(&b, "%d PullImage calls (%d images x %d pods each), fake runtime latency %v per pull\n\n", n, images, copies, latency)
	fmt.Fprintf(&b, "| scheduling | wall time | x ideal | upstream pulls |\n|---|---:|---:|---:|\n")
	ideal := latency
	for _, sc := range scenarios {
		wall, calls, err := measure(sc, latency, images, copies)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		fmt.Fprintf(&b, "| %s | %.2fs | %.1f | %d |\n", sc.name, wall.Seconds(), wall.Seconds()/ideal.Seconds(), calls)
	}
	fmt.Fprintf(&b, "| ideal (every distinct image once, all at once) | %.2fs | 1.0 | %d |\n", ideal.Seconds(), images)
	fmt.Print(b.String())
	if out != "" {
		return os.WriteFile(out, []byte(b.String()), 0o644)
	}
	return nil
}

func measure(sc scenario, latency time.Duration, images, copies int) (time.Duration, int, error) {
	dir, err := os.MkdirTemp("", "pb")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	fake, err := fakecri.Start(filepath.Join(dir, "up.sock"))
	if err != nil {
		return 0, 0, err
	}
	defer fake.Stop()
	fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Delay: latency, Response: &runtimeapi.PullImageResponse{ImageRef: "sha256:x"}})

	pc := pulls.Config{Mode: "parallel", MaxParallel: sc.parallel, Deduplicate: &sc.dedup}
	if sc.parallel == 0 {
		pc.Mode = "serial"
	}
	m, err := pulls.NewMetrics(prometheus.NewRegistry(), nil)
	if err != nil {
		return 0, 0, err
	}
	sched := pulls.NewScheduler(pc.Limits(), pc.Dedup(), m)
	defer sched.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv, err := shim.New(shim.Config{RuntimeEndpoint: fake.Endpoint()}, shim.WithHandlers(pulls.NewPuller(log, sched, nil).Handler()))
	if err != nil {
		return 0, 0, err
	}
	defer srv.Close()
	sock := filepath.Join(dir, "s.sock")
	l, err := shim.Listen(sock, 0o600)
	if err != nil {
		return 0, 0, err
	}
	go srv.Serve(l)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	ic := runtimeapi.NewImageServiceClient(conn)
	if _, err := ic.ImageFsInfo(context.Background(), &runtimeapi.ImageFsInfoRequest{}); err != nil {
		return 0, 0, err // warm the connection outside the measurement
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, images*copies)
	for c := 0; c < copies; c++ {
		for i := 0; i < images; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := ic.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: fmt.Sprintf("registry.example/app-%d:1", i)}})
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	for err := range errs {
		return 0, 0, err
	}
	return wall, len(fake.Calls(runtimeapi.ImageService_PullImage_FullMethodName)), nil
}
