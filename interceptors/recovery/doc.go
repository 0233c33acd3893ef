// Package recovery turns a panic in a handler into codes.Internal for the
// caller and a log line with the stack for the operator, so one bad call
// never takes down the proxy, and with it, the node's runtime.
//
// Unlike go-grpc-middleware's default, the stack never reaches the caller.
package recovery
