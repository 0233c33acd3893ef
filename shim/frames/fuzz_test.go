package frames

// FuzzRouter drives the router with random frame sequences from a client
// and from an upstream, both raw HTTP/2 peers made of hand-built frames
// (x/net's Framer reads what the router sends) over in-memory connections:
// socketpairs or net.Pipe.
//
// Input: client is the client's script, its first byte a configuration
// (see fzConfig); upstream is the script of the first upstream connection
// the router dials while the client plays. A script is a sequence of
// operations (frames, good and bad, floods, garbage, pauses) read from the
// bytes until they run out. One input runs in phases:
//
//  1. both scripts play; the upstream answers nothing it is not told to;
//  2. the client syncs (a PING behind its script) and closes, while the
//     upstream still misbehaves;
//  3. the upstreams behave: they answer SETTINGS and PING, return every
//     window and answer each request (one that sent garbage hangs up
//     instead, its framing being lost);
//  4. a normal call on a fresh client connection; Close.
//
// Properties, per input:
//   - no panic, and the router's output to both peers is valid HTTP/2
//     framing and HPACK, respects the connection and stream windows the
//     peers granted, and carries no DATA or HEADERS on a stream after the
//     router ended or reset it;
//   - the router acks a PING behind the client's script (unless the script
//     broke the framing or the router closed the connection);
//   - once the client closes, its ServeConn returns, and within a deadline
//     Stats() shows no client, no stream and nothing buffered, and no
//     upstream connection keeps a stream, however the upstream behaves;
//   - the normal call of phase 4 succeeds;
//   - every call an Observer saw begin ends exactly once;
//   - after Close every goroutine ends (goleak).
//
// FZ_DEBUG=1 logs each phase's time and what the input did.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// ---------------------------------------------------------------------------
// Reading the fuzz bytes.

type fzIn struct {
	b []byte
	i int
}

func (r *fzIn) done() bool { return r.i >= len(r.b) }

func (r *fzIn) u8() byte {
	if r.i >= len(r.b) {
		r.i++
		return 0
	}
	v := r.b[r.i]
	r.i++
	return v
}

func (r *fzIn) u16() int { return int(r.u8())<<8 | int(r.u8()) }

func (r *fzIn) u32() uint32 { return uint32(r.u16())<<16 | uint32(r.u16()) }

// take returns up to n of the remaining bytes.
func (r *fzIn) take(n int) []byte {
	if r.i >= len(r.b) {
		return nil
	}
	n = min(n, len(r.b)-r.i)
	p := r.b[r.i : r.i+n]
	r.i += n
	return p
}

// val is a 32-bit value, often an interesting one.
func (r *fzIn) val() uint32 {
	switch r.u8() % 10 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 1<<31 - 1
	case 3:
		return 1 << 31
	case 4:
		return 65535
	case 5:
		return 16384
	case 6:
		return 1<<24 - 1
	case 7:
		return uint32(r.u16())
	default:
		return r.u32()
	}
}

// ---------------------------------------------------------------------------
// Frames, built by hand so that anything can be sent.

func fzFrame(b []byte, t http2.FrameType, flags http2.Flags, id uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), byte(t), byte(flags),
		byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	return append(b, payload...)
}

// fzLiteral encodes fields as HPACK literals without indexing and with new
// names: a block whose meaning does not depend on the dynamic table.
func fzLiteral(fields []hpack.HeaderField) []byte {
	var b []byte
	str := func(s string) {
		n := len(s)
		if n < 127 {
			b = append(b, byte(n))
		} else {
			b = append(b, 127)
			n -= 127
			for n >= 128 {
				b = append(b, byte(n)|0x80)
				n >>= 7
			}
			b = append(b, byte(n))
		}
		b = append(b, s...)
	}
	for _, f := range fields {
		b = append(b, 0)
		str(f.Name)
		str(f.Value)
	}
	return b
}

var fzNames = []string{"x-a", "content-length", "Upper", "connection", "te", ":status", ":path", ":method",
	"grpc-status", "grpc-message", "", "grpc-timeout", "keep-alive", "x-\x00", "content-type"}

// fzField is a random header field.
func fzField(in *fzIn) hpack.HeaderField {
	var f hpack.HeaderField
	if k := in.u8(); k < 200 {
		f.Name = fzNames[int(k)%len(fzNames)]
	} else {
		f.Name = string(in.take(int(in.u8() % 12)))
	}
	switch k := in.u8(); {
	case k < 100:
		f.Value = string(in.take(int(in.u8() % 16)))
	case k < 120:
		f.Value = strings.Repeat("v", in.u16()%6000) // toward the header list limit
	case k < 200:
		f.Value = []string{"0", "5", "9", "-1", "abc", "trailers", "200", "14"}[k%8]
	default:
		f.Value = fmt.Sprint(in.u32())
	}
	f.Sensitive = in.u8()&1 == 1
	return f
}

// fzMutate applies random damage to a header list.
func fzMutate(in *fzIn, fields []hpack.HeaderField) []hpack.HeaderField {
	m := in.u8()
	if m&1 != 0 && len(fields) > 0 {
		i := int(in.u8()) % len(fields)
		fields = append(fields[:i], fields[i+1:]...)
	}
	if m&2 != 0 {
		for n := int(in.u8() % 4); n >= 0; n-- {
			fields = append(fields, fzField(in))
		}
	}
	if m&4 != 0 && len(fields) > 1 {
		i, j := int(in.u8())%len(fields), int(in.u8())%len(fields)
		fields[i], fields[j] = fields[j], fields[i]
	}
	if m&8 != 0 && len(fields) > 0 {
		i := int(in.u8()) % len(fields)
		fields = append(fields[:i+1], fields[i:]...) // a duplicate
	}
	return fields
}

// fzSplitBlock sends block as HEADERS plus CONTINUATIONs (count from the fuzz
// bytes); endHeaders false leaves the block unfinished. It taints p when
// it splits a padded HEADERS payload: the padding then lands in a
// CONTINUATION and the HEADERS frame loses the end of its block instead.
func fzSplitBlock(in *fzIn, p *fzPeer, out []byte, id uint32, flags http2.Flags, block []byte, endHeaders bool) []byte {
	parts := 1 + int(in.u8()%4)
	if parts > 1 && flags&http2.FlagHeadersPadded != 0 && len(block) > 1 {
		p.taint()
	}
	step := max(1, (len(block)+parts-1)/parts)
	first := true
	for first || len(block) > 0 {
		k := min(step, len(block))
		chunk := block[:k]
		block = block[k:]
		var fl http2.Flags
		t := http2.FrameContinuation
		if first {
			t, fl = http2.FrameHeaders, flags&^http2.FlagHeadersEndHeaders
		}
		if len(block) == 0 && endHeaders {
			fl |= http2.FlagHeadersEndHeaders
		}
		out = fzFrame(out, t, fl, id, chunk)
		first = false
	}
	return out
}

// ---------------------------------------------------------------------------
// Checking what the router sends to a peer.

// fzPeer is one peer's view: the credit it granted the router (recorded
// before the frame leaves) and the checks of what the router sent it.
type fzPeer struct {
	name string

	mu          sync.Mutex
	grantConn   int64            // WINDOW_UPDATE increments on stream 0
	grantStream map[uint32]int64 // per stream
	maxInit     int64            // largest SETTINGS_INITIAL_WINDOW_SIZE sent (and the default)
	tainted     bool             // a header block sent was not valid HPACK from the encoder (or framing was lost)

	// reader only
	dec        *hpack.Decoder
	hblock     []byte
	hid        uint32
	hend       bool
	sentConn   int64
	sentStream map[uint32]int64
	ended      map[uint32]string // streams the router ended, and how
	opened     map[uint32]bool   // streams the router opened (upstream peers)
	answered   map[uint32]bool   // streams the router sent HEADERS on
	lastOpened uint32
	violation  error
}

