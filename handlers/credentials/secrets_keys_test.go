package credentials

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestNoSecretFromKeysOrProviderConfig covers what an outside review found
// leaking: a key with user information whose password holds '/', '#' or
// '?' (url.Parse then quotes a piece of it in its error), the same in a
// plugin's auth keys, and credential-provider config entries written wrong
// (an env entry as a string, numbers for env values and args, a parse error
// next to a secret). At trace level nothing derived from them may appear in
// logs or errors.
func TestNoSecretFromKeysOrProviderConfig(t *testing.T) {
	log, sink := newLog(t)
	ctx := context.Background()
	dir := t.TempDir()
	secrets := []string{"Sup3rSecretPart", "Secr3tHash", "Secr3tQuery", "4242424242", "env-secret-value", "9876543210", "1234567890", "yaml-secret-value", "Plug1nSecret"}

	// config.json: valid keys with dangerous passwords beside a good key.
	cfg := filepath.Join(dir, "good", "config.json")
	writeFile(t, cfg, `{"auths": {
		"https://robot:pa/Sup3rSecretPart@userinfo.example/": {"auth": "`+b64("robot:pw")+`"},
		"https://robot:Secr3tHash#x@userinfo.example/": {"auth": "`+b64("robot:pw")+`"},
		"https://robot:Secr3tQuery?x@userinfo.example/": {"auth": "`+b64("robot:pw")+`"},
		"https://robot:4242424242/x@userinfo.example/": {"auth": "`+b64("robot:pw")+`"},
		"registry.example": {"auth": "`+b64("robot:pw-good")+`"}}}`)
	// and a file that fails to parse at such a key's entry
	bad := filepath.Join(dir, "bad", "config.json")
	writeFile(t, bad, `{"auths": {"https://robot:pa/Sup3rSecretPart@userinfo.example/": {"auth": "!!!"}}}`)
	d := NewDockerConfig([]string{bad, cfg}, log)
	var got []Credential
	for _, image := range []string{"registry.example/app", "userinfo.example/app", "USERINFO.example/app"} {
		got = append(got, d.Lookup(ctx, image)...)
	}
	if len(got) != 1 || got[0].Password != "pw-good" {
		t.Errorf("got %v, want only registry.example's credential (keys refused, not indexed under a piece of a password)", got)
	}
	if !sink.has(logrus.TraceLevel, "ignoring invalid docker config file", "auths entry 1") {
		t.Errorf("the bad file's entry is not named by its position")
	}

	// A plugin answering with such keys.
	p, _ := newTestPlugins(t, log, newClock(), pluginSpec{name: "keys", match: []string{"*.example"}, defaultCache: time.Minute,
		env: map[string]string{"CRED_AUTH": authJSON("https://robot:x/Plug1nSecret@a.example/", "robot", "pw-plugin-1", "a.example", "robot", "pw-plugin-2")}})
	pc := p.Lookup(ctx, "a.example/app")
	if len(pc) != 1 || pc[0].Password != "pw-plugin-2" {
		t.Errorf("plugin lookup = %v, want only the credential under a valid key", pc)
	}
	p.wait()

	// Credential-provider configs written wrong.
	var errs []error
	for i, body := range []string{
		// an env entry written as a string
		"providers:\n  - name: a\n    env:\n      - TOKEN=env-secret-value\n",
		// numbers where strings belong
		"providers:\n  - name: a\n    env:\n      - name: TOKEN\n        value: 9876543210\n    args: [1234567890]\n",
		// an unknown key under env that may be the secret itself
		"providers:\n  - name: a\n    env:\n      - name: TOKEN\n        env-secret-value: x\n",
		// a parse error right at a secret
		"providers:\n  - name: a\n    env:\n      - name: TOKEN\n        value: \"yaml-secret-value\n",
		"providers:\n  - name: a\n    env: [{name: TOKEN, value: yaml-secret-value}]]\n",
	} {
		path := filepath.Join(dir, "providers", strings.Repeat("p", i+1)+".yaml")
		writeFile(t, path, "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n"+body)
		_, err := LoadPluginConfig(path)
		if err == nil {
			t.Errorf("config %d accepted", i)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error does not name the file %s: %v", path, err)
		}
		errs = append(errs, err)
	}
	if !strings.Contains(errs[0].Error(), "env[0]: want a mapping of keys, got a string (not shown") {
		t.Errorf("env string error does not name the entry and the reason: %v", errs[0])
	}

	logs := sink.all()
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
		for _, err := range errs {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error contains %q: %v", secret, err)
			}
		}
		for _, c := range append(got, pc...) {
			if strings.Contains(c.String(), secret) || strings.Contains(c.Pattern, secret) {
				t.Errorf("credential %v names %q", c, secret)
			}
		}
	}
	if !sink.has(logrus.TraceLevel, "docker config lookup") {
		t.Errorf("no trace-level lines: the logger is not at trace level")
	}
}
