// Package metrics counts and times every call crishim handles, typed or
// passthrough, with Prometheus metrics registered on an injected registerer.
//
// Label values are bounded: service and method come from the method table
// (unknown methods beyond a small number share "unknown"), codes are the 17
// gRPC codes.
package metrics
