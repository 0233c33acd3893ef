package frames

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// rawFrame is a frame a raw client read, copied out of the Framer.
type rawFrame struct {
	typ   http2.FrameType
	flags http2.Flags
	id    uint32
	code  http2.ErrCode // RST_STREAM and GOAWAY
	data  []byte
}

// rawClient is an HTTP/2 client written frame by frame, for what a gRPC
// client never does.
type rawClient struct {
	t      *testing.T
	nc     net.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	frames chan rawFrame
}

// env is a router in front of startUpstream's gRPC server.
type dosEnv struct {
	r    *Router
	up   string // upstream socket
	sock string // router socket
	g    *grpc.Server
}

func newDosEnv(t *testing.T, opt Options, route func(string) Route) *dosEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "fr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &dosEnv{up: filepath.Join(dir, "up.sock"), sock: filepath.Join(dir, "r.sock")}
	e.g = startUpstream(t, e.up)
	t.Cleanup(func() { e.g.Stop() })
	if route == nil {
		route = func(string) Route { return Route{} }
	}
	e.r = New(opt, []*Pool{NewPool("unix://"+e.up, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.up)
	})}, route)
	t.Cleanup(e.r.Close)
	l, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	go e.r.Serve(l)
	return e
}

func (e *dosEnv) grpcClient(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(bytesCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *dosEnv) raw(t *testing.T) *rawClient {
	t.Helper()
	nc, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc), frames: make(chan rawFrame, 1<<16)}
	c.enc = hpack.NewEncoder(&c.encBuf)
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.frames)
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			rf := rawFrame{typ: f.Header().Type, flags: f.Header().Flags, id: f.Header().StreamID}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				rf.code = f.ErrCode
			case *http2.GoAwayFrame:
				rf.code = f.ErrCode
			case *http2.DataFrame:
				rf.data = bytes.Clone(f.Data())
			case *http2.HeadersFrame:
				rf.data = bytes.Clone(f.HeaderBlockFragment())
			}
			select {
			case c.frames <- rf:
			default: // a test that does not read them
			}
		}
	}()
	return c
}

// block encodes header fields.
func (c *rawClient) block(fields ...string) []byte {
	c.encBuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.encBuf.Bytes())
}

func request(path string, extra ...string) []string {
	return append([]string{":method", "POST", ":scheme", "http", ":path", path, ":authority", "x",
		"content-type", "application/grpc", "te", "trailers"}, extra...)
}

// grpcMessage frames a message as gRPC does.
func grpcMessage(p []byte) []byte {
	return append([]byte{0, byte(len(p) >> 24), byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p))}, p...)
}

// await returns the first frame match accepts, failing after a deadline.
func (c *rawClient) await(what string, match func(rawFrame) bool) rawFrame {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %s", what)
			}
			if match(f) {
				return f
			}
		case <-deadline:
			c.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// awaitClose waits for the connection to end, returning the GOAWAY code
// seen on the way (-1 when none).
func (c *rawClient) awaitClose() http2.ErrCode {
	c.t.Helper()
	code := http2.ErrCode(1 << 31)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return code
			}
			if f.typ == http2.FrameGoAway {
				code = f.code
			}
		case <-deadline:
			c.t.Fatal("timed out waiting for the router to close the connection")
		}
	}
}

func waitStats(t *testing.T, r *Router, what string, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(r.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, r.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRapidResetIsRefused(t *testing.T) {
	e := newDosEnv(t, Options{MaxResetsPerSecond: 100}, nil)
	c := e.raw(t)
	for id := uint32(1); id < 2*400; id += 2 {
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(request("/t.T/Hold")...), EndHeaders: true}); err != nil {
			break // the router closed the connection
		}
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	if code := c.awaitClose(); code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("rapid reset: GOAWAY code %v, want ENHANCE_YOUR_CALM", code)
	}
	waitStats(t, e.r, "every stream and client gone", func(s Stats) bool { return s.Streams == 0 && s.Clients == 0 })
}

