package shim_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
	"github.com/crishim/crishim/test/metricstest"
)

// versionSuffix is a test typed handler: it decodes Version, forwards it and
// marks the response, the way real handlers (routing, pulls) will.
func versionSuffix() shim.Handler {
	return shim.Intercept(runtimeapi.RuntimeService_Version_FullMethodName,
		func(ctx context.Context, req *runtimeapi.VersionRequest, next shim.Next[*runtimeapi.VersionRequest, *runtimeapi.VersionResponse]) (*runtimeapi.VersionResponse, error) {
			if req.Version == "panic" {
				panic("test handler panics")
			}
			resp, err := next(ctx, req)
			if err != nil {
				return nil, err
			}
			resp.RuntimeName += "+crishim"
			return resp, nil
		})
}

func TestTypedHandler(t *testing.T) {
	e := newEnv(t, envOptions{handlers: []shim.Handler{versionSuffix()}})
	e.fake.Script(runtimeapi.RuntimeService_Version_FullMethodName, fakecri.Script{
		Header: metadata.Pairs("x-h", "1"), Trailer: metadata.Pairs("x-t", "2"),
	})
	rs := e.runtimeClient()
	v, err := rs.Version(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := fakecri.VersionResponse.RuntimeName + "+crishim"; v.RuntimeName != want {
		t.Errorf("RuntimeName = %q, want %q: the typed handler did not run", v.RuntimeName, want)
	}

	// Metadata still flows both ways through a typed handler.
	var header, trailer metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-client", "c")
	if _, err := runtimeapi.NewRuntimeServiceClient(e.conn).Version(ctx, &runtimeapi.VersionRequest{}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if header.Get("x-h") == nil || trailer.Get("x-t") == nil {
		t.Errorf("header %v / trailer %v lost through the typed handler", header, trailer)
	}
	calls := e.fake.Calls(runtimeapi.RuntimeService_Version_FullMethodName)
	if got := calls[len(calls)-1].Metadata.Get("x-client"); len(got) != 1 {
		t.Errorf("request metadata lost through the typed handler: %v", calls[len(calls)-1].Metadata)
	}

	// Other methods of the same service still pass through.
	if _, err := rs.ListContainers(context.Background(), nil); err != nil {
		t.Errorf("ListContainers next to a typed Version: %v", err)
	}
	if n := len(e.fake.Calls(runtimeapi.RuntimeService_ListContainers_FullMethodName)); n != 1 {
		t.Errorf("runtime saw %d ListContainers, want 1", n)
	}
}

// tagVersion is a feature on Version that appends its tag to the request's
// version on the way in and to the runtime name on the way out, or answers
// itself when the request asks for its tag to stop there.
func tagVersion(tag string) shim.Handler {
	return shim.Intercept(runtimeapi.RuntimeService_Version_FullMethodName,
		func(ctx context.Context, req *runtimeapi.VersionRequest, next shim.Next[*runtimeapi.VersionRequest, *runtimeapi.VersionResponse]) (*runtimeapi.VersionResponse, error) {
			if strings.HasPrefix(req.Version, "stop-at-"+tag) {
				return &runtimeapi.VersionResponse{RuntimeName: "answered by " + tag}, nil
			}
			if strings.HasPrefix(req.Version, "fail-at-"+tag) {
				return nil, status.Error(codes.PermissionDenied, "denied by "+tag)
			}
			req.Version += "," + tag
			resp, err := next(ctx, req)
			if err != nil {
				return nil, err
			}
			resp.RuntimeName += "," + tag
			return resp, nil
		})
}

// TestHandlersChainInOrder: several features on one method run in the order
// given, each seeing the request its predecessor passed on and the response
// its successor returned; one that answers or fails itself ends the chain
// there, and the runtime never sees the call.
func TestHandlersChainInOrder(t *testing.T) {
	e := newEnv(t, envOptions{handlers: []shim.Handler{tagVersion("a"), tagVersion("b"), tagVersion("c")}})
	e.fake.Script(runtimeapi.RuntimeService_Version_FullMethodName, fakecri.Script{Trailer: metadata.Pairs("x-t", "2")})
	rc := runtimeapi.NewRuntimeServiceClient(e.conn)
	tests := []struct {
		version, wantName string
		wantCode          codes.Code
		wantUpstream      string // the version the runtime saw, "" for no call
	}{
		{"v", "fake,c,b,a", codes.OK, "v,a,b,c"},
		{"stop-at-b", "answered by b,a", codes.OK, ""},
		{"fail-at-c", "", codes.PermissionDenied, ""},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			before := len(e.fake.Calls(runtimeapi.RuntimeService_Version_FullMethodName))
			var trailer metadata.MD
			e.fake.Script(runtimeapi.RuntimeService_Version_FullMethodName, fakecri.Script{
				Trailer:  metadata.Pairs("x-t", "2"),
				Response: &runtimeapi.VersionResponse{RuntimeName: "fake"},
			})
			resp, err := rc.Version(context.Background(), &runtimeapi.VersionRequest{Version: tc.version}, grpc.Trailer(&trailer))
			if status.Code(err) != tc.wantCode {
				t.Fatalf("got %v, want %s", err, tc.wantCode)
			}
			if resp.GetRuntimeName() != tc.wantName {
				t.Errorf("runtime name %q, want %q", resp.GetRuntimeName(), tc.wantName)
			}
			calls := e.fake.Calls(runtimeapi.RuntimeService_Version_FullMethodName)[before:]
			switch {
			case tc.wantUpstream == "" && len(calls) != 0:
				t.Errorf("the runtime saw %d calls, want none", len(calls))
			case tc.wantUpstream != "":
				if len(calls) != 1 {
					t.Fatalf("the runtime saw %d calls, want 1", len(calls))
				}
				got := &runtimeapi.VersionRequest{}
				if err := proto.Unmarshal(calls[0].Request, got); err != nil {
					t.Fatal(err)
				}
				if got.Version != tc.wantUpstream {
					t.Errorf("the runtime saw version %q, want %q", got.Version, tc.wantUpstream)
				}
				if trailer.Get("x-t") == nil {
					t.Errorf("the runtime's trailer was lost through the chain")
				}
			}
		})
	}
}

