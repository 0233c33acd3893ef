package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/shim/frames"
)

const secret = "s3cr3t-Passw0rd"

func newTestLogger(level logrus.Level) (*Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetFormatter(&logrus.JSONFormatter{})
	log.SetLevel(level)
	return New(log, shim.NewMethods()), &buf
}

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// rawStream is a server stream that receives one message, decoded from raw
// bytes, and records what is sent.
type rawStream struct {
	grpc.ServerStream
	in   []byte
	sent int
}

func (s *rawStream) Context() context.Context { return context.Background() }

func (s *rawStream) RecvMsg(m any) error { return proto.Unmarshal(s.in, m.(proto.Message)) }

// newRequest returns an empty request of one of the methods the tests use.
func newRequest(t *testing.T, method string) proto.Message {
	switch method {
	case runtimeapi.RuntimeService_StopContainer_FullMethodName:
		return &runtimeapi.StopContainerRequest{}
	case runtimeapi.RuntimeService_ListContainers_FullMethodName:
		return &runtimeapi.ListContainersRequest{}
	case runtimeapi.ImageService_PullImage_FullMethodName:
		return &runtimeapi.PullImageRequest{}
	}
	t.Fatalf("no request type for %s", method)
	return nil
}

func (s *rawStream) SendMsg(any) error { s.sent++; return nil }

func TestLogLines(t *testing.T) {
	pull := &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1"},
		Auth:  &runtimeapi.AuthConfig{Username: "robot", Password: secret, Auth: "cm9ib3Q6" + secret, IdentityToken: secret, RegistryToken: secret},
	}
	pullBytes, _ := proto.Marshal(pull)
	stopBytes, _ := proto.Marshal(&runtimeapi.StopContainerRequest{ContainerId: "ctr-1"})
	runResp := &runtimeapi.RunPodSandboxResponse{PodSandboxId: "pod-9"}
	tests := []struct {
		desc      string
		level     logrus.Level
		method    string
		typed     any    // a typed request (unary form)
		raw       []byte // a raw request (stream form)
		resp      any
		err       error
		wantLevel string // "" means no line
		wantID    [2]string
		wantCode  string
	}{
		{desc: "mutation at info", level: logrus.InfoLevel, method: runtimeapi.RuntimeService_StopContainer_FullMethodName, raw: stopBytes, wantLevel: "info", wantID: [2]string{"container", "ctr-1"}, wantCode: "OK"},
		{desc: "read-only call hidden at info", level: logrus.InfoLevel, method: runtimeapi.RuntimeService_ListContainers_FullMethodName, raw: nil},
		{desc: "read-only call at debug", level: logrus.DebugLevel, method: runtimeapi.RuntimeService_ListContainers_FullMethodName, raw: nil, wantLevel: "debug", wantCode: "OK"},
		{desc: "server fault raised to warning", level: logrus.InfoLevel, method: runtimeapi.RuntimeService_ListContainers_FullMethodName, err: status.Error(codes.Unavailable, "runtime down"), wantLevel: "warning", wantCode: "Unavailable"},
		{desc: "image named, credentials never, typed", level: logrus.TraceLevel, method: runtimeapi.ImageService_PullImage_FullMethodName, typed: pull, wantLevel: "info", wantID: [2]string{"image", "registry.example/app:1"}, wantCode: "OK"},
		{desc: "image named, credentials never, raw", level: logrus.TraceLevel, method: runtimeapi.ImageService_PullImage_FullMethodName, raw: pullBytes, err: status.Error(codes.Unknown, "failed to pull: 401 Unauthorized"), wantLevel: "warning", wantID: [2]string{"image", "registry.example/app:1"}, wantCode: "Unknown"},
		{desc: "id from the response", level: logrus.InfoLevel, method: runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, typed: &runtimeapi.RunPodSandboxRequest{}, resp: runResp, wantLevel: "info", wantID: [2]string{"pod", "pod-9"}, wantCode: "OK"},
	}
	type form struct {
		name     string
		observer bool // the frame router's observer instead of an interceptor
	}
	for _, tc := range tests {
		forms := []form{{"interceptor", false}}
		if tc.typed == nil {
			forms = append(forms, form{"observer", true})
		}
		for _, fm := range forms {
			t.Run(tc.desc+"/"+fm.name, func(t *testing.T) {
				l, buf := newTestLogger(tc.level)
				if fm.observer {
					call := l.Begin(tc.method)
					if mc, ok := call.(frames.MessageCall); ok {
						mc.Message(true, tc.raw)
					} else if tc.wantID[0] != "" {
						t.Fatalf("the call wants no message, yet the log needs its %s", tc.wantID[0])
					}
					st := status.Convert(tc.err)
					call.End(time.Now(), st.Code(), st.Message())
				} else if tc.typed != nil {
					_, _ = l.UnaryServerInterceptor()(context.Background(), tc.typed, &grpc.UnaryServerInfo{FullMethod: tc.method},
						func(context.Context, any) (any, error) { return tc.resp, tc.err })
				} else {
					ss := &rawStream{in: tc.raw}
					_ = l.StreamServerInterceptor()(nil, ss, &grpc.StreamServerInfo{FullMethod: tc.method}, func(_ any, s grpc.ServerStream) error {
						if err := s.RecvMsg(newRequest(t, tc.method)); err != nil {
							return err
						}
						return tc.err
					})
				}
				got := lines(t, buf)
				if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), "cm9ib3Q6") {
					t.Fatalf("a credential reached the log: %s", buf.String())
				}
				if tc.wantLevel == "" {
					if len(got) != 0 {
						t.Fatalf("got %d lines, want none: %s", len(got), buf.String())
					}
					return
				}
				if len(got) != 1 {
					t.Fatalf("got %d lines, want 1: %s", len(got), buf.String())
				}
				line := got[0]
				if line["level"] != tc.wantLevel || line["grpc.code"] != tc.wantCode {
					t.Errorf("level %v code %v, want %s %s", line["level"], line["grpc.code"], tc.wantLevel, tc.wantCode)
				}
				if _, ok := line["duration"]; !ok {
					t.Error("no duration field")
				}
				if tc.wantID[0] != "" && line[tc.wantID[0]] != tc.wantID[1] {
					t.Errorf("field %s = %v, want %s", tc.wantID[0], line[tc.wantID[0]], tc.wantID[1])
				}
				if tc.err != nil && line["grpc.error"] != status.Convert(tc.err).Message() {
					t.Errorf("grpc.error = %v", line["grpc.error"])
				}
			})
		}
	}
}

func TestLongErrorsAreCut(t *testing.T) {
	l, buf := newTestLogger(logrus.InfoLevel)
	long := strings.Repeat("e", 5000)
	_, _ = l.UnaryServerInterceptor()(context.Background(), &runtimeapi.StopPodSandboxRequest{}, &grpc.UnaryServerInfo{FullMethod: runtimeapi.RuntimeService_StopPodSandbox_FullMethodName},
		func(context.Context, any) (any, error) { return nil, status.Error(codes.Internal, long) })
	got := lines(t, buf)
	if len(got) != 1 {
		t.Fatalf("got %d lines", len(got))
	}
	if msg := got[0]["grpc.error"].(string); len(msg) > maxErrorLen+10 {
		t.Errorf("error field is %d bytes, want at most ~%d", len(msg), maxErrorLen)
	}
}
