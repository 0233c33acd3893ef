package shim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
)

// criMethods enumerates every method of the cri-api services from their
// descriptors, so an RPC added in a newer cri-api is tested without a change.
func criMethods(t *testing.T) []protoreflect.MethodDescriptor {
	t.Helper()
	var out []protoreflect.MethodDescriptor
	for _, svc := range []string{"runtime.v1.RuntimeService", "runtime.v1.ImageService"} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatal(err)
		}
		ms := d.(protoreflect.ServiceDescriptor).Methods()
		for i := 0; i < ms.Len(); i++ {
			out = append(out, ms.Get(i))
		}
	}
	if len(out) < 40 {
		t.Fatalf("found %d CRI methods, want at least 40", len(out))
	}
	return out
}

func fullName(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

// filled returns a message of type md with every field set (two levels deep)
// plus an unknown field, which a decode/re-encode by an old cri-api would lose.
func filled(t *testing.T, md protoreflect.MessageDescriptor, tag string) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		t.Fatal(err)
	}
	m := mt.New()
	fill(m, tag, 0)
	unknown := protowire.AppendTag(nil, 9999, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "unknown-field-"+tag)
	m.SetUnknown(unknown)
	return m.Interface()
}

func fill(m protoreflect.Message, tag string, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			if fd.MapKey().Kind() == protoreflect.StringKind && fd.MapValue().Kind() == protoreflect.StringKind {
				m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString(tag))
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				if depth < 2 {
					l := m.Mutable(fd).List()
					e := l.NewElement()
					fill(e.Message(), tag, depth+1)
					l.Append(e)
				}
			} else if v, ok := scalar(fd, tag); ok {
				m.Mutable(fd).List().Append(v)
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 2 {
				fill(m.Mutable(fd).Message(), tag, depth+1)
			}
		default:
			if v, ok := scalar(fd, tag); ok {
				m.Set(fd, v)
			}
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, tag string) (protoreflect.Value, bool) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true), true
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1).Number()), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7), true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7), true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7), true
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1.5), true
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1.5), true
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(tag + "-" + string(fd.Name())), true
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(tag)), true
	}
	return protoreflect.Value{}, false
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEveryCRIMethodRoundTripsBytes sends a fully populated request with an
// unknown field through crishim for every CRI method and checks that the
// runtime receives exactly those bytes and the client exactly the runtime's.
func TestEveryCRIMethodRoundTripsBytes(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, md := range criMethods(t) {
		method := fullName(md)
		t.Run(string(md.Name()), func(t *testing.T) {
			req := marshal(t, filled(t, md.Input(), "req"))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var want [][]byte
			var got [][]byte
			if md.IsStreamingServer() {
				msgs := []proto.Message{filled(t, md.Output(), "r1"), filled(t, md.Output(), "r2"), filled(t, md.Output(), "r3")}
				e.fake.Script(method, fakecri.Script{Stream: msgs})
				cs, err := e.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method, rawCall)
				if err != nil {
					t.Fatal(err)
				}
				if err := cs.SendMsg(&rawMsg{b: req}); err != nil {
					t.Fatal(err)
				}
				cs.CloseSend()
				for {
					var m rawMsg
					if err := cs.RecvMsg(&m); err != nil {
						if !errors.Is(err, io.EOF) {
							t.Fatalf("stream ended with %v, want EOF", err)
						}
						break
					}
					got = append(got, m.b)
				}
				for _, m := range msgs {
					want = append(want, e.fake.Sent(m))
				}
			} else {
				resp := filled(t, md.Output(), "resp")
				e.fake.Script(method, fakecri.Script{Response: resp})
				var out rawMsg
				if err := e.conn.Invoke(ctx, method, &rawMsg{b: req}, &out, rawCall); err != nil {
					t.Fatal(err)
				}
				got = [][]byte{out.b}
				want = [][]byte{e.fake.Sent(resp)}
			}
			calls := e.fake.Calls(method)
			if len(calls) != 1 {
				t.Fatalf("runtime saw %d calls, want 1", len(calls))
			}
			if !bytes.Equal(calls[0].Request, req) {
				t.Errorf("runtime received %d bytes %x\nclient sent %d bytes %x", len(calls[0].Request), calls[0].Request, len(req), req)
			}
			if len(got) != len(want) {
				t.Fatalf("client got %d messages, want %d", len(got), len(want))
			}
			for i := range want {
				if len(want[i]) == 0 {
					t.Fatalf("runtime sent nothing recorded for message %d", i)
				}
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("message %d: client got %x\nruntime sent %x", i, got[i], want[i])
				}
			}
		})
	}
}

