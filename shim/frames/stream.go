package frames

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// side is a stream's presence on one connection. Its fields are guarded by
// that connection's mu.
type side struct {
	c           *conn
	id          uint32
	sendWin     int32   // window for what we send on this side
	q           []qitem // output queued toward this side (flow control, ordering)
	blocked     bool
	owedConn    int   // queued bytes whose connection credit is still owed to the source
	recvAvail   int32 // receive window granted to the peer for this stream
	recvUnacked int32
	recvEnded   bool // the peer sent END_STREAM
	sendEnded   bool // we sent (or queued) END_STREAM
	hdrSent     bool // headers sent or queued toward this side
	gone        bool // removed from the connection (ended or reset)

	// Request checks on the client side: declared content-length (-1 when
	// none) and DATA so far. gRPC message framing, for the size limit.
	contentLen int64
	dataLen    int64
	msgHdr     [5]byte
	msgHdrN    int
	msgLeft    int64
}

type qitem struct {
	data *dataQ
	hdr  []hpack.HeaderField
	isH  bool
	end  bool
}

// stream is one call, between a client stream and an upstream stream.
type stream struct {
	sides  [2]side
	method string
	start  time.Time
	watch  bool
	grpc   bool        // the request's content-type is gRPC's
	upDone atomic.Bool // the upstream side is gone
	opened atomic.Bool // the upstream side is set up (drain may end the call)
	// wantMsg: an observer wants the first message read from each side.
	wantMsg [2]atomic.Bool

	// guarded by the client connection's mu
	status    string // grpc-status of the trailers
	msg       string // grpc-message of the trailers, percent-encoded
	statusSet bool
	done      bool
	calls     [maxObservers]Call
}

// Codes the router reports itself.
const (
	codeUnavailable       = "14"
	codeResourceExhausted = "8"
)

// decodeHeaders decodes a complete header block into the reusable scratch.
func (c *conn) decodeHeaders(id uint32, end, selfDep bool, block []byte) error {
	c.fields, c.hsize = c.fields[:0], 0
	if _, err := c.hdec.Write(block); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if err := c.hdec.Close(); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	var err error
	if selfDep || c.hsize > c.r.opt.MaxHeaderListSize {
		// The block was decoded all the same: HPACK state stays in step.
		// The stream counts as opened, so the peer's frames on it that
		// may follow are frames on a closed stream, not on an idle one.
		if c.server && id%2 == 1 {
			c.mu.Lock()
			c.lastClientID = max(c.lastClientID, id)
			c.mu.Unlock()
		}
		err = c.streamError(id, http2.ErrCodeProtocol)
	} else {
		err = c.onHeaders(id, end, c.fields)
	}
	clear(c.fields) // drop string references
	return err
}

