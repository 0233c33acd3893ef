// Package plugins hosts unmodified NRI plugins (github.com/containerd/nri)
// in front of any CRI runtime: plugins connect over ttrpc to crishim's own
// socket, NRI's adaptation library talks to them, and crishim maps CRI calls
// to NRI events, applies the container adjustments CRI can carry, refuses
// or drops the rest by policy, turns plugin updates into CRI calls, and puts
// the operator's failure policy and required plugins in front of all of it.
package plugins