func TestTypedHandlerPassesRuntimeErrors(t *testing.T) {
	e := newEnv(t, envOptions{handlers: []shim.Handler{versionSuffix()}})
	want := status.New(codes.Unavailable, "runtime is starting")
	e.fake.Script(runtimeapi.RuntimeService_Version_FullMethodName, fakecri.Script{Err: want.Err()})
	_, err := runtimeapi.NewRuntimeServiceClient(e.conn).Version(context.Background(), &runtimeapi.VersionRequest{})
	if diff := cmpStatus(status.Convert(err), want); diff != "" {
		t.Error(diff)
	}
}

func TestInvalidHandlers(t *testing.T) {
	noop := func(ctx context.Context, req *runtimeapi.GetEventsRequest, next shim.Next[*runtimeapi.GetEventsRequest, *runtimeapi.ContainerEventResponse]) (*runtimeapi.ContainerEventResponse, error) {
		return nil, nil
	}
	tests := []struct {
		desc     string
		handlers []shim.Handler
		want     string
	}{
		{"streaming method", []shim.Handler{shim.Intercept(runtimeapi.RuntimeService_GetContainerEvents_FullMethodName, noop)}, "only unary methods"},
		{"unknown method", []shim.Handler{shim.Intercept("/runtime.v1.RuntimeService/Nope", noop)}, "only unary methods"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := shim.New(shim.Config{RuntimeEndpoint: "unix:///nonexistent/x.sock"}, shim.WithHandlers(tc.handlers...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestPanicsBecomeInternal: a typed handler that panics fails its call with
// Internal, logged with its stack; crishim goes on serving.
func TestPanicsBecomeInternal(t *testing.T) {
	e := newEnv(t, envOptions{handlers: []shim.Handler{versionSuffix()}})
	rc := runtimeapi.NewRuntimeServiceClient(e.conn)

	_, err := rc.Version(context.Background(), &runtimeapi.VersionRequest{Version: "panic"})
	if status.Code(err) != codes.Internal {
		t.Errorf("typed panic: got %v, want Internal", err)
	}
	if strings.Contains(err.Error(), "goroutine") || strings.Contains(err.Error(), ".go:") {
		t.Errorf("the caller sees the stack: %v", err)
	}
	if _, err := rc.Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Errorf("call after a panic: %v", err)
	}
	if _, err := rc.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{}); err != nil {
		t.Errorf("passthrough call after a panic: %v", err)
	}

	logs := e.logs.String()
	for _, want := range []string{"test handler panics", "goroutine"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q; the operator needs the panic and its stack", want)
		}
	}
	// Logging and metrics see the Internal status the caller saw.
	got := handled(t, e, "runtime.v1.RuntimeService", "Version", "Internal")
	if got != 1 {
		t.Errorf("handled_total{Version,Internal} = %v, want 1", got)
	}
}

func TestMetricsAndOpsEndpoints(t *testing.T) {
	e := newEnv(t, envOptions{})
	rs := e.runtimeClient() // Version once
	for i := 0; i < 3; i++ {
		if _, err := rs.ListPodSandbox(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	e.fake.Script(runtimeapi.RuntimeService_StopPodSandbox_FullMethodName, fakecri.Script{Err: status.Error(codes.NotFound, "gone")})
	_ = rs.StopPodSandbox(context.Background(), "p")

	if got := handled(t, e, "runtime.v1.RuntimeService", "ListPodSandbox", "OK"); got != 3 {
		t.Errorf("handled_total{ListPodSandbox,OK} = %v, want 3", got)
	}
	if got := handled(t, e, "runtime.v1.RuntimeService", "StopPodSandbox", "NotFound"); got != 1 {
		t.Errorf("handled_total{StopPodSandbox,NotFound} = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(e.reg, "crishim_grpc_server_handling_seconds"); n < 3 {
		t.Errorf("handling_seconds has %d series, want one per method called (3)", n)
	}

	ts := httptest.NewServer(e.srv.OpsHandler(e.reg))
	defer ts.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		`crishim_grpc_server_handled_total{grpc_code="OK",grpc_method="ListPodSandbox",grpc_service="runtime.v1.RuntimeService"} 3`,
		`crishim_grpc_server_handling_seconds_bucket{grpc_method="ListPodSandbox",grpc_service="runtime.v1.RuntimeService",le="0.0005"}`,
		`crishim_grpc_server_in_flight{grpc_method="ListPodSandbox",grpc_service="runtime.v1.RuntimeService"} 0`,
		`crishim_upstream_up{endpoint="` + e.fake.Endpoint() + `",upstream="runtime"} 1`,
		`crishim_build_info{`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (status %d) lacks %s", code, want)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s, want 200", code, body)
	}
	e.fake.Stop()
	e.fake = nil
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "runtime endpoint") {
		t.Errorf("/readyz with the runtime down = %d %q, want 503 naming the runtime endpoint", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz with the runtime down = %d, want 200 (crishim itself is alive)", code)
	}
	waitFor(t, 5*time.Second, "crishim_upstream_up to drop to 0", func() bool {
		_, body := get("/metrics")
		return strings.Contains(body, `crishim_upstream_up{endpoint="unix://`+e.dir+`/up.sock",upstream="runtime"} 0`)
	})
}

// handled returns crishim_grpc_server_handled_total for one series.
func handled(t *testing.T, e *env, service, method, code string) float64 {
	t.Helper()
	return metricstest.Value(t, e.reg, "crishim_grpc_server_handled_total", map[string]string{"grpc_service": service, "grpc_method": method, "grpc_code": code})
}

// TestCredentialsNeverLeak pulls with credentials through the whole proxy at
// trace level, failing and succeeding, and looks for the secrets everywhere
// an operator could see them.
func TestCredentialsNeverLeak(t *testing.T) {
	const password, token = "pa55-Sup3r-secret", "tok3n-Sup3r-secret"
	e := newEnv(t, envOptions{logLevel: logrus.TraceLevel})
	is := e.imageClient()
	auth := &runtimeapi.AuthConfig{Username: "robot", Password: password, Auth: "cm9ib3Q6" + password, IdentityToken: token, RegistryToken: token}
	e.fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Err: status.Error(codes.Unknown, "failed to pull and unpack image: 401 Unauthorized")})
	_, err := is.PullImage(context.Background(), &runtimeapi.ImageSpec{Image: "registry.example/private:1"}, auth, nil)
	if err == nil {
		t.Fatal("pull succeeded")
	}
	e.fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Response: &runtimeapi.PullImageResponse{ImageRef: "sha256:abc"}})
	if _, err := is.PullImage(context.Background(), &runtimeapi.ImageSpec{Image: "registry.example/private:1"}, auth, nil); err != nil {
		t.Fatal(err)
	}
	// The runtime did get the credentials: crishim forwards them.
	calls := e.fake.Calls(runtimeapi.ImageService_PullImage_FullMethodName)
	if len(calls) != 2 || !strings.Contains(string(calls[1].Request), password) {
		t.Fatalf("credentials did not reach the runtime")
	}
	ts := httptest.NewServer(e.srv.OpsHandler(e.reg))
	defer ts.Close()
	resp, err2 := http.Get(ts.URL + "/metrics")
	if err2 != nil {
		t.Fatal(err2)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	logs := e.logs.String()
	if !strings.Contains(logs, "registry.example/private:1") {
		t.Fatalf("the pull was not logged at all; the check below would prove nothing:\n%s", logs)
	}
	for where, text := range map[string]string{"logs": logs, "metrics": string(metricsText), "error": err.Error()} {
		for _, s := range []string{password, token, "cm9ib3Q6"} {
			if strings.Contains(text, s) {
				t.Errorf("%s contain a credential (%q)", where, s)
			}
		}
	}
}

