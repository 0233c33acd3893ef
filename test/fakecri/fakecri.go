// Package fakecri is an in-process fake CRI runtime for tests: a gRPC server
// on a unix socket that registers cri-api's generated RuntimeService and
// ImageService, records the exact bytes and metadata of every call, and
// answers from per-method scripts (responses, errors, headers, trailers,
// streams, delays). It also serves a test service unknown to cri-api.
//
// It is a fake for fast tests; the real-runtime test bed under test/bed is
// what proves crishim against containerd.
package fakecri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Script is how the fake answers one method.
type Script struct {
	// Response is the unary reply; nil means an empty message of the
	// method's output type (Version has a filled default).
	Response proto.Message
	// Stream is what a server-streaming method sends before it ends.
	Stream []proto.Message
	// Hold keeps a stream open after Stream until the client cancels.
	Hold bool
	// Err is the status returned (after Stream, for streams).
	Err error
	// Header and Trailer are sent with the reply.
	Header, Trailer metadata.MD
	// Delay is waited (or cut short by the caller's cancellation) first.
	Delay time.Duration
	// Respond, when set, answers a unary call from its decoded request,
	// after Delay; Response and Err are then ignored.
	Respond func(req proto.Message) (proto.Message, error)
}

// Call is one call the fake received.
type Call struct {
	Method string
	// Request is the first request message as it arrived on the wire.
	Request []byte
	// Metadata is the request metadata the fake saw.
	Metadata metadata.MD
	// Deadline is the call's deadline, zero when it had none.
	Deadline time.Time
}

// TestService is a service unknown to cri-api: "/crishim.test.v1.Test/Echo"
// is a bidi stream echoing every message, "/crishim.test.v1.Test/Unary"
// returns the request bytes reversed.
const (
	TestEchoMethod  = "/crishim.test.v1.Test/Echo"
	TestUnaryMethod = "/crishim.test.v1.Test/Unary"
)

// Server is the fake runtime.
type Server struct {
	// Path is the unix socket the fake serves on.
	Path string

	grpc  *grpc.Server
	codec *recordingCodec
	done  chan struct{}

	mu        sync.Mutex
	scripts   map[string]Script
	calls     []Call
	cancelled map[string]chan struct{}
}

// Start serves a fake runtime on the unix socket path.
func Start(path string) (*Server, error) {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Path:      path,
		codec:     &recordingCodec{raw: map[any][]byte{}},
		done:      make(chan struct{}),
		scripts:   map[string]Script{},
		cancelled: map[string]chan struct{}{},
	}
	s.grpc = grpc.NewServer(
		grpc.ForceServerCodecV2(s.codec),
		grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20),
		grpc.UnaryInterceptor(s.unary),
		grpc.StreamInterceptor(s.stream),
	)
	s.grpc.RegisterService(&runtimeapi.RuntimeService_ServiceDesc, &runtimeapi.UnimplementedRuntimeServiceServer{})
	s.grpc.RegisterService(&runtimeapi.ImageService_ServiceDesc, &runtimeapi.UnimplementedImageServiceServer{})
	s.grpc.RegisterService(&testServiceDesc, struct{}{})
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(l)
	}()
	return s, nil
}

// Endpoint returns the fake's CRI endpoint, unix:///path.
func (s *Server) Endpoint() string { return "unix://" + s.Path }

// Stop stops the fake at once, cutting open calls.
func (s *Server) Stop() {
	s.grpc.Stop()
	<-s.done
}

// Script sets how method (a full method name) is answered.
func (s *Server) Script(method string, sc Script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[method] = sc
}

// Calls returns the calls received so far for method ("" for all).
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Sent returns the bytes the fake put on the wire for message m, one of the
// messages given in a Script.
func (s *Server) Sent(m proto.Message) []byte { return s.codec.get(m) }

// Cancelled is closed when a held stream of method sees its caller go away.
func (s *Server) Cancelled(method string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelledLocked(method)
}

func (s *Server) cancelledLocked(method string) chan struct{} {
	ch, ok := s.cancelled[method]
	if !ok {
		ch = make(chan struct{})
		s.cancelled[method] = ch
	}
	return ch
}

func (s *Server) begin(ctx context.Context, method string, req any) Script {
	md, _ := metadata.FromIncomingContext(ctx)
	deadline, _ := ctx.Deadline()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, Call{Method: method, Request: s.codec.take(req), Metadata: md, Deadline: deadline})
	return s.scripts[method]
}