func newFzPeer(name string) *fzPeer {
	p := &fzPeer{name: name, grantStream: map[uint32]int64{}, maxInit: 65535,
		sentStream: map[uint32]int64{}, ended: map[uint32]string{}, opened: map[uint32]bool{}, answered: map[uint32]bool{}}
	p.dec = hpack.NewDecoder(65536, nil)
	return p
}

// granted records the credit in the frames about to be sent.
func (p *fzPeer) granted(frames []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(frames) >= 9 {
		n := int(frames[0])<<16 | int(frames[1])<<8 | int(frames[2])
		t, flags := http2.FrameType(frames[3]), http2.Flags(frames[4])
		id := binary.BigEndian.Uint32(frames[5:]) & 0x7fffffff
		if 9+n > len(frames) {
			return
		}
		pl := frames[9 : 9+n]
		frames = frames[9+n:]
		switch {
		case t == http2.FrameWindowUpdate && n == 4:
			inc := int64(binary.BigEndian.Uint32(pl) & 0x7fffffff)
			if id == 0 {
				p.grantConn += inc
			} else {
				p.grantStream[id] += inc
			}
		case t == http2.FrameSettings && id == 0 && flags&http2.FlagSettingsAck == 0 && n%6 == 0:
			for i := 0; i < n; i += 6 {
				if http2.SettingID(binary.BigEndian.Uint16(pl[i:])) == http2.SettingInitialWindowSize {
					p.maxInit = max(p.maxInit, int64(binary.BigEndian.Uint32(pl[i+2:])))
				}
			}
		}
	}
}

// taint records, before the frame leaves, that the peer sent a header block
// that is not its encoder's valid HPACK (junk, truncated, a string past the
// router's limit) or lost its framing: from then on a COMPRESSION_ERROR may
// be deserved.
func (p *fzPeer) taint() {
	p.mu.Lock()
	p.tainted = true
	p.mu.Unlock()
}

// fzLongField reports whether a field has a string past what the router's
// decoder takes (its MaxHeaderListSize in these tests: 4096).
func fzLongField(fields []hpack.HeaderField) bool {
	for _, f := range fields {
		if len(f.Name) > 4000 || len(f.Value) > 4000 {
			return true
		}
	}
	return false
}

// fail records the first violation; p.mu not held.
func (p *fzPeer) fail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.violation == nil {
		p.violation = fmt.Errorf("router to %s: "+format, append([]any{p.name}, args...)...)
	}
}

func (p *fzPeer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.violation
}

// check follows one frame the router sent.
func (p *fzPeer) check(f http2.Frame, upstream bool) {
	h := f.Header()
	id := h.StreamID
	if how, ok := p.ended[id]; ok && id != 0 && (h.Type == http2.FrameData || h.Type == http2.FrameHeaders) {
		p.fail("%v on stream %d after %s", h.Type, id, how)
	}
	switch f := f.(type) {
	case *http2.DataFrame:
		n := int64(h.Length)
		p.sentConn += n
		p.sentStream[id] += n
		p.mu.Lock()
		connMax, streamMax := 65535+p.grantConn, p.maxInit+p.grantStream[id]
		p.mu.Unlock()
		if p.sentConn > connMax {
			p.fail("%d DATA bytes sent on the connection, only %d granted", p.sentConn, connMax)
		}
		if p.sentStream[id] > streamMax {
			p.fail("%d DATA bytes sent on stream %d, at most %d granted", p.sentStream[id], id, streamMax)
		}
		if upstream && !p.opened[id] {
			p.fail("DATA on stream %d it never opened", id)
		}
		if f.StreamEnded() {
			p.ended[id] = "END_STREAM"
		}
	case *http2.HeadersFrame:
		p.answered[id] = true
		if upstream && !p.opened[id] {
			if id%2 == 0 || id <= p.lastOpened {
				p.fail("opens stream %d after %d", id, p.lastOpened)
			}
			p.opened[id], p.lastOpened = true, id
		}
		p.hblock = append(p.hblock[:0], f.HeaderBlockFragment()...)
		p.hid, p.hend = id, f.StreamEnded()
		if f.HeadersEnded() {
			p.decode()
		}
	case *http2.ContinuationFrame:
		p.hblock = append(p.hblock, f.HeaderBlockFragment()...)
		if f.HeadersEnded() {
			p.decode()
		}
	case *http2.RSTStreamFrame:
		// A reset ends a stream the router answered (or, upstream, opened).
		// One it resets while still idle, for a client's error, the client
		// may open afterwards (x/net's server does the same).
		if upstream || p.answered[id] {
			p.ended[id] = "RST_STREAM"
		}
	case *http2.GoAwayFrame:
		p.mu.Lock()
		tainted := p.tainted
		p.mu.Unlock()
		if f.ErrCode == http2.ErrCodeCompression && !tainted {
			// The router's decoder lost step with a valid encoder: it
			// skipped a header block somewhere.
			p.fail("GOAWAY COMPRESSION_ERROR though every header block sent was valid HPACK")
		}
	}
}

func (p *fzPeer) decode() {
	if _, err := p.dec.DecodeFull(p.hblock); err != nil {
		p.fail("undecodable header block on stream %d: %v", p.hid, err)
	}
	if p.hend {
		p.ended[p.hid] = "END_STREAM"
	}
	p.hid = 0
}

// readRouter reads and checks what the router sends until the connection
// ends; each frame is also handed to on (when given). A framing error is a
// violation; then the rest is drained.
func (p *fzPeer) readRouter(r io.Reader, upstream bool, on func(http2.Frame)) {
	fr := http2.NewFramer(nil, r)
	fr.SetMaxReadFrameSize(1<<24 - 1)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !fzClosedErr(err) {
				p.fail("unreadable frame: %v", err)
			}
			_, _ = io.Copy(io.Discard, r)
			return
		}
		p.check(f, upstream)
		if on != nil {
			on(f)
		}
	}
}

func fzClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, os.ErrDeadlineExceeded)
}

// ---------------------------------------------------------------------------
// The environment of one input.

// fzConfig is the client script's first byte.
type fzConfig byte

const (
	fzNoRead     fzConfig = 1 << iota // the client reads nothing until its script ends (socketpair clients only)
	fzClientPipe                      // net.Pipe for the client (else a socketpair)
	fzUpSocket                        // a socketpair for upstreams (else net.Pipe)
	fzSmallRead                       // a 4 KiB read buffer: DATA through the Framer
	fzMsgLimit                        // MaxMessageSize
	fzDialFails                       // the first dial (while the client plays) fails

	fzModeMask   fzConfig = 0xc0
	fzTinyBudget fzConfig = 0x80 // MaxBuffered of 4 KiB
	fzShutdown   fzConfig = 0xc0 // Shutdown while the client is connected
)

func (c fzConfig) noRead() bool   { return c&fzNoRead != 0 && c&fzClientPipe == 0 }
func (c fzConfig) shutdown() bool { return c&fzModeMask == fzShutdown }

