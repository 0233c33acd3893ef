// Package shim is crishim's server core: the unix-socket listener, the
// upstream connections to the real CRI runtime, the method table, the
// passthrough and the lifecycle that ties them together.
//
// The data path is
//
//	listener → frame router ─┬─ passthrough method ─────────────────────────→ upstream
//	                         └─ intercepted method → gRPC server (interceptors,
//	                                                  typed handler) ─────────→ upstream
//
// Every call, of any service, including RPCs newer than the cri-api version
// crishim was built with, is forwarded as HTTP/2 frames by the router
// (package frames) without being decoded, so unknown protobuf fields, status
// details, headers and trailers survive the extra hop. Only methods with a
// registered typed handler are decoded: the router sends them over an
// in-process socket pair to a gRPC server where the handlers run.
package shim
