package shim

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The codec on the passthrough path: a received message is kept as gRPC's
// buffers (Unmarshal takes a reference) and handed back for sending
// (Marshal), whatever its size. Run with -benchmem: 0 B/op and a constant
// time per op whatever the size mean no copy and no decode.
func BenchmarkCodecFrameRoundTrip(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"100B", 100}, {"4MiB", 4 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			// A SliceBuffer's Ref and Free are no-ops, so the same buffer
			// can stand for every received message.
			buf := mem.SliceBuffer(make([]byte, size.n))
			c := codec{}
			for b.Loop() {
				in := mem.BufferSlice{buf}
				var f Frame
				if err := c.Unmarshal(in, &f); err != nil {
					b.Fatal(err)
				}
				in.Free() // what gRPC does once Unmarshal returns
				out, err := c.Marshal(&f)
				if err != nil {
					b.Fatal(err)
				}
				out.Free() // what gRPC does once the message is written
			}
		})
	}
}

// BenchmarkCodecTyped is the fallback for typed handlers: protobuf both ways.
func BenchmarkCodecTyped(b *testing.B) {
	c := codec{}
	req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/team/app:1.2.3"},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "team-a", Uid: "u"}}}
	for b.Loop() {
		data, err := c.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		var out runtimeapi.PullImageRequest
		if err := c.Unmarshal(data, &out); err != nil {
			b.Fatal(err)
		}
		data.Free()
	}
}

// BenchmarkFrameHead is what logging reads of a passthrough request to name
// the container it is about.
func BenchmarkFrameHead(b *testing.B) {
	raw, _ := proto.Marshal(&runtimeapi.ContainerStatusRequest{ContainerId: "6f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80"})
	f := NewFrame(raw)
	m := NewMethods().Lookup(runtimeapi.RuntimeService_ContainerStatus_FullMethodName)
	for b.Loop() {
		if FindString(f.Head(4096), m.RequestIDs[0].Path) == "" {
			b.Fatal("no id")
		}
	}
}
