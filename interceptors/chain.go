package interceptors

import (
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/crishim/crishim/interceptors/logging"
	"github.com/crishim/crishim/interceptors/metrics"
	"github.com/crishim/crishim/interceptors/recovery"
	"github.com/crishim/crishim/shim"
)

// Chain returns crishim's interceptor chain as a server option.
//
// Recovery stands both outermost, so a bug in an interceptor cannot crash the
// proxy, and innermost, so a handler's panic reaches logging and metrics as
// the Internal status the caller sees.
func Chain(log *logrus.Logger, methods *shim.Methods, m *metrics.Metrics) shim.Option {
	lg := logging.New(log, methods)
	rec := []recovery.Option{recovery.WithLogger(log)}
	unary := []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(rec...),
		lg.UnaryServerInterceptor(),
		m.UnaryServerInterceptor(),
		recovery.UnaryServerInterceptor(rec...),
	}
	stream := []grpc.StreamServerInterceptor{
		recovery.StreamServerInterceptor(rec...),
		lg.StreamServerInterceptor(),
		m.StreamServerInterceptor(),
		recovery.StreamServerInterceptor(rec...),
	}
	return shim.WithInterceptors(unary, stream)
}
