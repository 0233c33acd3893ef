// Package interceptors holds crishim's gRPC server middleware, one package per
// concern (recovery, logging, metrics). Each offers a unary form, seen by the
// typed handlers of intercepted methods, and a stream form for streaming
// handlers. Passthrough calls, forwarded as HTTP/2 frames, never reach the
// gRPC server: logging and metrics also observe them as frames.Observer.
package interceptors
