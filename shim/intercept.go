package shim

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Handler is a typed handler for one intercepted unary method. Only methods
// with a Handler are decoded; build one with Intercept. Several Handlers may
// intercept one method (features that act on the same RPC): the server chains
// them in the order they were given to WithHandlers, the first seeing the
// client's request and its next calling the second, the last one's next
// calling the runtime. Each sees the request its predecessor passed on.
type Handler struct {
	method  string
	newReq  func() proto.Message
	newResp func() proto.Message
	wrap    func(next untypedNext) untypedNext
}

// untypedNext is a Next with the types erased, for chaining Handlers.
type untypedNext func(ctx context.Context, req proto.Message) (proto.Message, error)

// Method returns the full gRPC method name the handler intercepts.
func (h Handler) Method() string { return h.method }

// Next forwards a (possibly modified) request to the next feature on the
// method, or to the runtime after the last, and returns its response.
// Request metadata goes upstream; the runtime's headers and trailers are
// added to the caller's. Errors are the runtime's, unchanged.
type Next[Req, Resp proto.Message] func(ctx context.Context, req Req) (Resp, error)

// Intercept returns the Handler that runs fn for fullMethod, a unary CRI
// method such as "/runtime.v1.RuntimeService/RunPodSandbox". fn decides
// whether and how to call next.
func Intercept[Req, Resp proto.Message](fullMethod string, fn func(ctx context.Context, req Req, next Next[Req, Resp]) (Resp, error)) Handler {
	var zeroReq Req
	var zeroResp Resp
	return Handler{
		method:  fullMethod,
		newReq:  func() proto.Message { return zeroReq.ProtoReflect().New().Interface() },
		newResp: func() proto.Message { return zeroResp.ProtoReflect().New().Interface() },
		wrap: func(next untypedNext) untypedNext {
			typed := func(ctx context.Context, req Req) (Resp, error) {
				resp, err := next(ctx, req)
				if err != nil {
					return zeroResp, err
				}
				return resp.(Resp), nil
			}
			return func(ctx context.Context, req proto.Message) (proto.Message, error) {
				resp, err := fn(ctx, req.(Req), typed)
				if err != nil {
					// A typed nil in an interface would not compare nil.
					return nil, err
				}
				return resp, nil
			}
		},
	}
}

// chain composes the handlers of one method, first outermost, in front of
// the call to the runtime.
func chain(hs []Handler, up *upstreamConn) untypedNext {
	first := hs[0]
	next := untypedNext(func(ctx context.Context, req proto.Message) (proto.Message, error) {
		resp := first.newResp()
		if err := invoke(ctx, up, first.method, req, resp); err != nil {
			return nil, err
		}
		return resp, nil
	})
	for i := len(hs) - 1; i >= 0; i-- {
		next = hs[i].wrap(next)
	}
	return next
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

func invoke(ctx context.Context, up *upstreamConn, method string, req, resp any) error {
	var header, trailer metadata.MD
	err := up.conn.Invoke(outgoingContext(ctx), method, req, resp, grpc.Header(&header), grpc.Trailer(&trailer))
	if len(header) > 0 {
		_ = grpc.SetHeader(ctx, header)
	}
	if len(trailer) > 0 {
		_ = grpc.SetTrailer(ctx, trailer)
	}
	if err != nil {
		return up.named(err)
	}
	return nil
}

// serviceDescs groups typed handlers into gRPC service descriptions holding
// just the intercepted methods; gRPC sends every other method of the same
// services to the passthrough handler. Handlers of one method are chained in
// the order given.
func serviceDescs(handlers []Handler, methods *Methods, ups *upstreams) ([]*grpc.ServiceDesc, error) {
	byService := map[string]*grpc.ServiceDesc{}
	var order []*grpc.ServiceDesc
	byMethod := map[string][]Handler{}
	var methodOrder []string
	for _, h := range handlers {
		m, ok := methods.known[h.method]
		if !ok || !m.Unary() {
			return nil, fmt.Errorf("typed handler for %q: only unary methods of the built-in cri-api can be intercepted", h.method)
		}
		if byMethod[h.method] == nil {
			methodOrder = append(methodOrder, h.method)
		}
		byMethod[h.method] = append(byMethod[h.method], h)
	}
	for _, name := range methodOrder {
		hs := byMethod[name]
		m := methods.known[name]
		sd := byService[m.Service]
		if sd == nil {
			// gRPC checks the registered value against HandlerType; every
			// value satisfies any.
			sd = &grpc.ServiceDesc{ServiceName: m.Service, HandlerType: (*any)(nil)}
			byService[m.Service] = sd
			order = append(order, sd)
		}
		handle := chain(hs, ups.get(m.Upstream))
		newReq := hs[0].newReq
		sd.Methods = append(sd.Methods, grpc.MethodDesc{
			MethodName: m.Name,
			Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				req := newReq()
				if err := dec(req); err != nil {
					return nil, err
				}
				call := func(ctx context.Context, req any) (any, error) {
					return handle(ctx, req.(proto.Message))
				}
				if interceptor == nil {
					return call(ctx, req)
				}
				return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: name}, call)
			},
		})
	}
	return order, nil
}
