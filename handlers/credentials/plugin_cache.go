package credentials

import (
	"context"
	"strings"
	"time"

	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// cachePurgeInterval is how often expired cache entries are dropped even if
// nobody asks for them again (plugin.go cachePurgeInterval).
const cachePurgeInterval = 15 * time.Minute

// cacheEntry is one cached plugin answer.
type cacheEntry struct {
	auth      authMap
	expiresAt time.Time
}

// flight is one running plugin call that callers for the same image share.
type flight struct {
	done chan struct{}
	auth authMap
}

// Cache keys. The kubelet uses the image, the registry and "global" as they
// are (plugin.go); the prefixes only keep the three kinds apart.
func imageCacheKey(repo string) string    { return "image:" + repo }
func registryCacheKey(repo string) string { return "registry:" + registryOf(repo) }

const globalCacheKey = "global"

// registryOf is the registry host[:port] of a normalized image (plugin.go
// parseRegistry: the first path element).
func registryOf(repo string) string {
	registry, _, _ := strings.Cut(repo, "/")
	return registry
}

// provide returns the plugin's auth map for a normalized image: nothing when
// matchImages do not match; the cached answer when one is fresh (looked up by
// image, then registry, then global, as plugin.go getCachedCredentials does);
// otherwise the answer of one plugin call per image at a time (plugin.go
// wraps ExecPlugin in singleflight keyed by the image). The call runs apart
// from ctx, with its own timeout, as the kubelet runs it with
// context.Background(): a caller that gives up returns at once with nothing,
// and the answer still fills the cache for the next one.
func (pl *plugin) provide(ctx context.Context, repo string) authMap {
	if !pl.matches(repo) {
		pl.log.WithField("image", repo).Trace("matchImages do not match; plugin not called")
		return nil
	}
	pl.mu.Lock()
	if auth, ok := pl.cachedLocked(repo); ok {
		pl.mu.Unlock()
		pl.log.WithField("image", repo).Trace("credentials from the plugin cache")
		return auth
	}
	f := pl.flights[repo]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		pl.flights[repo] = f
		pl.running.Add(1)
		go pl.fly(repo, f)
	} else {
		pl.log.WithField("image", repo).Trace("joining a running plugin call")
	}
	pl.mu.Unlock()

	select {
	case <-f.done:
		return f.auth
	case <-ctx.Done():
		pl.log.WithField("image", repo).Debug("caller gave up waiting for the plugin; the call goes on and fills the cache")
		return nil
	}
}

// fly runs one plugin call, caches its answer and releases the waiters. The
// answer is cached before the flight is removed, so a caller arriving in
// between finds one or the other and never starts a second call.
func (pl *plugin) fly(repo string, f *flight) {
	defer pl.running.Done()
	resp, err := pl.exec(repo)
	pl.mu.Lock()
	if err != nil {
		pl.log.WithField("image", repo).WithError(err).Error("credential provider plugin failed; no credentials from it")
	} else {
		f.auth = resp.Auth
		pl.storeLocked(repo, resp)
		pl.log.WithFields(map[string]any{
			"image": repo, "cacheKeyType": resp.CacheKeyType, "keys": len(resp.Auth),
		}).Debug("credential provider plugin answered")
	}
	delete(pl.flights, repo)
	pl.mu.Unlock()
	close(f.done)
}

// cachedLocked looks the image up by image, registry and global key,
// dropping expired entries it meets and, every cachePurgeInterval, all
// expired entries.
func (pl *plugin) cachedLocked(repo string) (authMap, bool) {
	now := pl.now()
	if now.Sub(pl.lastPurge) >= cachePurgeInterval {
		for k, e := range pl.cache {
			if now.After(e.expiresAt) {
				delete(pl.cache, k)
			}
		}
		pl.lastPurge = now
	}
	for _, key := range []string{imageCacheKey(repo), registryCacheKey(repo), globalCacheKey} {
		e, ok := pl.cache[key]
		if !ok {
			continue
		}
		if now.After(e.expiresAt) {
			delete(pl.cache, key)
			continue
		}
		return e.auth, true
	}
	return nil, false
}

// storeLocked caches an answer under the key its cacheKeyType names, for its
// cacheDuration (nil: the provider's defaultCacheDuration; 0: not cached), as
// plugin.go does.
func (pl *plugin) storeLocked(repo string, resp *credentialproviderv1.CredentialProviderResponse) {
	d := pl.defaultCacheDuration
	if resp.CacheDuration != nil {
		d = resp.CacheDuration.Duration
	}
	if d <= 0 {
		return
	}
	var key string
	switch resp.CacheKeyType {
	case credentialproviderv1.ImagePluginCacheKeyType:
		key = imageCacheKey(repo)
	case credentialproviderv1.RegistryPluginCacheKeyType:
		key = registryCacheKey(repo)
	case credentialproviderv1.GlobalPluginCacheKeyType:
		key = globalCacheKey
	default:
		return // exec rejected it already
	}
	pl.cache[key] = cacheEntry{auth: resp.Auth, expiresAt: pl.now().Add(d)}
}