func TestContinuationFloodIsRefused(t *testing.T) {
	e := newDosEnv(t, Options{MaxHeaderListSize: 64 << 10}, nil)
	c := e.raw(t)
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(request("/t.T/Size")...)}); err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0x40, 0x01, 'x', 0x01, 'y'}, 3000) // literal headers, 15 KB per frame
	for range 100 {
		if err := c.fr.WriteContinuation(1, false, junk); err != nil {
			break
		}
	}
	if code := c.awaitClose(); code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("CONTINUATION flood: GOAWAY code %v, want ENHANCE_YOUR_CALM", code)
	}
}

func TestPingFloodFromANonReaderIsCut(t *testing.T) {
	e := newDosEnv(t, Options{}, nil)
	nc, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Never read: the acks pile up in the router until it gives up.
	fr := http2.NewFramer(nc, nil)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	_ = fr.WriteSettings()
	var werr error
	for i := 0; i < 2_000_000 && werr == nil; i++ {
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		werr = fr.WritePing(false, [8]byte{byte(i)})
	}
	if werr == nil {
		t.Fatal("the router took 2,000,000 PINGs from a client that reads nothing")
	}
	waitStats(t, e.r, "the flooding client cut", func(s Stats) bool { return s.Clients == 0 })
}

func TestBadRequestHeadersResetTheStream(t *testing.T) {
	tests := []struct {
		desc   string
		fields []string
	}{
		{"uppercase name", request("/t.T/Size", "X-Up", "1")},
		{"connection header", request("/t.T/Size", "connection", "keep-alive")},
		{"te other than trailers", append(request("/t.T/Size")[:10], "te", "gzip")},
		{"no :path", []string{":method", "POST", ":scheme", "http", "content-type", "application/grpc"}},
		{"empty :path", []string{":method", "POST", ":scheme", "http", ":path", ""}},
		{"pseudo after regular", []string{":method", "POST", ":scheme", "http", "content-type", "application/grpc", ":path", "/t.T/Size"}},
		{"response pseudo-header", append(request("/t.T/Size"), ":status", "200")},
		{"duplicate :method", append([]string{":method", "GET"}, request("/t.T/Size")...)},
		{"bad value", request("/t.T/Size", "x", "a\x00b")},
		// Each field fits, the list does not. (A single string longer than
		// the whole list is a compression error, the connection's end, as
		// in x/net's server.)
		{"header list too large", request("/t.T/Size", "big1", strings.Repeat("b", 600), "big2", strings.Repeat("b", 600))},
	}
	e := newDosEnv(t, Options{MaxHeaderListSize: 1024}, nil)
	c := e.raw(t)
	id := uint32(1)
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(tc.fields...), EndHeaders: true, EndStream: true}); err != nil {
				t.Fatal(err)
			}
			f := c.await("RST_STREAM", func(f rawFrame) bool { return f.id == id && f.typ == http2.FrameRSTStream })
			if f.code != http2.ErrCodeProtocol {
				t.Errorf("RST_STREAM code %v, want PROTOCOL_ERROR", f.code)
			}
			id += 2
		})
	}
	// The connection stays usable: a good request gets its answer.
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(request("/t.T/Size")...), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteData(id, true, grpcMessage([]byte{0, 0, 0, 3})); err != nil {
		t.Fatal(err)
	}
	c.await("the good request's response", func(f rawFrame) bool { return f.id == id && f.typ == http2.FrameData })
}

