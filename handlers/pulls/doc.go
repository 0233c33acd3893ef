// Package pulls is the PullImage scheduling feature: serial or parallel
// pulls within node-wide and per-registry limits, priority namespaces first,
// and identical concurrent pulls with the same credentials merged into one
// upstream call (never across credentials).
//
// It acts after credential injection (package credentials) on PullImage, so
// the credentials it keys pulls by are the ones the runtime gets.
//
// Files: config.go (images.pulls and its validation), scheduler.go (limits,
// queues, de-duplication), image_pull.go (the intercepted RPC), metrics.go.
package pulls
