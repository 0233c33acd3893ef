// Package routing is the RunPodSandbox feature: it routes each pod to a
// runtime handler (runc, kata, ...) by the pod's RuntimeClass handler,
// namespace, labels or annotations, denies what the policy forbids, rejects
// handlers the runtime does not have, and fills in the handler's overhead
// and Kata VM sizing.
//
// Files: config.go (the handlers and routing sections and their
// validation), routing.go (the rules), overhead.go (overhead and VM
// sizing), sandbox_run.go (the intercepted RPC), inventory.go (the
// sandboxes per handler, from the runtime, and the handlers it reports),
// runtimeclass.go (RuntimeClass manifests from the same configuration),
// metrics.go.
package routing