type fzEnv struct {
	t   *testing.T
	cfg fzConfig
	r   *Router

	mu        sync.Mutex
	script    []byte // the upstream script, for the first dial of the fuzz phase
	fuzzPhase bool
	dials     int
	ups       []*fzUpstream
	scriptRun chan struct{} // closed when the scripted upstream played its script (or never will)
	behave    chan struct{} // closed when upstreams are to behave
	scriptSet bool

	obs fzObserver
}

func (e *fzEnv) pair(socket bool) (net.Conn, net.Conn) {
	if socket {
		a, b, err := SocketPair()
		if err == nil {
			return a, b
		}
		e.t.Logf("socketpair: %v; using net.Pipe", err)
	}
	return net.Pipe()
}

func (e *fzEnv) dial(ctx context.Context) (net.Conn, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dials++
	if e.dials == 1 && e.cfg&fzDialFails != 0 && e.fuzzPhase {
		return nil, errors.New("fuzz: dial refused")
	}
	ours, theirs := e.pair(e.cfg&fzUpSocket != 0)
	u := newFzUpstream(e, ours)
	e.ups = append(e.ups, u)
	if e.fuzzPhase && !e.scriptSet {
		e.scriptSet = true
		go u.run(e.script, e.scriptRun)
	} else {
		go u.run(nil, nil)
	}
	return theirs, nil
}

// fzObserver checks that every call begun ends exactly once.
type fzObserver struct {
	mu     sync.Mutex
	begun  int
	ended  int
	double []string
}

type fzCall struct {
	o      *fzObserver
	method string
	done   bool
}

func (o *fzObserver) Begin(method string) Call {
	o.mu.Lock()
	o.begun++
	o.mu.Unlock()
	return &fzCall{o: o, method: method}
}

func (c *fzCall) End(_ time.Time, code codes.Code, _ string) {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	if c.done {
		c.o.double = append(c.o.double, fmt.Sprintf("%q (%v)", c.method, code))
		return
	}
	c.done = true
	c.o.ended++
}

// ---------------------------------------------------------------------------
// The fake upstream.

type fzUpstream struct {
	e    *fzEnv
	nc   net.Conn
	peer *fzPeer

	// The write side: frames go out in order through the writer goroutine,
	// so that no one who reads ever waits for a write (the router may stop
	// reading while it waits for us to read).
	wmu      sync.Mutex
	wcond    *sync.Cond
	wq       [][]byte
	wclosed  bool // the connection failed or was closed: nothing more goes out
	wdone    chan struct{}
	enc      *hpack.Encoder
	hbuf     bytes.Buffer
	pendHdr  uint32 // stream of a header block we left unfinished
	connWin  int64  // what the router lets us send
	initWin  int64
	winDelta map[uint32]int64 // per stream: WINDOW_UPDATEs minus DATA sent

	mu       sync.Mutex
	cond     *sync.Cond
	streams  []uint32        // streams the router opened
	recvConn int64           // DATA bytes received
	reqEnded map[uint32]bool // requests the router ended
	reset    map[uint32]bool
	answered map[uint32]bool
	behave   bool
	pingAck  chan struct{}
	readDone chan struct{}
	runDone  chan struct{}
	behaving chan struct{} // closed once it behaves (or ended); written by run only
	garbled  bool          // the script sent garbage (run only)
}

func newFzUpstream(e *fzEnv, nc net.Conn) *fzUpstream {
	u := &fzUpstream{e: e, nc: nc, peer: newFzPeer("upstream"), connWin: 65535, initWin: 65535,
		winDelta: map[uint32]int64{}, reqEnded: map[uint32]bool{}, reset: map[uint32]bool{}, answered: map[uint32]bool{},
		pingAck: make(chan struct{}, 1), readDone: make(chan struct{}), runDone: make(chan struct{}), behaving: make(chan struct{}),
		wdone: make(chan struct{})}
	u.cond = sync.NewCond(&u.mu)
	u.wcond = sync.NewCond(&u.wmu)
	u.enc = hpack.NewEncoder(&u.hbuf)
	go u.read()
	go u.writer()
	return u
}

// write queues frames; it records the credit they grant and the DATA they
// spend. It reports whether the connection still takes them. u.wmu held.
func (u *fzUpstream) write(b []byte) bool {
	if u.wclosed {
		return false
	}
	if len(b) == 0 {
		return true
	}
	u.peer.granted(b)
	for p := b; len(p) >= 9; {
		n := int(p[0])<<16 | int(p[1])<<8 | int(p[2])
		if 9+n > len(p) {
			break
		}
		if http2.FrameType(p[3]) == http2.FrameData {
			id := binary.BigEndian.Uint32(p[5:]) & 0x7fffffff
			u.connWin -= int64(n)
			u.winDelta[id] -= int64(n)
		}
		p = p[9+n:]
	}
	u.wq = append(u.wq, b)
	u.wcond.Signal()
	return true
}

func (u *fzUpstream) writer() {
	defer close(u.wdone)
	u.wmu.Lock()
	defer u.wmu.Unlock()
	for {
		for len(u.wq) == 0 && !u.wclosed {
			u.wcond.Wait()
		}
		if u.wclosed {
			u.wq = nil
			return
		}
		b := u.wq[0]
		u.wq[0] = nil
		u.wq = u.wq[1:]
		u.wmu.Unlock()
		_ = u.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, err := u.nc.Write(b)
		u.wmu.Lock()
		if err != nil {
			u.wclosed = true
		}
	}
}

func (u *fzUpstream) read() {
	defer func() {
		close(u.readDone)
		u.mu.Lock()
		u.cond.Broadcast()
		u.mu.Unlock()
	}()
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(u.nc, pre[:]); err != nil {
		return
	}
	if string(pre[:]) != http2.ClientPreface {
		u.peer.fail("bad preface %q", pre[:])
		_, _ = io.Copy(io.Discard, u.nc)
		return
	}
	u.peer.readRouter(u.nc, true, u.onFrame)
}

// onFrame follows the router's frames; behaving, it answers them.
func (u *fzUpstream) onFrame(f http2.Frame) {
	id := f.Header().StreamID
	var reply []byte
	u.mu.Lock()
	behave := u.behave
	switch f := f.(type) {
	case *http2.HeadersFrame:
		if u.isNew(id) {
			u.streams = append(u.streams, id)
		}
		if f.StreamEnded() {
			u.reqEnded[id] = true
		}
	case *http2.DataFrame:
		u.recvConn += int64(f.Length)
		if f.StreamEnded() {
			u.reqEnded[id] = true
		}
		if behave && f.Length > 0 {
			reply = fzFrame(reply, http2.FrameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, f.Length))
			if !f.StreamEnded() {
				reply = fzFrame(reply, http2.FrameWindowUpdate, 0, id, binary.BigEndian.AppendUint32(nil, f.Length))
			}
		}
	case *http2.RSTStreamFrame:
		u.reset[id] = true
	case *http2.SettingsFrame:
		if !f.IsAck() {
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				u.wmu.Lock()
				u.initWin = int64(v)
				u.wmu.Unlock()
			}
			if behave {
				reply = fzFrame(reply, http2.FrameSettings, http2.FlagSettingsAck, 0, nil)
			}
		}
	case *http2.PingFrame:
		if f.IsAck() {
			if string(f.Data[:]) == fzBehavePing {
				select {
				case u.pingAck <- struct{}{}:
				default:
				}
			}
		} else if behave {
			reply = fzFrame(reply, http2.FramePing, http2.FlagPingAck, 0, f.Data[:])
		}
	case *http2.WindowUpdateFrame:
		u.wmu.Lock()
		if id == 0 {
			u.connWin += int64(f.Increment)
		} else {
			u.winDelta[id] += int64(f.Increment)
		}
		u.wmu.Unlock()
	}
	u.cond.Broadcast()
	u.mu.Unlock()
	if len(reply) > 0 {
		u.wmu.Lock()
		_ = u.write(reply)
		u.wmu.Unlock()
	}
}