// TestUpstreamContentType: crishim's requests to the runtime carry exactly
// "application/grpc", as the kubelet's do; CRI-O resets connections whose
// content type has a subtype ("application/grpc+proto").
func TestUpstreamContentType(t *testing.T) {
	e := newEnv(t, envOptions{handlers: []shim.Handler{versionSuffix()}})
	rs := e.runtimeClient()                                                 // Version: a typed handler's upstream call
	if _, err := rs.ListContainers(context.Background(), nil); err != nil { // passthrough
		t.Fatal(err)
	}
	for _, m := range []string{runtimeapi.RuntimeService_Version_FullMethodName, runtimeapi.RuntimeService_ListContainers_FullMethodName} {
		calls := e.fake.Calls(m)
		if len(calls) == 0 {
			t.Fatalf("no %s call reached the runtime", m)
		}
		if got := calls[0].Metadata.Get("content-type"); len(got) != 1 || got[0] != "application/grpc" {
			t.Errorf("%s reached the runtime with content-type %q, want exactly application/grpc", m, got)
		}
	}
}

// TestPassthroughCallsAreLogged: a passthrough call is logged at the level
// and with the ids the interceptors give it, whichever passthrough forwards
// it: mutations at info naming their object, reads only at debug.
func TestPassthroughCallsAreLogged(t *testing.T) {
	e := newEnv(t, envOptions{})
	rs := e.runtimeClient()
	if err := rs.StopContainer(context.Background(), "ctr-42", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.ContainerStatus(context.Background(), "ctr-43", false); err != nil {
		t.Fatal(err)
	}
	e.fake.Script(runtimeapi.RuntimeService_RemoveContainer_FullMethodName, fakecri.Script{Err: status.Error(codes.Unavailable, "runtime: 100% busy")})
	_ = rs.RemoveContainer(context.Background(), "ctr-44")
	var stop, remove map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		m := map[string]any{}
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		switch m["grpc.method"] {
		case "StopContainer":
			stop = m
		case "RemoveContainer":
			remove = m
		case "ContainerStatus":
			t.Errorf("a read-only call was logged at info: %s", l)
		}
	}
	if stop["level"] != "info" || stop["container"] != "ctr-42" || stop["grpc.code"] != "OK" || stop["duration"] == nil {
		t.Errorf("StopContainer log line %v, want info naming container ctr-42 with code OK and a duration", stop)
	}
	if remove["level"] != "warning" || remove["container"] != "ctr-44" || remove["grpc.error"] != "runtime: 100% busy" {
		t.Errorf("RemoveContainer log line %v, want a warning naming ctr-44 with the runtime's message", remove)
	}
}
