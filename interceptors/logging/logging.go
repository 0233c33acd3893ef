package logging

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/crishim/crishim/shim"
)

// maxErrorLen bounds the error text in a log line; runtime errors can carry
// whole command outputs.
const maxErrorLen = 1024

// maxIDScan bounds how much of a raw message is scanned for ids: ids are the
// first fields of small requests.
const maxIDScan = 4096

// Logger logs calls; build it with New.
type Logger struct {
	log     *logrus.Logger
	methods *shim.Methods
	plain   sync.Map // *shim.Method -> *plainCall
}

// New returns a Logger writing to log and classifying calls with methods.
func New(log *logrus.Logger, methods *shim.Methods) *Logger {
	return &Logger{log: log, methods: methods}
}

// UnaryServerInterceptor logs typed (intercepted) calls.
func (l *Logger) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		m := l.methods.Lookup(info.FullMethod)
		start := time.Now()
		var ids []idValue
		ids = addIDs(ids, m.RequestIDs, req)
		resp, err := handler(ctx, req)
		if err == nil {
			ids = addIDs(ids, m.ResponseIDs, resp)
		}
		l.report(m, start, err, ids)
		return resp, err
	}
}

// StreamServerInterceptor logs streaming calls, taking ids from the first
// request and, for unary methods, from the response.
func (l *Logger) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		m := l.methods.Lookup(info.FullMethod)
		start := time.Now()
		if len(m.RequestIDs) == 0 && len(m.ResponseIDs) == 0 {
			// Nothing to look for: skip the wrapper on the hot path.
			err := handler(srv, ss)
			l.report(m, start, err, nil)
			return err
		}
		w := &idStream{ServerStream: ss, method: m}
		err := handler(srv, w)
		l.report(m, start, err, w.ids)
		return err
	}
}

func (l *Logger) report(m *shim.Method, start time.Time, err error, ids []idValue) {
	code := status.Code(err)
	level := logrus.InfoLevel
	if m.ReadOnly {
		level = logrus.DebugLevel
	}
	if serverFault(code) {
		level = logrus.WarnLevel
	}
	if !l.log.IsLevelEnabled(level) {
		return
	}
	fields := make(logrus.Fields, 5+len(ids))
	fields["grpc.service"] = m.Service
	fields["grpc.method"] = m.Name
	fields["grpc.code"] = code.String()
	fields["duration"] = time.Since(start).Round(time.Microsecond).String()
	for _, id := range ids { // a response's id wins over the request's
		fields[id.key] = id.value
	}
	if err != nil {
		msg := status.Convert(err).Message()
		if len(msg) > maxErrorLen {
			msg = msg[:maxErrorLen] + "..."
		}
		fields["grpc.error"] = msg
	}
	// An Entry of our own fields: WithFields would copy them once more.
	(&logrus.Entry{Logger: l.log, Data: fields}).Log(level, "call")
}

// serverFault reports codes that mean something is wrong with the runtime or
// crishim, rather than with the request.
func serverFault(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.Internal, codes.Unavailable, codes.DataLoss, codes.DeadlineExceeded:
		return true
	}
	return false
}

// idStream picks ids out of the first message each way.
type idStream struct {
	grpc.ServerStream
	method      *shim.Method
	recvd, sent bool
	ids         []idValue
}

// idValue is an id found in a message; ids are collected as a slice and
// become log fields only when the call is logged.
type idValue struct{ key, value string }

func (s *idStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && !s.recvd {
		s.recvd = true
		s.add(s.method.RequestIDs, m)
	}
	return err
}

func (s *idStream) SendMsg(m any) error {
	if !s.sent && s.method.Unary() {
		s.sent = true
		s.add(s.method.ResponseIDs, m)
	}
	return s.ServerStream.SendMsg(m)
}

func (s *idStream) add(fields []shim.IDField, m any) {
	if len(fields) == 0 {
		return
	}
	s.ids = addIDs(s.ids, fields, m)
}

func addIDs(dst []idValue, fields []shim.IDField, m any) []idValue {
	pm, ok := m.(proto.Message)
	if !ok {
		return dst
	}
	for _, f := range fields {
		if v := findString(pm.ProtoReflect(), f.Path); v != "" {
			dst = append(dst, idValue{f.Key, v})
		}
	}
	return dst
}

func findString(m protoreflect.Message, path []protowire.Number) string {
	for i, num := range path {
		fd := m.Descriptor().Fields().ByNumber(num)
		if fd == nil || !m.Has(fd) {
			return ""
		}
		if i == len(path)-1 {
			if fd.Kind() != protoreflect.StringKind {
				return ""
			}
			return m.Get(fd).String()
		}
		if fd.Kind() != protoreflect.MessageKind {
			return ""
		}
		m = m.Get(fd).Message()
	}
	return ""
}