// isNew reports whether id is not yet among the streams. u.mu held.
func (u *fzUpstream) isNew(id uint32) bool {
	for _, s := range u.streams {
		if s == id {
			return false
		}
	}
	return true
}

// sid picks a stream ID for the upstream script, mostly one the router
// opened.
func (u *fzUpstream) sid(in *fzIn) uint32 {
	k := in.u8()
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case k < 190 && len(u.streams) > 0:
		return u.streams[len(u.streams)-1-int(in.u8())%len(u.streams)]
	case k < 210:
		return 0
	case k < 230:
		return uint32(in.u8()) // even ones too
	default:
		return in.u32()
	}
}

// run plays the script (then closes played), waits for the signal to
// behave, and behaves until the connection ends.
func (u *fzUpstream) run(script []byte, played chan struct{}) {
	defer close(u.runDone)
	var once sync.Once
	ready := func() { once.Do(func() { close(u.behaving) }) }
	defer ready()
	u.play(script)
	if played != nil {
		close(played)
	}
	select {
	case <-u.e.behave:
	case <-u.readDone:
		return
	}
	if u.garbled {
		// The router may be in the middle of a frame of ours for good:
		// behaving is hanging up, and letting the router dial again.
		u.nc.Close()
		<-u.readDone
		return
	}
	if u.behaveNow() {
		ready()
		u.serve()
	}
}

func (u *fzUpstream) play(script []byte) {
	in := &fzIn{b: script}
	var budget = 5 * time.Millisecond // of pauses
	for !in.done() {
		var out []byte
		op := in.u8() % 16
		switch op {
		case 0, 1: // response headers, maybe in pieces, maybe ending the stream
			id := u.sid(in)
			fields := []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"}}
			flags := http2.Flags(in.u8()) & (http2.FlagHeadersEndStream | http2.FlagHeadersPriority | http2.FlagHeadersPadded)
			if op == 1 {
				fields = fzMutate(in, fields)
			}
			block := u.encode(fields, in.u8()&3 == 0)
			end := in.u8()&7 != 0
			var pl []byte
			if flags&http2.FlagHeadersPadded != 0 {
				pl = append(pl, 3)
			}
			if flags&http2.FlagHeadersPriority != 0 {
				pl = binary.BigEndian.AppendUint32(pl, in.u32())
				pl = append(pl, in.u8())
			}
			pl = append(pl, block...)
			if flags&http2.FlagHeadersPadded != 0 {
				pl = append(pl, 0, 0, 0)
			}
			out = fzSplitBlock(in, u.peer, out, id, flags, pl, end)
			u.wmu.Lock()
			if !end {
				u.pendHdr = id
			} else {
				u.pendHdr = 0
			}
			u.wmu.Unlock()
		case 2: // trailers
			id := u.sid(in)
			fields := []hpack.HeaderField{{Name: "grpc-status", Value: fmt.Sprint(in.u8() % 18)}, {Name: "grpc-message", Value: string(in.take(int(in.u8() % 20)))}}
			if in.u8()&1 == 0 {
				fields = fzMutate(in, fields)
			}
			out = fzFrame(out, http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.Flags(in.u8())&http2.FlagHeadersEndStream, id, u.encode(fields, false))
		case 3, 4: // DATA
			out = fzData(in, out, u.sid(in), func() bool { return true })
		case 5: // RST_STREAM
			out = fzFrame(out, http2.FrameRSTStream, 0, u.sid(in), binary.BigEndian.AppendUint32(nil, uint32(in.u8()%16)))
		case 6: // SETTINGS
			out = fzSettings(in, out)
		case 7: // PING
			out = fzFrame(out, http2.FramePing, http2.Flags(in.u8())&http2.FlagPingAck, 0, bytes.Repeat([]byte{in.u8()}, 8))
		case 8: // WINDOW_UPDATE
			out = fzFrame(out, http2.FrameWindowUpdate, 0, u.sid(in), binary.BigEndian.AppendUint32(nil, in.val()))
		case 9: // GOAWAY
			pl := binary.BigEndian.AppendUint32(nil, u.sid(in))
			out = fzFrame(out, http2.FrameGoAway, 0, 0, binary.BigEndian.AppendUint32(pl, uint32(in.u8()%16)))
		case 10: // anything, PUSH_PROMISE and unknown types included
			t := http2.FrameType(in.u8())
			if t == http2.FrameHeaders || t == http2.FrameContinuation || t == http2.FramePushPromise {
				u.peer.taint()
			}
			out = fzFrame(out, t, http2.Flags(in.u8()), u.sid(in), in.take(int(in.u8()%40)))
		case 11: // garbage: the framing is lost for good
			if g := in.take(int(in.u8() % 24)); len(g) > 0 {
				out = append(out, g...)
				u.garbled = true
				u.peer.taint()
			}
		case 12, 13: // a pause, or wait for the router's next stream
			budget = fzPause(in, budget, func(d time.Duration) { u.waitStream(d) })
		case 14: // a whole answer
			id := u.sid(in)
			out = u.answer(out, id, in.u8()%3 == 0)
		case 15: // PRIORITY
			pl := binary.BigEndian.AppendUint32(nil, in.u32())
			out = fzFrame(out, http2.FramePriority, 0, u.sid(in), append(pl, in.u8()))
		}
		u.wmu.Lock()
		ok := u.write(out)
		u.wmu.Unlock()
		if !ok {
			return
		}
	}
}

// encode encodes fields with the dynamic table, or as random bytes.
func (u *fzUpstream) encode(fields []hpack.HeaderField, junk bool) []byte {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if junk || fzLongField(fields) {
		u.peer.taint()
	}
	if junk {
		return []byte{0x3f, 0xe1, 0x1f, 0x82, 0xbe} // a table size update above the limit, and an unknown index
	}
	u.hbuf.Reset()
	for _, f := range fields {
		_ = u.enc.WriteField(f)
	}
	return bytes.Clone(u.hbuf.Bytes())
}

