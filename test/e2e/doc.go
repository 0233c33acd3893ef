// Package e2e holds crishim's end-to-end tests. They need root and a running test bed
// (test/bed/bed.sh up + crishim-up) described by environment variables, and only build with the
// e2e tag:
//
//	eval "$(test/bed/bed.sh env)"
//	go test -tags e2e -count=1 -v ./test/e2e/...
//
// The tests talk to crishim with the kubelet's own CRI client (k8s.io/cri-client) and compare
// its answers with containerd's where behaviour must be identical. Without root or without the
// bed's environment every test skips with the reason.
package e2e
