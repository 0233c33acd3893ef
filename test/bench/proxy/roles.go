package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The benchmark binary plays four roles, each its own process: the load
// generator (the default), the fake upstream runtime, the splice and the
// floor forwarder. The forwarders' roles are their paths' names.
const (
	roleUpstream = "upstream"
	roleSplice   = pathSplice
	roleFloor    = pathFloor
)

// Request metadata the fake upstream reads for GetContainerEvents: how many
// events to stream, or to hold the stream open until the caller goes away.
const (
	mdEvents = "crishim-bench-events"
	mdHold   = "crishim-bench-hold"
	mdHeld   = "crishim-bench-held"
)

// countsMethod returns the fake's per-method call counts as JSON; it is only
// ever called directly, never through a proxy.
const countsMethod = "/crishimbench.Fake/Counts"

const maxMsg = 64 << 20

// rawMsg is a message kept as gRPC's own buffers: nothing is decoded, copied
// or re-encoded. Sending it hands the buffers back to gRPC.
type rawMsg struct{ data mem.BufferSlice }

// rawCodec carries rawMsg untouched and falls back to protobuf otherwise.
type rawCodec struct{}

var protoCodec = encoding.GetCodecV2("proto")

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*rawMsg); ok {
		d := m.data
		m.data = nil
		return d, nil
	}
	return protoCodec.Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*rawMsg); ok {
		data.Ref()
		m.data = data
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

func (rawCodec) Name() string { return "proto" }

// canned is a prebuilt response: its bytes are shared by every send (gRPC
// only reads them; freeing a SliceBuffer is a no-op).
func canned(b []byte) *rawMsg { return &rawMsg{data: mem.BufferSlice{mem.SliceBuffer(b)}} }

// listenUntilSignal listens on socket (replacing a stale one) and calls
// stop with the listener on SIGTERM or SIGINT: how every role process of the
// benchmark ends when the benchmark stops it.
func listenUntilSignal(socket string, stop func(net.Listener)) (net.Listener, error) {
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		stop(l)
	}()
	return l, nil
}

func serveUntilSignal(g *grpc.Server, socket string) error {
	l, err := listenUntilSignal(socket, func(net.Listener) { g.Stop() })
	if err != nil {
		return err
	}
	err = g.Serve(l)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// fakeUpstream answers every call from prebuilt bytes without decoding the
// request, so its own cost is tiny and the same whoever calls it.
type fakeUpstream struct {
	version, status, list, pull, empty []byte
	event                              []byte
	pullLatency                        time.Duration

	mu     sync.Mutex
	counts map[string]*atomic.Int64
}

func runUpstream(socket string, containers int, pullLatency time.Duration) error {
	f := &fakeUpstream{pullLatency: pullLatency, counts: map[string]*atomic.Int64{}}
	var err error
	must := func(m proto.Message) []byte {
		b, e := proto.Marshal(m)
		if e != nil {
			err = e
		}
		return b
	}
	f.version = must(&runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "containerd", RuntimeVersion: "v1.6.20", RuntimeApiVersion: "v1"})
	f.status = must(&runtimeapi.ContainerStatusResponse{Status: containerStatus(0)})
	f.list = must(listContainers(containers))
	f.pull = must(&runtimeapi.PullImageResponse{ImageRef: "sha256:" + hexID(7)})
	f.event = must(containerEvent(0))
	if err != nil {
		return err
	}
	g := grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg),
		grpc.UnknownServiceHandler(f.handle),
	)
	return serveUntilSignal(g, socket)
}

func (f *fakeUpstream) count(method string) {
	f.mu.Lock()
	c, ok := f.counts[method]
	if !ok {
		c = new(atomic.Int64)
		f.counts[method] = c
	}
	f.mu.Unlock()
	c.Add(1)
}

func (f *fakeUpstream) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	req := new(rawMsg)
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	req.data.Free()
	f.count(method)
	switch method {
	case runtimeapi.RuntimeService_Version_FullMethodName:
		return ss.SendMsg(canned(f.version))
	case runtimeapi.RuntimeService_ContainerStatus_FullMethodName:
		return ss.SendMsg(canned(f.status))
	case runtimeapi.RuntimeService_ListContainers_FullMethodName:
		return ss.SendMsg(canned(f.list))
	case runtimeapi.ImageService_PullImage_FullMethodName:
		if f.pullLatency > 0 {
			t := time.NewTimer(f.pullLatency)
			select {
			case <-t.C:
			case <-ss.Context().Done():
				t.Stop()
				return status.FromContextError(ss.Context().Err()).Err()
			}
		}
		return ss.SendMsg(canned(f.pull))
	case runtimeapi.RuntimeService_GetContainerEvents_FullMethodName:
		return f.events(ss)
	case countsMethod:
		out := map[string]int64{}
		f.mu.Lock()
		for k, v := range f.counts {
			out[k] = v.Load()
		}
		f.mu.Unlock()
		b, _ := json.Marshal(out)
		return ss.SendMsg(canned(b))
	}
	return ss.SendMsg(canned(f.empty))
}

