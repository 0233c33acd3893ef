package access_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/access"
	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
	"github.com/crishim/crishim/test/metricstest"
	"github.com/crishim/crishim/test/shimtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	privateImage = "registry.example/private/app:1"
	publicImage  = "public.example/app:1"
	publicCopy   = "public.example/copy-of-app:1"
	digestRef    = "registry.example/private/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	goodPassword = "g00d-Secret-pw"
)

// imageIDs are the IDs the fake runtime answers PullImage with, per image.
var imageIDs = map[string]string{
	privateImage:                       "sha256:" + strings.Repeat("a", 64),
	publicImage:                        "sha256:" + strings.Repeat("b", 64),
	"registry.example/private/other:1": "sha256:" + strings.Repeat("c", 64),
	// the private image's bytes, also published on a registry no rule restricts
	publicCopy: "sha256:" + strings.Repeat("a", 64),
}

// node is a credential provider holding the node's credential for
// registry.example.
type node struct{}

func (node) Lookup(_ context.Context, image string) []credentials.Credential {
	if strings.HasPrefix(image, "registry.example/") {
		return []credentials.Credential{{Username: "robot", Password: goodPassword, Source: credentials.SourceDockerConfig}}
	}
	return nil
}

// registryFake answers pulls as a registry would: registry.example's
// images need robot's password (the node's or the pod's own), others are
// public; ImageStatus knows every image pulled so far.
func registryFake(f *fakecri.Server) {
	var pulled atomic.Value
	pulled.Store(map[string]string{})
	f.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Respond: func(req proto.Message) (proto.Message, error) {
		r := req.(*runtimeapi.PullImageRequest)
		img := r.GetImage().GetImage()
		if strings.HasPrefix(img, "registry.example/") && r.GetAuth().GetPassword() != goodPassword {
			return nil, status.Error(codes.Unknown, "failed to pull: 401 Unauthorized")
		}
		m := map[string]string{}
		for k, v := range pulled.Load().(map[string]string) {
			m[k] = v
		}
		m[img] = imageIDs[img]
		pulled.Store(m)
		return &runtimeapi.PullImageResponse{ImageRef: imageIDs[img]}, nil
	}})
	f.Script(runtimeapi.ImageService_ImageStatus_FullMethodName, fakecri.Script{Respond: func(req proto.Message) (proto.Message, error) {
		img := req.(*runtimeapi.ImageStatusRequest).GetImage().GetImage()
		if strings.HasPrefix(img, "sha256:") {
			// by ID: every image of the test is on the node, under the
			// names that have that ID
			var tags []string
			for name, id := range imageIDs {
				if id == img {
					tags = append(tags, name)
				}
			}
			return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: img, RepoTags: tags}}, nil
		}
		if strings.HasPrefix(img, "registry.example/private/app@sha256:") {
			img = privateImage // a digest reference of the same image, as the runtime resolves it
		}
		id, ok := pulled.Load().(map[string]string)[img]
		if !ok {
			return &runtimeapi.ImageStatusResponse{}, nil
		}
		return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: id}}, nil
	}})
}

type env struct {
	*shimtest.Env
	access *access.Access
	store  *access.Store
	dir    string
}

var policy = credentials.Policy{{Registries: []string{"registry.example"}, Namespaces: []string{"team-*"}}}

// newEnv serves image access, credentials and the fake runtime in the
// daemon's order, with the record in dir.
func newEnv(t *testing.T, dir string, cfg *access.Config) *env {
	t.Helper()
	store, err := access.Open(dir, access.Limits{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	reg := prometheus.NewRegistry()
	m, err := access.NewMetrics(reg, nil, func() float64 { return float64(store.Len()) })
	if err != nil {
		t.Fatal(err)
	}
	a := access.New(store, m, shimtest.DiscardLogger())
	a.Set(cfg, policy, false)
	hs := append(a.Handlers(), credentials.NewInjector(node{}, policy, nil, shimtest.DiscardLogger()).Handler())
	e := &env{Env: shimtest.Start(t, registryFake, reg, hs...), access: a, store: store, dir: dir}
	a.Start(runtimeapi.NewImageServiceClient(e.Srv.ClientConn(shim.ImageUpstream)), 0)
	t.Cleanup(a.Stop)
	return e
}

func sandbox(ns string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns, Uid: "u"}}
}

