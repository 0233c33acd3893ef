package credentials

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"github.com/crishim/crishim/handlers/configfile"
	"github.com/crishim/crishim/handlers/registry"
)

// Plugins runs kubelet credential-provider exec plugins.
type Plugins struct {
	log     logrus.FieldLogger
	plugins []*plugin
}

// NewPlugins prepares the providers of cfg (validated again, as by
// LoadPluginConfig). Each binary is binDir/name and must exist and be
// executable, as the kubelet requires at start (plugin.go
// RegisterCredentialProviderPlugins). Env values are never logged: they may
// be secrets.
func NewPlugins(cfg *kubeletconfigv1.CredentialProviderConfig, binDir string, log logrus.FieldLogger) (*Plugins, error) {
	if cfg == nil {
		return nil, fmt.Errorf("credential provider config: none given")
	}
	if problems := validatePluginConfig(cfg); len(problems) > 0 {
		return nil, fmt.Errorf("credential provider config:\n  %s", strings.Join(problems, "\n  "))
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	fi, err := os.Stat(binDir)
	if err != nil {
		return nil, fmt.Errorf("credential provider plugin directory %s: %w", binDir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("credential provider plugin directory %s: not a directory", binDir)
	}
	if err := configfile.CheckNotWorldWritable(binDir); err != nil {
		return nil, fmt.Errorf("credential provider plugin directory %w", err)
	}
	p := &Plugins{log: log.WithField("component", "credentials.plugins")}
	for i, c := range cfg.Providers {
		bin := filepath.Join(binDir, c.Name)
		fi, err := os.Stat(bin)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%s: plugin binary %s: %w", providerLabel(i, c.Name), bin, err)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("%s: plugin binary %s: not a regular file", providerLabel(i, c.Name), bin)
		case fi.Mode().Perm()&0o111 == 0:
			return nil, fmt.Errorf("%s: plugin binary %s: not executable", providerLabel(i, c.Name), bin)
		case fi.Mode().Perm()&0o002 != 0:
			return nil, fmt.Errorf("%s: plugin binary %s is world-writable (mode %#o): any local user could replace what runs with registry access; run chmod o-w %s", providerLabel(i, c.Name), bin, fi.Mode().Perm(), bin)
		}
		env := make([]string, 0, len(c.Env))
		for _, e := range c.Env {
			env = append(env, e.Name+"="+e.Value)
		}
		p.plugins = append(p.plugins, &plugin{
			name:                 c.Name,
			path:                 bin,
			apiVersion:           c.APIVersion,
			args:                 append([]string(nil), c.Args...),
			env:                  env,
			matchImages:          canonicalPatterns(c.MatchImages),
			defaultCacheDuration: c.DefaultCacheDuration.Duration,
			timeout:              pluginTimeout,
			now:                  time.Now,
			log:                  p.log.WithField("plugin", c.Name),
			cache:                map[string]cacheEntry{},
		})
	}
	return p, nil
}

// Lookup asks every plugin whose matchImages match image, in config order,
// for credentials (from its cache when fresh), then picks the credentials of
// every auth key of their answers that matches image, most specific first.
// As in the kubelet (plugin/plugins.go externalCredentialProviderKeyring),
// the answers of all plugins form one keyring: keys are ordered across
// plugins, and a key several plugins return gives each one's credential in
// config order. A failing plugin is logged and contributes nothing.
func (p *Plugins) Lookup(ctx context.Context, image string) []Credential {
	if p == nil || len(p.plugins) == 0 {
		return nil
	}
	repo, ok := normalizeImage(image)
	if !ok {
		p.log.WithField("image", image).Debug("image reference does not parse; no plugin credentials")
		return nil
	}
	var entries []keyringEntry
	for _, pl := range p.plugins {
		if ctx.Err() != nil {
			break
		}
		auth := pl.provide(ctx, repo)
		keys := make([]string, 0, len(auth))
		for k := range auth {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			entries = append(entries, keyringEntry{key: k, entry: fmt.Sprintf("plugin %q auth key %d (sorted)", pl.name, i+1), cred: Credential{
				Username: auth[k].Username, Password: auth[k].Password, Source: SourcePluginPrefix + pl.name,
			}})
		}
	}
	creds := newKeyring(entries, p.log).lookup(repo)
	p.log.WithFields(logrus.Fields{"image": image, "credentials": len(creds)}).Trace("credential provider plugins lookup")
	return creds
}

// wait blocks until no plugin call is running; tests use it before checking
// for leaked goroutines.
func (p *Plugins) wait() {
	for _, pl := range p.plugins {
		pl.running.Wait()
	}
}

// authMap is a plugin answer's auth field.
type authMap = map[string]credentialproviderv1.AuthConfig

// plugin is one configured exec plugin with its response cache and its
// in-flight calls.
type plugin struct {
	name, path, apiVersion string
	args, env              []string
	matchImages            []string
	defaultCacheDuration   time.Duration
	timeout                time.Duration    // per call; pluginTimeout outside tests
	now                    func() time.Time // injectable for tests
	log                    logrus.FieldLogger

	mu        sync.Mutex
	cache     map[string]cacheEntry
	lastPurge time.Time
	// calls runs one plugin call per image at a time: callers of an image
	// whose call is running wait for its answer (plugin.go uses
	// singleflight the same way).
	calls   singleflight.Group
	running sync.WaitGroup
}

// canonicalPatterns returns matchImages with canonical hosts, to compare
// with canonical images (see MatchImage).
func canonicalPatterns(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = registry.Pattern(p)
	}
	return out
}

// matches reports whether one of matchImages matches the normalized image:
// only then is the plugin asked (plugin.go isImageAllowed, URLsMatchStr on
// the pattern as written).
func (pl *plugin) matches(repo string) bool {
	for _, m := range pl.matchImages {
		if urlsMatch(m, repo) {
			return true
		}
	}
	return false
}
