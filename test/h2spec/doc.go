// Package h2spec checks the HTTP/2 conformance of crishim's listener (the
// frame router of shim/frames, as shim.Server runs it) with h2spec
// (github.com/summerwind/h2spec).
//
// The test starts a cleartext HTTP/2 upstream on a unix socket answering
// every request with 200 and a few KiB of body, puts crishim's server in
// front of it (the daemon's default limits) on a loopback TCP port, runs the
// h2spec binary against that port and fails listing every failed case with
// what h2spec expected and what it got.
//
// The binary comes from the environment, so that unit runs need no tool:
//
//	make h2spec                                  # installs bin/h2spec, then runs the test
//	H2SPEC=$PWD/bin/h2spec go test -count=1 -v ./test/h2spec/
//
// Without H2SPEC the test skips (so `make unit` needs no tool), unless
// H2SPEC_REQUIRED=1, which `make h2spec` sets so that a missing tool fails
// rather than skips. H2SPEC_ARGS adds h2spec arguments, e.g. to rerun one
// case showing its frames:
//
//	H2SPEC=$PWD/bin/h2spec H2SPEC_ARGS='-v http2/6.9.1/1' go test -count=1 -v -run TestH2spec ./test/h2spec/
//
// A case that does not apply to the router would be listed, with the
// reason, in the test's excluded table; none is.
package h2spec