// answer appends a whole gRPC answer (dynamic-table-free headers).
func (u *fzUpstream) answer(out []byte, id uint32, fail bool) []byte {
	if fail {
		return fzFrame(out, http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, id, fzLiteral([]hpack.HeaderField{
			{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"},
			{Name: "grpc-status", Value: "5"}, {Name: "grpc-message", Value: "fuzz"}}))
	}
	out = fzFrame(out, http2.FrameHeaders, http2.FlagHeadersEndHeaders, id, fzLiteral([]hpack.HeaderField{
		{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"}}))
	out = fzFrame(out, http2.FrameData, 0, id, flowGRPCMessage([]byte("ok")))
	return fzFrame(out, http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, id,
		fzLiteral([]hpack.HeaderField{{Name: "grpc-status", Value: "0"}}))
}

func (u *fzUpstream) waitStream(d time.Duration) {
	deadline := time.Now().Add(d)
	t := time.AfterFunc(d, func() { u.mu.Lock(); u.cond.Broadcast(); u.mu.Unlock() })
	defer t.Stop()
	u.mu.Lock()
	n := len(u.streams)
	for len(u.streams) == n && time.Now().Before(deadline) && !u.closedLocked() {
		u.cond.Wait()
	}
	u.mu.Unlock()
}

func (u *fzUpstream) closedLocked() bool {
	select {
	case <-u.readDone:
		return true
	default:
		return false
	}
}

const fzBehavePing = "behave!!"

// behaveNow ends the script: it finishes a header block left open, resets
// the settings, returns the windows, and waits for a PING's ack so that the
// router has handled all that before the script counts as done. Then it
// answers every request that ends. It reports whether the router took it.
func (u *fzUpstream) behaveNow() bool {
	u.mu.Lock()
	u.behave = true
	u.mu.Unlock()
	var out []byte
	u.wmu.Lock()
	if u.pendHdr != 0 {
		out = fzFrame(out, http2.FrameContinuation, http2.FlagContinuationEndHeaders, u.pendHdr, nil)
		u.pendHdr = 0
	}
	u.wmu.Unlock()
	out = fzFrame(out, http2.FrameSettings, 0, 0, []byte{
		0, 4, 0, 0, 0xff, 0xff, // INITIAL_WINDOW_SIZE 65535
		0, 5, 0, 0, 0x40, 0, // MAX_FRAME_SIZE 16384
		0, 3, 0, 0, 0x03, 0xe8, // MAX_CONCURRENT_STREAMS 1000
	})
	// At most what the router may still send us; top it up to 1 MiB.
	u.peer.mu.Lock()
	room := 65535 + u.peer.grantConn
	u.peer.mu.Unlock()
	u.mu.Lock()
	room -= u.recvConn
	u.mu.Unlock()
	if room < 1<<20 {
		out = fzFrame(out, http2.FrameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(1<<20-room)))
	}
	out = fzFrame(out, http2.FramePing, 0, 0, []byte(fzBehavePing))
	u.wmu.Lock()
	ok := u.write(out)
	u.wmu.Unlock()
	if !ok {
		return false
	}
	select {
	case <-u.pingAck:
		return true
	case <-u.readDone:
		return false
	case <-time.After(2 * time.Second):
		u.peer.fail("no PING ack within 2s")
		return false
	}
}

// serve answers each request that ends, within the router's windows.
func (u *fzUpstream) serve() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for !u.closedLocked() {
		var id uint32
		for _, s := range u.streams {
			if u.reqEnded[s] && !u.answered[s] && !u.reset[s] {
				id = s
				break
			}
		}
		if id == 0 {
			u.cond.Wait()
			continue
		}
		u.answered[id] = true
		// The answer's 7 bytes of DATA need the router's windows.
		deadline := time.Now().Add(2 * time.Second)
		t := time.AfterFunc(2*time.Second, func() { u.mu.Lock(); u.cond.Broadcast(); u.mu.Unlock() })
		for {
			u.wmu.Lock()
			ok := u.connWin >= 7 && u.initWin+u.winDelta[id] >= 7
			u.wmu.Unlock()
			if ok || u.closedLocked() || u.reset[id] || time.Now().After(deadline) {
				break
			}
			u.cond.Wait()
		}
		t.Stop()
		u.mu.Unlock()
		u.wmu.Lock()
		_ = u.write(u.answer(nil, id, false))
		u.wmu.Unlock()
		u.mu.Lock()
	}
}

func (u *fzUpstream) close() {
	u.nc.Close()
	u.wmu.Lock()
	u.wclosed = true
	u.wcond.Signal()
	u.wmu.Unlock()
	<-u.readDone
	<-u.runDone
	<-u.wdone
}

// fzSettings appends a SETTINGS frame, valid or not.
func fzSettings(in *fzIn, out []byte) []byte {
	k := in.u8()
	if k < 20 {
		return fzFrame(out, http2.FrameSettings, http2.FlagSettingsAck, 0, in.take(int(k%8))) // an ack, maybe with a payload
	}
	var pl []byte
	for n := int(k % 5); n > 0; n-- {
		pl = binary.BigEndian.AppendUint16(pl, uint16(in.u8()%8))
		pl = binary.BigEndian.AppendUint32(pl, in.val())
	}
	if k > 250 {
		pl = append(pl, 1) // a bad length
	}
	return fzFrame(out, http2.FrameSettings, 0, 0, pl)
}

// fzPause sleeps or waits a little, within what is left of the budget.
func fzPause(in *fzIn, budget time.Duration, wait func(time.Duration)) time.Duration {
	d := []time.Duration{0, 50 * time.Microsecond, 200 * time.Microsecond, time.Millisecond}[in.u8()%4]
	d = min(d, budget)
	if d == 0 {
		return budget
	}
	start := time.Now()
	if wait != nil {
		wait(d)
	} else {
		time.Sleep(d)
	}
	return budget - time.Since(start)
}

// ---------------------------------------------------------------------------
// The fuzz client.

type fzClient struct {
	in      *fzIn
	nc      net.Conn
	peer    *fzPeer
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	nextID  uint32
	open    []uint32
	garbled bool // garbage sent: the router may be waiting for the rest of a frame
}

func (c *fzClient) sid() uint32 {
	switch c.in.u8() % 8 {
	case 0:
		return 0
	case 1, 2, 3:
		if len(c.open) > 0 {
			return c.open[int(c.in.u8())%len(c.open)]
		}
		return 1
	case 4:
		return c.newID()
	case 5:
		return c.in.u32()
	case 6:
		return uint32(c.in.u8()) * 2
	default:
		return c.nextID + 2*uint32(c.in.u8()%4)
	}
}

func (c *fzClient) newID() uint32 {
	id := c.nextID
	c.nextID += 2
	c.open = append(c.open, id)
	if len(c.open) > 16 {
		c.open = c.open[1:]
	}
	return id
}

var fzPaths = []string{"/a.A/B", "/w.W/Watch", "/x", "", "/a.A/B?q", "*"}

func (c *fzClient) requestFields(mutate bool) []hpack.HeaderField {
	path := fzPaths[int(c.in.u8())%len(fzPaths)]
	f := flowRequestFields(path)
	if mutate {
		f = fzMutate(c.in, f)
	}
	return f
}

func (c *fzClient) block(fields []hpack.HeaderField, junk bool) []byte {
	if junk || fzLongField(fields) {
		c.peer.taint()
	}
	if junk {
		return bytes.Clone(c.in.take(int(c.in.u8() % 32)))
	}
	c.hbuf.Reset()
	for _, f := range fields {
		_ = c.enc.WriteField(f)
	}
	return bytes.Clone(c.hbuf.Bytes())
}

func (c *fzClient) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	c.peer.granted(b)
	_ = c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

// run sends the preface and the script.
func (c *fzClient) run() {
	if c.write([]byte(http2.ClientPreface)) != nil {
		return
	}
	budget := 5 * time.Millisecond
	in := c.in
	for !in.done() {
		var out []byte
		switch op := in.u8() % 18; op {
		case 0, 1: // a whole call
			id := c.newID()
			out = fzFrame(out, http2.FrameHeaders, http2.FlagHeadersEndHeaders, id, c.block(c.requestFields(op == 1), false))
			body := flowGRPCMessage(make([]byte, int(in.u8())*4))
			for frames := int(in.u8() % 6); frames > 0; frames-- {
				out = fzFrame(out, http2.FrameData, 0, id, make([]byte, 16384))
			}
			out = fzFrame(out, http2.FrameData, http2.FlagDataEndStream, id, body)
		case 2: // request headers, maybe in pieces, maybe bad
			id := c.sid()
			flags := http2.Flags(in.u8()) & (http2.FlagHeadersEndStream | http2.FlagHeadersPriority | http2.FlagHeadersPadded)
			var pl []byte
			if flags&http2.FlagHeadersPadded != 0 {
				padLen := in.u8() % 8
				if padLen != 4 {
					c.peer.taint() // the block loses bytes or gains zeros
				}
				pl = append(pl, padLen)
			}
			if flags&http2.FlagHeadersPriority != 0 {
				dep := in.u32()
				if in.u8()&1 == 0 {
					dep = id // on itself
				}
				pl = binary.BigEndian.AppendUint32(pl, dep)
				pl = append(pl, in.u8())
			}
			pl = append(pl, c.block(c.requestFields(in.u8()&1 == 0), in.u8()%16 == 0)...)
			if flags&http2.FlagHeadersPadded != 0 {
				pl = append(pl, make([]byte, 4)...)
			}
			out = fzSplitBlock(in, c.peer, out, id, flags, pl, in.u8()%8 != 0)
		case 3: // CONTINUATION, in or out of turn
			c.peer.taint()
			out = fzFrame(out, http2.FrameContinuation, http2.Flags(in.u8())&http2.FlagContinuationEndHeaders, c.sid(), in.take(int(in.u8()%40)))
		case 4, 5: // DATA
			out = fzData(in, out, c.sid(), func() bool { return in.u8()&1 == 0 })
		case 6: // RST_STREAM
			out = fzFrame(out, http2.FrameRSTStream, 0, c.sid(), binary.BigEndian.AppendUint32(nil, uint32(in.u8()%16)))
		case 7: // SETTINGS
			out = fzSettings(in, out)
		case 8: // PING
			out = fzFrame(out, http2.FramePing, http2.Flags(in.u8())&http2.FlagPingAck, 0, bytes.Repeat([]byte{in.u8()}, 8))
		case 9: // WINDOW_UPDATE
			out = fzFrame(out, http2.FrameWindowUpdate, 0, c.sid(), binary.BigEndian.AppendUint32(nil, in.val()))
		case 10: // GOAWAY
			pl := binary.BigEndian.AppendUint32(nil, c.sid())
			out = fzFrame(out, http2.FrameGoAway, 0, 0, binary.BigEndian.AppendUint32(pl, uint32(in.u8()%16)))
		case 11: // PRIORITY
			id := c.sid()
			dep := in.u32()
			if in.u8()&1 == 0 {
				dep = id
			}
			out = fzFrame(out, http2.FramePriority, 0, id, append(binary.BigEndian.AppendUint32(nil, dep), in.u8()))
		case 12: // anything: unknown types, bad lengths of known ones
			t := http2.FrameType(in.u8())
			if t == http2.FrameHeaders || t == http2.FrameContinuation || t == http2.FramePushPromise {
				c.peer.taint()
			}
			out = fzFrame(out, t, http2.Flags(in.u8()), c.sid(), in.take(int(in.u8()%40)))
		case 13: // garbage: the framing is lost for good
			if g := in.take(int(in.u8() % 24)); len(g) > 0 {
				out = append(out, g...)
				c.garbled = true
				c.peer.taint()
			}
		case 14, 15: // a pause
			budget = fzPause(in, budget, nil)
		case 16: // repeat the next frame: floods (PING, SETTINGS, RST, HEADERS+RST)
			n := 1 + int(in.u8())*4
			var f []byte
			switch in.u8() % 4 {
			case 0:
				f = fzFrame(nil, http2.FramePing, 0, 0, make([]byte, 8))
			case 1:
				f = fzFrame(nil, http2.FrameSettings, 0, 0, nil)
			case 2:
				c.peer.taint()
				f = fzFrame(nil, http2.FrameContinuation, 0, c.sid(), []byte{0x40, 1, 'x', 1, 'y'})
			case 3:
				for i := 0; i < n/4+1; i++ {
					id := c.newID()
					f = fzFrame(f, http2.FrameHeaders, http2.FlagHeadersEndHeaders, id, c.block(c.requestFields(false), false))
					f = fzFrame(f, http2.FrameRSTStream, 0, id, []byte{0, 0, 0, 8})
				}
				n = 1
			}
			for i := 0; i < n; i++ {
				out = append(out, f...)
			}
		case 17: // a large upload within the windows: 4 DATA frames on one stream
			id := c.sid()
			for i := 0; i < 4; i++ {
				out = fzFrame(out, http2.FrameData, 0, id, make([]byte, 16000))
			}
		}
		if c.write(out) != nil {
			return
		}
	}
}

// ---------------------------------------------------------------------------
// The check call: a normal request on a fresh connection.

func fzCheckCall(r *Router, pipe bool) error {
	var a, b net.Conn
	if pipe {
		a, b = net.Pipe()
	} else {
		var err error
		if a, b, err = SocketPair(); err != nil {
			a, b = net.Pipe()
		}
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		r.ServeConn(b)
	}()
	defer func() {
		a.Close()
		<-served
	}()
	_ = a.SetDeadline(time.Now().Add(3 * time.Second))
	var out []byte
	out = append(out, http2.ClientPreface...)
	out = fzFrame(out, http2.FrameSettings, 0, 0, nil)
	out = fzFrame(out, http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, fzLiteral(flowRequestFields("/a.A/Check")))
	out = fzFrame(out, http2.FrameData, http2.FlagDataEndStream, 1, flowGRPCMessage([]byte("hi")))
	werr := make(chan error, 1)
	go func() { _, err := a.Write(out); werr <- err }() // a net.Pipe write waits for the reader
	fr := http2.NewFramer(nil, a)
	dec := hpack.NewDecoder(4096, nil)
	var data []byte
	var fields []string
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("reading the answer: %v (so far: data %q, headers %q)", err, data, fields)
		}
		if f.Header().StreamID != 1 && f.Header().StreamID != 0 {
			continue
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			data = append(data, f.Data()...)
		case *http2.HeadersFrame:
			hf, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				return fmt.Errorf("answer headers: %v", err)
			}
			for _, h := range hf {
				fields = append(fields, h.Name+": "+h.Value)
			}
			if f.StreamEnded() {
				if err := <-werr; err != nil {
					return fmt.Errorf("writing the request: %v", err)
				}
				if !bytes.Equal(data, flowGRPCMessage([]byte("ok"))) || !strings.Contains(strings.Join(fields, "\n"), "grpc-status: 0") {
					return fmt.Errorf("answer: data %q, headers %q", data, fields)
				}
				return nil
			}
		case *http2.RSTStreamFrame:
			return fmt.Errorf("stream reset: %v (so far: data %q, headers %q)", f.ErrCode, data, fields)
		case *http2.GoAwayFrame:
			return fmt.Errorf("GOAWAY %v", f.ErrCode)
		}
	}
}

