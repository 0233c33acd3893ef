package credentials

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestCredentialNeverPrintsPassword prints a credential every way a log line
// might and checks the password never shows.
func TestCredentialNeverPrintsPassword(t *testing.T) {
	c := Credential{Username: "robot", Password: "pw-very-secret", Source: SourceDockerConfig, Pattern: "registry.example"}
	const want = "robot@registry.example (dockerconfig)"
	if got := c.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	renderings := map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
		"%s": fmt.Sprintf("%s", c), "%q": fmt.Sprintf("%q", c), "%x": fmt.Sprintf("%x", c),
		"%d": fmt.Sprintf("%d", c), "pointer %+v": fmt.Sprintf("%+v", &c),
		"slice %+v": fmt.Sprintf("%+v", []Credential{c}), "map %#v": fmt.Sprintf("%#v", map[string]Credential{"k": c}),
		"struct field %+v": fmt.Sprintf("%+v", struct{ C Credential }{c}),
		"GoString":         c.GoString(), "Sprint": fmt.Sprint(c), "Sprintln": fmt.Sprintln(c),
		"json": string(js),
	}
	for name, s := range renderings {
		if strings.Contains(s, "pw-very-secret") {
			t.Errorf("%s printed the password: %s", name, s)
		}
		if !strings.Contains(s, "robot") {
			t.Errorf("%s lost the username: %s", name, s)
		}
	}
	if got := fmt.Sprintf("%q", c); got != `"`+want+`"` {
		t.Errorf("%%q = %s", got)
	}

	log, sink := newLog(t)
	log.WithField("cred", c).WithField("creds", []Credential{c}).Info("x")
	if strings.Contains(sink.all(), "pw-very-secret") {
		t.Errorf("logrus printed the password:\n%s", sink.all())
	}
}

type staticProvider []Credential

func (s staticProvider) Lookup(context.Context, string) []Credential { return s }

// TestChain checks that providers are asked in order and their answers
// concatenated, nil providers skipped.
func TestChain(t *testing.T) {
	var nilPlugins *Plugins
	var nilDocker *DockerConfig
	c := Chain(
		staticProvider{{Username: "a"}, {Username: "b"}},
		nil,
		nilDocker,
		staticProvider{},
		nilPlugins,
		staticProvider{{Username: "c"}, {Username: "a"}},
	)
	got := users(c.Lookup(context.Background(), "busybox"))
	if want := []string{"a", "b", "c", "a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Chain lookup = %v, want %v", got, want)
	}
	if got := Chain().Lookup(context.Background(), "busybox"); len(got) != 0 {
		t.Errorf("empty Chain lookup = %v, want none", got)
	}
}
