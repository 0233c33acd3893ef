package shim

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMethodTable(t *testing.T) {
	tests := []struct {
		method                  string
		upstream                Upstream
		unary, readOnly, watch  bool
		requestIDs, responseIDs []string
	}{
		{runtimeapi.RuntimeService_Version_FullMethodName, RuntimeUpstream, true, true, false, nil, nil},
		{runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, RuntimeUpstream, true, false, false, nil, []string{"pod"}},
		{runtimeapi.RuntimeService_StopPodSandbox_FullMethodName, RuntimeUpstream, true, false, false, []string{"pod"}, nil},
		{runtimeapi.RuntimeService_CreateContainer_FullMethodName, RuntimeUpstream, true, false, false, []string{"pod"}, []string{"container"}},
		{runtimeapi.RuntimeService_StartContainer_FullMethodName, RuntimeUpstream, true, false, false, []string{"container"}, nil},
		{runtimeapi.RuntimeService_ListContainers_FullMethodName, RuntimeUpstream, true, true, false, nil, nil},
		{runtimeapi.RuntimeService_ContainerStatus_FullMethodName, RuntimeUpstream, true, true, false, []string{"container"}, nil},
		{runtimeapi.RuntimeService_ExecSync_FullMethodName, RuntimeUpstream, true, true, false, []string{"container"}, nil},
		{runtimeapi.RuntimeService_GetContainerEvents_FullMethodName, RuntimeUpstream, false, true, true, nil, []string{"container"}},
		{runtimeapi.RuntimeService_StreamContainers_FullMethodName, RuntimeUpstream, false, true, false, nil, nil},
		{runtimeapi.ImageService_PullImage_FullMethodName, ImageUpstream, true, false, false, []string{"image"}, nil},
		{runtimeapi.ImageService_ImageStatus_FullMethodName, ImageUpstream, true, true, false, []string{"image"}, nil},
		{runtimeapi.ImageService_ImageFsInfo_FullMethodName, ImageUpstream, true, true, false, nil, nil},
		{"/runtime.v1.RuntimeService/FutureRPC", RuntimeUpstream, false, false, false, nil, nil},
		{"/runtime.v1.ImageService/FutureRPC", ImageUpstream, false, false, false, nil, nil},
		{"/other.v9.Service/Method", RuntimeUpstream, false, false, false, nil, nil},
	}
	tab := NewMethods()
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			m := tab.Lookup(tc.method)
			if m.Upstream != tc.upstream || m.Unary() != tc.unary || m.ReadOnly != tc.readOnly || m.Watch != tc.watch {
				t.Errorf("got upstream=%v unary=%v readOnly=%v watch=%v, want %v %v %v %v",
					m.Upstream, m.Unary(), m.ReadOnly, m.Watch, tc.upstream, tc.unary, tc.readOnly, tc.watch)
			}
			if got := keys(m.RequestIDs); fmt.Sprint(got) != fmt.Sprint(tc.requestIDs) {
				t.Errorf("request ids %v, want %v", got, tc.requestIDs)
			}
			if got := keys(m.ResponseIDs); fmt.Sprint(got) != fmt.Sprint(tc.responseIDs) {
				t.Errorf("response ids %v, want %v", got, tc.responseIDs)
			}
		})
	}
}

func keys(f []IDField) []string {
	var out []string
	for _, x := range f {
		out = append(out, x.Key)
	}
	return out
}

func TestUnknownMethodLabelsAreBounded(t *testing.T) {
	tab := NewMethods()
	for i := 0; i < maxUnknownMethods; i++ {
		m := tab.Lookup(fmt.Sprintf("/x.Svc/M%d", i))
		if m.Service != "x.Svc" || m.Name != fmt.Sprintf("M%d", i) {
			t.Fatalf("unknown method %d labelled %s/%s", i, m.Service, m.Name)
		}
	}
	m := tab.Lookup("/x.Svc/OneTooMany")
	if m.Service != "unknown" || m.Name != "unknown" {
		t.Errorf("method past the bound labelled %s/%s, want unknown/unknown", m.Service, m.Name)
	}
	if m.FullName != "/x.Svc/OneTooMany" {
		t.Errorf("FullName = %q: forwarding needs the real name", m.FullName)
	}
	if again := tab.Lookup("/x.Svc/M3"); again.Name != "M3" {
		t.Errorf("known unknown method relabelled %q", again.Name)
	}
}

func TestFindString(t *testing.T) {
	pull, _ := proto.Marshal(&runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1.36", Annotations: map[string]string{"a": "b"}},
		Auth:  &runtimeapi.AuthConfig{Username: "u", Password: "p"},
	})
	stop, _ := proto.Marshal(&runtimeapi.StopContainerRequest{ContainerId: "abc123", Timeout: 30})
	tab := NewMethods()
	tests := []struct {
		desc, method string
		msg          []byte
		want         string
	}{
		{"nested image", runtimeapi.ImageService_PullImage_FullMethodName, pull, "docker.io/library/busybox:1.36"},
		{"top-level id", runtimeapi.RuntimeService_StopContainer_FullMethodName, stop, "abc123"},
		{"truncated message", runtimeapi.RuntimeService_StopContainer_FullMethodName, stop[:3], ""},
		{"garbage", runtimeapi.RuntimeService_StopContainer_FullMethodName, []byte{0xff, 0xff, 0xff}, ""},
		{"empty", runtimeapi.RuntimeService_StopContainer_FullMethodName, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ids := tab.Lookup(tc.method).RequestIDs
			if len(ids) != 1 {
				t.Fatalf("method has %d id fields", len(ids))
			}
			if got := FindString(tc.msg, ids[0].Path); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzFindString(f *testing.F) {
	pull, _ := proto.Marshal(&runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}})
	f.Add(pull)
	f.Add([]byte{0x0a, 0x80})
	ids := NewMethods().Lookup(runtimeapi.ImageService_PullImage_FullMethodName).RequestIDs
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = FindString(b, ids[0].Path) // must not panic
	})
}
