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
	// DoChan is called with pl.mu held so that the cache miss and joining the
	// call are one step: call caches its answer (under pl.mu) before it
	// returns and singleflight forgets the key, so a caller finds the answer
	// or the running call and never starts a second call. DoChan does not
	// block and runs call in its own goroutine, which takes pl.mu only after
	// we let it go, and singleflight never holds its lock while call runs: no
	// deadlock.
	//
	// running counts callers whose result has not arrived yet, rather than
	// calls, since singleflight does not say whether DoChan started a call or
	// joined one. Every call has at least one caller and delivers to all of
	// them when it ends, so running is zero exactly when no call is running.
	pl.running.Add(1)
	results := pl.calls.DoChan(repo, func() (any, error) { return pl.call(repo) })
	pl.mu.Unlock()

	select {
	case res := <-results:
		pl.running.Done()
		auth, _ := res.Val.(authMap) // nil on error; call logged it
		return auth
	case <-ctx.Done():
		pl.log.WithField("image", repo).Debug("caller gave up waiting for the plugin; the call goes on and fills the cache")
		// Stay counted until the call ends, so that wait still waits for it.
		// The channel is buffered: the call never waits for this goroutine.
		go func() {
			<-results
			pl.running.Done()
		}()
		return nil
	}
}

// call runs one plugin call, logs a failure once for all its callers, and
// caches the answer before returning, that is before singleflight lets a new
// call for the image start (see provide).
func (pl *plugin) call(repo string) (authMap, error) {
	resp, err := pl.exec(repo)
	if err != nil {
		pl.log.WithField("image", repo).WithError(err).Error("credential provider plugin failed; no credentials from it")
		return nil, err
	}
	pl.mu.Lock()
	pl.storeLocked(repo, resp)
	pl.mu.Unlock()
	pl.log.WithFields(map[string]any{
		"image": repo, "cacheKeyType": resp.CacheKeyType, "keys": len(resp.Auth),
	}).Debug("credential provider plugin answered")
	return resp.Auth, nil
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