func (s *Server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	sc := s.begin(ctx, info.FullMethod, req)
	if strings.HasPrefix(info.FullMethod, "/crishim.test.") {
		return handler(ctx, req)
	}
	if err := wait(ctx, sc.Delay); err != nil {
		return nil, err
	}
	if len(sc.Header) > 0 {
		_ = grpc.SetHeader(ctx, sc.Header)
	}
	if len(sc.Trailer) > 0 {
		_ = grpc.SetTrailer(ctx, sc.Trailer)
	}
	if sc.Respond != nil {
		return sc.Respond(req.(proto.Message))
	}
	if sc.Err != nil {
		return nil, sc.Err
	}
	if sc.Response != nil {
		return sc.Response, nil
	}
	return defaultResponse(info.FullMethod)
}

func (s *Server) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if strings.HasPrefix(info.FullMethod, "/crishim.test.") {
		s.begin(ss.Context(), info.FullMethod, nil)
		return handler(srv, ss)
	}
	in, _, err := messageTypes(info.FullMethod)
	if err != nil {
		return err
	}
	req := in.New().Interface()
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	ctx := ss.Context()
	sc := s.begin(ctx, info.FullMethod, req)
	if err := wait(ctx, sc.Delay); err != nil {
		return err
	}
	if len(sc.Header) > 0 {
		if err := ss.SendHeader(sc.Header); err != nil {
			return err
		}
	}
	for _, m := range sc.Stream {
		if err := ss.SendMsg(m); err != nil {
			return err
		}
	}
	if sc.Hold {
		<-ctx.Done()
		s.mu.Lock()
		ch := s.cancelledLocked(info.FullMethod)
		select {
		case <-ch:
		default:
			close(ch)
		}
		s.mu.Unlock()
		return status.FromContextError(ctx.Err()).Err()
	}
	ss.SetTrailer(sc.Trailer)
	return sc.Err
}

func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// VersionResponse is the fake's default answer to Version.
var VersionResponse = &runtimeapi.VersionResponse{
	Version: "0.1.0", RuntimeName: "fakecri", RuntimeVersion: "1.0.0", RuntimeApiVersion: "v1",
}

func defaultResponse(method string) (proto.Message, error) {
	if method == runtimeapi.RuntimeService_Version_FullMethodName {
		return VersionResponse, nil
	}
	_, out, err := messageTypes(method)
	if err != nil {
		return nil, err
	}
	return out.New().Interface(), nil
}

// messageTypes returns the input and output types of a cri-api method.
func messageTypes(fullMethod string) (in, out protoreflect.MessageType, err error) {
	name := strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, nil, status.Errorf(codes.Unimplemented, "fakecri: unknown method %s", fullMethod)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, nil, status.Errorf(codes.Unimplemented, "fakecri: %s is not a method", fullMethod)
	}
	if in, err = protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName()); err != nil {
		return nil, nil, err
	}
	out, err = protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	return in, out, err
}

// Raw is a message of the test service, kept as bytes.
type Raw struct{ B []byte }

// recordingCodec is protobuf, remembering the wire bytes of every message
// by the message's identity, so the fake can report exactly what crossed.
type recordingCodec struct {
	mu  sync.Mutex
	raw map[any][]byte
}

var protoCodec = encoding.GetCodecV2("proto")

func (c *recordingCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*Raw); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.B)}, nil
	}
	out, err := protoCodec.Marshal(v)
	if err == nil {
		c.put(v, out.Materialize())
	}
	return out, err
}

func (c *recordingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b := data.Materialize()
	if r, ok := v.(*Raw); ok {
		r.B = b
		return nil
	}
	c.put(v, b)
	return protoCodec.Unmarshal(data, v)
}

func (c *recordingCodec) Name() string { return "proto" }

func (c *recordingCodec) put(v any, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw[v] = b
}

func (c *recordingCodec) get(v any) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raw[v]
}

func (c *recordingCodec) take(v any) []byte {
	if v == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.raw[v]
	delete(c.raw, v)
	return b
}

var testServiceDesc = grpc.ServiceDesc{
	ServiceName: "crishim.test.v1.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			req := new(Raw)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				b := append([]byte(nil), req.(*Raw).B...)
				for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
					b[i], b[j] = b[j], b[i]
				}
				return &Raw{B: b}, nil
			}
			return interceptor(ctx, req, &grpc.UnaryServerInfo{FullMethod: TestUnaryMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName: "Echo", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				m := new(Raw)
				if err := ss.RecvMsg(m); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := ss.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

// String describes the fake for test logs.
func (s *Server) String() string { return fmt.Sprintf("fakecri(%s)", s.Path) }
