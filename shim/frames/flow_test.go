package frames

// Flow-control tests: slow and non-reading peers on either side of the
// router, the buffer budget, and many large streams at once. They check
// completion and integrity within generous deadlines and sample
// Router.Stats().Buffered while peers stall; they make no claims on speed.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ---------------------------------------------------------------------------
// Payloads: a position-dependent pattern, so loss, duplication or reordering
// of any chunk shows.

func flowMix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// flowFill fills b with pattern seed, starting at pattern offset 0.
func flowFill(b []byte, seed uint64) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], flowMix(seed<<40^uint64(i/8)))
	}
	v := flowMix(seed<<40 ^ uint64(i/8))
	for j := 0; i+j < len(b); j++ {
		b[i+j] = byte(v >> (8 * j))
	}
}

// flowCheck returns the first offset where b departs from pattern seed, or
// -1.
func flowCheck(b []byte, seed uint64) int {
	for i := 0; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != flowMix(seed<<40^uint64(i/8)) {
			return i
		}
	}
	i := len(b) &^ 7
	v := flowMix(seed<<40 ^ uint64(i/8))
	for j := 0; i+j < len(b); j++ {
		if b[i+j] != byte(v>>(8*j)) {
			return i
		}
	}
	return -1
}

func flowPattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	flowFill(b, seed)
	return b
}

func flowArgs(v ...uint32) *[]byte {
	var b []byte
	for _, x := range v {
		b = binary.BigEndian.AppendUint32(b, x)
	}
	return &b
}

// ---------------------------------------------------------------------------
// The upstream of these tests.
//
//	/f.F/Size   [n seed]        -> n bytes of pattern seed
//	/f.F/List   [count size]    -> count messages of size bytes: index, then pattern index
//	/f.F/Sink   stream of msgs  -> sha256 of their concatenation, count, total (md "delay-ns": pause per message)
//	/f.F/Digest one message     -> sha256 and length of it
//	/f.F/Fail   [n]             -> error whose message is n bytes, different on each call

type flowUpstream struct {
	g     *grpc.Server
	calls atomic.Int64
}

func startFlowUpstream(t *testing.T, sock string, wrap func(net.Conn) net.Conn, opts ...grpc.ServerOption) *flowUpstream {
	t.Helper()
	u := &flowUpstream{}
	opts = append([]grpc.ServerOption{grpc.ForceServerCodec(bytesCodec{}), grpc.MaxSendMsgSize(64 << 20), grpc.MaxRecvMsgSize(64 << 20),
		grpc.UnknownServiceHandler(u.handle)}, opts...)
	u.g = grpc.NewServer(opts...)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = l
	if wrap != nil {
		ln = &flowWrapListener{Listener: l, wrap: wrap}
	}
	go u.g.Serve(ln)
	t.Cleanup(u.g.Stop)
	return u
}

func (u *flowUpstream) handle(_ any, ss grpc.ServerStream) error {
	m, _ := grpc.MethodFromServerStream(ss)
	n := u.calls.Add(1)
	if m == "/f.F/Sink" {
		var delay time.Duration
		if md, ok := metadata.FromIncomingContext(ss.Context()); ok {
			ns, _ := strconv.ParseInt(first(md.Get("delay-ns")), 10, 64)
			delay = time.Duration(ns)
		}
		h := sha256.New()
		count, total := 0, 0
		for {
			var msg []byte
			err := ss.RecvMsg(&msg)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			h.Write(msg)
			count++
			total += len(msg)
			if delay > 0 {
				time.Sleep(delay)
			}
		}
		out := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(h.Sum(nil), uint32(count)), uint64(total))
		return ss.SendMsg(&out)
	}
	var in []byte
	if err := ss.RecvMsg(&in); err != nil {
		return err
	}
	arg := func(i int) int {
		if len(in) < 4*(i+1) {
			return 0
		}
		return int(binary.BigEndian.Uint32(in[4*i:]))
	}
	switch m {
	case "/f.F/Size":
		out := flowPattern(arg(0), uint64(arg(1)))
		return ss.SendMsg(&out)
	case "/f.F/List":
		count, size := arg(0), max(arg(1), 4)
		for i := 0; i < count; i++ {
			out := make([]byte, size)
			binary.BigEndian.PutUint32(out, uint32(i))
			flowFill(out[4:], uint64(i))
			if err := ss.SendMsg(&out); err != nil {
				return err
			}
		}
		return nil
	case "/f.F/Digest":
		sum := sha256.Sum256(in)
		out := binary.BigEndian.AppendUint64(sum[:], uint64(len(in)))
		return ss.SendMsg(&out)
	case "/f.F/Fail":
		msg := make([]byte, arg(0))
		for i := range msg {
			msg[i] = 'A' + byte(flowMix(uint64(n)<<20^uint64(i))%26)
		}
		return status.Error(codes.FailedPrecondition, string(msg))
	}
	return status.Error(codes.Unimplemented, m)
}

type flowWrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *flowWrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// flowSlowConn reads at most chunk bytes per read, after a pause: a peer that
// drains its socket slowly.
type flowSlowConn struct {
	net.Conn
	chunk int
	pause time.Duration
}

func (c *flowSlowConn) Read(p []byte) (int, error) {
	if len(p) > c.chunk {
		p = p[:c.chunk]
	}
	time.Sleep(c.pause)
	return c.Conn.Read(p)
}

func flowSlowly(chunk int, pause time.Duration) func(net.Conn) net.Conn {
	return func(c net.Conn) net.Conn { return &flowSlowConn{Conn: c, chunk: chunk, pause: pause} }
}

// ---------------------------------------------------------------------------
// Router, upstream and clients.

type flowEnv struct {
	r  *Router
	up *flowUpstream
	ps string // the router's socket
}

type flowConfig struct {
	opt     Options
	srvOpts []grpc.ServerOption
	upWrap  func(net.Conn) net.Conn // the upstream's side of its connections
}

func newFlowEnv(t *testing.T, cfg flowConfig) *flowEnv {
	t.Helper()
	dir := t.TempDir()
	up := filepath.Join(dir, "up.sock")
	e := &flowEnv{up: startFlowUpstream(t, up, cfg.upWrap, cfg.srvOpts...)}
	e.r = New(cfg.opt, []*Pool{NewPool("unix://"+up, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", up)
	})}, func(string) Route { return Route{} })
	t.Cleanup(e.r.Close)
	e.ps = filepath.Join(dir, "p.sock")
	l, err := net.Listen("unix", e.ps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go e.r.Serve(l)
	return e
}

