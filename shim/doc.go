// Package shim is crishim's server core: the unix-socket listener, the
// upstream connections to the real CRI runtime, the method table, the raw
// passthrough forwarder and the lifecycle that ties them together.
//
// The data path is
//
//	listener → interceptor chain → typed handler (few methods) or raw passthrough → upstream
//
// Only methods with a registered typed handler are decoded. Every other call,
// of any service, including RPCs newer than the cri-api version crishim was
// built with, reaches one passthrough handler (grpc.UnknownServiceHandler)
// whose codec moves message bytes untouched, so unknown protobuf fields,
// status details, headers and trailers survive the extra hop.
package shim