// TestUnknownMethodsPassThrough calls a service cri-api does not have, unary
// and bidi streaming, as an RPC newer than crishim's cri-api would arrive.
func TestUnknownMethodsPassThrough(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var out rawMsg
	if err := e.conn.Invoke(ctx, fakecri.TestUnaryMethod, &rawMsg{b: []byte("abc\x00\xff")}, &out, rawCall); err != nil {
		t.Fatal(err)
	}
	if want := []byte("\xff\x00cba"); !bytes.Equal(out.b, want) {
		t.Errorf("unary: got %q, want %q", out.b, want)
	}

	cs, err := e.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, fakecri.TestEchoMethod, rawCall)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		msg := []byte(fmt.Sprintf("message-%d", i))
		if err := cs.SendMsg(&rawMsg{b: msg}); err != nil {
			t.Fatal(err)
		}
		var echo rawMsg
		if err := cs.RecvMsg(&echo); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(echo.b, msg) {
			t.Errorf("echo %d: got %q, want %q", i, echo.b, msg)
		}
	}
	cs.CloseSend()
	if err := cs.RecvMsg(&rawMsg{}); !errors.Is(err, io.EOF) {
		t.Errorf("after half-close: got %v, want EOF", err)
	}
	if n := len(e.fake.Calls(fakecri.TestEchoMethod)); n != 1 {
		t.Errorf("runtime saw %d echo calls, want 1", n)
	}
}

func TestContainerEventsStream(t *testing.T) {
	const method = runtimeapi.RuntimeService_GetContainerEvents_FullMethodName
	events := func(n int) []proto.Message {
		var out []proto.Message
		for i := 0; i < n; i++ {
			out = append(out, &runtimeapi.ContainerEventResponse{ContainerId: fmt.Sprintf("c%d", i), ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, CreatedAt: int64(i)})
		}
		return out
	}

	t.Run("events then client cancel ends the upstream stream", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		const n = 50
		e.fake.Script(method, fakecri.Script{Stream: events(n), Hold: true})
		rs := e.runtimeClient()
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan *runtimeapi.ContainerEventResponse, n)
		errc := make(chan error, 1)
		go func() { errc <- rs.GetContainerEvents(ctx, ch, nil) }()
		for i := 0; i < n; i++ {
			select {
			case ev := <-ch:
				if want := fmt.Sprintf("c%d", i); ev.ContainerId != want {
					t.Fatalf("event %d: container %q, want %q", i, ev.ContainerId, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("got %d of %d events", i, n)
			}
		}
		cancel()
		if err := <-errc; status.Code(err) != codes.Canceled {
			t.Errorf("client: got %v, want Canceled", err)
		}
		select {
		case <-e.fake.Cancelled(method):
		case <-time.After(10 * time.Second):
			t.Fatal("the runtime's stream was not cancelled after the client went away")
		}
	})

	t.Run("upstream end of stream reaches the client", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.fake.Script(method, fakecri.Script{Stream: events(3)})
		ch := make(chan *runtimeapi.ContainerEventResponse, 3)
		err := e.runtimeClient().GetContainerEvents(context.Background(), ch, nil)
		if !errors.Is(err, io.EOF) {
			t.Errorf("got %v, want io.EOF", err)
		}
		if len(ch) != 3 {
			t.Errorf("got %d events, want 3", len(ch))
		}
	})

	t.Run("upstream error reaches the client", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.fake.Script(method, fakecri.Script{Err: status.Error(codes.Unimplemented, "unknown method GetContainerEvents for service runtime.v1.RuntimeService")})
		err := e.runtimeClient().GetContainerEvents(context.Background(), make(chan *runtimeapi.ContainerEventResponse, 1), nil)
		st := status.Convert(err)
		if st.Code() != codes.Unimplemented || st.Message() != "unknown method GetContainerEvents for service runtime.v1.RuntimeService" {
			t.Errorf("got %v, want the runtime's Unimplemented unchanged", err)
		}
	})
}

