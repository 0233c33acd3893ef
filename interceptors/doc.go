// Package interceptors holds crishim's gRPC server middleware, one package per
// concern (recovery, logging, metrics). Each offers a unary form, seen by the
// typed handlers of intercepted methods, and a stream form, seen by the
// passthrough handler that forwards every other call.
package interceptors
