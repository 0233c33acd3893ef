package frames

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Pool is the set of connections to one upstream. It dials lazily, on the
// first stream, and again when every connection is gone, full (the
// upstream's SETTINGS_MAX_CONCURRENT_STREAMS), going away or near the end of
// its stream IDs.
type Pool struct {
	// Name is what errors call the upstream: its endpoint.
	name string
	dial func(ctx context.Context) (net.Conn, error)
	r    *Router

	mu     sync.Mutex
	conns  []*conn
	closed bool
}

// dialTimeout bounds one dial; a unix socket answers at once or never.
const dialTimeout = 5 * time.Second

// maxStreamID is where a connection stops taking new streams, well before
// the 2^31-1 limit, so a fresh connection takes over in time.
const maxStreamID = 1 << 30

// NewPool returns a pool of connections made with dial; name (the endpoint)
// is what errors call the upstream.
func NewPool(name string, dial func(ctx context.Context) (net.Conn, error)) *Pool {
	return &Pool{name: name, dial: dial}
}

// Name returns the upstream's name.
func (p *Pool) Name() string { return p.name }

// pick returns a connection able to take one more stream. The stream's
// upstream ID is taken under the connection's lock by the caller.
func (p *Pool) pick() (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("crishim upstream %s: crishim is shutting down", p.name)
	}
	var least *conn
	for _, c := range p.conns {
		c.mu.Lock()
		usable := !c.closed && !c.goingAway && c.nextID < maxStreamID
		load := c.active
		full := uint32(load) >= c.peerMaxStreams
		c.mu.Unlock()
		if !usable {
			continue
		}
		if !full {
			return c, nil
		}
		if least == nil {
			least = c
		}
	}
	if least != nil && len(p.conns) >= p.r.opt.MaxUpstreamConns {
		// The upstream refuses what is above its limit itself.
		return least, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	nc, err := p.dial(ctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("crishim upstream %s unreachable: %v", p.name, err)
	}
	c := newConn(p.r, nc, false)
	c.pool = p
	p.conns = append(p.conns, c)
	c.startClient()
	return c, nil
}

// remove forgets c once it closed.
func (p *Pool) remove(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, pc := range p.conns {
		if pc == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			return
		}
	}
}

func (p *Pool) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
}

// SocketPair returns two connected unix sockets: in-process connections
// the router writes to as directly as to any socket (a pool whose dial
// hands the other end to a server in the same process).
func SocketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var cs [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				cs[0].Close()
			} else {
				syscall.Close(fds[1])
			}
			return nil, nil, err
		}
		cs[i] = c
	}
	return cs[0], cs[1], nil
}