func TestMaxConcurrentStreamsRefusesTheExtra(t *testing.T) {
	e := newDosEnv(t, Options{MaxConcurrentStreams: 2}, nil)
	c := e.raw(t)
	for _, id := range []uint32{1, 3, 5} {
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(request("/t.T/Hold")...), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	f := c.await("RST_STREAM", func(f rawFrame) bool { return f.typ == http2.FrameRSTStream })
	if f.id != 5 || f.code != http2.ErrCodeRefusedStream {
		t.Errorf("got RST_STREAM %d %v, want stream 5 REFUSED_STREAM", f.id, f.code)
	}
}

func TestMessageSizeLimitBothWays(t *testing.T) {
	e := newDosEnv(t, Options{MaxMessageSize: 1000}, nil)
	cc := e.grpcClient(t)
	tests := []struct {
		desc string
		req  []byte
		want string // "" means success
	}{
		{"request too large", append([]byte{0, 0, 0, 1}, make([]byte, 2000)...), "2004 vs. 1000"},
		{"response too large", *req(2000), "2000 vs. 1000"},
		{"both within the limit", *req(1000), ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var out []byte
			err := cc.Invoke(context.Background(), "/t.T/Size", &tc.req, &out)
			if tc.want == "" {
				if err != nil {
					t.Errorf("got %v", err)
				}
				return
			}
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("got %v, want ResourceExhausted naming %s", err, tc.want)
			}
		})
	}
	waitStats(t, e.r, "no stream left", func(s Stats) bool { return s.Streams == 0 && s.Buffered == 0 })
}

// TestUpstreamGoAway: a runtime that restarts gracefully sends GOAWAY; the
// call it still serves finishes, and new calls go to a new connection.
func TestUpstreamGoAway(t *testing.T) {
	e := newDosEnv(t, Options{}, nil)
	cc := e.grpcClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		var out []byte
		held <- cc.Invoke(ctx, "/t.T/Hold", req(0), &out)
	}()
	waitStats(t, e.r, "the held call", func(s Stats) bool { return s.Streams == 1 })
	stopped := make(chan struct{})
	old := e.g
	go func() { old.GracefulStop(); close(stopped) }()
	// The old server holds its connection open for the held call; a new
	// one takes the socket path.
	waitFor(t, func() bool { _, err := os.Stat(e.up); return errors.Is(err, os.ErrNotExist) })
	e.g = startUpstream(t, e.up)
	var out []byte
	if err := cc.Invoke(context.Background(), "/t.T/Size", req(5), &out); err != nil || len(out) != 5 {
		t.Fatalf("call after the upstream's GOAWAY: %v", err)
	}
	if st := e.r.Stats(); st.Upstreams != 2 {
		t.Errorf("upstream connections %d, want 2 (the going-away one and a new one)", st.Upstreams)
	}
	cancel()
	if err := <-held; status.Code(err) != codes.Canceled {
		t.Errorf("held call: %v, want Canceled", err)
	}
	<-stopped
	waitStats(t, e.r, "the old upstream connection gone", func(s Stats) bool { return s.Upstreams == 1 })
}

