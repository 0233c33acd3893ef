package shim

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// forwarder is the passthrough handler: every call without a typed handler,
// of any service, is forwarded to its upstream as raw Frames.
type forwarder struct {
	methods *Methods
	ups     *upstreams
	// draining is cancelled when shutdown begins: open-ended streams end
	// then instead of holding the shutdown for the whole grace period.
	draining context.Context
}

var (
	serverStreamDesc = &grpc.StreamDesc{ServerStreams: true}
	bidiStreamDesc   = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
)

// errShuttingDown ends watch streams at shutdown; like a runtime restart, it
// tells the client to reconnect.
var errShuttingDown = status.Error(codes.Unavailable, "crishim is shutting down: reconnect to the restarted proxy")

// handle is the grpc.UnknownServiceHandler. The call shape of known methods
// picks the cheapest forwarding: unary calls use no extra goroutine.
func (f *forwarder) handle(_ any, ss grpc.ServerStream) error {
	fullMethod, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "crishim: stream carries no method name")
	}
	m := f.methods.Lookup(fullMethod)
	up := f.ups.get(m.Upstream)
	ctx := outgoingContext(ss.Context())
	var err error
	switch {
	case m.Unary():
		err = forwardUnary(ctx, ss, up.conn, fullMethod)
	case m.Known && m.ServerStreams && !m.ClientStreams:
		err = f.forwardServerStream(ctx, ss, up.conn, m)
	default:
		err = forwardBidi(ctx, ss, up.conn, fullMethod)
	}
	if err != nil {
		return up.named(err)
	}
	return nil
}

// outgoingContext forwards the caller's request metadata upstream; gRPC drops
// the reserved and pseudo headers (:authority, content-type, user-agent, ...)
// itself. The caller's deadline and cancellation travel with ctx.
func outgoingContext(ctx context.Context) context.Context {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		return metadata.NewOutgoingContext(ctx, md)
	}
	return ctx
}

var unaryStreamDesc = &grpc.StreamDesc{}

// forwardUnary is what cc.Invoke does (one stream, one message each way),
// spelled out so the upstream's header and trailer are read off the stream
// itself: Invoke's grpc.Header and grpc.Trailer call options cost
// allocations and after-call hooks on every call.
func forwardUnary(ctx context.Context, ss grpc.ServerStream, cc *grpc.ClientConn, method string) error {
	var frames [2]Frame // request and response, one allocation
	req, resp := &frames[0], &frames[1]
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	cs, err := cc.NewStream(ctx, unaryStreamDesc, method)
	if err == nil {
		// io.EOF means the upstream ended the call first: RecvMsg returns
		// its status. For a unary stream RecvMsg also reads the end of the
		// stream, so the trailer is complete when it returns.
		if err = cs.SendMsg(req); err == nil || errors.Is(err, io.EOF) {
			err = cs.RecvMsg(resp)
		}
	}
	var header metadata.MD
	if cs != nil {
		header, _ = cs.Header()
		ss.SetTrailer(cs.Trailer())
	}
	if err != nil {
		if len(header) > 0 {
			_ = ss.SetHeader(header)
		}
		// The upstream's status (code, message, details) goes back as is.
		return err
	}
	if len(header) > 0 {
		if err := ss.SendHeader(header); err != nil {
			return err
		}
	}
	return ss.SendMsg(resp)
}

func (f *forwarder) forwardServerStream(ctx context.Context, ss grpc.ServerStream, cc *grpc.ClientConn, m *Method) error {
	req := new(Frame)
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if m.Watch {
		stop := context.AfterFunc(f.draining, cancel)
		defer stop()
	}
	cs, err := cc.NewStream(ctx, serverStreamDesc, m.FullName)
	if err != nil {
		return err
	}
	// A failed send shows up as the stream's status in RecvMsg below.
	if err := cs.SendMsg(req); err == nil {
		_ = cs.CloseSend()
	}
	err = pipeDown(ss, cs)
	if m.Watch && f.draining.Err() != nil && status.Code(err) == codes.Canceled {
		return errShuttingDown
	}
	return err
}

func forwardBidi(ctx context.Context, ss grpc.ServerStream, cc *grpc.ClientConn, method string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := cc.NewStream(ctx, bidiStreamDesc, method)
	if err != nil {
		return err
	}
	go pipeUp(ss, cs, cancel)
	return pipeDown(ss, cs)
}

// pipeUp copies client messages upstream until the client half-closes. It
// cancels the upstream call when the client's side fails. It may still be
// blocked in RecvMsg when the call ends; the end of the call unblocks it.
func pipeUp(ss grpc.ServerStream, cs grpc.ClientStream, cancel context.CancelFunc) {
	for {
		f := new(Frame)
		if err := ss.RecvMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				_ = cs.CloseSend()
				return
			}
			cancel()
			return
		}
		if err := cs.SendMsg(f); err != nil {
			// The upstream ended the call; pipeDown returns its status.
			return
		}
	}
}

// pipeDown copies the upstream's header, messages and trailer to the client
// and returns the upstream's final status unchanged.
func pipeDown(ss grpc.ServerStream, cs grpc.ClientStream) error {
	if header, err := cs.Header(); err == nil && len(header) > 0 {
		if err := ss.SendHeader(header); err != nil {
			return err
		}
	}
	for {
		f := new(Frame)
		if err := cs.RecvMsg(f); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}
