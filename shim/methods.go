package shim

import (
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Upstream names which of the kubelet's two endpoints a call goes to.
type Upstream int

const (
	// RuntimeUpstream is the runtime endpoint (containerRuntimeEndpoint).
	RuntimeUpstream Upstream = iota
	// ImageUpstream is the image endpoint (imageServiceEndpoint).
	ImageUpstream
)

func (u Upstream) String() string {
	if u == ImageUpstream {
		return "image"
	}
	return "runtime"
}

// ImageServiceName is the gRPC service served by the image endpoint; every
// other service goes to the runtime endpoint, as the kubelet splits them.
const ImageServiceName = "runtime.v1.ImageService"

// IDField locates a short identifying string inside a message (a pod sandbox
// id, a container id, an image name) so logs can name the object a call is
// about without decoding the message.
type IDField struct {
	// Key is the log field name: "pod", "container" or "image".
	Key string
	// Path is the chain of field numbers from the top-level message to the
	// string field.
	Path []protowire.Number
}

// Method describes one gRPC method as crishim treats it.
type Method struct {
	// FullName is the gRPC method path, "/runtime.v1.RuntimeService/Version".
	FullName string
	// Service and Name are the parts of FullName; for methods unknown to
	// cri-api they are bounded label values (see Methods.Lookup).
	Service, Name string
	// Upstream is the endpoint the call is forwarded to.
	Upstream Upstream
	// Known reports whether the method is in the cri-api version crishim was
	// built with; unknown methods are forwarded as generic bidi streams.
	Known bool
	// ClientStreams and ServerStreams give the call shape of known methods.
	ClientStreams, ServerStreams bool
	// ReadOnly methods (List*, *Status, stats, Version, ...) are frequent
	// and change nothing: they are logged at debug level.
	ReadOnly bool
	// Watch marks an open-ended stream (GetContainerEvents) that ends only
	// when a side gives up; shutdown ends it rather than waiting for it.
	Watch bool
	// RequestIDs and ResponseIDs locate identifying fields for logs.
	RequestIDs, ResponseIDs []IDField
}

// Unary reports whether the call is one request and one response.
func (m *Method) Unary() bool { return m.Known && !m.ClientStreams && !m.ServerStreams }

// maxUnknownMethods bounds how many distinct unknown method names get their
// own metric labels, so a client cannot grow label cardinality without limit.
const maxUnknownMethods = 64

// Methods is the method table: every CRI method of the built-in cri-api
// version, and the unknown methods seen so far.
type Methods struct {
	known map[string]*Method

	mu      sync.RWMutex
	unknown map[string]*Method
}

// NewMethods builds the method table from the cri-api service descriptors, so
// an RPC added in a newer cri-api is classified without code changes here.
func NewMethods() *Methods {
	t := &Methods{known: map[string]*Method{}, unknown: map[string]*Method{}}
	services := runtimeapi.File_staging_src_k8s_io_cri_api_pkg_apis_runtime_v1_api_proto.Services()
	for i := 0; i < services.Len(); i++ {
		sd := services.Get(i)
		for j := 0; j < sd.Methods().Len(); j++ {
			md := sd.Methods().Get(j)
			m := &Method{
				FullName:      "/" + string(sd.FullName()) + "/" + string(md.Name()),
				Service:       string(sd.FullName()),
				Name:          string(md.Name()),
				Upstream:      upstreamOf(string(sd.FullName())),
				Known:         true,
				ClientStreams: md.IsStreamingClient(),
				ServerStreams: md.IsStreamingServer(),
				ReadOnly:      readOnly(string(md.Name())),
				Watch:         md.Name() == "GetContainerEvents",
				RequestIDs:    idFields(md.Input()),
				ResponseIDs:   idFields(md.Output()),
			}
			t.known[m.FullName] = m
		}
	}
	return t
}

// Known returns the methods of the built-in cri-api version.
func (t *Methods) Known() []*Method {
	out := make([]*Method, 0, len(t.known))
	for _, m := range t.known {
		out = append(out, m)
	}
	return out
}

// Lookup returns the description of fullMethod. Methods unknown to cri-api
// are forwarded as generic streams; the first maxUnknownMethods of them keep
// their names as labels, later ones share the service and method "unknown".
func (t *Methods) Lookup(fullMethod string) *Method {
	if m, ok := t.known[fullMethod]; ok {
		return m
	}
	t.mu.RLock()
	m, ok := t.unknown[fullMethod]
	t.mu.RUnlock()
	if ok {
		return m
	}
	service, name := splitMethod(fullMethod)
	m = &Method{FullName: fullMethod, Service: service, Name: name, Upstream: upstreamOf(service)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.unknown[fullMethod]; ok {
		return prev
	}
	if len(t.unknown) >= maxUnknownMethods {
		m.Service, m.Name = "unknown", "unknown"
		return m
	}
	t.unknown[fullMethod] = m
	return m
}

func splitMethod(fullMethod string) (service, name string) {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "unknown", s
}

func upstreamOf(service string) Upstream {
	if service == ImageServiceName {
		return ImageUpstream
	}
	return RuntimeUpstream
}

// readOnly classifies the frequent observing calls the kubelet makes every
// sync loop; everything else changes state and is logged at info.
func readOnly(name string) bool {
	switch name {
	case "Version", "Status", "ImageFsInfo", "RuntimeConfig", "ExecSync", "GetContainerEvents":
		// ExecSync is how exec probes run: every period, for every probed
		// container; logging it at info would drown the mutations.
		return true
	}
	for _, p := range []string{"List", "Stream"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, s := range []string{"Status", "Stats"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// idFields finds the identifying string fields of a CRI message: top-level
// pod_sandbox_id and container_id, and the image name inside an ImageSpec.
func idFields(md protoreflect.MessageDescriptor) []IDField {
	var out []IDField
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.Kind() == protoreflect.StringKind && fd.Cardinality() != protoreflect.Repeated && fd.Name() == "pod_sandbox_id":
			out = append(out, IDField{Key: "pod", Path: []protowire.Number{fd.Number()}})
		case fd.Kind() == protoreflect.StringKind && fd.Cardinality() != protoreflect.Repeated && fd.Name() == "container_id":
			out = append(out, IDField{Key: "container", Path: []protowire.Number{fd.Number()}})
		case fd.Kind() == protoreflect.MessageKind && fd.Cardinality() != protoreflect.Repeated && fd.Message().Name() == "ImageSpec":
			if img := fd.Message().Fields().ByName("image"); img != nil {
				out = append(out, IDField{Key: "image", Path: []protowire.Number{fd.Number(), img.Number()}})
			}
		}
	}
	return out
}

// FindString returns the string at path in the protobuf message b, scanning
// the wire format without decoding the rest. A message cut short yields
// what was found before the cut; nothing found yields "".
func FindString(b []byte, path []protowire.Number) string {
	for depth, want := range path {
		found := scanBytesField(b, want)
		if found == nil {
			return ""
		}
		if depth == len(path)-1 {
			return string(found)
		}
		b = found
	}
	return ""
}

// scanBytesField returns the last value of length-delimited field num in b
// (the last one wins, as in proto3 decoding), or nil.
func scanBytesField(b []byte, num protowire.Number) []byte {
	var found []byte
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			break
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				break
			}
			found, b = v, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			break
		}
		b = b[m:]
	}
	return found
}