// TestShutdownDrains: calls in flight finish, watch streams end with
// Unavailable telling the client to reconnect, and Shutdown reports done.
func TestShutdownDrains(t *testing.T) {
	e := newDosEnv(t, Options{}, func(p string) Route { return Route{Watch: p == "/t.T/Hold"} })
	cc := e.grpcClient(t)
	errs := make(chan error, 2)
	go func() {
		var out []byte
		errs <- cc.Invoke(context.Background(), "/t.T/Hold", req(0), &out)
	}()
	var slow []byte
	go func() {
		var out []byte
		err := cc.Invoke(context.Background(), "/t.T/Sleep", req(300), &out)
		slow = out
		errs <- err
	}()
	waitStats(t, e.r, "both calls in flight", func(s Stats) bool { return s.Streams == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !e.r.Shutdown(ctx) {
		t.Error("Shutdown reports calls cut")
	}
	var got []string
	for range 2 {
		err := <-errs
		got = append(got, status.Code(err).String()+" "+status.Convert(err).Message())
	}
	var sawWatch, sawSlow bool
	for _, g := range got {
		sawWatch = sawWatch || strings.HasPrefix(g, "Unavailable crishim is shutting down")
		sawSlow = sawSlow || g == "OK "
	}
	if !sawWatch || !sawSlow || string(slow) != "s" {
		t.Errorf("calls ended %q (slow answer %q); want the watch Unavailable and the slow call OK", got, slow)
	}
	var out []byte
	if err := cc.Invoke(context.Background(), "/t.T/Size", req(1), &out); status.Code(err) != codes.Unavailable {
		t.Errorf("call after shutdown: %v, want Unavailable", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpstreamStreamLimitOpensConnections: a runtime that allows 2 streams
// per connection gets more connections, not more streams.
func TestUpstreamStreamLimitOpensConnections(t *testing.T) {
	dir, err := os.MkdirTemp("", "fr")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	up := filepath.Join(dir, "up.sock")
	g := grpc.NewServer(grpc.MaxConcurrentStreams(2), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		<-ss.Context().Done()
		return ss.Context().Err()
	}))
	l, err := net.Listen("unix", up)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	defer g.Stop()
	r := New(Options{}, []*Pool{NewPool("unix://"+up, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", up)
	})}, func(string) Route { return Route{} })
	defer r.Close()
	rl, err := net.Listen("unix", filepath.Join(dir, "r.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(rl)
	cc, err := grpc.NewClient("unix://"+filepath.Join(dir, "r.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(bytesCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 6)
	for range 6 {
		go func() {
			var out []byte
			errs <- cc.Invoke(ctx, "/t.T/Hold", req(0), &out)
		}()
		// One at a time, so each finds the upstream's SETTINGS applied.
		time.Sleep(20 * time.Millisecond)
	}
	waitStats(t, r, "6 calls on 3 upstream connections", func(s Stats) bool { return s.Streams == 6 && s.Upstreams == 3 })
	cancel()
	for range 6 {
		if err := <-errs; status.Code(err) != codes.Canceled {
			t.Errorf("held call: %v, want Canceled", err)
		}
	}
}

// TestProvokedResetsCount: resets the router sends for a client's protocol
// errors on open streams count as the client's own (each still costs the
// upstream a stream opened and cancelled).
func TestProvokedResetsCount(t *testing.T) {
	e := newDosEnv(t, Options{MaxResetsPerSecond: 50}, nil)
	c := e.raw(t)
	for id := uint32(1); id < 2*200; id += 2 {
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(request("/t.T/Hold")...), EndHeaders: true}); err != nil {
			break
		}
		// A stream depending on itself: the router resets it.
		if err := c.fr.WritePriority(id, http2.PriorityParam{StreamDep: id}); err != nil {
			break
		}
	}
	if code := c.awaitClose(); code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("provoked resets: GOAWAY code %v, want ENHANCE_YOUR_CALM", code)
	}
}

// TestRefusedHeaderBlockOpensTheStream: after a header block the router
// refuses (too large), the client's DATA on that stream is on a closed
// stream (reset), not on an idle one (which would end the connection).
func TestRefusedHeaderBlockOpensTheStream(t *testing.T) {
	e := newDosEnv(t, Options{MaxHeaderListSize: 1024}, nil)
	c := e.raw(t)
	big := request("/t.T/Size", "big1", strings.Repeat("b", 600), "big2", strings.Repeat("b", 600))
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(big...), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteData(1, true, grpcMessage([]byte{0, 0, 0, 3})); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: c.block(request("/t.T/Size")...), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteData(3, true, grpcMessage([]byte{0, 0, 0, 3})); err != nil {
		t.Fatal(err)
	}
	f := c.await("stream 3's answer", func(f rawFrame) bool {
		return f.typ == http2.FrameGoAway || f.id == 3 && f.typ == http2.FrameData
	})
	if f.typ == http2.FrameGoAway {
		t.Fatalf("the connection ended with GOAWAY %v", f.code)
	}
}

// TestBadPaddingInHeadersEndsTheConnection: a HEADERS frame the Framer
// refuses is never decoded, so the connection cannot go on (HPACK state).
func TestBadPaddingInHeadersEndsTheConnection(t *testing.T) {
	e := newDosEnv(t, Options{}, nil)
	c := e.raw(t)
	block := c.block(request("/t.T/Size")...)
	// PADDED with a pad length longer than the frame.
	payload := append([]byte{byte(len(block) + 10)}, block...)
	if err := c.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, 1, payload); err != nil {
		t.Fatal(err)
	}
	if code := c.awaitClose(); code != http2.ErrCodeProtocol {
		t.Errorf("GOAWAY code %v, want PROTOCOL_ERROR", code)
	}
}

// TestClientClosedWhileTheRuntimeIsDown: a client connection that failed
// (here: closed while its stream waited for a runtime connection that
// could not be made) with the request's DATA already read must not crash
// crishim.
func TestClientClosedWhileTheRuntimeIsDown(t *testing.T) {
	var r *Router
	dial := func(context.Context) (net.Conn, error) {
		r.mu.Lock()
		for c := range r.clients {
			c.abort() // the client connection fails meanwhile
		}
		r.mu.Unlock()
		return nil, errors.New("connection refused")
	}
	r = New(Options{}, []*Pool{NewPool("unix:///nowhere", dial)}, func(string) Route { return Route{} })
	defer r.Close()
	a, b := net.Pipe()
	defer a.Close()
	go r.ServeConn(b)
	go func() { _, _ = io.Copy(io.Discard, a) }()
	var enc bytes.Buffer
	he := hpack.NewEncoder(&enc)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/t.T/Size"}, {":authority", "x"}, {"content-type", "application/grpc"}} {
		_ = he.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	// Preface, SETTINGS, HEADERS and DATA in one write: the DATA is in the
	// router's read buffer when the stream fails.
	var w bytes.Buffer
	w.WriteString(http2.ClientPreface)
	wf := http2.NewFramer(&w, nil)
	_ = wf.WriteSettings()
	_ = wf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc.Bytes(), EndHeaders: true})
	_ = wf.WriteData(1, true, grpcMessage([]byte{0, 0, 0, 3}))
	_, _ = a.Write(w.Bytes())
	waitStats(t, r, "the client gone", func(s Stats) bool { return s.Clients == 0 && s.Streams == 0 })
}