func (e *env) pull(t *testing.T, image, ns string, auth *runtimeapi.AuthConfig) error {
	t.Helper()
	_, err := e.IC.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}, Auth: auth, SandboxConfig: sandbox(ns)})
	return err
}

// create sends CreateContainer as the kubelet does (the image ID it
// resolved, and the reference the pod spec wrote), or, with byRef, as
// crictl does (the reference only).
func (e *env) create(image, ns string, byRef bool) error {
	spec := &runtimeapi.ImageSpec{Image: imageIDs[image], UserSpecifiedImage: image}
	if byRef {
		spec = &runtimeapi.ImageSpec{Image: image}
	}
	_, err := e.RC.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
		PodSandboxId:  "sb",
		Config:        &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: spec},
		SandboxConfig: sandbox(ns),
	})
	return err
}

func (e *env) created() int {
	return len(e.Fake.Calls(runtimeapi.RuntimeService_CreateContainer_FullMethodName))
}

// TestImageAccess is the reproduction of the blind spot and its rules:
// team-a pulls a private image with the node's credentials; a pod of
// namespace other then tries to run it from the node's cache.
func TestImageAccess(t *testing.T) {
	e := newEnv(t, t.TempDir(), &access.Config{})
	if err := e.pull(t, privateImage, "team-a", nil); err != nil {
		t.Fatalf("team-a pull with node credentials: %v", err)
	}
	if err := e.pull(t, publicImage, "team-a", nil); err != nil {
		t.Fatalf("public pull: %v", err)
	}
	steps := []struct {
		desc      string
		image, ns string
		byRef     bool
		want      codes.Code
	}{
		{"team-a runs what it pulled", privateImage, "team-a", false, codes.OK},
		{"other cannot run team-a's private image", privateImage, "other", false, codes.PermissionDenied},
		{"nor by reference, as crictl creates", privateImage, "other", true, codes.PermissionDenied},
		{"nor by digest", digestRef, "other", true, codes.PermissionDenied},
		{"team-a by digest", digestRef, "team-a", true, codes.OK},
		{"a team-* namespace that never pulled it cannot either", privateImage, "team-b", false, codes.PermissionDenied},
		{"an unrestricted registry's image runs anywhere", publicImage, "other", false, codes.OK},
	}
	for _, st := range steps {
		before := e.created()
		err := e.create(st.image, st.ns, st.byRef)
		if status.Code(err) != st.want {
			t.Fatalf("%s: got %v, want %s", st.desc, err, st.want)
		}
		if st.want == codes.PermissionDenied {
			msg := status.Convert(err).Message()
			for _, part := range []string{st.image, "registry.example", `namespace "` + st.ns + `"`, "imagePullSecret", "imagePullPolicy: Always", "policy rule"} {
				if !strings.Contains(msg, part) {
					t.Errorf("%s: message %q does not name %q", st.desc, msg, part)
				}
			}
			if strings.Contains(msg, goodPassword) {
				t.Errorf("%s: message carries the password", st.desc)
			}
			if e.created() != before {
				t.Errorf("%s: the runtime saw the refused CreateContainer", st.desc)
			}
		} else if e.created() != before+1 {
			t.Errorf("%s: the runtime did not see the CreateContainer", st.desc)
		}
	}
	// other proves access with its own credentials (an imagePullSecret).
	if err := e.pull(t, privateImage, "other", &runtimeapi.AuthConfig{Username: "robot", Password: goodPassword}); err != nil {
		t.Fatalf("other pulls with its own credentials: %v", err)
	}
	if err := e.create(privateImage, "other", false); err != nil {
		t.Errorf("other after pulling with its own credentials: %v", err)
	}
	// A failed pull proves nothing.
	if err := e.pull(t, privateImage, "outsiders", nil); err == nil {
		t.Fatalf("a pull without credentials from outside the policy succeeded")
	}
	if err := e.create(privateImage, "outsiders", false); status.Code(err) != codes.PermissionDenied {
		t.Errorf("outsiders after a failed pull: %v, want PermissionDenied", err)
	}
	if got := metricstest.Value(t, e.Reg, "crishim_image_access_decisions_total", map[string]string{"result": "denied", "registry": "registry.example"}); got != 5 {
		t.Errorf("denied decisions = %v, want 5", got)
	}

	// A restart keeps every decision: the record is on disk.
	e2 := newEnv(t, e.dir, &access.Config{})
	if err := e2.create(privateImage, "team-b", false); status.Code(err) != codes.PermissionDenied {
		t.Errorf("after a restart team-b: %v, want PermissionDenied", err)
	}
	for _, ns := range []string{"team-a", "other"} {
		if err := e2.create(privateImage, ns, false); err != nil {
			t.Errorf("after a restart %s: %v", ns, err)
		}
	}
}

