package credentials_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/handlers/pulls"
	registrypkg "github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
	"github.com/crishim/crishim/test/shimtest"
)

// staticProvider hands out fixed credentials and counts lookups.
type staticProvider struct {
	creds   []credentials.Credential
	lookups atomic.Int32
}

func (p *staticProvider) Lookup(context.Context, string) []credentials.Credential {
	p.lookups.Add(1)
	return p.creds
}

const (
	goodPassword = "g00d-Secret-pw"
	badPassword  = "wr0ng-Secret-pw"
)

// registry answers like containerd in front of an htpasswd registry: only
// robot/goodPassword may pull.
func registry(req proto.Message) (proto.Message, error) {
	a := req.(*runtimeapi.PullImageRequest).GetAuth()
	if a.GetUsername() == "robot" && a.GetPassword() == goodPassword && a.GetServerAddress() == "" {
		return &runtimeapi.PullImageResponse{ImageRef: "sha256:private"}, nil
	}
	return nil, status.Error(codes.Unknown, `failed to pull and unpack image "registry.example/private/app:1": failed to resolve reference "registry.example/private/app:1": pulling from host registry.example failed with status code [manifests 1]: 401 Unauthorized`)
}

type credEnv struct {
	*shimtest.Env
	provider *staticProvider
	logs     *strings.Builder
}

func newCredEnv(t *testing.T, creds []credentials.Credential, policy credentials.Policy, sched bool) *credEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	cm, err := credentials.NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetLevel(logrus.TraceLevel)
	p := &staticProvider{creds: creds}
	// The order the daemon registers them in: credentials, then pulls.
	hs := []shim.Handler{credentials.NewInjector(p, policy, cm, log).Handler()}
	if sched {
		pm, err := pulls.NewMetrics(reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := pulls.NewScheduler(pulls.Limits{MaxParallel: 2}, true, pm)
		t.Cleanup(s.Close)
		hs = append(hs, pulls.NewPuller(log, s, nil).Handler())
	}
	e := &credEnv{Env: shimtest.Start(t, func(f *fakecri.Server) {
		f.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Respond: registry})
	}, reg, hs...), provider: p, logs: logs}
	return e
}

func privatePull(ns string, auth *runtimeapi.AuthConfig) *runtimeapi.PullImageRequest {
	return &runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: "registry.example/private/app:1"},
		Auth:          auth,
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns}},
	}
}

func upstreamAuths(t *testing.T, f *fakecri.Server) []string {
	t.Helper()
	var out []string
	for _, c := range f.Calls(runtimeapi.ImageService_PullImage_FullMethodName) {
		r := &runtimeapi.PullImageRequest{}
		if err := proto.Unmarshal(c.Request, r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.GetAuth().GetUsername()+":"+r.GetAuth().GetPassword())
	}
	return out
}

var (
	wrong = credentials.Credential{Username: "robot", Password: badPassword, Source: "dockerconfig", Pattern: "registry.example/private"}
	right = credentials.Credential{Username: "robot", Password: goodPassword, Source: "plugin:ecr", Pattern: "*.example"}
)

