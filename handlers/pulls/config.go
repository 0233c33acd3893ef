package pulls

import (
	"fmt"
	"path"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Config is images.pulls: how PullImage calls are scheduled.
type Config struct {
	// Mode is "serial" (one pull at a time, the kubelet's default) or
	// "parallel".
	Mode string `json:"mode"`
	// MaxParallel caps parallel pulls node-wide (0: no cap).
	MaxParallel int `json:"maxParallel,omitempty"`
	// MaxParallelPerRegistry caps parallel pulls from one registry host
	// (0: no cap).
	MaxParallelPerRegistry int `json:"maxParallelPerRegistry,omitempty"`
	// PriorityNamespaces' pulls go before all others (exact names).
	PriorityNamespaces []string `json:"priorityNamespaces,omitempty"`
	// Deduplicate merges identical concurrent pulls with the same
	// credentials into one upstream call (default true).
	Deduplicate *bool `json:"deduplicate,omitempty"`
	// Timeout bounds one upstream pull ("" or 0: none, like the kubelet).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// KeyAnnotations are image annotation keys (globs) whose values keep
	// otherwise identical pulls apart; none by default, since the kubelet
	// copies every pod annotation into the pull (see Puller.SetKeyAnnotations).
	KeyAnnotations []string `json:"keyAnnotations,omitempty"`
}

// unlimited stands for "no cap" on parallel pulls.
const unlimited = 1 << 30

// Limits returns the scheduler limits of a validated configuration.
func (c *Config) Limits() Limits {
	l := Limits{MaxParallel: c.MaxParallel, MaxParallelPerRegistry: c.MaxParallelPerRegistry}
	switch {
	case c.Mode == "serial":
		l.MaxParallel = 1
	case l.MaxParallel == 0:
		l.MaxParallel = unlimited
	}
	if c.Timeout != nil {
		l.Timeout = c.Timeout.Duration
	}
	return l
}

// Dedup reports whether identical pulls are merged.
func (c *Config) Dedup() bool { return c.Deduplicate == nil || *c.Deduplicate }

// Validate returns every problem of images.pulls.
func (c *Config) Validate() []string {
	var problems []string
	switch c.Mode {
	case "serial":
		if c.MaxParallel > 1 {
			problems = append(problems, fmt.Sprintf("images.pulls.maxParallel: %d needs mode: parallel (serial pulls one at a time)", c.MaxParallel))
		}
	case "parallel":
	default:
		problems = append(problems, fmt.Sprintf("images.pulls.mode: %q is not serial or parallel", c.Mode))
	}
	if c.MaxParallel < 0 {
		problems = append(problems, "images.pulls.maxParallel: must not be negative (0: no cap)")
	}
	if c.MaxParallelPerRegistry < 0 {
		problems = append(problems, "images.pulls.maxParallelPerRegistry: must not be negative (0: no cap)")
	}
	for i, g := range c.KeyAnnotations {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			problems = append(problems, fmt.Sprintf("images.pulls.keyAnnotations[%d]: %q is not a valid glob of annotation keys", i, g))
		}
	}
	if c.Timeout != nil && c.Timeout.Duration < 0 {
		problems = append(problems, "images.pulls.timeout: must not be negative")
	}
	return problems
}