func (c *conn) onHeaders(id uint32, end bool, fields []hpack.HeaderField) error {
	c.mu.Lock()
	s := c.streams[id]
	last := c.lastClientID
	c.mu.Unlock()
	if !c.server {
		if s == nil {
			return nil // a stream the router reset
		}
		return c.onResponseHeaders(s, end, fields)
	}
	if s == nil {
		if id%2 == 0 || id <= last {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return c.newStream(id, end, fields)
	}
	a := &s.sides[cliSide]
	c.mu.Lock()
	ended := a.recvEnded
	c.mu.Unlock()
	if ended {
		return c.streamError(id, http2.ErrCodeStreamClosed)
	}
	// Request trailers: they end the stream and carry no pseudo-headers.
	if !end || validTrailers(fields) != nil {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	bad := a.contentLen >= 0 && a.contentLen != a.dataLen
	a.recvEnded = true
	c.maybeRemove(s, a)
	c.mu.Unlock()
	if bad {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	b := &s.sides[upSide]
	sendHeaders(&c.dirty, s, b, fields, true)
	return nil
}

// onResponseHeaders forwards an upstream's response headers or trailers.
func (c *conn) onResponseHeaders(s *stream, end bool, fields []hpack.HeaderField) error {
	a := &s.sides[upSide]
	if end {
		c.upstreamEnded(s, a)
	}
	b := &s.sides[cliSide]
	if end {
		st, msg := "", ""
		for _, hf := range fields {
			switch hf.Name {
			case "grpc-status":
				st = hf.Value
			case "grpc-message":
				msg = hf.Value
			}
		}
		b.c.mu.Lock()
		if !s.statusSet {
			s.status, s.msg, s.statusSet = st, msg, true
		}
		b.c.mu.Unlock()
	}
	sendHeaders(&c.dirty, s, b, fields, end)
	return nil
}

// newStream opens a client's new stream and its upstream side.
func (c *conn) newStream(id uint32, end bool, fields []hpack.HeaderField) error {
	req, verr := validRequest(fields)
	if verr == nil && end && req.contentLen > 0 {
		verr = errPseudo // a body was declared, none came
	}
	c.mu.Lock()
	c.lastClientID = id
	if verr == nil && (c.goingAway || uint32(c.active) >= c.r.opt.MaxConcurrentStreams) {
		c.out = appendRST(c.out, id, http2.ErrCodeRefusedStream)
		err := c.control()
		c.mu.Unlock()
		c.dirty.add(c)
		return err
	}
	c.mu.Unlock()
	if verr != nil {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	path := req.path
	rt := c.r.route(path)
	s := &stream{method: path, start: time.Now(), watch: rt.Watch,
		grpc: strings.HasPrefix(req.contentType, "application/grpc")}
	if !rt.Unobserved {
		for i, o := range c.r.opt.Observers {
			s.calls[i] = o.Begin(path)
			if _, ok := s.calls[i].(MessageCall); ok {
				s.wantMsg[cliSide].Store(true)
				s.wantMsg[upSide].Store(true)
			}
		}
	}
	a := &s.sides[cliSide]
	a.c, a.id, a.contentLen = c, id, req.contentLen
	c.mu.Lock()
	a.sendWin = c.peerInit
	a.recvAvail = c.r.opt.StreamWindow
	a.recvEnded = end
	c.streams[id] = s
	c.active++
	c.mu.Unlock()
	pool := c.r.pools[rt.Pool]
	var err error
	// A connection that went away between pick and openStream (the
	// upstream's GOAWAY) is not a reason to fail the call: another is.
	for try := 0; try < 3; try++ {
		var u *conn
		if u, err = pool.pick(); err != nil {
			break
		}
		if u.openStream(&c.dirty, s, fields, end) {
			s.opened.Store(true)
			c.mu.Lock()
			gone, draining := a.gone, c.goingAway
			c.mu.Unlock()
			switch {
			case gone: // the client side ended meanwhile (reset, connection closed)
				resetSide(&c.dirty, s, &s.sides[upSide], http2.ErrCodeCancel)
			case draining && s.watch: // drain began before the stream was open
				endCall(&c.dirty, s, codeUnavailable, drainMessage)
			}
			return nil
		}
		err = fmt.Errorf("crishim upstream %s: connection closed", pool.name)
	}
	endCall(&c.dirty, s, codeUnavailable, err.Error())
	return nil
}

// openStream opens s's upstream side on u and sends the request headers.
func (u *conn) openStream(d *dirtySet, s *stream, fields []hpack.HeaderField, end bool) bool {
	b := &s.sides[upSide]
	u.mu.Lock()
	if u.closed || u.goingAway {
		u.mu.Unlock()
		return false
	}
	b.c, b.id = u, u.nextID
	u.nextID += 2
	b.sendWin = u.peerInit
	b.recvAvail = u.r.opt.StreamWindow
	b.contentLen = -1
	u.streams[b.id] = s
	u.active++
	u.writeHeaders(b.id, fields, end)
	b.sendEnded = end
	b.hdrSent = true
	u.mu.Unlock()
	d.add(u)
	return true
}

// maybeRemove drops side a of s from c once both directions ended. c.mu
// held.
func (c *conn) maybeRemove(s *stream, a *side) {
	if a.gone || !a.recvEnded || !a.sendEnded || len(a.q) > 0 {
		return
	}
	c.removeSide(s, a)
}

// removeSide takes side a off c. c.mu held.
func (c *conn) removeSide(s *stream, a *side) {
	a.gone = true
	delete(c.streams, a.id)
	c.active--
	if !c.server {
		s.upDone.Store(true)
		return
	}
	c.finish(s)
	if c.goingAway && c.active == 0 {
		c.closeGracefully()
	}
}

// finish tells the observers how the call ended, once; the client
// connection's mu held.
func (c *conn) finish(s *stream) {
	if s.done {
		return
	}
	s.done = true
	code, msg := codes.Canceled, ""
	if s.statusSet {
		code, msg = parseStatus(s.status, s.msg)
	}
	for i, call := range s.calls {
		if call != nil {
			call.End(s.start, code, msg)
			s.calls[i] = nil
		}
	}
}

// parseStatus reads a trailer's grpc-status and grpc-message; a missing or
// unreadable status is Unknown, as gRPC clients see it.
func parseStatus(st, msg string) (codes.Code, string) {
	n, err := strconv.ParseUint(st, 10, 32)
	if err != nil {
		return codes.Unknown, msg
	}
	if n == 0 {
		return codes.OK, ""
	}
	return codes.Code(n), decodeGRPCMessage(msg)
}

// lockSide locks and returns side b's connection, or returns nil (nothing
// locked) when b has none yet, is gone, or its connection closed: nothing
// can be sent on it then.
func lockSide(b *side) *conn {
	x := b.c
	if x == nil {
		return nil
	}
	x.mu.Lock()
	if b.gone || x.closed {
		x.mu.Unlock()
		return nil
	}
	return x
}

// sendHeaders forwards a header block to side b, behind queued data.
func sendHeaders(d *dirtySet, s *stream, b *side, fields []hpack.HeaderField, end bool) {
	x := lockSide(b)
	if x == nil {
		return
	}
	b.hdrSent = true
	if end {
		b.sendEnded = true
	}
	if len(b.q) > 0 {
		b.q = append(b.q, qitem{hdr: slices.Clone(fields), isH: true, end: end})
		x.mu.Unlock()
		return
	}
	x.writeHeaders(b.id, fields, end)
	if end {
		x.sentEnd(s, b)
	}
	x.mu.Unlock()
	d.add(x)
}

// sentEnd follows END_STREAM written toward side b: the side goes when both
// directions ended, or at once when the upstream already went (a gRPC
// server resets what the client did not end).
func (c *conn) sentEnd(s *stream, b *side) {
	if c.server && !b.recvEnded && s.upDone.Load() {
		c.out = appendRST(c.out, b.id, http2.ErrCodeNo)
		c.removeSide(s, b)
		return
	}
	c.maybeRemove(s, b)
}

// writeHeaders HPACK-encodes fields with c's encoder and appends HEADERS
// (and CONTINUATION) frames. c.mu held: encoder state follows write order.
func (c *conn) writeHeaders(id uint32, fields []hpack.HeaderField, end bool) {
	if len(c.out) > maxOut+maxOut/4 {
		// Header blocks are not flow controlled: a peer that reads none of
		// them is cut off instead of growing its output without bound
		// (DATA stops at maxOut; the rest leaves room for the headers and
		// trailers of a peer that reads, if slowly).
		c.nc.Close()
	}
	c.encBuf.Reset()
	for _, hf := range fields {
		_ = c.enc.WriteField(hf)
	}
	block := c.encBuf.Bytes()
	first := true
	for first || len(block) > 0 {
		k := min(len(block), c.peerMaxF)
		chunk := block[:k]
		block = block[k:]
		var flags http2.Flags
		typ := http2.FrameContinuation
		if first {
			typ = http2.FrameHeaders
			if end {
				flags |= http2.FlagHeadersEndStream
			}
		}
		if len(block) == 0 {
			flags |= http2.FlagHeadersEndHeaders
		}
		c.out = appendFrameHeader(c.out, len(chunk), typ, flags, id)
		c.out = append(c.out, chunk...)
		first = false
	}
}

// streamLocked returns the stream of id, or nil; idle reports an id no
// client stream has used yet, where any frame is a connection error (RFC
// 9113 5.1); other unknown ids are streams that already ended. c.mu held.
func (c *conn) streamLocked(id uint32) (s *stream, idle bool) {
	s = c.streams[id]
	return s, s == nil && c.server && id > c.lastClientID
}

// onData handles a DATA frame of length bytes (padding included) whose
// payload is data; data is only valid during the call.
func (c *conn) onData(id, length uint32, data []byte, end bool) error {
	n := int32(length)
	c.mu.Lock()
	c.recvAvail -= n
	if c.recvAvail < 0 {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s, idle := c.streamLocked(id)
	if s == nil {
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.credit(&c.dirty, nil, 0, int(n))
		if c.server {
			return c.streamError(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	a := &s.sides[c.role]
	a.recvAvail -= n
	var code http2.ErrCode
	switch {
	case a.recvEnded:
		code = http2.ErrCodeStreamClosed
	case a.recvAvail < 0:
		code = http2.ErrCodeFlowControl
	case c.server:
		a.dataLen += int64(len(data))
		if a.contentLen >= 0 && (a.dataLen > a.contentLen || end && a.dataLen != a.contentLen) {
			code = http2.ErrCodeProtocol
		}
	}
	var tooBig int64
	if code == 0 && s.grpc && c.r.opt.MaxMessageSize > 0 {
		tooBig = a.checkMessages(data, int64(c.r.opt.MaxMessageSize))
	}
	if code == 0 && end {
		a.recvEnded = true
	}
	c.mu.Unlock()
	if code != 0 {
		c.credit(&c.dirty, nil, 0, int(n))
		return c.streamError(id, code)
	}
	if tooBig > 0 {
		c.credit(&c.dirty, nil, 0, int(n))
		endCall(&c.dirty, s, codeResourceExhausted,
			fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", tooBig, c.r.opt.MaxMessageSize))
		return nil
	}
	if s.wantMsg[c.role].Load() {
		firstMessage(s, c.role, data)
	}
	b := &s.sides[1-c.role]
	fw, queued, early := sendData(&c.dirty, s, b, data, end)
	pad := int(n) - len(data)
	conn := fw + pad
	if early {
		conn += queued
	}
	c.credit(&c.dirty, a, fw+pad, conn)
	if end {
		if c.server {
			c.mu.Lock()
			c.maybeRemove(s, a)
			c.mu.Unlock()
		} else {
			c.upstreamEnded(s, a)
		}
	}
	return nil
}

// upstreamEnded follows the end of an upstream's response. A request the
// upstream did not read to its end is moot once it answered: what is still
// queued toward it is dropped and its stream reset, as a gRPC server resets
// what it answered early, so that neither the stream nor its buffer waits
// for window the upstream will never give.
func (c *conn) upstreamEnded(s *stream, a *side) {
	c.mu.Lock()
	a.recvEnded = true
	if a.gone || a.sendEnded && len(a.q) == 0 {
		c.maybeRemove(s, a)
		c.mu.Unlock()
		return
	}
	c.out = appendRST(c.out, a.id, http2.ErrCodeCancel)
	owed := c.dropSide(s, a)
	c.mu.Unlock()
	c.dirty.add(c)
	payDropped(&c.dirty, s, a, owed)
}

// firstMessage hands the observers that want it the first message read from
// side role, when data (the side's first DATA) holds it whole and
// uncompressed.
func firstMessage(s *stream, role int, data []byte) {
	x := s.sides[cliSide].c
	x.mu.Lock()
	defer x.mu.Unlock()
	if !s.wantMsg[role].Swap(false) || len(data) < 5 || data[0] != 0 {
		return
	}
	n := binary.BigEndian.Uint32(data[1:5])
	if uint64(n) > uint64(len(data)-5) {
		return
	}
	for _, call := range s.calls {
		if mc, ok := call.(MessageCall); ok {
			mc.Message(role == cliSide, data[5:5+n])
		}
	}
}

// checkMessages follows the gRPC message framing of the DATA read from a
// side and returns the size of a message above max (0 when none). The
// owning connection's mu held.
func (a *side) checkMessages(p []byte, max int64) int64 {
	for len(p) > 0 {
		if a.msgLeft > 0 {
			k := min(int64(len(p)), a.msgLeft)
			p = p[k:]
			a.msgLeft -= k
			continue
		}
		k := copy(a.msgHdr[a.msgHdrN:], p)
		a.msgHdrN += k
		p = p[k:]
		if a.msgHdrN == len(a.msgHdr) {
			a.msgHdrN = 0
			size := int64(binary.BigEndian.Uint32(a.msgHdr[1:]))
			if size > max {
				return size
			}
			a.msgLeft = size
		}
	}
	return 0
}

// sendData forwards data toward side b as far as the windows allow and
// queues the rest (copied). It returns the bytes forwarded now, the bytes
// queued, and whether the queued bytes' connection credit may be returned
// now (the router is within its buffer budget).
func sendData(d *dirtySet, s *stream, b *side, data []byte, end bool) (fw, queued int, early bool) {
	x := lockSide(b) // none: never opened (the call is ending), or gone
	if x == nil {
		return len(data), 0, false
	}
	if end {
		b.sendEnded = true
	}
	if len(b.q) == 0 {
		fw = x.writeData(b, data, nil, end)
		if fw == len(data) {
			if end {
				x.sentEnd(s, b)
			}
			x.mu.Unlock()
			d.add(x)
			return fw, 0, false
		}
	}
	// Queued DATA is coalesced in pooled chunks and later written in frames
	// as large as the peer allows: fewer, bigger frames for a slow reader
	// (gRPC message boundaries do not depend on DATA frames).
	rest := data[fw:]
	if n := len(b.q); n > 0 && !b.q[n-1].isH && !b.q[n-1].end {
		b.q[n-1].data.push(rest)
		b.q[n-1].end = end
	} else {
		dq := new(dataQ)
		dq.push(rest)
		b.q = append(b.q, qitem{data: dq, end: end})
	}
	queued = len(rest)
	early = x.r.buffered.Add(int64(queued)) <= x.r.opt.MaxBuffered
	if !early {
		b.owedConn += queued
	}
	if !b.blocked {
		b.blocked = true
		x.blocked = append(x.blocked, s)
	}
	x.mu.Unlock()
	if fw > 0 {
		d.add(x)
	}
	return fw, queued, early
}

// maxOut bounds the bytes written to a connection's output and not yet taken
// by its socket, beyond which DATA waits in the streams' queues (bounded by
// their windows) as if the peer's window were closed: a peer that grants
// large windows and then stops reading cannot make the router hold more.
const maxOut = 4 << 20

// outRoom is the DATA the output may take now. c.mu held.
func (c *conn) outRoom() int32 { return int32(max(maxOut-len(c.out), 0)) }

// writeData appends DATA frames for as much of data (or, when q is set, of
// q's queued bytes) as the connection and stream windows and the output
// bound allow, and returns the bytes written. c.mu held.
func (c *conn) writeData(b *side, data []byte, q *dataQ, end bool) int {
	n := len(data)
	if q != nil {
		n = q.n
	}
	fw := 0
	for {
		rem := n - fw
		room := c.outRoom()
		k := min(int32(rem), c.sendWin, b.sendWin, int32(c.peerMaxF), room)
		if k <= 0 && rem > 0 {
			c.outLimited = c.outLimited || room <= 0
			return fw
		}
		k = max(k, 0)
		last := int(k) == rem
		var flags http2.Flags
		if last && end {
			flags = http2.FlagDataEndStream
		}
		c.out = appendFrameHeader(c.out, int(k), http2.FrameData, flags, b.id)
		if q != nil {
			c.out = q.appendTo(c.out, int(k))
		} else {
			c.out = append(c.out, data[fw:fw+int(k)]...)
		}
		c.sendWin -= k
		b.sendWin -= k
		fw += int(k)
		if last {
			return fw
		}
	}
}

// credit returns forwarded bytes of window to c's peer: stream bytes for
// side a (when given) and conn bytes for the connection, in WINDOW_UPDATEs
// batched to a quarter of the window.
func (c *conn) credit(d *dirtySet, a *side, stream, conn int) {
	if stream <= 0 && conn <= 0 {
		return
	}
	o := &c.r.opt
	wrote := false
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if conn > 0 {
		c.recvUnacked += int32(conn)
		if c.recvUnacked >= o.ConnWindow/4 {
			c.out = appendWindowUpdate(c.out, 0, uint32(c.recvUnacked))
			c.recvAvail += c.recvUnacked
			c.recvUnacked = 0
			wrote = true
		}
	}
	if a != nil && stream > 0 && !a.gone && !a.recvEnded {
		a.recvUnacked += int32(stream)
		if a.recvUnacked >= o.StreamWindow/4 {
			c.out = appendWindowUpdate(c.out, a.id, uint32(a.recvUnacked))
			a.recvAvail += a.recvUnacked
			a.recvUnacked = 0
			wrote = true
		}
	}
	c.mu.Unlock()
	if wrote {
		d.add(c)
	}
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	if f.StreamID == 0 {
		if int64(c.sendWin)+int64(f.Increment) > 1<<31-1 {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendWin += int32(f.Increment)
	} else if s, idle := c.streamLocked(f.StreamID); s != nil {
		a := &s.sides[c.role]
		if int64(a.sendWin)+int64(f.Increment) > 1<<31-1 {
			c.mu.Unlock()
			return c.streamError(f.StreamID, http2.ErrCodeFlowControl)
		}
		a.sendWin += int32(f.Increment)
	} else if idle {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.drainLocked(&c.credits, &c.dirty)
	c.mu.Unlock()
	c.payCredits(&c.credits, &c.dirty)
	return nil
}

// drainLocked writes queued output toward c as the windows and the output
// bound now allow and collects the credits owed to the connections the data
// came from into credits. c.mu held; the caller pays the credits after
// unlocking.
func (c *conn) drainLocked(credits *[]credit, d *dirtySet) {
	if len(c.blocked) == 0 {
		return
	}
	wrote := false
	keep := c.blocked[:0]
	for _, s := range c.blocked {
		b := &s.sides[c.role]
		if b.gone {
			b.blocked = false
			continue
		}
		fw := 0
		for len(b.q) > 0 {
			it := &b.q[0]
			if it.isH {
				c.writeHeaders(b.id, it.hdr, it.end)
				wrote = true
			} else {
				k := c.writeData(b, nil, it.data, it.end)
				fw += k
				if it.data.n > 0 {
					break
				}
				wrote = true
			}
			b.q[0] = qitem{}
			b.q = b.q[1:]
		}
		if fw > 0 {
			wrote = true
			c.r.buffered.Add(-int64(fw))
			owed := min(fw, b.owedConn)
			b.owedConn -= owed
			*credits = append(*credits, credit{s: s, n: fw, conn: owed})
		}
		if len(b.q) == 0 {
			b.q = nil
			b.blocked = false
			if b.sendEnded {
				c.sentEnd(s, b)
			}
		} else {
			keep = append(keep, s)
		}
	}
	for i := len(keep); i < len(c.blocked); i++ {
		c.blocked[i] = nil
	}
	c.blocked = keep
	if wrote {
		d.add(c)
	}
}

// payCredits returns the window of drained bytes to the connections they
// came from.
func (c *conn) payCredits(credits *[]credit, d *dirtySet) {
	for i, cr := range *credits {
		a := &cr.s.sides[1-c.role]
		if a.c != nil {
			a.c.credit(d, a, cr.n, cr.conn)
		}
		(*credits)[i] = credit{}
	}
	*credits = (*credits)[:0]
}

// onReset handles a peer's RST_STREAM.
func (c *conn) onReset(id uint32, code http2.ErrCode) error {
	c.mu.Lock()
	s, idle := c.streamLocked(id)
	if s == nil {
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	a := &s.sides[c.role]
	owed := c.dropSide(s, a)
	c.mu.Unlock()
	payDropped(&c.dirty, s, a, owed)
	if c.server {
		if err := c.countReset(); err != nil {
			resetSide(&c.dirty, s, &s.sides[upSide], http2.ErrCodeCancel)
			return err // rapid reset
		}
		resetSide(&c.dirty, s, &s.sides[upSide], code)
		return nil
	}
	b := &s.sides[cliSide]
	if code == http2.ErrCodeNo {
		// A gRPC server resets a stream it answered in full when the
		// client had not ended it: what it sent still reaches the client.
		x := b.c
		x.mu.Lock()
		if !b.gone && b.sendEnded && len(b.q) == 0 && !b.recvEnded {
			x.out = appendRST(x.out, b.id, http2.ErrCodeNo)
			x.removeSide(s, b)
		}
		done := b.gone || b.sendEnded
		x.mu.Unlock()
		c.dirty.add(x)
		if done {
			return nil
		}
	}
	resetSide(&c.dirty, s, b, code)
	return nil
}

// streamError ends stream id of c with a local error: RST_STREAM to c's
// peer, and the other side reset. A client whose streams the router resets
// too often, or that leaves the resets unread, gets a connection error:
// provoking resets is as cheap as sending them (rapid reset).
func (c *conn) streamError(id uint32, code http2.ErrCode) error {
	c.mu.Lock()
	c.out = appendRST(c.out, id, code)
	err := c.control()
	s := c.streams[id]
	var owed int
	if s != nil {
		owed = c.dropSide(s, &s.sides[c.role])
	}
	c.mu.Unlock()
	c.dirty.add(c)
	if s == nil {
		return err
	}
	payDropped(&c.dirty, s, &s.sides[c.role], owed)
	other := &s.sides[1-c.role]
	if c.server {
		resetSide(&c.dirty, s, other, http2.ErrCodeCancel)
		if rerr := c.countReset(); rerr != nil {
			return rerr
		}
	} else {
		resetSide(&c.dirty, s, other, code)
	}
	return err
}

// countReset counts a client stream reset, by the client or provoked; too
// many in a second is a rapid reset attack.
func (c *conn) countReset() error {
	now := time.Now()
	if now.Sub(c.resetAt) > time.Second {
		c.resets, c.resetAt = 0, now
	}
	c.resets++
	if c.resets > c.r.opt.MaxResetsPerSecond {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// dropSide removes side a from c without sending anything, discarding its
// queue; it returns the connection credit owed to the other side's
// connection for the discarded bytes. c.mu held.
func (c *conn) dropSide(s *stream, a *side) int {
	if a.gone {
		return 0
	}
	owed := c.discardQueue(a)
	c.removeSide(s, a)
	return owed
}

// discardQueue drops what waits in side a's queue and returns the
// connection credit owed to the other side's connection for it. c.mu held.
func (c *conn) discardQueue(a *side) int {
	queued := 0
	for _, it := range a.q {
		if it.data != nil {
			queued += it.data.n
			it.data.release()
		}
	}
	a.q = nil
	if queued > 0 {
		c.r.buffered.Add(-int64(queued))
	}
	owed := a.owedConn
	a.owedConn = 0
	return owed
}

// payDropped returns the connection credit of bytes dropped from side a's
// queue to the connection they came from.
func payDropped(d *dirtySet, s *stream, a *side, owed int) {
	if owed <= 0 {
		return
	}
	for i := range s.sides {
		if o := &s.sides[i]; o != a && o.c != nil {
			o.c.credit(d, nil, 0, owed)
		}
	}
}

// resetSide sends RST_STREAM on side b (if still open) and drops it.
func resetSide(d *dirtySet, s *stream, b *side, code http2.ErrCode) {
	x := lockSide(b)
	if x == nil {
		return
	}
	if !(b.sendEnded && b.recvEnded && len(b.q) == 0) {
		x.out = appendRST(x.out, b.id, code)
	}
	owed := x.dropSide(s, b)
	x.mu.Unlock()
	d.add(x)
	payDropped(d, s, b, owed)
}

// endCall ends a call toward its client with a gRPC status the router
// decided (trailers, or trailers-only when no response headers went out)
// and resets its upstream side.
func endCall(d *dirtySet, s *stream, code, msg string) {
	b := &s.sides[cliSide]
	x := b.c
	x.mu.Lock()
	var owed int
	if !b.gone && x.closed {
		// Nothing can be written any more: the side just goes.
		owed = x.dropSide(s, b)
	} else if !b.gone && !b.sendEnded {
		owed = x.discardQueue(b)
		if !s.statusSet {
			s.status, s.msg, s.statusSet = code, encodeGRPCMessage(msg), true
		}
		x.writeHeaders(b.id, statusFields(!b.hdrSent, code, msg), true)
		b.hdrSent, b.sendEnded = true, true
		if !b.recvEnded {
			x.out = appendRST(x.out, b.id, http2.ErrCodeNo)
			x.removeSide(s, b)
		} else {
			x.maybeRemove(s, b)
		}
		d.add(x)
	}
	x.mu.Unlock()
	payDropped(d, s, b, owed)
	resetSide(d, s, &s.sides[upSide], http2.ErrCodeCancel)
}

// statusFields are trailers carrying a status; trailers-only responses
// carry the response headers too.
func statusFields(only bool, code, msg string) []hpack.HeaderField {
	f := make([]hpack.HeaderField, 0, 4)
	if only {
		f = append(f, hpack.HeaderField{Name: ":status", Value: "200"},
			hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	}
	return append(f, hpack.HeaderField{Name: "grpc-status", Value: code},
		hpack.HeaderField{Name: "grpc-message", Value: encodeGRPCMessage(msg)})
}

// chunkSize is the size of the pooled buffers queued DATA is kept in.
const chunkSize = 16 << 10

// dataQ is queued DATA payload in pooled chunks.
type dataQ struct {
	chunks []*[]byte
	off    int // read offset in chunks[0]
	n      int
}

func (q *dataQ) push(p []byte) {
	q.n += len(p)
	for len(p) > 0 {
		if len(q.chunks) == 0 || len(*q.chunks[len(q.chunks)-1]) == chunkSize {
			q.chunks = append(q.chunks, getChunk())
		}
		t := q.chunks[len(q.chunks)-1]
		l := len(*t)
		k := copy((*t)[l:chunkSize], p)
		*t = (*t)[:l+k]
		p = p[k:]
	}
}

// appendTo moves k bytes from the queue to out.
func (q *dataQ) appendTo(out []byte, k int) []byte {
	q.n -= k
	for k > 0 {
		h := *q.chunks[0]
		m := min(k, len(h)-q.off)
		out = append(out, h[q.off:q.off+m]...)
		q.off += m
		k -= m
		if q.off == len(h) {
			putChunk(q.chunks[0])
			q.chunks[0] = nil
			q.chunks = q.chunks[1:]
			q.off = 0
		}
	}
	return out
}

func (q *dataQ) release() {
	for i, c := range q.chunks {
		putChunk(c)
		q.chunks[i] = nil
	}
	q.chunks, q.off, q.n = nil, 0, 0
}