func TestCredentialInjection(t *testing.T) {
	tests := []struct {
		desc      string
		creds     []credentials.Credential
		policy    credentials.Policy
		ns        string
		auth      *runtimeapi.AuthConfig
		sched     bool
		wantCode  codes.Code
		wantCalls []string
	}{
		{desc: "wrong then right: success on the second attempt", creds: []credentials.Credential{wrong, right}, ns: "team-a",
			wantCode: codes.OK, wantCalls: []string{"robot:" + badPassword, "robot:" + goodPassword}},
		{desc: "the same through the scheduler", creds: []credentials.Credential{wrong, right}, ns: "team-a", sched: true,
			wantCode: codes.OK, wantCalls: []string{"robot:" + badPassword, "robot:" + goodPassword}},
		{desc: "all wrong: the runtime's last error", creds: []credentials.Credential{wrong, wrong}, ns: "team-a",
			wantCode: codes.Unknown, wantCalls: []string{"robot:" + badPassword, "robot:" + badPassword}},
		{desc: "no node credentials: one anonymous pull", creds: nil, ns: "team-a",
			wantCode: codes.Unknown, wantCalls: []string{":"}},
		{desc: "the pod's own secret wins", creds: []credentials.Credential{wrong}, ns: "team-a", auth: &runtimeapi.AuthConfig{Username: "robot", Password: goodPassword},
			wantCode: codes.OK, wantCalls: []string{"robot:" + goodPassword}},
		{desc: "policy allows the namespace", creds: []credentials.Credential{right}, ns: "team-a",
			policy:   credentials.Policy{{Registries: []string{"registry.example"}, Namespaces: []string{"team-*"}}},
			wantCode: codes.OK, wantCalls: []string{"robot:" + goodPassword}},
		{desc: "policy withholds from other namespaces", creds: []credentials.Credential{right}, ns: "sandbox",
			policy:   credentials.Policy{{Registries: []string{"registry.example"}, Namespaces: []string{"team-*"}}},
			wantCode: codes.Unknown, wantCalls: []string{":"}},
		{desc: "policy for other registries does not apply", creds: []credentials.Credential{right}, ns: "sandbox",
			policy:   credentials.Policy{{Registries: []string{"*.corp.example"}, Namespaces: []string{"team-*"}}},
			wantCode: codes.OK, wantCalls: []string{"robot:" + goodPassword}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			e := newCredEnv(t, tc.creds, tc.policy, tc.sched)
			resp, err := e.IC.PullImage(context.Background(), privatePull(tc.ns, tc.auth))
			if status.Code(err) != tc.wantCode {
				t.Fatalf("got %v, want %s", err, tc.wantCode)
			}
			if err == nil && resp.ImageRef != "sha256:private" {
				t.Errorf("response %v", resp)
			}
			if err != nil {
				_, want := registry(&runtimeapi.PullImageRequest{})
				if status.Convert(err).Message() != status.Convert(want).Message() {
					t.Errorf("error %q is not the runtime's", status.Convert(err).Message())
				}
				for _, s := range []string{goodPassword, badPassword} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("the error carries a password")
					}
				}
			}
			if got := upstreamAuths(t, e.Fake); strings.Join(got, ",") != strings.Join(tc.wantCalls, ",") {
				t.Errorf("upstream pulls with %v, want %v", got, tc.wantCalls)
			}
			if tc.auth != nil && e.provider.lookups.Load() != 0 {
				t.Errorf("node credentials were looked up for a pull carrying its own")
			}
		})
	}
}

func TestNonAuthErrorIsNotRetried(t *testing.T) {
	e := newCredEnv(t, []credentials.Credential{wrong, right}, nil, false)
	e.Fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Err: status.Error(codes.NotFound, "failed to pull: registry.example/private/app:1: not found")})
	_, err := e.IC.PullImage(context.Background(), privatePull("a", nil))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("got %v", err)
	}
	if n := len(upstreamAuths(t, e.Fake)); n != 1 {
		t.Errorf("%d upstream attempts for a not-found image, want 1", n)
	}
}

