package recovery

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRecovery(t *testing.T) {
	tests := []struct {
		desc  string
		call  func(opts ...Option) error
		panic bool
	}{
		{"unary panics", func(opts ...Option) error {
			_, err := UnaryServerInterceptor(opts...)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/s/M"},
				func(context.Context, any) (any, error) { panic("boom secret-free") })
			return err
		}, true},
		{"stream panics", func(opts ...Option) error {
			return StreamServerInterceptor(opts...)(nil, nil, &grpc.StreamServerInfo{FullMethod: "/s/M"},
				func(any, grpc.ServerStream) error { panic("boom secret-free") })
		}, true},
		{"unary error passes", func(opts ...Option) error {
			_, err := UnaryServerInterceptor(opts...)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/s/M"},
				func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "nf") })
			return err
		}, false},
		{"stream error passes", func(opts ...Option) error {
			return StreamServerInterceptor(opts...)(nil, nil, &grpc.StreamServerInfo{FullMethod: "/s/M"},
				func(any, grpc.ServerStream) error { return status.Error(codes.NotFound, "nf") })
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var buf bytes.Buffer
			log := logrus.New()
			log.SetOutput(&buf)
			panics := 0
			err := tc.call(WithLogger(log), WithOnPanic(func(m string) {
				if m != "/s/M" {
					t.Errorf("hook got method %q", m)
				}
				panics++
			}))
			if !tc.panic {
				if status.Code(err) != codes.NotFound || panics != 0 || buf.Len() != 0 {
					t.Errorf("got %v, %d panics, log %q; want the handler's NotFound untouched", err, panics, buf.String())
				}
				return
			}
			if status.Code(err) != codes.Internal {
				t.Errorf("got %v, want Internal", err)
			}
			if strings.Contains(err.Error(), "boom") || strings.Contains(err.Error(), "goroutine") {
				t.Errorf("the panic leaks to the caller: %v", err)
			}
			if panics != 1 {
				t.Errorf("hook called %d times, want 1", panics)
			}
			if !strings.Contains(buf.String(), "boom secret-free") || !strings.Contains(buf.String(), "recovery_test.go") {
				t.Errorf("log lacks the panic value and stack: %s", buf.String())
			}
		})
	}
}
