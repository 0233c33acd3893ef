package configfile

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type inner struct {
	Mode string `json:"mode"`
}

type doc struct {
	Name     string             `json:"name"`
	Count    int                `json:"count,omitempty"`
	Enabled  *bool              `json:"enabled,omitempty"`
	Inner    inner              `json:"inner"`
	List     []inner            `json:"list,omitempty"`
	Labels   map[string]string  `json:"labels,omitempty"`
	Quantity *resource.Quantity `json:"quantity,omitempty"`
	Duration *metav1.Duration   `json:"duration,omitempty"`
	Embedded `json:",inline"`
}

type Embedded struct {
	Extra string `json:"extra,omitempty"`
}

func TestCheck(t *testing.T) {
	tests := []struct {
		desc, yaml string
		want       []string
	}{
		{"valid", "name: a\ncount: 2\nenabled: true\ninner: {mode: x}\nlist: [{mode: w}]\nlabels: {a: b}\nquantity: 16Mi\nduration: 3s\nextra: e\n", nil},
		{"null leaves defaults", "name: null\ninner: null\n", nil},
		{"unknown keys at every depth", "nmae: a\ninner: {mdoe: x}\nlist: [{mode: w}, {mod: z}]\n", []string{"inner.mdoe: unknown key", "list[1].mod: unknown key", "nmae: unknown key"}},
		{"wrong types", "name: [1]\ncount: many\nenabled: maybe\ninner: 3\nlist: {a: 1}\nlabels: [x]\n", []string{
			"count: want a whole number, got the string \"many\"", "inner: want a mapping of keys, got the number 3",
			"labels: want a mapping, got a list", "list: want a list, got a mapping", "name: want a string, got a list", "enabled: want true or false"}},
		{"custom decoders", "quantity: lots\nduration: soon\n", []string{"duration: time: invalid duration", "quantity: quantities must match"}},
		{"not yaml", "a: [\n", []string{"not valid YAML"}},
		{"not a mapping", "- a\n", []string{"want a mapping of keys, got a list"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := Strings(Check([]byte(tc.yaml), &doc{}))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %d", len(got), got, len(tc.want))
			}
			joined := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
		})
	}
}