// TestImageAccessModes covers images without a record, enforcement off and
// a reload changing the mode.
func TestImageAccessModes(t *testing.T) {
	deny, off := false, false
	tests := []struct {
		desc  string
		cfg   *access.Config
		image string
		want  codes.Code
		label string
	}{
		{"unknown image, allow (default)", &access.Config{}, "registry.example/private/other:1", codes.OK, "unknown_image"},
		{"unknown image, deny, restricted registry", &access.Config{UnknownImages: access.UnknownDeny}, "registry.example/private/other:1", codes.PermissionDenied, "unknown_image"},
		{"unknown image, deny, unrestricted registry", &access.Config{UnknownImages: access.UnknownDeny}, publicImage, codes.OK, "unknown_image"},
		{"enforcement off", &access.Config{Enforce: &off}, "registry.example/private/other:1", codes.OK, ""},
		{"enforce explicitly false then deny on", &access.Config{Enforce: &deny}, "registry.example/private/other:1", codes.OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			e := newEnv(t, t.TempDir(), tc.cfg)
			// the image is on the node, but was never pulled through crishim
			_, err := e.RC.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
				Config:        &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: imageIDs[tc.image], UserSpecifiedImage: tc.image}},
				SandboxConfig: sandbox("other"),
			})
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
			if tc.label != "" {
				if got := metricstest.Value(t, e.Reg, "crishim_image_access_decisions_total", map[string]string{"result": tc.label}); got != 1 {
					t.Errorf("%s decisions = %v, want 1", tc.label, got)
				}
			}
		})
	}

	// A reload turns enforcement on for calls that start later.
	e := newEnv(t, t.TempDir(), &access.Config{Enforce: &off})
	if err := e.pull(t, privateImage, "team-a", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.create(privateImage, "other", false); err != nil {
		t.Fatalf("enforcement off: %v", err)
	}
	e.access.Set(&access.Config{}, policy, false)
	if err := e.create(privateImage, "other", false); status.Code(err) != codes.PermissionDenied {
		t.Errorf("after the reload turning enforcement on: %v, want PermissionDenied (recorded while off)", err)
	}
}