func (f *fakeUpstream) events(ss grpc.ServerStream) error {
	ctx := ss.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(mdHold)) > 0 {
		if err := ss.SendHeader(metadata.Pairs(mdHeld, "1")); err != nil {
			return err
		}
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	n := 0
	if v := md.Get(mdEvents); len(v) > 0 {
		n, _ = strconv.Atoi(v[0])
	}
	for i := 0; i < n; i++ {
		if err := ss.SendMsg(canned(f.event)); err != nil {
			return err
		}
	}
	return nil
}

// runFloor is the floor reference: the naive transparent forwarder, in the
// style of siderolabs/grpc-proxy. One unknown-service handler, a raw codec,
// one upstream stream per call with a goroutine pumping each way, and no
// interceptors, logging or metrics.
func runFloor(socket, upstream string) error {
	cc, err := grpc.NewClient("unix://"+upstream,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)))
	if err != nil {
		return err
	}
	defer cc.Close()
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	handler := func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			ctx = metadata.NewOutgoingContext(ctx, md)
		}
		cs, err := cc.NewStream(ctx, desc, method)
		if err != nil {
			return err
		}
		go func() { // client to upstream
			for {
				m := new(rawMsg)
				if err := ss.RecvMsg(m); err != nil {
					if errors.Is(err, io.EOF) {
						_ = cs.CloseSend()
					} else {
						cancel()
					}
					return
				}
				if cs.SendMsg(m) != nil {
					return
				}
			}
		}()
		if h, err := cs.Header(); err == nil && len(h) > 0 { // upstream to client
			if err := ss.SendHeader(h); err != nil {
				return err
			}
		}
		for {
			m := new(rawMsg)
			if err := cs.RecvMsg(m); err != nil {
				ss.SetTrailer(cs.Trailer())
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if err := ss.SendMsg(m); err != nil {
				return err
			}
		}
	}
	g := grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg),
		grpc.UnknownServiceHandler(handler),
	)
	return serveUntilSignal(g, socket)
}

// Canned CRI objects, shaped like containerd's answers for a busy node.

func hexID(i int) string { return fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15+1) }

func containerStatus(i int) *runtimeapi.ContainerStatus {
	return &runtimeapi.ContainerStatus{
		Id:        hexID(i),
		Metadata:  &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("app-%d", i), Attempt: 1},
		State:     runtimeapi.ContainerState_CONTAINER_RUNNING,
		CreatedAt: 1_780_000_000_000_000_000,
		StartedAt: 1_780_000_001_000_000_000,
		Image:     &runtimeapi.ImageSpec{Image: "registry.example/team/app:1.2.3"},
		ImageRef:  "sha256:" + hexID(i%50),
		Labels:    podLabels(i),
		LogPath:   fmt.Sprintf("/var/log/pods/ns_app-%d_%s/app/0.log", i, hexID(i)[:8]),
		Mounts:    []*runtimeapi.Mount{{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: "/var/lib/kubelet/pods/x/volumes/token", Readonly: true}},
		Resources: &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{CpuShares: 102, MemoryLimitInBytes: 256 << 20}},
		ImageId:   "sha256:" + hexID(i%50),
	}
}

func podLabels(i int) map[string]string {
	return map[string]string{
		"io.kubernetes.container.name": fmt.Sprintf("app-%d", i),
		"io.kubernetes.pod.name":       fmt.Sprintf("app-%d-7d9f8b6c5-x2k4q", i),
		"io.kubernetes.pod.namespace":  "team-a",
		"io.kubernetes.pod.uid":        fmt.Sprintf("0f1e2d3c-%04d-4b5a-9c8d-7e6f5a4b3c2d", i%10000),
	}
}

func listContainers(n int) *runtimeapi.ListContainersResponse {
	resp := &runtimeapi.ListContainersResponse{Containers: make([]*runtimeapi.Container, n)}
	for i := range n {
		resp.Containers[i] = &runtimeapi.Container{
			Id:           hexID(i),
			PodSandboxId: hexID(i + n),
			Metadata:     &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("app-%d", i), Attempt: 1},
			Image:        &runtimeapi.ImageSpec{Image: "registry.example/team/app:1.2.3"},
			ImageRef:     "sha256:" + hexID(i%50),
			State:        runtimeapi.ContainerState_CONTAINER_RUNNING,
			CreatedAt:    1_780_000_000_000_000_000 + int64(i),
			Labels:       podLabels(i),
			Annotations: map[string]string{
				"io.kubernetes.container.hash":                   "8a3f2c1d",
				"io.kubernetes.container.restartCount":           "0",
				"io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
				"io.kubernetes.pod.terminationGracePeriod":       "30",
			},
			ImageId: "sha256:" + hexID(i%50),
		}
	}
	return resp
}

func containerEvent(i int) *runtimeapi.ContainerEventResponse {
	return &runtimeapi.ContainerEventResponse{
		ContainerId:        hexID(i),
		ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		CreatedAt:          1_780_000_000_000_000_000,
		PodSandboxStatus: &runtimeapi.PodSandboxStatus{
			Id:        hexID(i + 1),
			Metadata:  &runtimeapi.PodSandboxMetadata{Name: "app-7d9f8b6c5-x2k4q", Uid: "0f1e2d3c-0000-4b5a-9c8d-7e6f5a4b3c2d", Namespace: "team-a"},
			State:     runtimeapi.PodSandboxState_SANDBOX_READY,
			CreatedAt: 1_780_000_000_000_000_000,
		},
	}
}
