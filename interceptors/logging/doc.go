// Package logging writes one structured logrus line per call: method, status
// code, duration and, where the message says so cheaply, the pod, container
// or image the call is about.
//
// Calls that change state are logged at info; the kubelet's frequent
// observing calls (List*, *Status, stats, Version, ExecSync probes) at debug.
// Server-side failures are raised to warning. Payloads are never logged, so
// neither are the credentials a PullImage request may carry.
package logging