func TestRuntimeErrorsPassUnchanged(t *testing.T) {
	withDetails, err := status.New(codes.NotFound, "container \"abc\" not found").WithDetails(&errdetails.ErrorInfo{Reason: "NOT_FOUND", Domain: "containerd"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc   string
		method string
		call   func(e *env) error
		st     *status.Status
	}{
		{
			desc:   "pull error text the kubelet parses",
			method: runtimeapi.ImageService_PullImage_FullMethodName,
			call: func(e *env) error {
				_, err := e.imageClient().PullImage(context.Background(), &runtimeapi.ImageSpec{Image: "example.com/a:1"}, nil, nil)
				return err
			},
			st: status.New(codes.Unknown, "RegistryUnavailable: failed to pull and unpack image \"example.com/a:1\": dial tcp: i/o timeout"),
		},
		{
			desc:   "status details survive",
			method: runtimeapi.RuntimeService_ContainerStatus_FullMethodName,
			call: func(e *env) error {
				_, err := e.runtimeClient().ContainerStatus(context.Background(), "abc", false)
				return err
			},
			st: withDetails,
		},
		{
			desc:   "every code",
			method: runtimeapi.RuntimeService_StopPodSandbox_FullMethodName,
			call: func(e *env) error {
				return e.runtimeClient().StopPodSandbox(context.Background(), "pod1")
			},
			st: status.New(codes.FailedPrecondition, "sandbox \"pod1\" is in state X"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.fake.Script(tc.method, fakecri.Script{Err: tc.st.Err()})
			got := status.Convert(tc.call(e))
			if diff := cmpStatus(got, tc.st); diff != "" {
				t.Error(diff)
			}
		})
	}

	t.Run("all codes through the raw client", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
			want := status.New(c, fmt.Sprintf("runtime says %s: detail ü", c))
			e.fake.Script(runtimeapi.RuntimeService_RemoveContainer_FullMethodName, fakecri.Script{Err: want.Err()})
			err := e.conn.Invoke(context.Background(), runtimeapi.RuntimeService_RemoveContainer_FullMethodName, &rawMsg{b: nil}, &rawMsg{}, rawCall)
			if diff := cmpStatus(status.Convert(err), want); diff != "" {
				t.Errorf("%s: %s", c, diff)
			}
		}
	})
}

func cmpStatus(got, want *status.Status) string {
	if got.Code() != want.Code() || got.Message() != want.Message() {
		return fmt.Sprintf("got %s %q, want %s %q", got.Code(), got.Message(), want.Code(), want.Message())
	}
	if !proto.Equal(got.Proto(), want.Proto()) {
		return fmt.Sprintf("details differ: got %v, want %v", got.Proto(), want.Proto())
	}
	return ""
}

func TestDeadlinesPropagate(t *testing.T) {
	e := newEnv(t, envOptions{})
	const method = runtimeapi.RuntimeService_ListContainers_FullMethodName
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	if err := e.conn.Invoke(ctx, method, &rawMsg{}, &rawMsg{}, rawCall); err != nil {
		t.Fatal(err)
	}
	calls := e.fake.Calls(method)
	if len(calls) != 1 || calls[0].Deadline.IsZero() {
		t.Fatalf("runtime saw no deadline: %+v", calls)
	}
	if d := want.Sub(calls[0].Deadline); d < -50*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("runtime's deadline is %v off the client's", d)
	}

	// A runtime slower than the caller's deadline: the caller gets
	// DeadlineExceeded and the runtime's call is cancelled too.
	e.fake.Script(runtimeapi.RuntimeService_StopContainer_FullMethodName, fakecri.Script{Delay: time.Minute})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	err := e.conn.Invoke(ctx2, runtimeapi.RuntimeService_StopContainer_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("got %v, want DeadlineExceeded", err)
	}
}

