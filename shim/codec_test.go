package shim

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCodecFramesAreUntouched(t *testing.T) {
	// Bytes that are not even valid protobuf pass as they are.
	in := []byte{0xff, 0x00, 0x01, 0x02}
	var f Frame
	if err := (codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(in)}, &f); err != nil {
		t.Fatal(err)
	}
	if got := f.Bytes(); !bytes.Equal(got, in) {
		t.Errorf("frame holds %x, want %x", got, in)
	}
	out, err := (codec{}).Marshal(&f)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Materialize(); !bytes.Equal(got, in) {
		t.Errorf("marshalled %x, want %x", got, in)
	}
}

func TestCodecFallsBackToProto(t *testing.T) {
	want := &runtimeapi.VersionRequest{Version: "v1"}
	b, err := (codec{}).Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := &runtimeapi.VersionRequest{}
	if err := (codec{}).Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if err := (codec{}).Unmarshal(b, new(int)); err == nil {
		t.Error("unmarshal into a non-message succeeded")
	}
}

func TestFrameHead(t *testing.T) {
	f := &Frame{data: mem.BufferSlice{mem.SliceBuffer("abc"), mem.SliceBuffer("def")}}
	for _, tc := range []struct {
		n    int
		want string
	}{{2, "ab"}, {3, "abc"}, {5, "abcde"}, {100, "abcdef"}} {
		if got := string(f.Head(tc.n)); got != tc.want {
			t.Errorf("Head(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := (&Frame{}).Head(4); got != nil {
		t.Errorf("empty Head = %q", got)
	}
}
