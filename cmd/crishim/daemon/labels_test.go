package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/daemontest"
)

// TestRegistryLabelBoundConfigured checks that metrics.maxRegistryLabels
// reaches the image metrics: pulls from more registries than the bound, as
// pods could make, leave at most the bound plus "other" as label values.
func TestRegistryLabelBoundConfigured(t *testing.T) {
	r := newRig(t)
	cfg := daemontest.WriteConfig(t, r.Base()+"  maxRegistryLabels: 2\nimages:\n  pulls:\n    mode: parallel\n    maxParallel: 2\n")
	r.start(t, cfg, io.Discard)
	conn, err := grpc.NewClient("unix://"+r.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ic := runtimeapi.NewImageServiceClient(conn)
	for i := range 6 {
		img := fmt.Sprintf("r%d.example/app:1", i)
		if _, err := ic.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img}}); err != nil {
			t.Fatalf("PullImage %s: %v", img, err)
		}
	}
	resp, err := http.Get("http://" + r.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^crishim_image_pull_upstream_pulls_total\{.*registry="([^"]*)"`).FindAllSubmatch(page, -1) {
		values[string(m[1])] = true
	}
	want := map[string]bool{"r0.example": true, "r1.example": true, "other": true}
	if fmt.Sprint(values) != fmt.Sprint(want) {
		t.Errorf("registry label values %v, want %v", values, want)
	}
}