func TestTemporaryAcceptErrors(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{net.ErrClosed, false},
		{io.EOF, false},
	}
	for _, tc := range tests {
		if got := temporaryAcceptError(tc.err); got != tc.want {
			t.Errorf("temporaryAcceptError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestPingAcks: a PING is acked with the connection's next write when one
// comes (with an hour's timer, nothing else can send it), and its timer is
// then disarmed, so that it never wakes a thread to find nothing to send
// (gRPC pings about once per call on both sides); with no write to ride
// with, the timer sends it.
func TestPingAcks(t *testing.T) {
	tests := []struct {
		desc    string
		delay   time.Duration
		request bool // a call follows the PING
	}{
		{"rides with the next write", time.Hour, true},
		{"alone, by the timer", time.Millisecond, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			old := pingAckDelay
			t.Cleanup(func() { pingAckDelay = old }) // after the router's own cleanup
			pingAckDelay = tc.delay
			e := newDosEnv(t, Options{}, nil)
			c := e.raw(t)
			ping := [8]byte{'r', 'i', 'd', 'e', '!', '!', '!', '!'}
			if err := c.fr.WritePing(false, ping); err != nil {
				t.Fatal(err)
			}
			if tc.request {
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(request("/t.T/Size")...), EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
				if err := c.fr.WriteData(1, true, grpcMessage(*req(3))); err != nil {
					t.Fatal(err)
				}
			}
			c.await("the PING ack", func(f rawFrame) bool {
				return f.typ == http2.FramePing && f.flags.Has(http2.FlagPingAck)
			})
			if !tc.request {
				return
			}
			c.await("the response's trailers", func(f rawFrame) bool {
				return f.typ == http2.FrameHeaders && f.id == 1 && f.flags.Has(http2.FlagHeadersEndStream)
			})
			e.r.mu.Lock()
			clients := e.r.clientsLocked()
			e.r.mu.Unlock()
			if len(clients) != 1 {
				t.Fatalf("%d client connections, want 1", len(clients))
			}
			cl := clients[0]
			cl.mu.Lock()
			armed := cl.ackArmed
			cl.mu.Unlock()
			if armed {
				t.Error("the ack left with the response, but its timer is still armed")
			}
		})
	}
}
