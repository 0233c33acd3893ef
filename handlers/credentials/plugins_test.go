package credentials

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
)

// pluginSpec is one provider of a test config, run by the test plugin.
type pluginSpec struct {
	name         string
	match        []string
	args         []string
	env          map[string]string
	defaultCache time.Duration
}

// newTestPlugins builds Plugins over the test plugin binary, linked into a
// plugin directory under each provider's name, with a fake clock. Each
// provider records its calls in its own file (see calls).
func newTestPlugins(t *testing.T, log logrus.FieldLogger, clock *fakeClock, specs ...pluginSpec) (*Plugins, map[string]string) {
	t.Helper()
	bin := t.TempDir()
	records := map[string]string{}
	cfg := &kubeletconfigv1.CredentialProviderConfig{}
	for _, s := range specs {
		if err := os.Symlink(pluginBinary, filepath.Join(bin, s.name)); err != nil {
			t.Fatal(err)
		}
		records[s.name] = filepath.Join(t.TempDir(), "calls")
		env := []kubeletconfigv1.ExecEnvVar{{Name: "CRED_RECORD", Value: records[s.name]}}
		for k, v := range s.env {
			env = append(env, kubeletconfigv1.ExecEnvVar{Name: k, Value: v})
		}
		cfg.Providers = append(cfg.Providers, kubeletconfigv1.CredentialProvider{
			Name:                 s.name,
			MatchImages:          s.match,
			DefaultCacheDuration: &metav1.Duration{Duration: s.defaultCache},
			APIVersion:           "credentialprovider.kubelet.k8s.io/v1",
			Args:                 s.args,
			Env:                  env,
		})
	}
	p, err := NewPlugins(cfg, bin, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range p.plugins {
		pl.now = clock.now
	}
	t.Cleanup(p.wait)
	return p, records
}

// call is what the test plugin recorded of one invocation.
type call struct {
	Args      []string `json:"args"`
	Stdin     string   `json:"stdin"`
	Extra     string   `json:"extra"`
	Inherited string   `json:"inherited"`
}

func calls(t *testing.T, record string) []call {
	t.Helper()
	f, err := os.Open(record)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []call
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var c call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("record line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}

func authJSON(pairs ...string) string {
	m := map[string]map[string]string{}
	for i := 0; i < len(pairs); i += 3 {
		m[pairs[i]] = map[string]string{"username": pairs[i+1], "password": pairs[i+2]}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestPluginProtocol runs one real plugin call: the request on stdin, args,
// env added to crishim's own (config winning), and the answer's auth keys
// matched against the image.
func TestPluginProtocol(t *testing.T) {
	log, _ := newLog(t)
	t.Setenv("CRED_INHERITED", "from-crishim")
	t.Setenv("CRED_EXTRA", "crishim-value")
	p, rec := newTestPlugins(t, log, newClock(), pluginSpec{
		name:  "ecr",
		match: []string{"*.example"},
		args:  []string{"get-credentials", "--region=eu"},
		env: map[string]string{
			"CRED_EXTRA": "config-value",
			"CRED_AUTH": authJSON(
				"registry.example", "host", "pw1",
				"registry.example/team", "team", "pw2",
				"other.example", "other", "pw3",
			),
		},
	})
	got := p.Lookup(context.Background(), "registry.example/team/app:1.0")
	want := []Credential{
		{Username: "team", Password: "pw2", Source: "plugin:ecr", Pattern: "registry.example/team"},
		{Username: "host", Password: "pw1", Source: "plugin:ecr", Pattern: "registry.example"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Lookup = %v, want %v", userPasses(got), userPasses(want))
	}
	cs := calls(t, rec["ecr"])
	if len(cs) != 1 {
		t.Fatalf("plugin called %d times, want 1", len(cs))
	}
	var req map[string]any
	if err := json.Unmarshal([]byte(cs[0].Stdin), &req); err != nil {
		t.Fatalf("stdin %q: %v", cs[0].Stdin, err)
	}
	wantReq := map[string]any{
		"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
		"kind":       "CredentialProviderRequest",
		"image":      "registry.example/team/app", // the kubelet's repoToPull: no tag
	}
	if !reflect.DeepEqual(req, wantReq) {
		t.Errorf("request = %v, want %v", req, wantReq)
	}
	if want := []string{"get-credentials", "--region=eu"}; !reflect.DeepEqual(cs[0].Args, want) {
		t.Errorf("args = %q, want %q", cs[0].Args, want)
	}
	if cs[0].Extra != "config-value" || cs[0].Inherited != "from-crishim" {
		t.Errorf("env: CRED_EXTRA=%q (want config-value), CRED_INHERITED=%q (want from-crishim)", cs[0].Extra, cs[0].Inherited)
	}

	// Docker Hub images reach the plugin normalized, as the kubelet sends them.
	p2, rec2 := newTestPlugins(t, log, newClock(), pluginSpec{name: "hub", match: []string{"docker.io"},
		env: map[string]string{"CRED_AUTH": authJSON("docker.io", "hub", "pw")}})
	if got := users(p2.Lookup(context.Background(), "busybox")); !reflect.DeepEqual(got, []string{"hub"}) {
		t.Errorf("busybox: Lookup = %v, want [hub]", got)
	}
	if cs := calls(t, rec2["hub"]); len(cs) != 1 || !json.Valid([]byte(cs[0].Stdin)) || !containsImage(cs[0].Stdin, "docker.io/library/busybox") {
		t.Errorf("busybox request = %+v, want image docker.io/library/busybox", cs)
	}
}

func containsImage(stdin, image string) bool {
	var r struct{ Image string }
	return json.Unmarshal([]byte(stdin), &r) == nil && r.Image == image
}

// TestPluginMatchImages checks that a plugin is called only for images its
// matchImages match, with the keyring's rules.
func TestPluginMatchImages(t *testing.T) {
	tests := []struct {
		image string
		call  bool
	}{
		{"a.registry.example/app", true},
		{"registry.example/app", false},
		{"a.b.registry.example/app", false},
		{"registry.example:5000/team/app", true},
		{"registry.example:5000/other/app", false},
		{"registry.example:5001/team/app", false},
		{"other.example/app", false},
		{"busybox", false},
		{"not a reference", false},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			log, _ := newLog(t)
			p, rec := newTestPlugins(t, log, newClock(), pluginSpec{
				name:  "gated",
				match: []string{"*.registry.example", "registry.example:5000/team"},
				env:   map[string]string{"CRED_AUTH": authJSON("*.registry.example", "u", "p", "registry.example:5000", "u2", "p2")},
			})
			creds := p.Lookup(context.Background(), tc.image)
			if n := len(calls(t, rec["gated"])); (n == 1) != tc.call || n > 1 {
				t.Errorf("plugin calls = %d, want called=%v", n, tc.call)
			}
			if (len(creds) > 0) != tc.call {
				t.Errorf("credentials = %v, want some=%v", creds, tc.call)
			}
		})
	}
}

// TestPluginCacheKeyTypes checks that an answer is reused for the image, the
// registry or every image, as its cacheKeyType says.
func TestPluginCacheKeyTypes(t *testing.T) {
	tests := []struct {
		keyType string
		want    int // calls for: a, a again, b on the same registry, c on another
	}{
		{"Image", 3},
		{"Registry", 2},
		{"Global", 1},
	}
	for _, tc := range tests {
		t.Run(tc.keyType, func(t *testing.T) {
			log, _ := newLog(t)
			p, rec := newTestPlugins(t, log, newClock(), pluginSpec{
				name: "p", match: []string{"*.example", "*.example:5000"},
				env: map[string]string{"CRED_AUTH": authJSON("*.example", "u", "pw", "*.example:5000", "u", "pw"), "CRED_CACHE_KEY": tc.keyType, "CRED_CACHE_DURATION": "1h"},
			})
			for _, image := range []string{"r1.example/a:1", "r1.example/a:2", "r1.example/b", "r2.example:5000/c"} {
				if got := users(p.Lookup(context.Background(), image)); !reflect.DeepEqual(got, []string{"u"}) {
					t.Errorf("%s: Lookup = %v, want [u] (cached or not)", image, got)
				}
			}
			if n := len(calls(t, rec["p"])); n != tc.want {
				t.Errorf("plugin calls = %d, want %d", n, tc.want)
			}
		})
	}
}

// TestPluginCacheDuration checks the answer's cacheDuration, the provider's
// defaultCacheDuration when the answer has none, and 0 as "do not cache".
func TestPluginCacheDuration(t *testing.T) {
	tests := []struct {
		desc         string
		respDuration string // "" for none
		defaultCache time.Duration
		after        time.Duration // clock advance between the two lookups
		wantCalls    int
	}{
		{"response duration, fresh", "30s", time.Hour, 29 * time.Second, 1},
		{"response duration, expired", "30s", time.Hour, 31 * time.Second, 2},
		{"response duration 0 means not cached", "0s", time.Hour, 0, 2},
		{"default duration, fresh", "", time.Minute, 59 * time.Second, 1},
		{"default duration, expired", "", time.Minute, 61 * time.Second, 2},
		{"default duration 0 means not cached", "", 0, 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			log, _ := newLog(t)
			clock := newClock()
			env := map[string]string{"CRED_AUTH": authJSON("registry.example", "u", "pw")}
			if tc.respDuration != "" {
				env["CRED_CACHE_DURATION"] = tc.respDuration
			}
			p, rec := newTestPlugins(t, log, clock, pluginSpec{name: "p", match: []string{"registry.example"}, env: env, defaultCache: tc.defaultCache})
			for i := 0; i < 2; i++ {
				if got := users(p.Lookup(context.Background(), "registry.example/app")); !reflect.DeepEqual(got, []string{"u"}) {
					t.Errorf("lookup %d = %v, want [u]", i, got)
				}
				clock.advance(tc.after)
			}
			if n := len(calls(t, rec["p"])); n != tc.wantCalls {
				t.Errorf("plugin calls = %d, want %d", n, tc.wantCalls)
			}
		})
	}
}

// TestPluginCachePurge checks that expired entries are dropped even when
// nobody asks for them again.
func TestPluginCachePurge(t *testing.T) {
	log, _ := newLog(t)
	clock := newClock()
	p, _ := newTestPlugins(t, log, clock, pluginSpec{name: "p", match: []string{"registry.example"},
		env: map[string]string{"CRED_AUTH": authJSON("registry.example", "u", "pw"), "CRED_CACHE_DURATION": "1m"}})
	pl := p.plugins[0]
	for _, image := range []string{"registry.example/a", "registry.example/b", "registry.example/c"} {
		p.Lookup(context.Background(), image)
	}
	size := func() int {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		return len(pl.cache)
	}
	if n := size(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
	clock.advance(cachePurgeInterval + time.Second)
	p.Lookup(context.Background(), "registry.example/d")
	if n := size(); n != 1 {
		t.Errorf("after the purge interval the cache holds %d entries, want only the new one", n)
	}
}

// TestPluginFailures checks that a failing plugin is logged, gives no
// credentials, is not cached, and does not stop the other plugins.
func TestPluginFailures(t *testing.T) {
	tests := []struct {
		desc    string
		env     map[string]string
		timeout time.Duration
		wantLog string
	}{
		{"non-zero exit", map[string]string{"CRED_MODE": "fail"}, 0, "exit status 1; its stderr is logged at debug level (log.level: debug)"},
		{"bad JSON", map[string]string{"CRED_MODE": "badjson"}, 0, "stdout is not a JSON object"},
		{"wrong apiVersion", map[string]string{"CRED_MODE": "wrongversion"}, 0, `response apiVersion "credentialprovider.kubelet.k8s.io/v1beta1" does not match the configured "credentialprovider.kubelet.k8s.io/v1"`},
		{"wrong kind", map[string]string{"CRED_MODE": "wrongkind"}, 0, `response kind "CredentialProviderRequest"`},
		{"unknown key", map[string]string{"CRED_MODE": "unknownkey"}, 0, "response has unknown, duplicate or wrongly-cased fields"},
		{"bad cacheKeyType", map[string]string{"CRED_MODE": "badcachekey"}, 0, `invalid cacheKeyType "Pod"`},
		{"timeout", map[string]string{"CRED_SLEEP": "20s"}, 300 * time.Millisecond, "timed out after 300ms"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			log, sink := newLog(t)
			env := map[string]string{"CRED_AUTH": authJSON("registry.example", "bad", "pw-bad"), "CRED_CACHE_DURATION": "1h"}
			for k, v := range tc.env {
				env[k] = v
			}
			p, rec := newTestPlugins(t, log, newClock(),
				pluginSpec{name: "broken", match: []string{"registry.example"}, env: env},
				pluginSpec{name: "good", match: []string{"registry.example"}, env: map[string]string{"CRED_AUTH": authJSON("registry.example", "good", "pw")}},
			)
			if tc.timeout > 0 {
				p.plugins[0].timeout = tc.timeout
			}
			start := time.Now()
			for i := 0; i < 2; i++ {
				if got := users(p.Lookup(context.Background(), "registry.example/app")); !reflect.DeepEqual(got, []string{"good"}) {
					t.Errorf("lookup %d = %v, want only the good plugin's [good]", i, got)
				}
			}
			if tc.timeout > 0 && time.Since(start) > 10*time.Second {
				t.Errorf("two timed-out lookups took %s", time.Since(start))
			}
			if n := len(calls(t, rec["broken"])); n != 2 {
				t.Errorf("failing plugin called %d times, want 2 (failures are not cached)", n)
			}
			if !sink.has(logrus.ErrorLevel, "credential provider plugin failed", "broken", tc.wantLog) {
				t.Errorf("no error log with %q", tc.wantLog)
			}
		})
	}
}

// TestPluginOneCallPerImage checks that concurrent lookups of one image share
// one plugin call (the kubelet's singleflight), tags and digests included.
func TestPluginOneCallPerImage(t *testing.T) {
	log, _ := newLog(t)
	p, rec := newTestPlugins(t, log, newClock(), pluginSpec{name: "slow", match: []string{"registry.example"},
		env: map[string]string{"CRED_AUTH": authJSON("registry.example", "u", "pw"), "CRED_SLEEP": "1s", "CRED_CACHE_DURATION": "0s"}})
	images := []string{"registry.example/app", "registry.example/app:1", "registry.example/app:2", "registry.example/app@sha256:" + digest}
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([][]string, 12)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = users(p.Lookup(context.Background(), images[i%len(images)]))
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range results {
		if !reflect.DeepEqual(r, []string{"u"}) {
			t.Errorf("lookup %d = %v, want [u]", i, r)
		}
	}
	if n := len(calls(t, rec["slow"])); n != 1 {
		t.Errorf("plugin calls = %d, want 1 for 12 concurrent lookups of one image", n)
	}
	// Another image is another call, even on the same registry (as in the kubelet).
	p.Lookup(context.Background(), "registry.example/other")
	if n := len(calls(t, rec["slow"])); n != 2 {
		t.Errorf("plugin calls = %d, want 2", n)
	}
}

// TestPluginCallerGivesUp checks that a caller whose context ends returns at
// once, while the call finishes and fills the cache for the next caller.
func TestPluginCallerGivesUp(t *testing.T) {
	log, _ := newLog(t)
	p, rec := newTestPlugins(t, log, newClock(), pluginSpec{name: "slow", match: []string{"registry.example"},
		env: map[string]string{"CRED_AUTH": authJSON("registry.example", "u", "pw"), "CRED_SLEEP": "2s", "CRED_CACHE_DURATION": "1h"}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if got := p.Lookup(ctx, "registry.example/app"); len(got) != 0 {
		t.Errorf("Lookup after the deadline = %v, want none", got)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Lookup returned after %s, want at the caller's deadline", d)
	}
	p.wait()
	if got := users(p.Lookup(context.Background(), "registry.example/app")); !reflect.DeepEqual(got, []string{"u"}) {
		t.Errorf("next Lookup = %v, want [u] from the cache", got)
	}
	if n := len(calls(t, rec["slow"])); n != 1 {
		t.Errorf("plugin calls = %d, want 1", n)
	}
}

// TestPluginsOneKeyring checks that the answers of all plugins form one
// keyring, as the kubelet's externalCredentialProviderKeyring does: keys
// ordered across plugins, one key's credentials in config order.
func TestPluginsOneKeyring(t *testing.T) {
	log, _ := newLog(t)
	p, _ := newTestPlugins(t, log, newClock(),
		pluginSpec{name: "a", match: []string{"registry.example"}, env: map[string]string{"CRED_AUTH": authJSON("registry.example", "a-host", "1")}},
		pluginSpec{name: "b", match: []string{"registry.example"}, env: map[string]string{"CRED_AUTH": authJSON("registry.example/team", "b-team", "2", "registry.example", "b-host", "3")}},
	)
	got := p.Lookup(context.Background(), "registry.example/team/app")
	want := []string{"b-team", "a-host", "b-host"}
	if !reflect.DeepEqual(users(got), want) {
		t.Errorf("Lookup = %v, want %v", users(got), want)
	}
	if got[0].Source != "plugin:b" || got[1].Source != "plugin:a" {
		t.Errorf("sources = %q, %q", got[0].Source, got[1].Source)
	}
}

// TestChainDockerConfigThenPlugins checks the kubelet's order end to end.
func TestChainDockerConfigThenPlugins(t *testing.T) {
	log, _ := newLog(t)
	path := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, path, `{"auths": {"registry.example": {"auth": "`+b64("docker:pw")+`"}}}`)
	p, _ := newTestPlugins(t, log, newClock(), pluginSpec{name: "p", match: []string{"registry.example"},
		env: map[string]string{"CRED_AUTH": authJSON("registry.example/team", "plugin", "pw")}})
	got := Chain(NewDockerConfig([]string{path}, log), p).Lookup(context.Background(), "registry.example/team/app")
	if want := []string{"docker", "plugin"}; !reflect.DeepEqual(users(got), want) {
		t.Errorf("Chain lookup = %v, want %v (docker config first, though the plugin's key is more specific)", users(got), want)
	}
}