func TestUpstreamDownAndBack(t *testing.T) {
	e := newEnv(t, envOptions{noFake: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := e.conn.Invoke(ctx, runtimeapi.RuntimeService_Version_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("upstream down: got %v, want Unavailable", err)
	}
	upstream := "unix://" + e.dir + "/up.sock"
	if !strings.Contains(status.Convert(err).Message(), upstream) {
		t.Errorf("error %q does not name the upstream %s", status.Convert(err).Message(), upstream)
	}
	if err := e.srv.Ready(ctx); err == nil {
		t.Error("Ready reports ready while the upstream is down")
	}

	e.startFake()
	waitFor(t, 5*time.Second, "crishim to reconnect to the runtime", func() bool {
		return e.conn.Invoke(ctx, runtimeapi.RuntimeService_Version_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall) == nil
	})
	// Ready asks over crishim's own client connection, which reconnects
	// on its own schedule (ReconnectBackoff) whatever the passthrough.
	waitFor(t, 5*time.Second, "Ready after the runtime came back", func() bool { return e.srv.Ready(ctx) == nil })

	// And again: the runtime restarts under crishim.
	e.fake.Stop()
	e.fake = nil
	waitFor(t, 5*time.Second, "calls to fail while the runtime is down", func() bool {
		err := e.conn.Invoke(ctx, runtimeapi.RuntimeService_Version_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall)
		return status.Code(err) == codes.Unavailable
	})
	e.startFake()
	waitFor(t, 5*time.Second, "crishim to reconnect after a runtime restart", func() bool {
		return e.conn.Invoke(ctx, runtimeapi.RuntimeService_Version_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall) == nil
	})
}

// TestRuntimeDiesMidCall: a call in flight when the runtime goes away fails
// with Unavailable naming the endpoint, typed or passthrough alike; a
// runtime's own Unavailable passes unchanged.
func TestRuntimeDiesMidCall(t *testing.T) {
	e := newEnv(t, envOptions{handlers: []shim.Handler{versionSuffix()}})
	endpoint := e.fake.Endpoint()
	own := status.New(codes.Unavailable, "server is not initialized yet") // containerd's CRI while it starts
	e.fake.Script(runtimeapi.RuntimeService_RemovePodSandbox_FullMethodName, fakecri.Script{Err: own.Err()})
	err := e.conn.Invoke(context.Background(), runtimeapi.RuntimeService_RemovePodSandbox_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall)
	if diff := cmpStatus(status.Convert(err), own); diff != "" {
		t.Errorf("the runtime's own Unavailable was changed: %s", diff)
	}

	e.fake.Script(runtimeapi.RuntimeService_ListContainers_FullMethodName, fakecri.Script{Delay: time.Minute})
	e.fake.Script(runtimeapi.RuntimeService_Version_FullMethodName, fakecri.Script{Delay: time.Minute})
	errs := make(chan error, 2)
	go func() {
		errs <- e.conn.Invoke(context.Background(), runtimeapi.RuntimeService_ListContainers_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall)
	}()
	go func() {
		_, err := runtimeapi.NewRuntimeServiceClient(e.conn).Version(context.Background(), &runtimeapi.VersionRequest{})
		errs <- err
	}()
	waitFor(t, 5*time.Second, "both calls to reach the runtime", func() bool {
		return len(e.fake.Calls(runtimeapi.RuntimeService_ListContainers_FullMethodName)) == 1 &&
			len(e.fake.Calls(runtimeapi.RuntimeService_Version_FullMethodName)) == 1
	})
	e.fake.Stop()
	e.fake = nil
	for range 2 {
		err := <-errs
		if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), endpoint) {
			t.Errorf("call cut by the runtime's death: %v, want Unavailable naming %s", err, endpoint)
		}
	}
}

