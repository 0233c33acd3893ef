package frames

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// bytesCodec carries []byte as is.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (bytesCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (bytesCodec) Name() string { return "proto" }

var _ encoding.Codec = bytesCodec{}

// upstream: /t.T/Size answers a request of 4 bytes n with n bytes; /t.T/Stream
// sends n messages of 100 bytes; /t.T/Fail fails with a status and trailer;
// /t.T/Sleep answers after n milliseconds; /t.T/Hold holds until cancelled.
func startUpstream(t *testing.T, sock string) *grpc.Server {
	g := grpc.NewServer(grpc.ForceServerCodec(bytesCodec{}), grpc.MaxSendMsgSize(64<<20), grpc.MaxRecvMsgSize(64<<20),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			m, _ := grpc.MethodFromServerStream(ss)
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			n := 0
			if len(req) >= 4 {
				n = int(binary.BigEndian.Uint32(req))
			}
			md, _ := metadata.FromIncomingContext(ss.Context())
			_ = ss.SetHeader(metadata.Pairs("echo-x", first(md.Get("x"))))
			switch m {
			case "/t.T/Size":
				out := bytes.Repeat([]byte{'a'}, n)
				return ss.SendMsg(&out)
			case "/t.T/Stream":
				out := bytes.Repeat([]byte{'b'}, 100)
				for i := 0; i < n; i++ {
					if err := ss.SendMsg(&out); err != nil {
						return err
					}
				}
				return nil
			case "/t.T/Fail":
				ss.SetTrailer(metadata.Pairs("why", "because"))
				return status.Error(codes.NotFound, "no such thing")
			case "/t.T/Sleep":
				time.Sleep(time.Duration(n) * time.Millisecond)
				out := []byte{'s'}
				return ss.SendMsg(&out)
			case "/t.T/Hold":
				<-ss.Context().Done()
				return ss.Context().Err()
			}
			return status.Error(codes.Unimplemented, m)
		}))
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	return g
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func req(n int) *[]byte { b := binary.BigEndian.AppendUint32(nil, uint32(n)); return &b }

func setup(t *testing.T) (*grpc.ClientConn, *grpc.Server) {
	dir := t.TempDir()
	up := filepath.Join(dir, "up.sock")
	g := startUpstream(t, up)
	t.Cleanup(g.Stop)
	r := New(Options{}, []*Pool{NewPool("unix://"+up, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", up)
	})}, func(string) Route { return Route{} })
	t.Cleanup(r.Close)
	ps := filepath.Join(dir, "p.sock")
	l, err := net.Listen("unix", ps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go r.Serve(l)
	cc, err := grpc.NewClient("unix://"+ps, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(bytesCodec{}), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, g
}

func TestRouterForwardsCalls(t *testing.T) {
	cc, _ := setup(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x", "42")
	for _, n := range []int{0, 10, 70000, 5 << 20, 17 << 20} {
		var out []byte
		var hdr metadata.MD
		if err := cc.Invoke(ctx, "/t.T/Size", req(n), &out, grpc.Header(&hdr)); err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if len(out) != n || first(hdr.Get("echo-x")) != "42" {
			t.Fatalf("size %d: got %d bytes, header %v", n, len(out), hdr)
		}
	}
	var tr metadata.MD
	var out []byte
	err := cc.Invoke(ctx, "/t.T/Fail", req(0), &out, grpc.Trailer(&tr))
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "no such thing" || first(tr.Get("why")) != "because" {
		t.Fatalf("fail: %v %v", err, tr)
	}
	// streams, concurrently with unary calls
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				var out []byte
				if err := cc.Invoke(ctx, "/t.T/Size", req(w*i), &out); err != nil || len(out) != w*i {
					errs <- errors.Join(err, errors.New("bad size"))
					return
				}
			}
		}()
	}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/t.T/Stream")
			if err == nil {
				err = cs.SendMsg(req(20000))
			}
			if err == nil {
				err = cs.CloseSend()
			}
			n := 0
			for err == nil {
				var m []byte
				if err = cs.RecvMsg(&m); err == nil {
					n++
					if w == 0 && n%1000 == 0 {
						time.Sleep(5 * time.Millisecond) // a slow reader
					}
				}
			}
			if !errors.Is(err, io.EOF) || n != 20000 {
				errs <- errors.Join(err, errors.New("stream short"))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// cancellation reaches the upstream and the router stays usable
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = cc.Invoke(cctx, "/t.T/Hold", req(0), &out)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("hold: %v", err)
	}
	if err := cc.Invoke(ctx, "/t.T/Size", req(3), &out); err != nil {
		t.Fatal(err)
	}
}

func TestUpstreamGone(t *testing.T) {
	cc, g := setup(t)
	var out []byte
	if err := cc.Invoke(context.Background(), "/t.T/Size", req(3), &out); err != nil {
		t.Fatal(err)
	}
	g.Stop()
	err := cc.Invoke(context.Background(), "/t.T/Size", req(3), &out)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("after upstream stop: %v", err)
	}
	if !strings.Contains(status.Convert(err).Message(), "up.sock") {
		t.Errorf("error %v does not name the upstream", err)
	}
}
