package frames

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Role indexes of a stream's two sides.
const (
	cliSide = 0
	upSide  = 1
)

// maxControlFrames bounds the control frames (PING and SETTINGS acks, resets)
// the router queues for a peer that does not read them: SETTINGS and PING
// floods end the connection instead of growing its buffer.
const maxControlFrames = 10000

// conn is one HTTP/2 connection, to a client (server: true) or to an
// upstream. Its reader goroutine owns the read side; everything written to
// it and all its send-side and stream state are guarded by mu.
type conn struct {
	r      *Router
	nc     net.Conn
	rc     syscall.RawConn // nil: not a socket, writes go through the writer goroutine
	server bool
	role   int
	pool   *Pool

	br *bufio.Reader
	fr *http2.Framer

	// reader-goroutine-only state
	dirty    dirtySet // connections this reader wrote to and must flush
	credits  []credit // scratch for drain
	hdec     *hpack.Decoder
	fields   []hpack.HeaderField // scratch: the block being decoded
	hsize    uint32
	hblock   []byte // CONTINUATION accumulation
	hid      uint32
	hend     bool
	hselfDep bool // the block's HEADERS depends on its own stream
	resets   int  // client resets in the current second
	resetAt  time.Time

	writerDone chan struct{}

	mu             sync.Mutex
	closed         bool
	started        bool // the preface was read and SETTINGS queued (client side)
	goingAway      bool // GOAWAY sent (client side) or received (upstream)
	lastClientID   uint32
	out            []byte // frames waiting to be written
	spare          []byte
	writing        bool // the writer goroutine owns the socket's write side
	wake           chan struct{}
	enc            *hpack.Encoder
	encBuf         bytes.Buffer
	streams        map[uint32]*stream
	blocked        []*stream // streams with output queued toward this connection
	nextID         uint32    // next stream ID (upstream connections)
	active         int       // open streams
	sendWin        int32     // connection-level window for what we send
	peerInit       int32     // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxF       int       // peer's SETTINGS_MAX_FRAME_SIZE
	peerMaxStreams uint32    // peer's SETTINGS_MAX_CONCURRENT_STREAMS
	recvAvail      int32     // receive window granted to the peer
	recvUnacked    int32     // consumed, not yet returned
	ctrlQueued     int       // control frames queued since the output last emptied
	outLimited     bool      // DATA waits for room in the output (maxOut)
	ackArmed       bool      // a PING ack waits in out for ackTimer
	ackTimer       *time.Timer
}

// pingAckDelay bounds how long a PING ack waits for other output to ride
// with. A peer measuring round trips with its pings (gRPC's bandwidth
// estimator) sees at most this much more; keepalive timeouts are seconds.
// A variable for tests only.
var pingAckDelay = time.Millisecond

// flushAck sends a PING ack that found nothing to ride with.
func (c *conn) flushAck() {
	c.mu.Lock()
	c.ackArmed = false
	c.mu.Unlock()
	c.flush()
}

type credit struct {
	s    *stream
	n    int // stream credit owed to the source side
	conn int // connection credit owed to the source connection
}

func newConn(r *Router, nc net.Conn, server bool) *conn {
	c := &conn{
		r: r, nc: nc, server: server,
		streams:        map[uint32]*stream{},
		nextID:         1,
		sendWin:        65535,
		peerInit:       65535,
		peerMaxF:       16384,
		peerMaxStreams: 1<<32 - 1,
		recvAvail:      r.opt.ConnWindow,
		wake:           make(chan struct{}, 1),
		writerDone:     make(chan struct{}),
	}
	if !server {
		c.role = upSide
	}
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	c.br = bufio.NewReaderSize(nc, r.opt.ReadBuffer)
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(16384) // the default this router advertises
	c.hdec = hpack.NewDecoder(4096, func(hf hpack.HeaderField) {
		c.hsize += hf.Size()
		if c.hsize <= r.opt.MaxHeaderListSize {
			c.fields = append(c.fields, hf)
		}
	})
	c.hdec.SetMaxStringLength(int(r.opt.MaxHeaderListSize))
	c.enc = hpack.NewEncoder(&c.encBuf)
	go c.writer()
	return c
}

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// initialFrames queues the connection's first frames. c.mu held.
func (c *conn) initialFrames() {
	o := &c.r.opt
	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: uint32(o.StreamWindow)},
		{ID: http2.SettingMaxHeaderListSize, Val: o.MaxHeaderListSize},
	}
	if c.server {
		if o.MaxConcurrentStreams != Unlimited {
			settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: o.MaxConcurrentStreams})
		}
	} else {
		settings = append(settings, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
		c.out = append(c.out, clientPreface...)
	}
	c.out = appendSettings(c.out, settings)
	if o.ConnWindow > 65535 {
		c.out = appendWindowUpdate(c.out, 0, uint32(o.ConnWindow-65535))
	}
}

