package registry

import "sync"

// DefaultMaxLabels is how many distinct registries get a metric label of
// their own when the configuration does not say: a node pulls from a handful
// of registries, and 50 label values times the pull metrics' series (one
// histogram of 14 buckets among them) stay small for every Prometheus that
// scrapes the node.
const DefaultMaxLabels = 50

// Other is the label value of every registry beyond the bound.
const Other = "other"

// Labels bounds the registry label values of metrics. Registry names come
// from image references that pod authors write, and series are never
// deleted, so without a bound any pod could grow crishim's memory and every
// Prometheus scraping it by pulling a1.example/x, a2.example/x, ... The
// first max distinct registries seen since start keep their name; later
// ones are counted as "other". A registry keeps its label for the life of
// the process, so gauges incremented and decremented per pull stay paired.
type Labels struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

// NewLabels returns a bound of max registries (DefaultMaxLabels when max is
// 0 or less).
func NewLabels(max int) *Labels {
	if max <= 0 {
		max = DefaultMaxLabels
	}
	return &Labels{max: max, seen: map[string]struct{}{}}
}

// Value returns the label value for a registry: its canonical identity, or
// Other once the bound is reached. Invalid and Other are always themselves
// and do not count against the bound.
func (l *Labels) Value(registry string) string {
	if registry == Invalid || registry == Other {
		return registry
	}
	reg := Canonical(registry)
	l.mu.RLock()
	_, ok := l.seen[reg]
	full := len(l.seen) >= l.max
	l.mu.RUnlock()
	if ok {
		return reg
	}
	if full {
		return Other
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[reg]; ok {
		return reg
	}
	if len(l.seen) >= l.max {
		return Other
	}
	l.seen[reg] = struct{}{}
	return reg
}

// Max returns the bound.
func (l *Labels) Max() int { return l.max }