// TestCorruptRecordIsConservative: a record that cannot be trusted is set
// aside, and images without a record are then refused where the policy
// restricts their registry, even in allow mode.
func TestCorruptRecordIsConservative(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, access.FileName), []byte(`{"version": 1, "images": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := access.Open(dir, access.Limits{})
	var corrupt *access.CorruptError
	if !errorsAs(err, &corrupt) {
		t.Fatalf("Open of a truncated record: %v, want a CorruptError", err)
	}
	a := access.New(store, nil, shimtest.DiscardLogger())
	a.Set(&access.Config{}, policy, true)
	e := shimtest.Start(t, registryFake, prometheus.NewRegistry(), a.Handlers()...)
	a.Start(runtimeapi.NewImageServiceClient(e.Srv.ClientConn(shim.ImageUpstream)), 0)
	t.Cleanup(a.Stop)
	create := func(image string) error {
		_, err := e.RC.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
			Config:        &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: imageIDs[image], UserSpecifiedImage: image}},
			SandboxConfig: sandbox("team-a"),
		})
		return err
	}
	if err := create("registry.example/private/other:1"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("restricted image without a record after a lost record: %v, want PermissionDenied", err)
	}
	if err := create(publicImage); err != nil {
		t.Errorf("unrestricted image after a lost record: %v", err)
	}
}

func errorsAs(err error, target **access.CorruptError) bool { return errors.As(err, target) }

// TestImageUnderSeveralRegistries: one image ID may be pulled under names
// of several registries. If one of them does not restrict its node
// credentials, the same bytes are there for every namespace, so the image
// is not restricted, whichever pull came first.
func TestImageUnderSeveralRegistries(t *testing.T) {
	for _, order := range [][]string{{privateImage, publicCopy}, {publicCopy, privateImage}} {
		t.Run(order[0]+" first", func(t *testing.T) {
			e := newEnv(t, t.TempDir(), &access.Config{})
			if err := e.pull(t, order[0], "team-a", nil); err != nil {
				t.Fatal(err)
			}
			if order[0] == privateImage {
				if err := e.create(privateImage, "other", false); status.Code(err) != codes.PermissionDenied {
					t.Fatalf("before the public pull: %v, want PermissionDenied", err)
				}
			}
			if err := e.pull(t, order[1], "team-a", nil); err != nil {
				t.Fatal(err)
			}
			if err := e.create(privateImage, "other", false); err != nil {
				t.Errorf("the image is public under %s: %v", publicCopy, err)
			}
		})
	}
}

// TestReviewFindings are the regressions of an outside review's findings:
// an image named by its ID to dodge the unknown-image check, a namespace
// taken out of the policy keeping the access its node-credential pulls gave
// it, and a record forced to evict restricted images.
func TestReviewFindings(t *testing.T) {
	restrictedUnknown := "registry.example/private/other:1"
	t.Run("an ID as the pod's image does not dodge unknownImages: deny", func(t *testing.T) {
		e := newEnv(t, t.TempDir(), &access.Config{UnknownImages: access.UnknownDeny})
		for _, user := range []string{restrictedUnknown, imageIDs[restrictedUnknown], strings.TrimPrefix(imageIDs[restrictedUnknown], "sha256:"), ""} {
			_, err := e.RC.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
				Config:        &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: imageIDs[restrictedUnknown], UserSpecifiedImage: user}},
				SandboxConfig: sandbox("other"),
			})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("user-specified image %q: %v, want PermissionDenied", user, err)
			}
		}
	})
	t.Run("a namespace taken out of the policy loses node-credential access, not its own", func(t *testing.T) {
		e := newEnv(t, t.TempDir(), &access.Config{})
		if err := e.pull(t, privateImage, "team-a", nil); err != nil {
			t.Fatal(err)
		}
		if err := e.pull(t, privateImage, "team-b", &runtimeapi.AuthConfig{Username: "robot", Password: goodPassword}); err != nil {
			t.Fatal(err)
		}
		// a reload: no namespace may use the node's credentials any more
		e.access.Set(&access.Config{}, credentials.Policy{{Registries: []string{"registry.example"}}}, false)
		if err := e.create(privateImage, "team-a", false); status.Code(err) != codes.PermissionDenied {
			t.Errorf("team-a after the policy dropped it: %v, want PermissionDenied", err)
		}
		if err := e.create(privateImage, "team-b", false); err != nil {
			t.Errorf("team-b, proven with its own credentials: %v", err)
		}
	})
	t.Run("an eviction makes images without a record restricted", func(t *testing.T) {
		store, err := access.Open(t.TempDir(), access.Limits{MaxImages: 1})
		if err != nil {
			t.Fatal(err)
		}
		a := access.New(store, nil, shimtest.DiscardLogger())
		a.Set(&access.Config{}, policy, false)
		hs := append(a.Handlers(), credentials.NewInjector(node{}, policy, nil, shimtest.DiscardLogger()).Handler())
		e := &env{Env: shimtest.Start(t, registryFake, prometheus.NewRegistry(), hs...), access: a, store: store}
		a.Start(runtimeapi.NewImageServiceClient(e.Srv.ClientConn(shim.ImageUpstream)), 0)
		t.Cleanup(a.Stop)
		if err := e.pull(t, restrictedUnknown, "team-a", nil); err != nil {
			t.Fatal(err)
		}
		// a tenant pulls another image: the record is full, the first image is evicted
		if err := e.pull(t, publicImage, "other", nil); err != nil {
			t.Fatal(err)
		}
		if err := e.create(restrictedUnknown, "other", false); status.Code(err) != codes.PermissionDenied {
			t.Errorf("evicted restricted image in other: %v, want PermissionDenied", err)
		}
		if err := e.create(publicImage, "other", false); err != nil {
			t.Errorf("the public image: %v", err)
		}
	})
}
