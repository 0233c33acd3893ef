package registry

import (
	"net"
	"strings"

	"github.com/distribution/reference"
)

// DockerHub is the canonical identity of Docker Hub, the registry of images
// named without a host.
const DockerHub = "docker.io"

// Invalid is the registry of an image reference that does not parse.
const Invalid = "invalid"

// dockerHubAliases are the hosts the kubelet and distribution/reference
// treat as Docker Hub (reference/normalize.go legacyDefaultDomain;
// pkg/credentialprovider/keyring.go defaultRegistryHost).
var dockerHubAliases = map[string]bool{"docker.io": true, "index.docker.io": true}

// Canonical returns the canonical identity of a registry host[:port] as an
// image reference, a credential key or a policy pattern writes it: lower
// case, Docker Hub aliases folded to "docker.io", the default HTTPS port and
// a trailing dot of the host dropped. It is idempotent; glob characters
// pass through, so patterns canonicalize like hosts.
func Canonical(host string) string {
	h := asciiLower(host)
	name, port := splitPort(h)
	name = strings.TrimRight(name, ".")
	if port == "443" {
		port = ""
	}
	if dockerHubAliases[name] {
		name = DockerHub
	}
	if port == "" {
		return name
	}
	return name + ":" + port
}

// splitPort splits "host:port", "[v6]:port", "host" and "[v6]" without
// failing: anything that is not a clear host:port is all host.
func splitPort(h string) (name, port string) {
	if strings.HasPrefix(h, "[") {
		if end := strings.LastIndex(h, "]"); end >= 0 && strings.HasPrefix(h[end+1:], ":") {
			return h[:end+1], h[end+2:]
		}
		return h, ""
	}
	i := strings.LastIndex(h, ":")
	if i < 0 || strings.Count(h, ":") > 1 {
		return h, ""
	}
	if _, _, err := net.SplitHostPort(h); err != nil {
		return h, ""
	}
	return h[:i], h[i+1:]
}

// Ref is an image reference as crishim reads it.
type Ref struct {
	// Name is the normalized reference as the runtime reads it, spelling
	// kept: "busybox" is "docker.io/library/busybox:latest". Pulls are
	// de-duplicated by it.
	Name string
	// Registry is the canonical identity of the registry (Canonical), or
	// Invalid.
	Registry string
	// Repository is the canonical repository without tag or digest
	// ("localhost:5001/private/x", "docker.io/library/busybox"), the form
	// credentials are looked up by; empty when the reference is invalid.
	Repository string
}

// Parse reads an image reference with docker's grammar (no host means
// docker.io, no tag means latest) and gives its canonical registry and
// repository. A reference that does not parse keeps its text as Name and
// gets the registry Invalid: the runtime reports the error itself.
func Parse(image string) Ref {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return Ref{Name: image, Registry: Invalid}
	}
	reg := Canonical(reference.Domain(named))
	path := reference.Path(named)
	// "INDEX.DOCKER.IO/busybox" parses with the path "busybox": only the
	// lower-case alias gets "library/" from the grammar.
	if reg == DockerHub && !strings.Contains(path, "/") {
		path = "library/" + path
	}
	return Ref{
		Name:       reference.TagNameOnly(named).String(),
		Registry:   reg,
		Repository: reg + "/" + path,
	}
}

// Pattern canonicalizes a host[:port][/path] pattern (a policy registry
// glob, a credential key without its scheme, a plugin's matchImages entry):
// the host part as Canonical, the path as written.
func Pattern(p string) string {
	host, path, found := strings.Cut(p, "/")
	if !found {
		return Canonical(host)
	}
	return Canonical(host) + "/" + path
}

// asciiLower lower-cases ASCII letters only: DNS names are case-insensitive
// in ASCII alone, and Unicode case mapping would fold characters such as the
// Kelvin sign into ASCII letters, making two different names one.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
