package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ParseEndpoint returns the socket path of a CRI endpoint. Like the kubelet on
// Linux, crishim speaks to unix sockets only: "unix:///path" or "/path".
func ParseEndpoint(endpoint string) (string, error) {
	path := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		path = rest
	} else if strings.Contains(endpoint, "://") {
		return "", fmt.Errorf("endpoint %q: only unix:// endpoints are supported", endpoint)
	}
	if path == "" || !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("endpoint %q: want unix:///absolute/path", endpoint)
	}
	if len(path) > maxSocketPath {
		return "", fmt.Errorf("endpoint %q: socket path is %d bytes, over the %d-byte unix socket limit", endpoint, len(path), maxSocketPath)
	}
	return path, nil
}

// maxSocketPath is the usable length of sockaddr_un.sun_path on Linux.
const maxSocketPath = 107

// upstreamConn is the connection to one runtime endpoint.
type upstreamConn struct {
	endpoint string
	conn     *grpc.ClientConn
}

// dialOptions configure an upstream connection.
type dialOptions struct {
	maxMsgSize int
	// maxBackoff caps reconnect delays: crishim must notice a restarted
	// runtime quickly, since every kubelet call waits on it.
	maxBackoff time.Duration
}

func dialUpstream(endpoint string, o dialOptions) (*upstreamConn, error) {
	path, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			// This text reaches the caller inside the Unavailable status, so
			// it names the endpoint an operator has to look at.
			return nil, fmt.Errorf("crishim upstream %s unreachable: %w", endpoint, err)
		}
		return c, nil
	}
	bo := backoff.DefaultConfig
	bo.BaseDelay = 100 * time.Millisecond
	bo.MaxDelay = o.maxBackoff
	conn, err := grpc.NewClient("passthrough:///localhost",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
		grpc.WithAuthority("localhost"),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second}),
		// Never go idle: the connection is kept up so the kubelet's next call
		// does not pay for a reconnect.
		grpc.WithIdleTimeout(0),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodecV2(upstreamCodec{encoding.GetCodecV2("proto")}),
			grpc.MaxCallRecvMsgSize(o.maxMsgSize),
			grpc.MaxCallSendMsgSize(o.maxMsgSize),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", endpoint, err)
	}
	return &upstreamConn{endpoint: endpoint, conn: conn}, nil
}

// upstreamCodec is gRPC's protobuf codec with an empty name. A client's
// forced codec name becomes the content subtype of every request
// ("application/grpc+proto"); CRI-O matches exactly "application/grpc" (a
// cmux matcher in front of its gRPC server) and resets any other
// connection. An empty name sends the plain content type, as the kubelet's
// own client does.
type upstreamCodec struct{ encoding.CodecV2 }

func (upstreamCodec) Name() string { return "" }

// keepConnected reconnects as soon as the connection drops to idle (after the
// runtime closed it) and stops when ctx ends.
func (u *upstreamConn) keepConnected(ctx context.Context) {
	for {
		s := u.conn.GetState()
		if s == connectivity.Idle {
			u.conn.Connect()
		}
		if s == connectivity.Shutdown || !u.conn.WaitForStateChange(ctx, s) {
			return
		}
	}
}

// transportFailures start the messages gRPC-go gives to calls that failed
// because the connection to the runtime failed, not because the runtime
// answered with an error.
var transportFailures = []string{
	"connection error", "error reading from server", "transport is closing",
	"connection closed", "error reading server preface", "the connection is draining",
}

// named makes a connection failure name the endpoint, so whoever reads it
// knows which runtime socket to look at; every status the runtime itself
// sent passes unchanged (the kubelet parses their text). The two are told
// apart by gRPC-go's own wording of transport failures, which no runtime
// uses for its statuses.
func (u *upstreamConn) named(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable || strings.Contains(st.Message(), u.endpoint) {
		return err
	}
	msg := st.Message()
	if !slices.ContainsFunc(transportFailures, func(p string) bool { return strings.HasPrefix(msg, p) }) {
		return err
	}
	return status.Errorf(codes.Unavailable, "crishim upstream %s: %s", u.endpoint, msg)
}

// Ready reports whether the connection is established.
func (u *upstreamConn) Ready() bool { return u.conn.GetState() == connectivity.Ready }

// upstreams holds the runtime and image connections; they are one
// connection when both endpoints are the same, as they usually are.
type upstreams struct {
	runtime, image *upstreamConn
	cancel         context.CancelFunc
	wg             sync.WaitGroup
}

func newUpstreams(runtimeEndpoint, imageEndpoint string, o dialOptions) (*upstreams, error) {
	rt, err := dialUpstream(runtimeEndpoint, o)
	if err != nil {
		return nil, err
	}
	img := rt
	if imageEndpoint != "" && imageEndpoint != runtimeEndpoint {
		if img, err = dialUpstream(imageEndpoint, o); err != nil {
			rt.conn.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &upstreams{runtime: rt, image: img, cancel: cancel}
	for _, c := range u.distinct() {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			c.keepConnected(ctx)
		}()
	}
	return u, nil
}

func (u *upstreams) distinct() []*upstreamConn {
	if u.image == u.runtime {
		return []*upstreamConn{u.runtime}
	}
	return []*upstreamConn{u.runtime, u.image}
}

func (u *upstreams) get(which Upstream) *upstreamConn {
	if which == ImageUpstream {
		return u.image
	}
	return u.runtime
}

// check asks every upstream the question the kubelet asks at start: Version
// of the runtime endpoint and ImageFsInfo of a separate image endpoint.
func (u *upstreams) check(ctx context.Context) error {
	var errs []error
	if _, err := runtimeapi.NewRuntimeServiceClient(u.runtime.conn).Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("runtime endpoint %s: Version: %w", u.runtime.endpoint, err))
	}
	if u.image != u.runtime {
		if _, err := runtimeapi.NewImageServiceClient(u.image.conn).ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{}); err != nil {
			errs = append(errs, fmt.Errorf("image endpoint %s: ImageFsInfo: %w", u.image.endpoint, err))
		}
	}
	return errors.Join(errs...)
}

func (u *upstreams) close() {
	u.cancel()
	for _, c := range u.distinct() {
		c.conn.Close()
	}
	u.wg.Wait()
}
