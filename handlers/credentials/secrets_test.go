package credentials

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestNoSecretInLogsOrErrors runs every path of the package with a
// trace-level logger and checks that no password, auth value or secret env
// value appears in the logs (text and JSON renderings), in any returned
// error, or in any credential's printed forms.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	log, sink := newLog(t)
	ctx := context.Background()
	secrets := []string{"pw-docker-1", "pw-docker-2", "pw-legacy", "pw-userinfo", "pw-plugin", "pw-badjson", "pw-unknown", "pw-version", "env-secret-value"}
	var errs []error
	var creds []Credential

	// Docker config: valid, invalid (a bad entry beside a good one), legacy,
	// a key with user information, and reloads.
	dir := t.TempDir()
	clock := newClock()
	cfgPath := filepath.Join(dir, "root", "config.json")
	badPath := filepath.Join(dir, "bad", "config.json")
	legacyPath := filepath.Join(dir, "legacy", ".dockercfg")
	writeFile(t, badPath, `{"auths": {"registry.example": {"auth": "`+b64("u:pw-docker-2")+`"}, "x.example": {"auth": "%%%"}}}`)
	writeFile(t, cfgPath, `{"auths": {"registry.example": {"auth": "`+b64("robot:pw-docker-1")+`"}, "https://robot:pw-userinfo@userinfo.example:bad/": {"username": "x", "password": "pw-userinfo"}, "https://robot:pw-userinfo@userinfo.example/": {"username": "y", "password": "pw-userinfo"}}}`)
	writeFile(t, legacyPath, `{"legacy.example": {"auth": "`+b64("old:pw-legacy")+`"}}`)
	d := NewDockerConfig([]string{badPath, cfgPath, legacyPath}, log)
	d.now = clock.now
	for _, image := range []string{"registry.example/app", "userinfo.example/app", "busybox", "not a reference"} {
		creds = append(creds, d.Lookup(ctx, image)...)
	}
	writeFile(t, cfgPath, "{broken")
	clock.advance(2 * time.Second)
	creds = append(creds, d.Lookup(ctx, "legacy.example/app")...)

	// Plugins: success, every failure, cache hits, gating.
	modes := map[string]string{"ok": "", "fail": "fail", "badjson": "badjson", "unknown": "unknownkey", "version": "wrongversion", "kind": "wrongkind", "cachekey": "badcachekey"}
	pw := map[string]string{"ok": "pw-plugin", "badjson": "pw-badjson", "unknown": "pw-unknown", "version": "pw-version"}
	var specs []pluginSpec
	for name, mode := range modes {
		secret := pw[name]
		if secret == "" {
			secret = "pw-plugin"
		}
		specs = append(specs, pluginSpec{name: name, match: []string{"*.example"}, defaultCache: time.Minute,
			env: map[string]string{"CRED_MODE": mode, "CRED_AUTH": authJSON("*.example", "robot", secret), "SECRET_TOKEN": "env-secret-value"}})
	}
	specs = append(specs, pluginSpec{name: "slow", match: []string{"*.example"}, env: map[string]string{"CRED_SLEEP": "10s", "CRED_AUTH": authJSON("*.example", "robot", "pw-plugin")}})
	p, _ := newTestPlugins(t, log, newClock(), specs...)
	for _, pl := range p.plugins {
		if pl.name == "slow" {
			pl.timeout = 200 * time.Millisecond
		}
	}
	for _, image := range []string{"registry.example/app", "registry.example/app", "busybox", "Bad/Image"} {
		creds = append(creds, p.Lookup(ctx, image)...)
	}
	creds = append(creds, Chain(d, p).Lookup(ctx, "registry.example/app")...)
	p.wait()

	// Config errors, with a secret env value in the file and in code.
	badCfg := filepath.Join(dir, "providers.yaml")
	writeFile(t, badCfg, `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: a/b
    matchImages: ["[.io"]
    apiVersion: credentialprovider.kubelet.k8s.io/v1beta1
    env:
      - name: TOKEN
        value: env-secret-value
        secret: env-secret-value
    tokenAttributes: {serviceAccountTokenAudience: env-secret-value}
`)
	_, err := LoadPluginConfig(badCfg)
	errs = append(errs, err)
	cfg, err := LoadPluginConfig(badCfg)
	errs = append(errs, err)
	if cfg != nil {
		t.Fatal("invalid config accepted")
	}
	_, err = NewPlugins(nil, dir, log)
	errs = append(errs, err)

	if len(creds) == 0 {
		t.Fatal("no credentials came back: the test exercises nothing")
	}
	found := map[string]bool{}
	for _, c := range creds {
		found[c.Password] = true
		for _, s := range []string{c.String(), c.GoString(), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, c, c), fmt.Sprint(creds)} {
			for _, secret := range secrets {
				if strings.Contains(s, secret) {
					t.Errorf("credential printed a secret: %s", s)
				}
			}
		}
	}
	for _, want := range []string{"pw-docker-1", "pw-legacy", "pw-plugin", "pw-userinfo"} {
		if !found[want] {
			t.Errorf("no credential with password %q came back: the path was not exercised", want)
		}
	}
	logs := sink.all()
	if !strings.Contains(logs, "credential provider plugin failed") || !strings.Contains(logs, "ignoring invalid docker config file") {
		t.Fatalf("failure paths did not log; logs:\n%s", logs)
	}
	if !sink.has(logrus.TraceLevel, "docker config lookup") {
		t.Errorf("no trace-level lines: the logger is not at trace level")
	}
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
		for _, err := range errs {
			if err == nil {
				t.Errorf("an error path returned no error")
			} else if strings.Contains(err.Error(), secret) {
				t.Errorf("error contains %q: %v", secret, err)
			}
		}
	}
	// The encoded forms of the secrets must not appear either.
	for _, enc := range []string{b64("robot:pw-docker-1"), b64("u:pw-docker-2"), b64("old:pw-legacy")} {
		if strings.Contains(logs, enc) {
			t.Errorf("logs contain the auth value %q", enc)
		}
	}
}
