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

// requestHead is what the router reads from a request's header block.
type requestHead struct {
	path        string
	contentType string
	contentLen  int64 // -1 when none was declared
}

// validRequest checks a request's header block and reads what the router
// needs from it, in the one pass over the fields.
func validRequest(fields []hpack.HeaderField) (requestHead, error) {
	var method, scheme, path bool
	regular := false
	req := requestHead{contentLen: -1}
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			if regular {
				return req, errPseudo
			}
			var seen *bool
			switch hf.Name {
			case ":method":
				seen = &method
			case ":scheme":
				seen = &scheme
			case ":path":
				seen = &path
				req.path = hf.Value
				if hf.Value == "" {
					return req, errPseudo
				}
			case ":authority":
				continue
			default:
				return req, errPseudo // :status, :protocol or unknown
			}
			if *seen {
				return req, errPseudo
			}
			*seen = true
			continue
		}
		regular = true
		if err := validField(hf); err != nil {
			return req, err
		}
		switch hf.Name {
		case "content-type":
			if req.contentType == "" {
				req.contentType = hf.Value
			}
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || req.contentLen >= 0 {
				return req, errFieldValue
			}
			req.contentLen = n
		}
	}
	if !method || !scheme || !path {
		return req, errPseudo
	}
	return req, nil
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