// ---------------------------------------------------------------------------
// One input.

func fuzzRouterOnce(t *testing.T, client, upstream []byte) {
	ignore := goleak.IgnoreCurrent()
	t0 := time.Now()
	debug := os.Getenv("FZ_DEBUG") != ""
	mark := func(what string) {
		if debug {
			t.Logf("%v: %s", time.Since(t0), what)
		}
	}
	var cfg fzConfig
	if len(client) > 0 {
		cfg, client = fzConfig(client[0]), client[1:]
	}
	e := &fzEnv{t: t, cfg: cfg, script: upstream, fuzzPhase: true,
		scriptRun: make(chan struct{}), behave: make(chan struct{})}
	opt := Options{
		StreamWindow:         65535,
		ConnWindow:           128 << 10,
		MaxBuffered:          96 << 10,
		MaxConcurrentStreams: 8,
		MaxHeaderListSize:    4096,
		HandshakeTimeout:     time.Second,
		MaxResetsPerSecond:   20,
		MaxUpstreamConns:     2,
		Observers:            []Observer{&e.obs},
	}
	if cfg&fzSmallRead != 0 {
		opt.ReadBuffer = 4096
	}
	if cfg&fzMsgLimit != 0 {
		opt.MaxMessageSize = 64
	}
	if cfg&fzModeMask == fzTinyBudget {
		opt.MaxBuffered = 4096
	}
	e.r = New(opt, []*Pool{NewPool("fuzz-upstream", e.dial)}, func(p string) Route {
		return Route{Watch: strings.HasPrefix(p, "/w.")}
	})
	r := e.r

	// The client and its script.
	cEnd, rEnd := e.pair(cfg&fzClientPipe == 0)
	served := make(chan struct{})
	go func() {
		defer close(served)
		r.ServeConn(rEnd)
	}()
	c := &fzClient{in: &fzIn{b: client}, nc: cEnd, peer: newFzPeer("client"), nextID: 1}
	c.enc = hpack.NewEncoder(&c.hbuf)
	readDone := make(chan struct{})
	synced := make(chan struct{}, 1)
	startReading := func() {
		go func() {
			defer close(readDone)
			c.peer.readRouter(cEnd, false, func(f http2.Frame) {
				if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && string(p.Data[:]) == fzSyncPing {
					synced <- struct{}{}
				}
			})
		}()
	}
	// Whatever happens, nothing outlives the input.
	defer func() {
		cEnd.Close()
		r.Close()
		e.mu.Lock()
		ups := e.ups
		e.mu.Unlock()
		for _, u := range ups {
			u.close()
		}
	}()
	if !cfg.noRead() {
		startReading()
	}
	c.run()
	mark("client script played")

	// The scripted upstream (if one was dialed) plays its script too.
	e.mu.Lock()
	e.fuzzPhase = false
	if !e.scriptSet {
		e.scriptSet = true
		close(e.scriptRun)
	}
	e.mu.Unlock()
	select {
	case <-e.scriptRun:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream script did not finish within 5s")
	}
	mark("upstream script played")
	if cfg.noRead() {
		startReading()
	}
	// The router has handled all the client sent once it acks a PING
	// behind it (unless it ended the connection).
	// (After garbage, the router may take the PING for the rest of a frame.)
	if c.write(fzFrame(nil, http2.FramePing, 0, 0, []byte(fzSyncPing))) == nil {
		wait := 3 * time.Second
		if c.garbled {
			wait = 5 * time.Millisecond
		}
		select {
		case <-synced:
		case <-readDone:
		case <-time.After(wait):
			if !c.garbled {
				t.Fatalf("the router did not answer a PING within 3s (stats %+v)", r.Stats())
			}
		}
	}
	// Calls the upstream answered reach the client.
	for deadline := time.Now().Add(5 * time.Millisecond); time.Now().Before(deadline) && r.Stats().Streams > 0; {
		time.Sleep(100 * time.Microsecond)
	}
	mark("client synced")

	if cfg.shutdown() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		r.Shutdown(ctx)
		cancel()
	}
	cEnd.Close()
	select {
	case <-served:
	case <-time.After(3 * time.Second):
		t.Fatalf("ServeConn did not return within 3s of the client closing (stats %+v)", r.Stats())
	}
	<-readDone
	mark("client closed")

	// Nothing is left of the client, though the upstream still misbehaves.
	fzWaitIdle(t, r, "after the client closed")
	mark("idle")

	// The upstreams behave; a normal call on a fresh connection works.
	close(e.behave)
	e.mu.Lock()
	ups := append([]*fzUpstream(nil), e.ups...)
	e.mu.Unlock()
	live := 0
	for _, u := range ups {
		select {
		case <-u.behaving:
		case <-time.After(3 * time.Second):
			t.Fatal("an upstream did not start behaving within 3s")
		}
		select {
		case <-u.readDone:
		default:
			live++
		}
	}
	// The router notices the upstream connections that hung up.
	for deadline := time.Now().Add(3 * time.Second); r.Stats().Upstreams > live; {
		if time.Now().After(deadline) {
			t.Fatalf("%d upstream connections 3s after %d hung up, want %d (%s)", r.Stats().Upstreams, len(ups)-live, live, fzUpState(r))
		}
		time.Sleep(200 * time.Microsecond)
	}
	if !cfg.shutdown() {
		if err := fzCheckCall(r, cfg&fzClientPipe != 0); err != nil {
			t.Fatalf("a normal call after the fuzz input: %v (stats %+v, %s)", err, r.Stats(), fzUpState(r))
		}
		mark("check call done")
		fzWaitIdle(t, r, "after the check call")
	}
	r.Close()

	e.mu.Lock()
	ups = e.ups
	e.mu.Unlock()
	for _, u := range ups {
		u.close()
	}
	for _, p := range append([]*fzPeer{c.peer}, fzPeers(ups)...) {
		if err := p.err(); err != nil {
			t.Error(err)
		}
	}
	if st := r.Stats(); st.Clients != 0 || st.Streams != 0 || st.Buffered != 0 || st.Upstreams != 0 {
		t.Errorf("after Close: stats %+v, want all zero", st)
	}
	e.obs.mu.Lock()
	if e.obs.begun != e.obs.ended || len(e.obs.double) > 0 {
		t.Errorf("observers: %d calls begun, %d ended; ended twice: %v", e.obs.begun, e.obs.ended, e.obs.double)
	}
	e.obs.mu.Unlock()
	mark("closed")
	if debug {
		t.Logf("calls begun %d, dials %d, streams the router ended toward the client: %v", e.obs.begun, e.dials, c.peer.ended)
	}
	goleak.VerifyNone(t, ignore)
	mark("no leaks")
}

