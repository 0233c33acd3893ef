// Package e2e holds crishim's end-to-end tests. They need root and a running test bed
// (test/bed/bed.sh up + crishim-up) described by environment variables, and only build with the
// e2e tag:
//
//	eval "$(RUNTIME=containerd2 test/bed/bed.sh env)"
//	go test -tags e2e -count=1 -v ./test/e2e/...
//
// The bed runs containerd 1.6, containerd 2.x or CRI-O (BED_RUNTIME). The tests talk to crishim
// with the kubelet's own CRI client (k8s.io/cri-client) and compare its answers with the
// runtime's where behaviour must be identical. Where the runtimes differ (runtimes_test.go), each
// runtime's own behaviour is asserted; a test that cannot apply to a runtime skips naming the test
// that asserts the difference. Without root or without the bed's environment every test skips
// with the reason.
package e2e
