package frames

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// Request header rules of RFC 9113 section 8 that a server checks, as the
// gRPC server crishim fronted before did (through x/net's checks).
var (
	errPseudo     = errors.New("malformed pseudo-header")
	errFieldName  = errors.New("invalid header field name")
	errFieldValue = errors.New("invalid header field value")
	errConnHeader = errors.New("connection-specific header field")
)

// validRequest checks a request's header block and returns its declared
// content-length (-1 when none).
func validRequest(fields []hpack.HeaderField) (int64, error) {
	var method, scheme, path bool
	regular := false
	contentLen := int64(-1)
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			if regular {
				return 0, errPseudo
			}
			var seen *bool
			switch hf.Name {
			case ":method":
				seen = &method
			case ":scheme":
				seen = &scheme
			case ":path":
				seen = &path
				if hf.Value == "" {
					return 0, errPseudo
				}
			case ":authority":
				continue
			default:
				return 0, errPseudo // :status, :protocol or unknown
			}
			if *seen {
				return 0, errPseudo
			}
			*seen = true
			continue
		}
		regular = true
		if err := validField(hf); err != nil {
			return 0, err
		}
		if hf.Name == "content-length" {
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || contentLen >= 0 {
				return 0, errFieldValue
			}
			contentLen = n
		}
	}
	if !method || !scheme || !path {
		return 0, errPseudo
	}
	return contentLen, nil
}

// validTrailers checks a request's trailers: no pseudo-headers.
func validTrailers(fields []hpack.HeaderField) error {
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			return errPseudo
		}
		if err := validField(hf); err != nil {
			return err
		}
	}
	return nil
}

func validField(hf hpack.HeaderField) error {
	if !httpguts.ValidHeaderFieldName(hf.Name) {
		return errFieldName
	}
	for i := 0; i < len(hf.Name); i++ {
		if c := hf.Name[i]; 'A' <= c && c <= 'Z' {
			return errFieldName
		}
	}
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		return errFieldValue
	}
	switch hf.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return errConnHeader
	case "te":
		if hf.Value != "trailers" {
			return errConnHeader
		}
	}
	return nil
}

// headerValue returns the first value of name.
func headerValue(fields []hpack.HeaderField, name string) string {
	for _, hf := range fields {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// encodeGRPCMessage percent-encodes a status message as gRPC's wire format
// requires: bytes outside printable ASCII, and '%'.
func encodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodeGRPCMessage reverses encodeGRPCMessage; malformed escapes stay as
// they are, as gRPC clients leave them.
func decodeGRPCMessage(msg string) string {
	if !strings.Contains(msg, "%") {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if msg[i] == '%' && i+2 < len(msg) {
			if v, err := strconv.ParseUint(msg[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(msg[i])
	}
	return b.String()
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

func getChunk() *[]byte { return chunkPool.Get().(*[]byte) }

func putChunk(c *[]byte) {
	*c = (*c)[:0]
	chunkPool.Put(c)
}