// client returns a gRPC client of the router; wrap, when given, wraps its
// side of the connection (a slow reader).
func (e *flowEnv) client(t *testing.T, wrap func(net.Conn) net.Conn, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(bytesCodec{}), grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", e.ps)
			if err == nil && wrap != nil {
				c = wrap(c)
			}
			return c, err
		})}, opts...)
	cc, err := grpc.NewClient("passthrough:///router", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// flowStaticWindows are client options that keep gRPC's windows at 64 KiB, so
// that a slow application (not only a slow socket) holds the router back.
var flowStaticWindows = []grpc.DialOption{grpc.WithStaticStreamWindowSize(64 << 10), grpc.WithStaticConnWindowSize(64 << 10)}

// flowSampler records the largest Stats().Buffered seen while it runs.
type flowSampler struct {
	r    *Router
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func flowSampleBuffered(r *Router) *flowSampler {
	s := &flowSampler{r: r, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			if b := r.Stats().Buffered; b > s.max.Load() {
				s.max.Store(b)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the largest value seen.
func (s *flowSampler) Stop() int64 {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.max.Load()
}

// flowWaitStats waits up to d for cond on the router's stats.
func flowWaitStats(t *testing.T, r *Router, d time.Duration, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := r.Stats()
		if cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s; stats %+v", d, what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// flowWaitPlateau waits (up to d) until Buffered is at least atLeast and has not
// grown for quiet: the stalled streams filled what the router lets them.
func flowWaitPlateau(t *testing.T, r *Router, d, quiet time.Duration, atLeast int64) int64 {
	t.Helper()
	deadline := time.Now().Add(d)
	var last int64 = -1
	since := time.Now()
	for {
		b := r.Stats().Buffered
		if b > last {
			last, since = b, time.Now()
		}
		if last >= atLeast && time.Since(since) >= quiet {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the router buffers %d bytes, want a plateau of at least %d (stats %+v)", d, last, atLeast, r.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func flowCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// flowGetSize calls /f.F/Size and checks the answer.
func flowGetSize(ctx context.Context, cc *grpc.ClientConn, n int, seed uint32) error {
	var out []byte
	if err := cc.Invoke(ctx, "/f.F/Size", flowArgs(uint32(n), seed), &out); err != nil {
		return fmt.Errorf("Size(%d): %w", n, err)
	}
	if len(out) != n {
		return fmt.Errorf("Size(%d): got %d bytes", n, len(out))
	}
	if off := flowCheck(out, uint64(seed)); off >= 0 {
		return fmt.Errorf("Size(%d): corrupt at offset %d", n, off)
	}
	return nil
}

// list calls /f.F/List and checks every message; pause, when positive, is
// taken every pauseEvery messages (a slow application).
func flowList(ctx context.Context, cc *grpc.ClientConn, count, size, pauseEvery int, pause time.Duration) error {
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/f.F/List")
	if err != nil {
		return err
	}
	if err := cs.SendMsg(flowArgs(uint32(count), uint32(size))); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		var m []byte
		err := cs.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			if i != count {
				return fmt.Errorf("List: %d messages, want %d", i, count)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("List: message %d: %w", i, err)
		}
		if len(m) != size || binary.BigEndian.Uint32(m) != uint32(i) || flowCheck(m[4:], uint64(i)) >= 0 {
			return fmt.Errorf("List: message %d corrupt (%d bytes)", i, len(m))
		}
		if pause > 0 && i%pauseEvery == 0 {
			time.Sleep(pause)
		}
	}
}

// sink streams count messages of size bytes to /f.F/Sink and checks the
// digest the upstream computed.
func flowSink(ctx context.Context, cc *grpc.ClientConn, count, size int, delay time.Duration, seed uint64) error {
	ctx = metadata.AppendToOutgoingContext(ctx, "delay-ns", strconv.FormatInt(int64(delay), 10))
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, "/f.F/Sink")
	if err != nil {
		return err
	}
	h := sha256.New()
	for i := 0; i < count; i++ {
		m := flowPattern(size, seed<<16+uint64(i))
		h.Write(m)
		if err := cs.SendMsg(&m); err != nil {
			return fmt.Errorf("Sink: send %d: %w", i, err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	var out []byte
	if err := cs.RecvMsg(&out); err != nil {
		return fmt.Errorf("Sink: %w", err)
	}
	want := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(h.Sum(nil), uint32(count)), uint64(count*size))
	if !bytes.Equal(out, want) {
		return fmt.Errorf("Sink: upstream saw different bytes (digest/count/total %x, want %x)", out, want)
	}
	return nil
}

// digest sends one message of n bytes to /f.F/Digest and checks the answer.
func flowDigest(ctx context.Context, cc *grpc.ClientConn, n int, seed uint64) error {
	in := flowPattern(n, seed)
	var out []byte
	if err := cc.Invoke(ctx, "/f.F/Digest", &in, &out); err != nil {
		return fmt.Errorf("Digest(%d): %w", n, err)
	}
	sum := sha256.Sum256(in)
	if want := binary.BigEndian.AppendUint64(sum[:], uint64(n)); !bytes.Equal(out, want) {
		return fmt.Errorf("Digest(%d): upstream saw different bytes", n)
	}
	return nil
}

// ---------------------------------------------------------------------------
// A raw HTTP/2 client, for what a gRPC client will not do: never read, never
// return window.

type flowRaw struct {
	nc     net.Conn
	fr     *http2.Framer
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	nextID uint32
}

func dialFlowRaw(t *testing.T, sock string, settings ...http2.Setting) *flowRaw {
	t.Helper()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &flowRaw{nc: nc, nextID: 1}
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(nc, nc)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return c
}

func flowRequestFields(path string) []hpack.HeaderField {
	return []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: "router"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}
}

// flowGRPCMessage frames msg as one gRPC message.
func flowGRPCMessage(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// call opens a stream and sends a whole unary request; it returns the
// stream's ID.
func (c *flowRaw) call(path string, msg []byte) (uint32, error) {
	id := c.nextID
	c.nextID += 2
	c.hbuf.Reset()
	for _, hf := range flowRequestFields(path) {
		_ = c.enc.WriteField(hf)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return id, err
	}
	body := flowGRPCMessage(msg)
	for len(body) > 16384 {
		if err := c.fr.WriteData(id, false, body[:16384]); err != nil {
			return id, err
		}
		body = body[16384:]
	}
	return id, c.fr.WriteData(id, true, body)
}

// flowRouterOutput is what the router holds toward its clients: queued DATA
// (Buffered) plus frames written but not yet taken by the sockets.
func flowRouterOutput(r *Router) (buffered int64, out int) {
	r.mu.Lock()
	clients := make([]*conn, 0, len(r.clients))
	for c := range r.clients {
		clients = append(clients, c)
	}
	r.mu.Unlock()
	for _, c := range clients {
		c.mu.Lock()
		out += len(c.out)
		c.mu.Unlock()
	}
	return r.buffered.Load(), out
}

// ---------------------------------------------------------------------------
// Tests.

// A client that reads slowly gets all of a large response while the router
// holds about one stream window for it.
func TestFlowSlowClient(t *testing.T) {
	const slack = 64 << 10
	for _, tc := range []struct {
		name string
		opt  Options
		wrap func(net.Conn) net.Conn // the client's socket reads
		dial []grpc.DialOption
		call func(ctx context.Context, cc *grpc.ClientConn) error
	}{
		{
			name: "unary 10MiB, slow socket, default windows",
			wrap: flowSlowly(32<<10, time.Millisecond),
			call: func(ctx context.Context, cc *grpc.ClientConn) error { return flowGetSize(ctx, cc, 10<<20, 7) },
		},
		{
			name: "unary 10MiB, slow socket, 64KiB client windows",
			opt:  Options{StreamWindow: 256 << 10, ConnWindow: 1 << 20},
			wrap: flowSlowly(16<<10, time.Millisecond),
			dial: flowStaticWindows,
			call: func(ctx context.Context, cc *grpc.ClientConn) error { return flowGetSize(ctx, cc, 10<<20, 8) },
		},
		{
			// A ListContainers of 10k containers read by a slow kubelet.
			name: "server stream 10k x 1KiB, slow application",
			opt:  Options{StreamWindow: 256 << 10},
			dial: flowStaticWindows,
			call: func(ctx context.Context, cc *grpc.ClientConn) error {
				return flowList(ctx, cc, 10000, 1024, 100, 2*time.Millisecond)
			},
		},
		{
			name: "server stream 10k x 1KiB, slow application, default windows",
			call: func(ctx context.Context, cc *grpc.ClientConn) error {
				return flowList(ctx, cc, 10000, 1024, 100, 2*time.Millisecond)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFlowEnv(t, flowConfig{opt: tc.opt})
			flowOneSlowStream(t, e, e.client(t, tc.wrap, tc.dial...), tc.call, slack, "one slow stream")
		})
	}
}

// flowOneSlowStream makes call, which has one slow reader, and checks that
// it completes with the router buffering at most a stream window (+ slack)
// for it, and nothing once it is over.
func flowOneSlowStream(t *testing.T, e *flowEnv, cc *grpc.ClientConn, call func(context.Context, *grpc.ClientConn) error, slack int64, what string) {
	t.Helper()
	window := int64(e.r.opt.StreamWindow)
	s := flowSampleBuffered(e.r)
	err := call(flowCtx(t, 60*time.Second), cc)
	peak := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("peak Buffered %d (stream window %d)", peak, window)
	if peak > window+slack {
		t.Errorf("the router buffered up to %d bytes for %s, want at most a stream window (%d) + %d", peak, what, window, slack)
	}
	flowWaitStats(t, e.r, 5*time.Second, "no streams and nothing buffered after the call", func(st Stats) bool {
		return st.Streams == 0 && st.Buffered == 0
	})
}

// An upstream that reads slowly gets all of a large request intact.
func TestFlowSlowUpstream(t *testing.T) {
	const slack = 64 << 10
	for _, tc := range []struct {
		name string
		cfg  flowConfig
		call func(ctx context.Context, cc *grpc.ClientConn) error
	}{
		{
			name: "client stream 8MiB, slow application, 64KiB upstream windows",
			cfg: flowConfig{
				opt:     Options{StreamWindow: 256 << 10},
				srvOpts: []grpc.ServerOption{grpc.StaticStreamWindowSize(64 << 10), grpc.StaticConnWindowSize(64 << 10)},
			},
			call: func(ctx context.Context, cc *grpc.ClientConn) error {
				return flowSink(ctx, cc, 256, 32<<10, 500*time.Microsecond, 1)
			},
		},
		{
			name: "client stream 8MiB, slow socket",
			cfg:  flowConfig{upWrap: flowSlowly(32<<10, time.Millisecond)},
			call: func(ctx context.Context, cc *grpc.ClientConn) error { return flowSink(ctx, cc, 1024, 8<<10, 0, 2) },
		},
		{
			name: "unary 8MiB request, slow socket",
			cfg:  flowConfig{opt: Options{StreamWindow: 256 << 10}, upWrap: flowSlowly(32<<10, time.Millisecond)},
			call: func(ctx context.Context, cc *grpc.ClientConn) error { return flowDigest(ctx, cc, 8<<20, 3) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFlowEnv(t, tc.cfg)
			flowOneSlowStream(t, e, e.client(t, nil), tc.call, slack, "one slow upstream stream")
		})
	}
}

// A client that asks for large responses and never reads holds at most a
// stream window per stream in the router, does not hold up other clients on
// the same upstream connection, and leaves nothing behind when it goes.
func TestFlowNonReadingClient(t *testing.T) {
	const slack = 64 << 10
	for _, tc := range []struct {
		name    string
		opt     Options
		streams int
	}{
		{name: "one stream, default windows", streams: 1},
		{name: "one stream, 256KiB windows", opt: Options{StreamWindow: 256 << 10, ConnWindow: 512 << 10}, streams: 1},
		{name: "four streams", opt: Options{StreamWindow: 512 << 10}, streams: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFlowEnv(t, flowConfig{opt: tc.opt})
			window := int64(e.r.opt.StreamWindow)
			bound := int64(tc.streams)*window + slack

			// A well-behaved client first, so the upstream connection exists
			// and the stalled streams share it.
			cc := e.client(t, nil)
			if err := flowGetSize(flowCtx(t, 10*time.Second), cc, 100, 1); err != nil {
				t.Fatal(err)
			}

			s := flowSampleBuffered(e.r)
			defer s.Stop()
			raw := dialFlowRaw(t, e.ps) // default 64 KiB windows, never returned
			for i := 0; i < tc.streams; i++ {
				if _, err := raw.call("/f.F/Size", *flowArgs(uint32(3*window), uint32(i))); err != nil {
					t.Fatal(err)
				}
			}
			// The stalled streams fill their windows; then nothing moves.
			plateau := flowWaitPlateau(t, e.r, 20*time.Second, 200*time.Millisecond, int64(tc.streams)*window/2)
			if peak := s.Stop(); peak > bound {
				t.Errorf("the router buffered up to %d bytes for %d stalled streams, want at most %d streams x window %d + %d",
					peak, tc.streams, tc.streams, window, slack)
			}
			t.Logf("stalled at Buffered %d (bound %d)", plateau, bound)

			// Other calls over the same upstream connection go on.
			// Their streams may buffer a window each meanwhile.
			const others = 8
			s = flowSampleBuffered(e.r)
			defer s.Stop()
			var wg sync.WaitGroup
			errs := make(chan error, others)
			ctx := flowCtx(t, 30*time.Second)
			for w := 0; w < others/2; w++ {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i := 0; i < 3; i++ {
						if err := flowGetSize(ctx, cc, 1<<20, uint32(100+w)); err != nil {
							errs <- err
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					errs <- flowList(ctx, cc, 2000, 512, 0, 0)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("a call of another client while one client does not read: %v", err)
				}
			}
			if st := e.r.Stats(); st.Upstreams != 1 {
				t.Errorf("%d upstream connections, want the one shared by all streams", st.Upstreams)
			}
			if st := e.r.Stats(); st.Streams != tc.streams {
				t.Errorf("%d open streams, want the %d stalled ones", st.Streams, tc.streams)
			}
			if peak := s.Stop(); peak > bound+others*window {
				t.Errorf("the router buffered up to %d bytes for %d stalled and %d running streams, want at most %d windows of %d + %d",
					peak, tc.streams, others, tc.streams+others, window, slack)
			}
			if b := e.r.Stats().Buffered; b > bound {
				t.Errorf("after the other calls the router buffers %d bytes, want at most %d for the stalled streams", b, bound)
			}

			raw.nc.Close()
			flowWaitStats(t, e.r, 5*time.Second, "the non-reading client's streams and buffer to go once it closed", func(st Stats) bool {
				return st.Streams == 0 && st.Buffered == 0 && st.Clients == 1
			})
			// And the upstream connection still works.
			if err := flowGetSize(flowCtx(t, 10*time.Second), cc, 2<<20, 9); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Many large streams at once complete, and the router never holds more than
// its budget plus a stream window per stream.
func TestFlowManyConcurrentStreams(t *testing.T) {
	const streams, size = 32, 4 << 20
	opt := Options{StreamWindow: 256 << 10, ConnWindow: 1 << 20, MaxBuffered: 2 << 20}
	for _, tc := range []struct {
		name string
		cfg  flowConfig
		call func(ctx context.Context, cc *grpc.ClientConn, i int) error
	}{
		{
			name: "downloads",
			cfg:  flowConfig{opt: opt},
			call: func(ctx context.Context, cc *grpc.ClientConn, i int) error {
				return flowGetSize(ctx, cc, size, uint32(i))
			},
		},
		{
			name: "uploads to a slow upstream",
			cfg:  flowConfig{opt: opt, srvOpts: []grpc.ServerOption{grpc.StaticStreamWindowSize(64 << 10), grpc.StaticConnWindowSize(256 << 10)}},
			call: func(ctx context.Context, cc *grpc.ClientConn, i int) error {
				return flowSink(ctx, cc, size/(32<<10), 32<<10, 50*time.Microsecond, uint64(i))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFlowEnv(t, tc.cfg)
			bound := e.r.opt.MaxBuffered + streams*int64(e.r.opt.StreamWindow)
			// Four client connections; one in four reads its socket slowly
			// and uses small windows.
			ccs := []*grpc.ClientConn{
				e.client(t, nil), e.client(t, nil), e.client(t, nil),
				e.client(t, flowSlowly(64<<10, time.Millisecond), flowStaticWindows...),
			}
			s := flowSampleBuffered(e.r)
			ctx := flowCtx(t, 120*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, streams)
			for i := 0; i < streams; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := tc.call(ctx, ccs[i%len(ccs)], i); err != nil {
						errs <- fmt.Errorf("stream %d: %w", i, err)
					}
				}()
			}
			wg.Wait()
			peak := s.Stop()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			t.Logf("peak Buffered %d (bound %d)", peak, bound)
			if peak > bound {
				t.Errorf("the router buffered up to %d bytes, want at most MaxBuffered + %d stream windows = %d", peak, streams, bound)
			}
			flowWaitStats(t, e.r, 5*time.Second, "no streams and nothing buffered after the calls", func(st Stats) bool {
				return st.Streams == 0 && st.Buffered == 0
			})
		})
	}
}

// With a small budget, non-reading streams stop costing memory at the
// budget (plus the connection window the upstream still had), not at a
// stream window each; once they go, the upstream connection's credit comes
// back and it serves again.
func TestFlowMaxBuffered(t *testing.T) {
	const slack = 64 << 10
	for _, tc := range []struct {
		name    string
		opt     Options
		clients int
		streams int // per client
	}{
		{name: "one client, 8 streams", opt: Options{StreamWindow: 1 << 20, ConnWindow: 1 << 20, MaxBuffered: 512 << 10}, clients: 1, streams: 8},
		{name: "8 clients, 2 streams each", opt: Options{StreamWindow: 1 << 20, ConnWindow: 512 << 10, MaxBuffered: 256 << 10}, clients: 8, streams: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFlowEnv(t, flowConfig{opt: tc.opt})
			o := e.r.opt
			// One upstream connection carries it all: its window is what
			// the router may take beyond the budget.
			bound := o.MaxBuffered + int64(o.ConnWindow) + slack
			if nowin := int64(tc.clients*tc.streams) * int64(o.StreamWindow); nowin <= bound {
				t.Fatalf("bad case: stream windows alone (%d) are within the bound %d", nowin, bound)
			}
			cc := e.client(t, nil)
			if err := flowGetSize(flowCtx(t, 10*time.Second), cc, 100, 1); err != nil {
				t.Fatal(err)
			}
			s := flowSampleBuffered(e.r)
			defer s.Stop()
			var raws []*flowRaw
			for i := 0; i < tc.clients; i++ {
				raw := dialFlowRaw(t, e.ps)
				raws = append(raws, raw)
				for j := 0; j < tc.streams; j++ {
					if _, err := raw.call("/f.F/Size", *flowArgs(uint32(3*o.StreamWindow), uint32(j))); err != nil {
						t.Fatal(err)
					}
				}
			}
			plateau := flowWaitPlateau(t, e.r, 20*time.Second, 300*time.Millisecond, o.MaxBuffered)
			peak := s.Stop()
			t.Logf("stalled at Buffered %d, peak %d (budget %d, bound %d)", plateau, peak, o.MaxBuffered, bound)
			if peak > bound {
				t.Errorf("the router buffered up to %d bytes for non-reading clients, want at most MaxBuffered %d + ConnWindow %d + %d",
					peak, o.MaxBuffered, o.ConnWindow, slack)
			}
			for _, raw := range raws {
				raw.nc.Close()
			}
			flowWaitStats(t, e.r, 5*time.Second, "the non-reading clients' streams and buffer to go once they closed", func(st Stats) bool {
				return st.Streams == 0 && st.Buffered == 0
			})
			// The credit withheld above the budget was returned: the shared
			// upstream connection carries large responses again.
			ctx := flowCtx(t, 20*time.Second)
			for i := 0; i < 3; i++ {
				if err := flowGetSize(ctx, cc, 4<<20, uint32(i)); err != nil {
					t.Fatalf("after the non-reading clients left: %v (stats %+v)", err, e.r.Stats())
				}
			}
		})
	}
}

// A client that never reads but keeps making calls whose answers carry no
// DATA (errors: trailers-only responses) gets those answers appended to its
// output buffer, which no window bounds. The router must bound what it holds
// for such a client (stop reading from it, or drop it), as it bounds queued
// DATA. The client stays within MaxConcurrentStreams: its calls end at the
// router one by one, it just never reads the answers.
func TestFlowNonReadingClientHeaders(t *testing.T) {
	const (
		calls    = 2000
		msgSize  = 8 << 10 // grpc-message of each answer, different each time: 16 MB in all
		inFlight = 64
		bound    = 8 << 20 // what the router may hold toward one client
	)
	e := newFlowEnv(t, flowConfig{})
	raw := dialFlowRaw(t, e.ps)
	// Calls in a writer goroutine: if the router stops reading from the
	// client (backpressure), its writes block, which is fine.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < calls; i++ {
			for e.r.Stats().Streams >= inFlight {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Microsecond):
				}
			}
			if _, err := raw.call("/f.F/Fail", *flowArgs(msgSize)); err != nil {
				return
			}
		}
	}()
	// Wait until every call was answered, or nothing moves any more.
	var last int64 = -1
	since := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && time.Since(since) < 500*time.Millisecond {
		if n := e.up.calls.Load(); n > last {
			last, since = n, time.Now()
		}
		if last == calls && e.r.Stats().Streams == 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	buffered, out := flowRouterOutput(e.r)
	st := e.r.Stats()
	t.Logf("%d of %d calls reached the upstream; the router holds %d bytes of queued DATA and %d bytes of frames toward the client (stats %+v)",
		last, calls, buffered, out, st)
	if st.Clients == 0 {
		return // the router dropped the client: bounded
	}
	if held := buffered + int64(out); held > bound {
		t.Errorf("the router holds %d bytes of output toward a client that does not read (%d answers of ~%d bytes); want at most %d",
			held, last, msgSize, bound)
	}
}
