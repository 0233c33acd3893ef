package routing

import (
	"fmt"
	"path"
	"slices"
)

// Pod is what routing looks at: the fields of a RunPodSandboxRequest.
type Pod struct {
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
	// RequestedHandler is the kubelet's runtime_handler ("" = default).
	RequestedHandler string
}

// Decision is the outcome of routing one pod.
type Decision struct {
	// Handler is the handler to run the pod with ("" = the runtime's default,
	// only when no default handler is configured).
	Handler string
	// Rule is the rule that decided, or "requested"/"default" when none did.
	Rule string
	// Denied is set when a rule refuses the pod; Reason says why.
	Denied bool
	Reason string
}

// Router applies the ordered rules.
type Router struct {
	rules    []Rule
	handlers map[string]*RuntimeHandler
	def      string
}

// NewRouter returns a router over a validated configuration.
func NewRouter(hs []RuntimeHandler, r Routing) *Router {
	rt := &Router{rules: r.Rules, handlers: map[string]*RuntimeHandler{}}
	for i := range hs {
		rt.handlers[hs[i].Name] = &hs[i]
		if hs[i].Default {
			rt.def = hs[i].Name
		}
	}
	return rt
}

// Handler returns the configuration of a known handler, or nil.
func (r *Router) Handler(name string) *RuntimeHandler { return r.handlers[name] }

// Known lists the configured handler names, sorted.
func (r *Router) Known() []string {
	out := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Decide routes a pod: the first matching rule wins; without one, the
// requested handler passes unchanged and "" becomes the default handler.
func (r *Router) Decide(p Pod) Decision {
	for _, rule := range r.rules {
		if !rule.Match.matches(p) {
			continue
		}
		switch {
		case rule.Deny != "":
			return Decision{Rule: rule.Name, Denied: true, Reason: rule.Deny}
		case rule.Handler != "":
			return Decision{Handler: rule.Handler, Rule: rule.Name}
		default:
			// Pod annotations are written by whoever creates the pod: they
			// choose a handler only where this rule allows it, and only
			// among the handlers it lists.
			want, ok := p.Annotations[PodHandlerAnnotation]
			if !ok {
				continue
			}
			if !slices.Contains(rule.AllowPodAnnotation, want) {
				return Decision{Rule: rule.Name, Denied: true, Reason: fmt.Sprintf(
					"pod annotation %s=%q asks for a handler rule %q does not allow (allowed: %v)",
					PodHandlerAnnotation, want, rule.Name, rule.AllowPodAnnotation)}
			}
			return Decision{Handler: want, Rule: rule.Name}
		}
	}
	if p.RequestedHandler == "" && r.def != "" {
		return Decision{Handler: r.def, Rule: "default"}
	}
	return Decision{Handler: p.RequestedHandler, Rule: "requested"}
}

func (m *Match) matches(p Pod) bool {
	if len(m.Namespaces) > 0 && !slices.ContainsFunc(m.Namespaces, func(pat string) bool { return glob(pat, p.Namespace) }) {
		return false
	}
	if len(m.RequestedHandlers) > 0 && !slices.Contains(m.RequestedHandlers, p.RequestedHandler) {
		return false
	}
	return mapMatches(m.Labels, p.Labels) && mapMatches(m.Annotations, p.Annotations)
}

func mapMatches(want, have map[string]string) bool {
	for k, pat := range want {
		v, ok := have[k]
		if !ok || !glob(pat, v) {
			return false
		}
	}
	return true
}

// glob matches shell patterns; validation rejected malformed ones.
func glob(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}
