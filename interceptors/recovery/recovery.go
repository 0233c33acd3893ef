package recovery

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Option configures the interceptors.
type Option func(*options)

type options struct {
	logger  logrus.FieldLogger
	onPanic func(method string)
}

// WithLogger sets where recovered panics are logged (default: logrus's
// standard logger).
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.logger = l } }

// WithOnPanic sets a hook called once per recovered panic, e.g. to count it.
func WithOnPanic(fn func(method string)) Option { return func(o *options) { o.onPanic = fn } }

func newOptions(opts []Option) *options {
	o := &options{logger: logrus.StandardLogger(), onPanic: func(string) {}}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// UnaryServerInterceptor recovers panics of unary handlers.
func UnaryServerInterceptor(opts ...Option) grpc.UnaryServerInterceptor {
	o := newOptions(opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = o.recovered(info.FullMethod, p)
			}
		}()
		return handler(ctx, req)
	}
}

// StreamServerInterceptor recovers panics of stream handlers.
func StreamServerInterceptor(opts ...Option) grpc.StreamServerInterceptor {
	o := newOptions(opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = o.recovered(info.FullMethod, p)
			}
		}()
		return handler(srv, ss)
	}
}

func (o *options) recovered(method string, p any) error {
	o.onPanic(method)
	o.logger.WithFields(logrus.Fields{
		"grpc.method": method,
		"panic":       fmt.Sprint(p),
		"stack":       string(debug.Stack()),
	}).Error("recovered from panic in call handler; the call failed with Internal")
	return status.Errorf(codes.Internal, "crishim: internal error while handling %s; the details are in crishim's log", method)
}
