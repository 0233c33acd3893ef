package logging

import (
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/shim/frames"
)

// Begin implements frames.Observer: the frame router's passthrough calls
// are logged as the stream interceptor logs them in gRPC passthrough mode,
// with the same fields and levels, ids taken from the first message each
// way when a DATA frame holds it whole.
func (l *Logger) Begin(method string) frames.Call {
	m := l.methods.Lookup(method)
	level := logrus.InfoLevel
	if m.ReadOnly {
		level = logrus.DebugLevel
	}
	if l.log.IsLevelEnabled(level) && (len(m.RequestIDs) > 0 || len(m.ResponseIDs) > 0) {
		return &idCall{l: l, m: m}
	}
	// No ids to collect: one shared call per method, no allocation.
	if c, ok := l.plain.Load(m); ok {
		return c.(*plainCall)
	}
	c, _ := l.plain.LoadOrStore(m, &plainCall{l: l, m: m})
	return c.(*plainCall)
}

// plainCall logs a call without ids.
type plainCall struct {
	l *Logger
	m *shim.Method
}

// End logs the call.
func (c *plainCall) End(start time.Time, code codes.Code, msg string) {
	c.l.report(c.m, start, statusErr(code, msg), nil)
}

// idCall logs a call with the ids of its messages.
type idCall struct {
	l   *Logger
	m   *shim.Method
	ids []idValue
}

// Message implements frames.MessageCall.
func (c *idCall) Message(request bool, msg []byte) {
	fields := c.m.ResponseIDs
	if request {
		fields = c.m.RequestIDs
	} else if !c.m.Unary() {
		return
	}
	if len(msg) > maxIDScan {
		msg = msg[:maxIDScan]
	}
	for _, f := range fields {
		if v := shim.FindString(msg, f.Path); v != "" {
			c.ids = append(c.ids, idValue{f.Key, v})
		}
	}
}

// End logs the call.
func (c *idCall) End(start time.Time, code codes.Code, msg string) {
	c.l.report(c.m, start, statusErr(code, msg), c.ids)
}

func statusErr(code codes.Code, msg string) error {
	if code == codes.OK {
		return nil
	}
	return status.Error(code, msg)
}

var (
	_ frames.Observer    = (*Logger)(nil)
	_ frames.MessageCall = (*idCall)(nil)
)
