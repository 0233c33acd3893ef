package shim

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Handler is a typed handler for one intercepted unary method. Only methods
// with a Handler are decoded; build one with Intercept.
type Handler struct {
	method string
	newReq func() proto.Message
	handle func(ctx context.Context, req proto.Message, up *upstreamConn) (proto.Message, error)
}

// Method returns the full gRPC method name the handler intercepts.
func (h Handler) Method() string { return h.method }

// Next forwards a (possibly modified) request to the runtime and returns its
// response. Request metadata goes upstream; the runtime's headers and trailers
// are added to the caller's. Errors are the runtime's, unchanged.
type Next[Req, Resp proto.Message] func(ctx context.Context, req Req) (Resp, error)

// Intercept returns the Handler that runs fn for fullMethod, a unary CRI
// method such as "/runtime.v1.RuntimeService/RunPodSandbox". fn decides
// whether and how to call next.
func Intercept[Req, Resp proto.Message](fullMethod string, fn func(ctx context.Context, req Req, next Next[Req, Resp]) (Resp, error)) Handler {
	var zeroReq Req
	var zeroResp Resp
	return Handler{
		method: fullMethod,
		newReq: func() proto.Message { return zeroReq.ProtoReflect().New().Interface() },
		handle: func(ctx context.Context, req proto.Message, up *upstreamConn) (proto.Message, error) {
			next := func(ctx context.Context, req Req) (Resp, error) {
				resp := zeroResp.ProtoReflect().New().Interface().(Resp)
				if err := invoke(ctx, up, fullMethod, req, resp); err != nil {
					return zeroResp, err
				}
				return resp, nil
			}
			return fn(ctx, req.(Req), next)
		},
	}
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
// services to the passthrough handler.
func serviceDescs(handlers []Handler, methods *Methods, ups *upstreams) ([]*grpc.ServiceDesc, error) {
	byService := map[string]*grpc.ServiceDesc{}
	var order []*grpc.ServiceDesc
	seen := map[string]bool{}
	for _, h := range handlers {
		m, ok := methods.known[h.method]
		if !ok || !m.Unary() {
			return nil, fmt.Errorf("typed handler for %q: only unary methods of the built-in cri-api can be intercepted", h.method)
		}
		if seen[h.method] {
			return nil, fmt.Errorf("typed handler for %q: registered twice", h.method)
		}
		seen[h.method] = true
		sd := byService[m.Service]
		if sd == nil {
			// gRPC checks the registered value against HandlerType; every
			// value satisfies any.
			sd = &grpc.ServiceDesc{ServiceName: m.Service, HandlerType: (*any)(nil)}
			byService[m.Service] = sd
			order = append(order, sd)
		}
		up := ups.get(m.Upstream)
		sd.Methods = append(sd.Methods, grpc.MethodDesc{
			MethodName: m.Name,
			Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				req := h.newReq()
				if err := dec(req); err != nil {
					return nil, err
				}
				call := func(ctx context.Context, req any) (any, error) {
					return h.handle(ctx, req.(proto.Message), up)
				}
				if interceptor == nil {
					return call(ctx, req)
				}
				return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: h.method}, call)
			},
		})
	}
	return order, nil
}
