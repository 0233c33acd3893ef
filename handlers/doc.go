// Package handlers holds the CRI calls crishim intercepts, one file per RPC
// (sandbox_run.go for RunPodSandbox, ...), and the node policy behind them:
// runtime-handler routing and overhead (routing.go, overhead.go), the
// sandbox inventory that keeps per-handler counts right (inventory.go), and
// the RuntimeClass manifests generated from the same configuration
// (runtimeclass.go).
package handlers
