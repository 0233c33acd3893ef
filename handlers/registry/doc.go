// Package registry gives every registry one canonical identity, the one
// crishim compares, limits and labels by.
//
// Pod authors write image references, and the docker reference grammar lets
// them spell one registry several ways that DNS, TLS and the runtime all
// treat as the same server: "LOCALHOST:5001" and "localhost:5001",
// "INDEX.DOCKER.IO" and "docker.io", "registry.example:443" and
// "registry.example". A policy that compared the spellings would let a pod
// reach credentials it was refused by writing the host in upper case, so
// everything that decides by registry (the credentials policy, the keyring
// lookup, per-registry pull limits, metric labels) goes through Canonical.
//
// What is folded:
//   - letter case of the host (DNS names are case-insensitive), including
//     punycode ("XN--BCHER-KVA.example" is "xn--bcher-kva.example") and IPv6
//     hex digits;
//   - Docker Hub's aliases "docker.io" and "index.docker.io", as the kubelet
//     and distribution/reference fold them (an image without a host is
//     docker.io; a one-segment Docker Hub path gets "library/");
//   - the HTTPS default port ":443";
//   - a trailing dot of a host in a pattern or key ("registry.example.").
//
// What is not folded, because it is not a spelling of one name: other names
// or addresses of the same server (CNAMEs, "127.0.0.1" vs "localhost",
// "registry-1.docker.io"), and ":80" (a registry without a port is reached on
// 443). The reference grammar itself refuses a trailing dot and non-ASCII
// (Unicode IDN) hosts in image references: such images get no node
// credentials, and the runtime reports the error.
package registry