const fzSyncPing = "fzsync!!"

func fzPeers(ups []*fzUpstream) []*fzPeer {
	var ps []*fzPeer
	for _, u := range ups {
		ps = append(ps, u.peer)
	}
	return ps
}

// fzUpState describes the upstream connections' streams, for failures.
func fzUpState(r *Router) string {
	var b strings.Builder
	for _, p := range r.pools {
		p.mu.Lock()
		conns := append([]*conn(nil), p.conns...)
		p.mu.Unlock()
		for i, c := range conns {
			c.mu.Lock()
			fmt.Fprintf(&b, "upstream conn %d: active %d, closed %v, going away %v, send window %d, peer max streams %d;",
				i, c.active, c.closed, c.goingAway, c.sendWin, c.peerMaxStreams)
			for id, s := range c.streams {
				a := &s.sides[upSide]
				q := 0
				for _, it := range a.q {
					if it.data != nil {
						q += it.data.n
					}
				}
				fmt.Fprintf(&b, " stream %d (%s): queued %d, recv ended %v, send ended %v, send window %d;",
					id, s.method, q, a.recvEnded, a.sendEnded, a.sendWin)
			}
			c.mu.Unlock()
		}
	}
	return b.String()
}

// fzUpstreamActive counts the streams upstream connections still carry.
func fzUpstreamActive(r *Router) int {
	n := 0
	for _, p := range r.pools {
		p.mu.Lock()
		conns := append([]*conn(nil), p.conns...)
		p.mu.Unlock()
		for _, c := range conns {
			c.mu.Lock()
			n += c.active
			c.mu.Unlock()
		}
	}
	return n
}

