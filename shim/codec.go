package shim

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Frame is one gRPC message carried as raw bytes. The passthrough forwarder
// receives into and sends from Frames, so a message is never decoded or
// re-encoded on its way through crishim.
//
// A Frame holds a reference to gRPC's pooled buffers. Sending a Frame hands
// that reference to gRPC, which frees it once written; a Frame can therefore
// be sent once.
type Frame struct {
	data mem.BufferSlice
}

// NewFrame returns a Frame holding a copy of b.
func NewFrame(b []byte) *Frame {
	return &Frame{data: mem.BufferSlice{mem.SliceBuffer(append([]byte(nil), b...))}}
}

// Len returns the size of the message in bytes.
func (f *Frame) Len() int { return f.data.Len() }

// Bytes returns the message bytes, copied into one contiguous slice.
func (f *Frame) Bytes() []byte { return f.data.Materialize() }

// Head returns up to the first n bytes of the message without copying when
// they sit in the first buffer, which they do for every small CRI request.
// Callers must not modify or keep the returned slice.
func (f *Frame) Head(n int) []byte {
	if len(f.data) == 0 {
		return nil
	}
	if b := f.data[0].ReadOnlyData(); len(b) >= n || len(f.data) == 1 {
		return b[:min(n, len(b))]
	}
	b := make([]byte, min(n, f.data.Len()))
	f.data.CopyTo(b)
	return b
}

// codec moves Frames as raw bytes and falls back to protobuf for typed
// messages, so typed handlers and the passthrough share one server and one
// upstream connection (the approach of siderolabs/grpc-proxy's codec.go).
type codec struct{}

var _ encoding.CodecV2 = codec{}

// codecName is "proto" because the payloads are protobuf. It is what the
// server side registers; the kubelet's requests choose the content type.
const codecName = "proto"

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*Frame); ok {
		// Hand our reference over: gRPC frees the returned slice after writing.
		data := f.data
		f.data = nil
		return data, nil
	}
	return protoCodec.Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*Frame); ok {
		// gRPC frees data when Unmarshal returns; keep our own reference.
		data.Ref()
		f.data = data
		return nil
	}
	if _, ok := v.(proto.Message); !ok {
		return fmt.Errorf("crishim codec: cannot unmarshal into %T", v)
	}
	return protoCodec.Unmarshal(data, v)
}

func (codec) Name() string { return codecName }

// upstreamCodec is codec with an empty name. A client's forced codec name
// becomes the content subtype of every request ("application/grpc+proto");
// CRI-O matches exactly "application/grpc" (a cmux matcher in front of its
// gRPC server) and resets any other connection. An empty name sends the
// plain content type, as the kubelet's own client does.
type upstreamCodec struct{ codec }

func (upstreamCodec) Name() string { return "" }

// protoCodec is gRPC's own protobuf codec, registered by grpc's init.
var protoCodec = encoding.GetCodecV2(codecName)
