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
	// The frame router's passthrough calls reach neither chain: logging and
	// metrics observe them (no handler of ours runs there to recover).
	return shim.Join(shim.WithInterceptors(unary, stream), shim.WithObservers(lg, m))
}
