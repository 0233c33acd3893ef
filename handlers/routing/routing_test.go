package routing

import (
	"strings"
	"testing"
)

func testHandlers() []RuntimeHandler {
	return []RuntimeHandler{{Name: "runc", Default: true}, {Name: "kata"}, {Name: "gvisor"}}
}

func TestDecide(t *testing.T) {
	rules := []Rule{
		{Name: "ci-denied", Match: Match{Namespaces: []string{"ci-*"}, Labels: map[string]string{"privileged": "true"}}, Deny: "privileged CI pods are not allowed"},
		{Name: "untrusted-to-kata", Match: Match{Namespaces: []string{"untrusted", "tenant-*"}}, Handler: "kata"},
		{Name: "gpu-label", Match: Match{Labels: map[string]string{"accel": "gpu-*"}}, Handler: "runc"},
		{Name: "sandboxed-annotation", Match: Match{Annotations: map[string]string{"security.example/sandbox": "strict"}}, Handler: "gvisor"},
		{Name: "research-choice", Match: Match{Namespaces: []string{"research"}}, AllowPodAnnotation: []string{"kata", "gvisor"}},
		{Name: "runc-class-to-kata-in-prod", Match: Match{Namespaces: []string{"prod"}, RequestedHandlers: []string{"runc"}}, Handler: "kata"},
		{Name: "no-default-in-legacy", Match: Match{Namespaces: []string{"legacy"}, RequestedHandlers: []string{""}}, Deny: "legacy pods must name a RuntimeClass"},
	}
	r := NewRouter(testHandlers(), Routing{Rules: rules})
	tests := []struct {
		desc string
		pod  Pod
		want Decision
	}{
		{"glob namespace and label deny", Pod{Namespace: "ci-42", Labels: map[string]string{"privileged": "true"}}, Decision{Rule: "ci-denied", Denied: true, Reason: "privileged CI pods are not allowed"}},
		{"deny needs every condition", Pod{Namespace: "ci-42", Labels: map[string]string{"privileged": "false"}}, Decision{Handler: "runc", Rule: "default"}},
		{"exact namespace", Pod{Namespace: "untrusted"}, Decision{Handler: "kata", Rule: "untrusted-to-kata"}},
		{"glob namespace overrides the requested handler", Pod{Namespace: "tenant-a", RequestedHandler: "runc"}, Decision{Handler: "kata", Rule: "untrusted-to-kata"}},
		{"glob does not match a prefix alone", Pod{Namespace: "tenant"}, Decision{Handler: "runc", Rule: "default"}},
		{"label glob", Pod{Namespace: "ml", Labels: map[string]string{"accel": "gpu-a100"}}, Decision{Handler: "runc", Rule: "gpu-label"}},
		{"annotation", Pod{Namespace: "web", Annotations: map[string]string{"security.example/sandbox": "strict"}}, Decision{Handler: "gvisor", Rule: "sandboxed-annotation"}},
		{"pod annotation allowed where a rule permits", Pod{Namespace: "research", Annotations: map[string]string{PodHandlerAnnotation: "gvisor"}}, Decision{Handler: "gvisor", Rule: "research-choice"}},
		{"pod annotation outside the allowed list", Pod{Namespace: "research", Annotations: map[string]string{PodHandlerAnnotation: "runc"}}, Decision{Rule: "research-choice", Denied: true, Reason: `pod annotation crishim.io/runtime-handler="runc" asks for a handler rule "research-choice" does not allow (allowed: [kata gvisor])`}},
		{"pod annotation ignored where no rule permits it", Pod{Namespace: "web", Annotations: map[string]string{PodHandlerAnnotation: "kata"}}, Decision{Handler: "runc", Rule: "default"}},
		{"permitting rule without the annotation falls through", Pod{Namespace: "research", RequestedHandler: "kata"}, Decision{Handler: "kata", Rule: "requested"}},
		{"requested handler matched", Pod{Namespace: "prod", RequestedHandler: "runc"}, Decision{Handler: "kata", Rule: "runc-class-to-kata-in-prod"}},
		{"requested handler not matched", Pod{Namespace: "prod", RequestedHandler: "gvisor"}, Decision{Handler: "gvisor", Rule: "requested"}},
		{"empty requested handler matched as \"\"", Pod{Namespace: "legacy"}, Decision{Rule: "no-default-in-legacy", Denied: true, Reason: "legacy pods must name a RuntimeClass"}},
		{"no rule: requested passes", Pod{Namespace: "default", RequestedHandler: "kata"}, Decision{Handler: "kata", Rule: "requested"}},
		{"no rule: unknown requested passes to the known-check", Pod{Namespace: "default", RequestedHandler: "nope"}, Decision{Handler: "nope", Rule: "requested"}},
		{"no rule: empty becomes the default", Pod{Namespace: "default"}, Decision{Handler: "runc", Rule: "default"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := r.Decide(tc.pod); got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecideWithoutDefault(t *testing.T) {
	r := NewRouter([]RuntimeHandler{{Name: "runc"}, {Name: "kata"}}, Routing{})
	if got := r.Decide(Pod{Namespace: "x"}); got != (Decision{Handler: "", Rule: "requested"}) {
		t.Errorf("got %+v: without a configured default, \"\" must stay the runtime's default", got)
	}
}

func TestValidate(t *testing.T) {
	q := mustQ
	tests := []struct {
		desc  string
		hs    []RuntimeHandler
		rules []Rule
		want  []string // substrings, one per expected problem
	}{
		{"valid", testHandlers(), []Rule{{Name: "r", Match: Match{Namespaces: []string{"a-*"}}, Handler: "kata"}}, nil},
		{"unknown handler in a rule", testHandlers(), []Rule{{Name: "to-firecracker", Handler: "fc", Match: Match{Namespaces: []string{"x"}}}}, []string{`routing.rules[0] ("to-firecracker"): handler "fc" is not in handlers`}},
		{"two defaults", []RuntimeHandler{{Name: "runc", Default: true}, {Name: "kata", Default: true}}, nil, []string{"2 handlers are marked default"}},
		{"negative quantity", []RuntimeHandler{{Name: "kata", Overhead: &Overhead{CPU: q("-250m")}}}, nil, []string{`handlers[0] ("kata"): overhead.cpu -250m is negative`}},
		{"bad handler name", []RuntimeHandler{{Name: "Kata_QEMU"}}, nil, []string{"DNS label"}},
		{"duplicate handler", []RuntimeHandler{{Name: "runc"}, {Name: "runc"}}, nil, []string{"defined twice"}},
		{"no action", testHandlers(), []Rule{{Name: "empty", Match: Match{Namespaces: []string{"x"}}}}, []string{`("empty"): set exactly one of`}},
		{"two actions", testHandlers(), []Rule{{Name: "both", Handler: "kata", Deny: "no", Match: Match{Namespaces: []string{"x"}}}}, []string{`("both"): set exactly one of`}},
		{"bad glob", testHandlers(), []Rule{{Name: "glob", Handler: "kata", Match: Match{Namespaces: []string{"[a-"}}}}, []string{`("glob"): match.namespaces pattern "[a-" is not a valid glob`}},
		{"requested handler nobody has", testHandlers(), []Rule{{Name: "rq", Handler: "kata", Match: Match{RequestedHandlers: []string{"fc"}}}}, []string{`("rq"): match.requestedHandlers names "fc"`}},
		{"pod choice of an unknown handler", testHandlers(), []Rule{{Name: "pc", AllowPodAnnotation: []string{"fc"}, Match: Match{Namespaces: []string{"x"}}}}, []string{`("pc"): allowPodAnnotation handler "fc"`}},
		{"unreachable after a catch-all", testHandlers(), []Rule{{Name: "all", Handler: "kata"}, {Name: "later", Handler: "runc", Match: Match{Namespaces: []string{"x"}}}}, []string{`("later"): unreachable: rule "all"`}},
		{"unnamed and duplicate rules", testHandlers(), []Rule{{Handler: "kata", Match: Match{Namespaces: []string{"x"}}}, {Name: "d", Handler: "kata", Match: Match{Namespaces: []string{"y"}}}, {Name: "d", Handler: "kata", Match: Match{Namespaces: []string{"z"}}}}, []string{"routing.rules[0]: name must be set", `("d"): rule name used twice`}},
		{"rules without handlers", nil, []Rule{{Name: "r", Deny: "x"}}, []string{"rules need handlers"}},
		{"vm sizing bounds", []RuntimeHandler{{Name: "kata", VMSizing: &VMSizing{MinVCPUs: 4, MaxVCPUs: 2}}}, nil, []string{"minVCPUs <= maxVCPUs"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := Validate(tc.hs, Routing{Rules: tc.rules})
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %d", len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
