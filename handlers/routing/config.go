package routing

import (
	"fmt"
	"path"
	"slices"

	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// PodHandlerAnnotation is the pod annotation through which a pod may ask for
// a runtime handler, where a rule's allowPodAnnotation permits it.
const PodHandlerAnnotation = "crishim.io/runtime-handler"

// Annotations crishim adds to every sandbox it routes, so operators can see
// the decision with `crictl inspectp`.
const (
	// HandlerAnnotation names the runtime handler crishim chose.
	HandlerAnnotation = "crishim.io/handler"
	// RuleAnnotation names the routing rule that chose it, or one of
	// "requested" (the kubelet's choice passed through) and "default".
	RuleAnnotation = "crishim.io/routing-rule"
)

// Kata's VM sizing annotations, honoured when the runtime's handler entry
// passes them (containerd pod_annotations = ["io.katacontainers.*"]) and
// Kata's enable_annotations lists them.
const (
	KataVCPUsAnnotation  = "io.katacontainers.config.hypervisor.default_vcpus"
	KataMemoryAnnotation = "io.katacontainers.config.hypervisor.default_memory"
)

// RuntimeHandler is a runtime handler crishim knows: the name of a handler
// entry in the runtime's configuration (containerd runtimes.NAME, CRI-O
// runtimes.NAME).
type RuntimeHandler struct {
	// Name must equal the runtime's handler name (a DNS label).
	Name string `json:"name"`
	// Default makes this the handler for pods that ask for none ("").
	Default bool `json:"default,omitempty"`
	// RuntimeClassName names the generated RuntimeClass (default: Name).
	RuntimeClassName string `json:"runtimeClassName,omitempty"`
	// Overhead is the pod overhead of this handler (the RuntimeClass's
	// overhead.podFixed).
	Overhead *Overhead `json:"overhead,omitempty"`
	// VMSizing, when set, sizes a Kata VM through its annotations.
	VMSizing *VMSizing `json:"vmSizing,omitempty"`
	// Annotations are added to every sandbox of this handler (they override
	// pod annotations of the same key).
	Annotations map[string]string `json:"annotations,omitempty"`
	// Scheduling is copied into the generated RuntimeClass.
	Scheduling *nodev1.Scheduling `json:"scheduling,omitempty"`
}

// Overhead is a fixed per-pod resource cost.
type Overhead struct {
	CPU    *resource.Quantity `json:"cpu,omitempty"`
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// VMSizing computes Kata's default_vcpus and default_memory annotations from
// the pod's resources plus the overhead.
type VMSizing struct {
	// MinVCPUs is the smallest VM (default 1).
	MinVCPUs int64 `json:"minVCPUs,omitempty"`
	// MaxVCPUs caps the VM (0: no cap).
	MaxVCPUs int64 `json:"maxVCPUs,omitempty"`
	// MinMemory is the smallest VM memory (default 256Mi).
	MinMemory *resource.Quantity `json:"minMemory,omitempty"`
}

// Routing is the ordered rule list; the first matching rule decides.
type Routing struct {
	Rules []Rule `json:"rules,omitempty"`
}

// Rule matches pods and decides their handler. Exactly one of Handler, Deny
// and AllowPodAnnotation is set.
type Rule struct {
	// Name identifies the rule in logs, metrics and the sandbox annotation.
	Name  string `json:"name"`
	Match Match  `json:"match"`
	// Handler routes matching pods to this handler.
	Handler string `json:"handler,omitempty"`
	// Deny refuses matching pods (PermissionDenied) with this reason.
	Deny string `json:"deny,omitempty"`
	// AllowPodAnnotation lets matching pods choose one of these handlers
	// with the crishim.io/runtime-handler annotation. Pods without the
	// annotation go on to the next rule.
	AllowPodAnnotation []string `json:"allowPodAnnotation,omitempty"`
}

// Match selects pods. Every condition given must hold; a list matches when
// any of its entries does. An empty Match selects every pod.
type Match struct {
	// Namespaces are exact names or globs ("team-*", "ci-?").
	Namespaces []string `json:"namespaces,omitempty"`
	// Labels and Annotations must all be present with these values (globs).
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// RequestedHandlers are the handlers the kubelet asked for, from the
	// pod's RuntimeClass; "" is a pod without one.
	RequestedHandlers []string `json:"requestedHandlers,omitempty"`
}

func (m *Match) empty() bool {
	return len(m.Namespaces) == 0 && len(m.Labels) == 0 && len(m.Annotations) == 0 && len(m.RequestedHandlers) == 0
}

// Validate returns every problem of the handlers and routing configuration,
// each naming the handler or rule.
func Validate(hs []RuntimeHandler, r Routing) []string {
	var problems []string
	add := func(key, format string, args ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, args...))
	}
	names := map[string]bool{}
	var defaults []string
	for i, h := range hs {
		key := fmt.Sprintf("handlers[%d] (%q)", i, h.Name)
		switch {
		case h.Name == "":
			add(fmt.Sprintf("handlers[%d]", i), "name must be set to the runtime's handler name")
		case len(validation.IsDNS1123Label(h.Name)) > 0:
			add(key, "name must be a DNS label (lowercase letters, digits and '-', at most 63), as RuntimeClass.handler is")
		case names[h.Name]:
			add(key, "handler defined twice")
		}
		names[h.Name] = true
		if h.Default {
			defaults = append(defaults, h.Name)
		}
		if h.Overhead != nil {
			for res, q := range map[string]*resource.Quantity{"cpu": h.Overhead.CPU, "memory": h.Overhead.Memory} {
				if q != nil && q.Sign() < 0 {
					add(key, "overhead.%s %s is negative", res, q.String())
				}
			}
		}
		if v := h.VMSizing; v != nil {
			if v.MinVCPUs < 0 || v.MaxVCPUs < 0 || (v.MaxVCPUs > 0 && v.MaxVCPUs < v.MinVCPUs) {
				add(key, "vmSizing: want 0 <= minVCPUs <= maxVCPUs (maxVCPUs 0 = no cap)")
			}
			if v.MinMemory != nil && v.MinMemory.Sign() < 0 {
				add(key, "vmSizing.minMemory %s is negative", v.MinMemory.String())
			}
		}
		if h.RuntimeClassName != "" && !validSubdomain(h.RuntimeClassName) {
			add(key, "runtimeClassName %q is not a DNS subdomain", h.RuntimeClassName)
		}
	}
	if len(defaults) > 1 {
		add("handlers", "%d handlers are marked default (%v); at most one may be", len(defaults), defaults)
	}
	if len(r.Rules) > 0 && len(hs) == 0 {
		add("routing.rules", "rules need handlers to route to; list the runtime's handlers under handlers")
	}
	known := func(h string) bool { return names[h] }
	ruleNames := map[string]bool{}
	catchAll := ""
	for i, rule := range r.Rules {
		key := fmt.Sprintf("routing.rules[%d] (%q)", i, rule.Name)
		if rule.Name == "" {
			add(fmt.Sprintf("routing.rules[%d]", i), "name must be set")
		} else if ruleNames[rule.Name] {
			add(key, "rule name used twice")
		}
		ruleNames[rule.Name] = true
		if catchAll != "" {
			add(key, "unreachable: rule %q before it matches every pod", catchAll)
		}
		actions := 0
		for _, set := range []bool{rule.Handler != "", rule.Deny != "", len(rule.AllowPodAnnotation) > 0} {
			if set {
				actions++
			}
		}
		if actions != 1 {
			add(key, "set exactly one of handler, deny and allowPodAnnotation")
		}
		if rule.Handler != "" && !known(rule.Handler) {
			add(key, "handler %q is not in handlers (known: %v)", rule.Handler, sortedKeys(names))
		}
		for _, h := range rule.AllowPodAnnotation {
			if !known(h) {
				add(key, "allowPodAnnotation handler %q is not in handlers (known: %v)", h, sortedKeys(names))
			}
		}
		for _, h := range rule.Match.RequestedHandlers {
			if h != "" && !known(h) {
				add(key, "match.requestedHandlers names %q, which is not in handlers; a pod asking for it is rejected before any rule", h)
			}
		}
		for _, ns := range rule.Match.Namespaces {
			if _, err := path.Match(ns, ""); err != nil {
				add(key, "match.namespaces pattern %q is not a valid glob", ns)
			}
		}
		for k, v := range mergeMaps(rule.Match.Labels, rule.Match.Annotations) {
			if _, err := path.Match(v, ""); err != nil {
				add(key, "match value %q for %q is not a valid glob", v, k)
			}
		}
		if rule.Match.empty() && len(rule.AllowPodAnnotation) == 0 && catchAll == "" {
			catchAll = rule.Name
		}
	}
	return problems
}

func validSubdomain(s string) bool { return len(validation.IsDNS1123Subdomain(s)) == 0 }

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func mergeMaps(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out["label "+k] = v
	}
	for k, v := range b {
		out["annotation "+k] = v
	}
	return out
}