func TestMessageSizeLimits(t *testing.T) {
	e := newEnv(t, envOptions{})
	const method = runtimeapi.RuntimeService_ListContainers_FullMethodName
	big := func(size int) *runtimeapi.ListContainersResponse {
		return &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{{Id: "big", Labels: map[string]string{"pad": strings.Repeat("x", size)}}}}
	}
	rs := e.runtimeClient()

	e.fake.Script(method, fakecri.Script{Response: big(15 << 20)})
	got, err := rs.ListContainers(context.Background(), nil)
	if err != nil {
		t.Fatalf("15 MiB response: %v", err)
	}
	if len(got) != 1 || len(got[0].Labels["pad"]) != 15<<20 {
		t.Fatalf("15 MiB response arrived damaged")
	}

	e.fake.Script(method, fakecri.Script{Response: big(17 << 20)})
	_, err = rs.ListContainers(context.Background(), nil)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("17 MiB response: got %v, want ResourceExhausted", err)
	}

	// An oversized request is refused by crishim's server limit.
	err = e.conn.Invoke(context.Background(), method, &rawMsg{b: marshal(t, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: strings.Repeat("y", 17<<20)}})}, &rawMsg{}, rawCall)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("17 MiB request: got %v, want ResourceExhausted", err)
	}

	// crishim keeps serving.
	e.fake.Script(method, fakecri.Script{})
	if _, err := rs.ListContainers(context.Background(), nil); err != nil {
		t.Errorf("call after oversized messages: %v", err)
	}
}

func TestHeadersAndTrailers(t *testing.T) {
	tests := []struct {
		desc   string
		method string
		stream bool
	}{
		{"unary passthrough", runtimeapi.RuntimeService_ListPodSandbox_FullMethodName, false},
		{"unary passthrough error", runtimeapi.RuntimeService_RemovePodSandbox_FullMethodName, false},
		{"server stream passthrough", runtimeapi.ImageService_StreamImages_FullMethodName, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			sc := fakecri.Script{Header: metadata.Pairs("x-runtime-header", "h1"), Trailer: metadata.Pairs("x-runtime-trailer", "t1")}
			if strings.HasSuffix(tc.desc, "error") {
				sc.Err = status.Error(codes.Aborted, "aborted")
			}
			e.fake.Script(tc.method, sc)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-client", "c1", "x-bin-bin", "\x00\x01")
			var header, trailer metadata.MD
			if tc.stream {
				cs, err := e.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, tc.method, rawCall)
				if err != nil {
					t.Fatal(err)
				}
				cs.SendMsg(&rawMsg{})
				cs.CloseSend()
				for cs.RecvMsg(&rawMsg{}) == nil {
				}
				header, _ = cs.Header()
				trailer = cs.Trailer()
			} else {
				err := e.conn.Invoke(ctx, tc.method, &rawMsg{}, &rawMsg{}, rawCall, grpc.Header(&header), grpc.Trailer(&trailer))
				if (sc.Err == nil) != (err == nil) {
					t.Fatalf("got %v, want %v", err, sc.Err)
				}
			}
			if got := header.Get("x-runtime-header"); len(got) != 1 || got[0] != "h1" {
				t.Errorf("client header x-runtime-header = %q, want [h1] (all: %v)", got, header)
			}
			if got := trailer.Get("x-runtime-trailer"); len(got) != 1 || got[0] != "t1" {
				t.Errorf("client trailer x-runtime-trailer = %q, want [t1] (all: %v)", got, trailer)
			}
			calls := e.fake.Calls(tc.method)
			if len(calls) != 1 {
				t.Fatalf("runtime saw %d calls", len(calls))
			}
			if got := calls[0].Metadata.Get("x-client"); len(got) != 1 || got[0] != "c1" {
				t.Errorf("runtime saw x-client = %q, want [c1]", got)
			}
			if got := calls[0].Metadata.Get("x-bin-bin"); len(got) != 1 || got[0] != "\x00\x01" {
				t.Errorf("runtime saw x-bin-bin = %q", got)
			}
		})
	}
}
