package handlers

import (
	"github.com/distribution/reference"
)

// DockerHub is the registry of images named without a host.
const DockerHub = "docker.io"

// ImageRef is an image reference as pulls are keyed and limited by.
type ImageRef struct {
	// Name is the normalized reference: "busybox" becomes
	// "docker.io/library/busybox:latest".
	Name string
	// Registry is the host[:port] the image is pulled from.
	Registry string
}

// ParseImage normalizes an image reference the way containerd and the
// kubelet read it (docker's reference grammar: no host means docker.io, no
// tag means latest). A reference that does not parse keeps its text and
// gets the registry "invalid": the runtime reports the error itself.
func ParseImage(image string) ImageRef {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return ImageRef{Name: image, Registry: "invalid"}
	}
	named = reference.TagNameOnly(named)
	return ImageRef{Name: named.String(), Registry: reference.Domain(named)}
}