// fzWaitIdle waits for no client, no stream, nothing buffered and no
// upstream stream.
func fzWaitIdle(t *testing.T, r *Router, when string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := r.Stats()
		up := fzUpstreamActive(r)
		if st.Clients == 0 && st.Streams == 0 && st.Buffered == 0 && up == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after 3s stats %+v and %d upstream streams; want no client, stream, buffer or upstream stream (%s)",
				when, st, up, fzUpState(r))
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// ---------------------------------------------------------------------------
// Seeds.

// fzSeed builds a script from pieces: ints (bytes), strings and []any
// (flattened).
func fzSeed(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = append(b, byte(p))
		case fzConfig:
			b = append(b, byte(p))
		case string:
			b = append(b, p...)
		case []any:
			b = append(b, fzSeed(p...)...)
		}
	}
	return b
}

func fzRep(n int, parts ...any) []any {
	var out []any
	for i := 0; i < n; i++ {
		out = append(out, parts...)
	}
	return out
}

func FuzzRouter(f *testing.F) {
	// Client ops (after the fzConfig byte): 0 call, 2 headers, 3
	// continuation, 4 data, 6 rst, 7 settings, 8 ping, 9 window update,
	// 10 goaway, 11 priority, 12 any frame, 13 garbage, 14 pause, 16 flood,
	// 17 upload. Upstream ops: 0 headers, 2 trailers, 3 data, 5 rst,
	// 6 settings, 7 ping, 8 window update, 9 goaway, 10 any frame,
	// 11 garbage, 12 pause/wait, 14 answer, 15 priority.
	call := []any{0, 0, 10, 0}                           // a call with a 40-byte message, ended
	bigCall := []any{0, 0, 0, 5}                         // a call with 5 x 16 KiB of DATA: beyond the stream window
	headers := []any{2, 4, 0, 1, 0, 1, 1, 0}             // request headers on a new stream, not ending it
	watch := []any{2, 4, 0, 1, 1, 1, 1, 0}               // the same for a watch stream
	upload := []any{4, 1, 0, 0x3e, 0x80, 1, 1, 0, 0, 16} // 16000 bytes of DATA ending the first stream
	zeroWindow := []any{7, 21, 4, 0}                     // SETTINGS_INITIAL_WINDOW_SIZE 0 from the client
	upZeroWindow := []any{6, 21, 4, 0}                   // the same from the upstream
	pause := []any{14, 3}                                // the client pauses 1ms
	answer := []any{14, 0, 0, 1}                         // the upstream answers the latest stream in full
	respHeaders := []any{0, 0, 0, 0, 1, 1, 0}            // response headers on the latest stream
	trailers := []any{2, 0, 0, 0, 0, 1, 1}               // trailers (OK) ending the latest stream
	waitStream := []any{12, 3}                           // the upstream waits up to 1ms for a stream
	seeds := []struct{ client, up []byte }{
		{fzSeed(0), nil}, // preface only
		{fzSeed(0, call), nil},
		{fzSeed(0, call), fzSeed(waitStream, answer)},
		{fzSeed(0, fzRep(4, call)), fzSeed(fzRep(4, waitStream, answer))},
		// rapid reset
		{fzSeed(0, 16, 200, 3), nil},
		// CONTINUATION flood on an open header block
		{fzSeed(0, 2, 4, 0, 1, 0, 1, 0, 0, 16, 250, 2, 1, 0), nil},
		// zero window from the client: the answer waits in the router
		{fzSeed(0, 7, 21, 4, 0, call, pause, pause), fzSeed(waitStream, answer, 3, 0, 0, 0x3e, 0x80, 1, 0)},
		// settings flood and ping flood, from a client that does not read
		{fzSeed(fzNoRead, 16, 255, 1, 16, 255, 0), nil},
		{fzSeed(fzNoRead, 16, 255, 0, call), fzSeed(waitStream, answer)},
		// the upstream ends a stream (trailers) while request DATA waits
		// for a window it never grants
		{fzSeed(0, headers, pause, upload, pause, pause), fzSeed(upZeroWindow, waitStream, waitStream, trailers)},
		// the upstream sends trailers twice
		{fzSeed(0, headers, pause, pause), fzSeed(waitStream, respHeaders, trailers, trailers)},
		// the upstream goes away, resets, sends garbage
		{fzSeed(0, call, call), fzSeed(waitStream, 9, 0, 0, 5, 5, 0, 0, 8, 11, 9, "garbage!!")},
		// request headers with a self-dependent priority (a stream error),
		// then a call on the same connection, its header block indexing
		// the fields the first one added to the HPACK table
		{fzSeed(0, 2, 4, 0x20, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, call), fzSeed(waitStream, answer)},
		// shutdown with a watch stream open
		{fzSeed(fzShutdown, watch, pause), fzSeed(waitStream, respHeaders)},
		// DATA through the Framer path, a message size limit, a failing dial
		{fzSeed(fzSmallRead|fzMsgLimit, call, bigCall), fzSeed(waitStream, answer)},
		{fzSeed(fzDialFails, call, call), fzSeed(waitStream, answer)},
		// a tiny budget with socketpair upstreams and a zero client window
		{fzSeed(fzTinyBudget|fzUpSocket, zeroWindow, fzRep(3, call)), fzSeed(fzRep(3, waitStream, answer))},
		// window overflow, unknown frame types, GOAWAY from the client
		{fzSeed(0, call, 9, 0, 2, 9, 0, 2, 12, 0xfa, 0, 0, 5, "hello", 10, 0, 2), nil},
		// net.Pipe client
		{fzSeed(fzClientPipe, fzRep(3, call)), fzSeed(fzRep(3, waitStream, answer))},
		// both peers break the protocol at once (DATA on stream 0), then
		// Shutdown and Close while the GOAWAYs are on their way
		{fzSeed(fzShutdown|fzClientPipe, 1, 0, 0, 55, 0, 12), fzSeed(10)},
	}
	for _, s := range seeds {
		f.Add(s.client, s.up)
	}
	f.Fuzz(func(t *testing.T, client, upstream []byte) {
		if len(client) > 4096 || len(upstream) > 4096 {
			t.Skip("long inputs only slow the search")
		}
		fuzzRouterOnce(t, client, upstream)
	})
}

// fzData appends a DATA frame on stream id of up to 17,000 bytes from in,
// padded or not; when framed says so (asked only of payloads long enough),
// it starts with a gRPC message prefix of a length from in.
func fzData(in *fzIn, out []byte, id uint32, framed func() bool) []byte {
	n := int(in.u16()) % 17000
	if in.u8()&1 == 0 {
		n %= 600
	}
	flags := http2.Flags(in.u8()) & (http2.FlagDataEndStream | http2.FlagDataPadded)
	pl := make([]byte, 0, n+1)
	if flags&http2.FlagDataPadded != 0 {
		pl = append(pl, in.u8())
	}
	pl = append(pl, make([]byte, n)...)
	if len(pl) > 5 && framed() {
		pl[0] = 0
		binary.BigEndian.PutUint32(pl[1:], uint32(in.u16()))
	}
	return fzFrame(out, http2.FrameData, flags, id, pl)
}