// TestCredentialsNeverLeakFromInjection runs every injection path at trace
// level and looks for the passwords in logs, metrics and errors.
func TestCredentialsNeverLeakFromInjection(t *testing.T) {
	for _, sched := range []bool{false, true} {
		e := newCredEnv(t, []credentials.Credential{wrong, right}, credentials.Policy{{Registries: []string{"*"}, Namespaces: []string{"ok"}}}, sched)
		_, err1 := e.IC.PullImage(context.Background(), privatePull("ok", nil))     // wrong, then right
		_, err2 := e.IC.PullImage(context.Background(), privatePull("denied", nil)) // withheld by policy
		e.provider.creds = []credentials.Credential{wrong}
		_, err3 := e.IC.PullImage(context.Background(), privatePull("ok", nil)) // fails
		if err1 != nil || err2 == nil || err3 == nil {
			t.Fatalf("unexpected results %v / %v / %v", err1, err2, err3)
		}
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(e.Reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		metrics := rec.Body.String()
		if !strings.Contains(metrics, `crishim_image_pull_credentials_total{registry="registry.example",result="auth_failed",source="dockerconfig"}`) ||
			!strings.Contains(metrics, `crishim_image_pull_credentials_total{registry="registry.example",result="success",source="plugin:ecr"}`) ||
			!strings.Contains(metrics, `crishim_image_pull_credentials_total{registry="registry.example",result="denied",source="policy"}`) {
			t.Errorf("credential metrics missing:\n%s", metrics)
		}
		logs := e.logs.String()
		if !strings.Contains(logs, "trying the next one") || !strings.Contains(logs, "withheld") {
			t.Fatalf("the paths under test did not log; the check would prove nothing:\n%s", logs)
		}
		for where, text := range map[string]string{"logs": logs, "metrics": metrics, "errors": err2.Error() + err3.Error()} {
			for _, s := range []string{goodPassword, badPassword} {
				if strings.Contains(text, s) {
					t.Errorf("sched=%v: %s contain a password", sched, where)
				}
			}
		}
	}
}

// TestCredentialPolicySpellings is the regression test of the letter-case
// bypass: a namespace refused node credentials for a registry got them by
// writing the registry's host in upper case (no rule matched, so the default
// allowed). Every spelling of one registry, in the image or in the policy,
// must meet the same rule.
func TestCredentialPolicySpellings(t *testing.T) {
	tests := []struct {
		desc, image string
		registries  []string
		ns          string
		want        []string // upstream pulls' credentials
	}{
		{"upper-case host, refused namespace", "REGISTRY.EXAMPLE/private/app:1", []string{"registry.example"}, "other", []string{":"}},
		{"mixed-case host, refused namespace", "Registry.Example/private/app:1", []string{"registry.example"}, "other", []string{":"}},
		{"default port, refused namespace", "registry.example:443/private/app:1", []string{"registry.example"}, "other", []string{":"}},
		{"upper-case host and port 443", "REGISTRY.example:443/private/app:1", []string{"registry.example"}, "other", []string{":"}},
		{"upper-case policy pattern", "registry.example/private/app:1", []string{"REGISTRY.Example"}, "other", []string{":"}},
		{"glob against an upper-case host", "PROD.CORP.example/private/app:1", []string{"*.corp.example"}, "other", []string{":"}},
		{"Docker Hub alias in upper case", "INDEX.DOCKER.IO/busybox", []string{"docker.io"}, "other", []string{":"}},
		{"Docker Hub short name, policy on the alias", "busybox", []string{"index.docker.io"}, "other", []string{":"}},
		{"upper-case host, allowed namespace", "REGISTRY.EXAMPLE/private/app:1", []string{"registry.example"}, "team-a", []string{"robot:" + goodPassword}},
		{"another registry is not folded in", "registry-1.example/private/app:1", []string{"registry.example"}, "other", []string{"robot:" + goodPassword}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			policy := credentials.Policy{{Registries: tc.registries, Namespaces: []string{"team-*"}}}
			e := newCredEnv(t, []credentials.Credential{right}, policy, false)
			req := privatePull(tc.ns, nil)
			req.Image.Image = tc.image
			_, _ = e.IC.PullImage(context.Background(), req)
			if got := upstreamAuths(t, e.Fake); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("pull of %q in %q went upstream with %v, want %v", tc.image, tc.ns, got, tc.want)
			}
		})
	}
}

// TestRegistryLabelsBounded pulls from many registries, as any pod could,
// and checks that the metrics keep at most the bound of registry label
// values plus "other".
func TestRegistryLabelsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	labels := registryLabels(5)
	cm, err := credentials.NewMetrics(reg, labels)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := pulls.NewMetrics(reg, labels)
	if err != nil {
		t.Fatal(err)
	}
	s := pulls.NewScheduler(pulls.Limits{MaxParallel: 4, MaxParallelPerRegistry: 1}, true, pm)
	t.Cleanup(s.Close)
	p := &staticProvider{creds: []credentials.Credential{right}}
	e := shimtest.Start(t, func(f *fakecri.Server) {
		f.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Respond: registry})
	}, reg, credentials.NewInjector(p, nil, cm, logrus.New()).Handler(), pulls.NewPuller(logrus.New(), s, nil).Handler())
	for i := 0; i < 40; i++ {
		req := privatePull("team-a", nil)
		req.Image.Image = fmt.Sprintf("a%d.example/private/app:1", i)
		if _, err := e.IC.PullImage(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, mf := range families {
		values := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "registry" {
					values[l.GetValue()] = true
				}
			}
		}
		if len(values) == 0 {
			continue
		}
		checked++
		if len(values) != 6 || !values["other"] {
			t.Errorf("%s: %d registry label values %v, want the bound 5 plus other", mf.GetName(), len(values), values)
		}
	}
	if checked < 4 {
		t.Errorf("only %d metric families carry a registry label; the test exercises too little", checked)
	}
}

func registryLabels(n int) *registrypkg.Labels { return registrypkg.NewLabels(n) }