// startClient starts an upstream connection: preface, settings, reader.
func (c *conn) startClient() {
	c.mu.Lock()
	c.initialFrames()
	c.mu.Unlock()
	c.flush()
	go c.readLoop()
}

// serveClient serves a client connection until it ends.
func (c *conn) serveClient() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.r.opt.HandshakeTimeout))
	pre := make([]byte, len(clientPreface))
	if _, err := io.ReadFull(c.br, pre); err != nil || string(pre) != clientPreface {
		c.mu.Lock()
		c.out = appendGoAway(c.out, 0, http2.ErrCodeProtocol)
		c.mu.Unlock()
		c.flush()
		c.waitWritten(100 * time.Millisecond)
		c.nc.Close()
		c.stopWriter()
		return
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.initialFrames()
	c.started = true
	c.mu.Unlock()
	c.flush()
	c.readLoop()
}

// abort closes the connection without a word; its reader cleans up.
func (c *conn) abort() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.nc.Close()
}

func (c *conn) stopWriter() {
	select {
	case <-c.writerDone:
	default:
		close(c.writerDone)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// readLoop reads and handles frames until the connection fails. It flushes
// what it wrote whenever no complete frame is waiting in its read buffer, so
// frames read in one syscall leave in one syscall per connection.
func (c *conn) readLoop() {
	var err error
	for {
		var ok bool
		if ok, err = c.fastData(); err != nil {
			break
		}
		if !ok {
			typ := c.peekType()
			var f http2.Frame
			f, err = c.fr.ReadFrame()
			if err != nil {
				var se http2.StreamError
				if !errors.As(err, &se) {
					break
				}
				if typ == http2.FrameHeaders || typ == http2.FrameContinuation {
					// A header block the Framer refused was not decoded:
					// HPACK state would fall out of step (RFC 9113 6.2).
					err = http2.ConnectionError(http2.ErrCodeProtocol)
					break
				}
				if err = c.streamError(se.StreamID, se.Code); err != nil {
					break
				}
			} else if err = c.handle(f); err != nil {
				break
			}
		}
		if !c.frameBuffered() {
			c.dirty.flush()
		}
	}
	c.dirty.flush()
	c.shutdown(err)
}

// peekType returns the type of the next frame if its header is buffered.
func (c *conn) peekType() http2.FrameType {
	if h, err := c.br.Peek(9); err == nil {
		return http2.FrameType(h[3])
	}
	return 0xff
}

// fastData handles a DATA frame straight from the read buffer (no copy, no
// frame object) when it is whole in the buffer; anything unusual is left to
// the Framer, which reports the errors.
func (c *conn) fastData() (bool, error) {
	h, err := c.br.Peek(9)
	if err != nil {
		return false, nil // the Framer reports it
	}
	if http2.FrameType(h[3]) != http2.FrameData || c.hid != 0 {
		return false, nil
	}
	l := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	id := binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
	flags := http2.Flags(h[4])
	if l > 16384 || id == 0 || 9+l > c.br.Size() || flags.Has(http2.FlagDataPadded) {
		return false, nil
	}
	b, err := c.br.Peek(9 + l)
	if err != nil {
		return false, nil
	}
	err = c.onData(id, uint32(l), b[9:], flags.Has(http2.FlagDataEndStream))
	_, _ = c.br.Discard(9 + l)
	return true, err
}

// frameBuffered reports whether a complete frame is already in the read
// buffer (then flushing can wait for it to be handled).
func (c *conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < 9 {
		return false
	}
	h, _ := c.br.Peek(9)
	l := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	return n >= 9+l
}

// dirtySet is the connections a goroutine wrote to and must flush.
type dirtySet []*conn

func (d *dirtySet) add(x *conn) {
	for _, y := range *d {
		if y == x {
			return
		}
	}
	*d = append(*d, x)
}

func (d *dirtySet) flush() {
	for i, x := range *d {
		x.flush()
		(*d)[i] = nil
	}
	*d = (*d)[:0]
}

// flush writes c.out: first a non-blocking write from the calling goroutine
// (no hand-off in the common case); whatever the socket does not take goes
// to the writer goroutine.
func (c *conn) flush() {
	c.mu.Lock()
	if c.writing || len(c.out) == 0 || c.closed {
		c.mu.Unlock()
		return
	}
	if c.ackArmed {
		// The PING ack leaves with this write: its timer would only wake
		// a thread (and start a goroutine) to find nothing to send.
		c.ackArmed = false
		c.ackTimer.Stop()
	}
	if c.rc != nil {
		n := 0
		var werr error
		_ = c.rc.Write(func(fd uintptr) bool {
			for n < len(c.out) {
				m, err := syscall.Write(int(fd), c.out[n:])
				if m > 0 {
					n += m
				}
				if err == syscall.EINTR {
					continue
				}
				if err != nil || m <= 0 {
					if err != syscall.EAGAIN {
						werr = err
					}
					break
				}
			}
			return true
		})
		if werr != nil {
			c.closed = true // the peer is gone: no new streams, no wait for output
			c.mu.Unlock()
			c.nc.Close() // the reader sees the error and shuts down
			return
		}
		if n == len(c.out) {
			c.out = c.out[:0]
			c.ctrlQueued = 0
			if !c.outLimited {
				c.mu.Unlock()
				return
			}
			// DATA waits for the room just made: the writer drains it.
		} else {
			c.out = c.out[:copy(c.out, c.out[n:])]
		}
	}
	c.writing = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writer does the blocking writes flush could not do. Once the socket took
// a batch, DATA that waited for room in the output (maxOut) follows.
func (c *conn) writer() {
	var credits []credit
	var d dirtySet
	for {
		select {
		case <-c.wake:
		case <-c.writerDone:
			return
		}
		for {
			c.mu.Lock()
			if c.outLimited && !c.closed {
				c.outLimited = false
				c.drainLocked(&credits, &d)
			}
			if len(c.out) == 0 || c.closed {
				c.writing = false
				c.ctrlQueued = 0
				c.mu.Unlock()
				break
			}
			buf := c.out
			c.out = c.spare[:0]
			c.mu.Unlock()
			c.payCredits(&credits, &d)
			d.flush() // c itself is left to this loop: it is writing
			_, err := c.nc.Write(buf)
			c.spare = buf[:0]
			if err != nil {
				c.nc.Close()
				c.mu.Lock()
				c.closed = true
				c.writing = false
				c.mu.Unlock()
				break
			}
		}
		c.payCredits(&credits, &d)
		d.flush()
	}
}

// control queues a control frame's bytes; it reports a flood when the peer
// leaves too many unread. c.mu held.
func (c *conn) control() error {
	c.ctrlQueued++
	if c.ctrlQueued > maxControlFrames && c.writing {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// handle dispatches one frame.
func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f.StreamID, f.Length, f.Data(), f.StreamEnded())
	case *http2.HeadersFrame:
		// A stream depending on itself is a stream error, but its header
		// block is decoded all the same: HPACK state stays in step.
		selfDep := f.HasPriority() && f.Priority.StreamDep == f.StreamID
		if f.HeadersEnded() {
			return c.decodeHeaders(f.StreamID, f.StreamEnded(), selfDep, f.HeaderBlockFragment())
		}
		c.hid, c.hend, c.hselfDep = f.StreamID, f.StreamEnded(), selfDep
		c.hblock = append(c.hblock[:0], f.HeaderBlockFragment()...)
	case *http2.ContinuationFrame:
		// The Framer checks that CONTINUATION follows its HEADERS.
		c.hblock = append(c.hblock, f.HeaderBlockFragment()...)
		if len(c.hblock) > int(c.r.opt.MaxHeaderListSize) {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm) // CONTINUATION flood
		}
		if f.HeadersEnded() {
			id := c.hid
			c.hid = 0
			err := c.decodeHeaders(id, c.hend, c.hselfDep, c.hblock)
			if cap(c.hblock) > 64<<10 {
				c.hblock = nil
			}
			return err
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return c.streamError(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f.StreamID, f.ErrCode)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		// The ack rides with the connection's next write, or leaves after
		// pingAckDelay: gRPC pings on every burst of DATA (its bandwidth
		// estimator), both sides of crishim, and a write of its own per
		// ping was a third of the writes of a small call.
		c.mu.Lock()
		c.out = appendFrameHeader(c.out, 8, http2.FramePing, http2.FlagPingAck, 0)
		c.out = append(c.out, f.Data[:]...)
		err := c.control()
		if !c.ackArmed {
			c.ackArmed = true
			if c.ackTimer == nil {
				c.ackTimer = time.AfterFunc(pingAckDelay, c.flushAck)
			} else {
				c.ackTimer.Reset(pingAckDelay)
			}
		}
		c.mu.Unlock()
		return err
	case *http2.GoAwayFrame:
		if !c.server {
			c.onGoAway(f.LastStreamID)
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			delta := int32(st.Val) - c.peerInit
			c.peerInit = int32(st.Val)
			for _, s := range c.streams {
				a := &s.sides[c.role]
				if int64(a.sendWin)+int64(delta) > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				a.sendWin += delta
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxF = int(st.Val)
		case http2.SettingHeaderTableSize:
			c.enc.SetMaxDynamicTableSizeLimit(st.Val)
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = st.Val
		}
		return nil
	})
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.out = appendFrameHeader(c.out, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
	err = c.control()
	c.drainLocked(&c.credits, &c.dirty)
	c.mu.Unlock()
	c.dirty.add(c)
	c.payCredits(&c.credits, &c.dirty)
	return err
}

// onGoAway stops new streams on an upstream connection; streams above the
// last one it processed are refused toward their clients, which retry them
// (gRPC retries a refused stream transparently).
func (c *conn) onGoAway(last uint32) {
	c.mu.Lock()
	c.goingAway = true
	var refused []*stream
	for id, s := range c.streams {
		if id > last {
			refused = append(refused, s)
		}
	}
	c.mu.Unlock()
	for _, s := range refused {
		resetSide(&c.dirty, s, &s.sides[upSide], http2.ErrCodeCancel)
		resetSide(&c.dirty, s, &s.sides[cliSide], http2.ErrCodeRefusedStream)
	}
}

// drainMessage ends watch streams when crishim shuts down; like a runtime
// restart, it tells the client to reconnect.
const drainMessage = "crishim is shutting down: reconnect to the restarted proxy"

// drain sends a client GOAWAY and ends its watch streams; the connection
// closes once its last stream ends.
func (c *conn) drain() {
	c.mu.Lock()
	if c.closed || c.goingAway {
		c.mu.Unlock()
		return
	}
	if !c.started {
		// Still in the preface: no GOAWAY before our SETTINGS.
		c.mu.Unlock()
		c.nc.Close()
		return
	}
	c.goingAway = true
	c.out = appendGoAway(c.out, c.lastClientID, http2.ErrCodeNo)
	var watches []*stream
	for _, s := range c.streams {
		// One not opened yet is ended by newStream, which sees goingAway.
		if s.watch && s.opened.Load() {
			watches = append(watches, s)
		}
	}
	c.mu.Unlock()
	d := dirtySet{c}
	for _, s := range watches {
		endCall(&d, s, codeUnavailable, drainMessage)
	}
	d.flush()
	c.closeIfIdle()
}

// closeIfIdle closes a draining client connection without streams.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	idle := c.goingAway && c.active == 0 && !c.closed
	c.mu.Unlock()
	if idle {
		c.closeGracefully()
	}
}

// closeGracefully closes the connection once its output is written.
func (c *conn) closeGracefully() {
	go func() {
		c.waitWritten(time.Second)
		c.nc.Close()
	}()
}

// shutdown closes c and ends the other side of every stream it carried.
func (c *conn) shutdown(err error) {
	var ce http2.ConnectionError
	c.mu.Lock()
	if errors.As(err, &ce) && !c.closed {
		c.out = appendGoAway(c.out, c.lastClientID, http2.ErrCode(ce))
		c.mu.Unlock()
		if f := c.r.opt.OnClientError; f != nil && c.server {
			f(http2.ErrCode(ce))
		}
		c.flush()
		c.waitWritten(time.Second)
		c.mu.Lock()
	}
	c.closed = true
	streams := c.streams
	c.streams = map[uint32]*stream{}
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.mu.Unlock()
	c.nc.Close()
	for _, s := range streams {
		a := &s.sides[c.role]
		c.mu.Lock()
		dropped := c.dropSide(s, a)
		c.mu.Unlock()
		payDropped(&c.dirty, s, a, dropped)
		if c.server {
			resetSide(&c.dirty, s, &s.sides[upSide], http2.ErrCodeCancel)
		} else {
			// The runtime went away mid-call: the client learns which.
			endCall(&c.dirty, s, codeUnavailable, "crishim upstream "+c.pool.name+": connection closed")
		}
	}
	c.dirty.flush()
	if c.pool != nil {
		c.pool.remove(c)
	}
	c.stopWriter()
}

// waitWritten waits a little for queued output to leave (a GOAWAY before
// the connection closes).
func (c *conn) waitWritten(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		pending := (len(c.out) > 0 || c.writing) && !c.closed
		c.mu.Unlock()
		if !pending {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Frame encoding: one copy of a payload into the output buffer, no Framer
// write buffer in between.

func appendFrameHeader(b []byte, length int, t http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendWindowUpdate(b []byte, id, inc uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return binary.BigEndian.AppendUint32(b, inc&0x7fffffff)
}

func appendRST(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, http2.FrameGoAway, 0, 0)
	b = binary.BigEndian.AppendUint32(b, last&0x7fffffff)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendSettings(b []byte, s []http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(s), http2.FrameSettings, 0, 0)
	for _, st := range s {
		b = binary.BigEndian.AppendUint16(b, uint16(st.ID))
		b = binary.BigEndian.AppendUint32(b, st.Val)
	}
	return b
}
