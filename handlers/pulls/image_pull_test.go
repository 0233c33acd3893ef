package pulls_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/pulls"
	"github.com/crishim/crishim/test/fakecri"
	"github.com/crishim/crishim/test/shimtest"
)

func newPullEnv(t *testing.T, limits pulls.Limits, log *logrus.Logger) *shimtest.Env {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := pulls.NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sched := pulls.NewScheduler(limits, true, m)
	t.Cleanup(sched.Close)
	if log == nil {
		log = shimtest.DiscardLogger()
	}
	return shimtest.Start(t, nil, reg, pulls.NewPuller(log, sched, []string{"kube-system"}).Handler())
}

func pull(image, user string) *runtimeapi.PullImageRequest {
	r := &runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: image},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "default"}},
	}
	if user != "" {
		r.Auth = &runtimeapi.AuthConfig{Username: user, Password: "pw-" + user}
	}
	return r
}

// TestPullsThroughCrishim sends concurrent pulls through crishim to a slow
// fake runtime: identical ones with the same credentials share one upstream
// call, other credentials or none never do, and every caller gets the answer.
func TestPullsThroughCrishim(t *testing.T) {
	e := newPullEnv(t, pulls.Limits{MaxParallel: 4}, nil)
	e.Fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{
		Delay: 300 * time.Millisecond, Response: &runtimeapi.PullImageResponse{ImageRef: "sha256:feed"},
	})
	reqs := []*runtimeapi.PullImageRequest{}
	for range 16 {
		reqs = append(reqs, pull("busybox", "alice")) // normalized to docker.io/library/busybox:latest
	}
	reqs = append(reqs, pull("docker.io/library/busybox:latest", "alice"), pull("busybox", "bob"), pull("busybox", ""), pull("busybox", ""))
	var wg sync.WaitGroup
	errs := make([]error, len(reqs))
	refs := make([]string, len(reqs))
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.IC.PullImage(context.Background(), r)
			errs[i], refs[i] = err, resp.GetImageRef()
		}()
	}
	wg.Wait()
	for i := range reqs {
		if errs[i] != nil || refs[i] != "sha256:feed" {
			t.Errorf("pull %d: %q, %v", i, refs[i], errs[i])
		}
	}
	calls := e.Fake.Calls(runtimeapi.ImageService_PullImage_FullMethodName)
	if len(calls) != 3 {
		t.Fatalf("%d upstream pulls, want 3 (alice, bob, anonymous)", len(calls))
	}
	users := map[string]bool{}
	for _, c := range calls {
		r := &runtimeapi.PullImageRequest{}
		if err := proto.Unmarshal(c.Request, r); err != nil {
			t.Fatal(err)
		}
		users[r.GetAuth().GetUsername()] = true
	}
	if !users["alice"] || !users["bob"] || !users[""] {
		t.Errorf("upstream pulls carried credentials of %v; each identity needs its own pull", users)
	}
}

func TestPullErrorsAndBadInput(t *testing.T) {
	var logs strings.Builder
	log := logrus.New()
	log.SetOutput(&logs)
	log.SetLevel(logrus.TraceLevel)
	e := newPullEnv(t, pulls.Limits{MaxParallel: 1}, log)
	want := status.New(codes.Unknown, "failed to pull and unpack image \"docker.io/library/nope:latest\": 401 Unauthorized")
	e.Fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Err: want.Err()})
	_, err := e.IC.PullImage(context.Background(), pull("nope", "carol"))
	if st := status.Convert(err); st.Code() != want.Code() || st.Message() != want.Message() {
		t.Errorf("got %v, want the runtime's error unchanged", err)
	}
	for _, bad := range []*runtimeapi.PullImageRequest{{}, {Image: &runtimeapi.ImageSpec{}}} {
		if _, err := e.IC.PullImage(context.Background(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("pull %v: got %v, want InvalidArgument", bad, err)
		}
	}
	if !strings.Contains(logs.String(), "image pull failed") || strings.Contains(logs.String(), "pw-carol") {
		t.Errorf("log: %s", logs.String())
	}
}

// TestPullsOfDifferentPodsMerge: the kubelet copies every pod annotation into
// the PullImage request's image spec, so pods sharing an image always differ
// there (a static pod's kubernetes.io/config.hash, an owner's annotations).
// Their identical concurrent pulls must still merge; only the annotations an
// operator names in keyAnnotations keep pulls apart.
func TestPullsOfDifferentPodsMerge(t *testing.T) {
	kubeletPull := func(pod, platform string) *runtimeapi.PullImageRequest {
		r := pull("busybox", "")
		r.Image.Annotations = map[string]string{"kubernetes.io/config.hash": pod, "owner.example/team": pod, "io.example/platform": platform}
		return r
	}
	tests := []struct {
		desc          string
		keyAnns       []string
		reqs          []*runtimeapi.PullImageRequest
		wantUpstreams int
	}{
		{"three pods, one image: one pull", nil,
			[]*runtimeapi.PullImageRequest{kubeletPull("a", "amd64"), kubeletPull("b", "amd64"), kubeletPull("c", "amd64")}, 1},
		{"an annotation the operator names keeps pulls apart", []string{"io.example/*"},
			[]*runtimeapi.PullImageRequest{kubeletPull("a", "amd64"), kubeletPull("b", "amd64"), kubeletPull("c", "arm64")}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := pulls.NewMetrics(reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			sched := pulls.NewScheduler(pulls.Limits{MaxParallel: 4}, true, m)
			t.Cleanup(sched.Close)
			p := pulls.NewPuller(shimtest.DiscardLogger(), sched, nil)
			p.SetKeyAnnotations(tc.keyAnns)
			e := shimtest.Start(t, func(f *fakecri.Server) {
				f.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{
					Delay: 300 * time.Millisecond, Response: &runtimeapi.PullImageResponse{ImageRef: "sha256:feed"},
				})
			}, reg, p.Handler())
			var wg sync.WaitGroup
			for _, r := range tc.reqs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := e.IC.PullImage(context.Background(), r); err != nil {
						t.Errorf("PullImage: %v", err)
					}
				}()
			}
			wg.Wait()
			if n := len(e.Fake.Calls(runtimeapi.ImageService_PullImage_FullMethodName)); n != tc.wantUpstreams {
				t.Errorf("%d upstream pulls, want %d", n, tc.wantUpstreams)
			}
		})
	}
}
