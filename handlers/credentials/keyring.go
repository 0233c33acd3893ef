package credentials

import (
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/handlers/registry"
)

// dockerHubKey is the key the kubelet falls back to for Docker Hub images
// when no key matched: config.json's "https://index.docker.io/v1/" (and
// "index.docker.io", in any letter case) normalize to it
// (pkg/credentialprovider/keyring.go, defaultRegistryHost). It is the one
// host that keeps its alias spelling in the keyring, so that it stays a
// fallback, as in the kubelet, rather than a key like "docker.io".
const dockerHubKey = "index.docker.io"

// errInvalidKey is why a key is ignored. It never quotes the key, nor
// net/url's error, which repeats parts of it: a key may carry user
// information ("https://user:pass@host/"), and a password with '/', '#' or
// '?' makes url.Parse quote a piece of it.
var errInvalidKey = errors.New("not a registry host[:port][/path] or URL")

// MatchImage reports whether a keyring key (e.g. "*.registry.example",
// "https://registry.example:5000/v2/", "registry.example/team") matches an
// image, with the kubelet's URLsMatch rules (pkg/credentialprovider/keyring.go):
//
//   - the key is normalized as the kubelet's BasicDockerKeyring.Add does it:
//     "https://" is added when it has no http(s) scheme, a leading "/v1/" or
//     "/v2/" path element is dropped, and the key becomes host[:port][/path];
//   - the image is normalized as the kubelet does before its lookup
//     (ParseNormalizedNamed, then the repository name without tag or digest:
//     "busybox:1" is "docker.io/library/busybox");
//   - unlike the kubelet, hosts are compared by their canonical identity
//     (registry.Canonical: letter case, Docker Hub's aliases, port 443), so
//     that every spelling of one registry finds the same credentials and
//     meets the same namespace policy;
//   - they match when the ports are equal (absent == absent), the hosts have
//     the same number of dot-separated labels, each key label matches the
//     image label with filepath.Match ("*.k8s.io" matches "abc.k8s.io", not
//     "k8s.io"), and the image path starts with the key path. The kubelet
//     compares paths with strings.HasPrefix, not on a path-segment boundary,
//     so "registry.example/team" also matches "registry.example/teamwork/x";
//     crishim does the same so that it injects exactly what the kubelet would.
//
// A Docker Hub key ("https://index.docker.io/v1/") also matches Docker Hub
// images. In a keyring lookup that key is only a fallback, used when no other
// key matched (see DockerConfig.Lookup). Invalid keys and images match nothing.
func MatchImage(key, image string) bool {
	k, err := normalizeKey(key)
	if err != nil {
		return false
	}
	repo, ok := normalizeImage(image)
	if !ok {
		return false
	}
	if urlsMatch(k, repo) {
		return true
	}
	return k == dockerHubKey && isDockerHub(repo)
}

// normalizeImage returns the repository name the kubelet hands to its
// keyring (pkg/util/parsers/parsers.go ParseImageName: named.Name()), with
// the registry canonical.
func normalizeImage(image string) (string, bool) {
	ref := registry.Parse(image)
	if ref.Registry == registry.Invalid {
		return "", false
	}
	return ref.Repository, true
}

// isDockerHub reports whether a normalized repository is pulled from Docker
// Hub. The kubelet's isDefaultRegistryMatch (keyring.go) also says yes for
// "localhost/x", because "localhost" has no '.' or ':'; crishim does not hand
// Docker Hub credentials to a local registry.
func isDockerHub(repo string) bool {
	domain, _, _ := strings.Cut(repo, "/")
	return domain == registry.DockerHub
}

// normalizeKey turns a config key into the kubelet's keyring index form,
// host[:port][/path] (BasicDockerKeyring.Add in keyring.go): a scheme is
// assumed when missing, "/v1/" and "/v2/" at the start of the path are the
// registry API, not a repository, and a bare "/" is no path. The host is
// canonical (registry.Canonical). User information is dropped, as the
// kubelet drops it; an '@' anywhere else means a password that url.Parse
// split at a '/', '#' or '?', so the key is refused rather than indexed
// under a piece of the password. Errors never quote the key.
func normalizeKey(key string) (string, error) {
	value := key
	if !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
		value = "https://" + value
	}
	u, err := url.Parse(value)
	if err != nil || u.Host == "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", errInvalidKey
	}
	if strings.Contains(u.Host+u.Path, "@") {
		return "", errInvalidKey
	}
	host := registry.Canonical(u.Host)
	if host == registry.DockerHub && strings.EqualFold(strings.TrimSuffix(u.Hostname(), "."), dockerHubKey) {
		host = dockerHubKey
	}
	path := u.Path
	if strings.HasPrefix(path, "/v2/") || strings.HasPrefix(path, "/v1/") {
		path = path[3:]
	}
	if path == "" || path == "/" {
		return host, nil
	}
	return host + path, nil
}

// splitHost splits a URL's host into dot-separated labels and its port
// (keyring.go SplitURL: a host without a parseable port keeps it all).
func splitHost(u *url.URL) (labels []string, port string) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return strings.Split(host, "."), port
}

// urlsMatch is the kubelet's URLsMatchStr (keyring.go) on a normalized key
// and a normalized image: both are read as schemeless URLs.
func urlsMatch(key, repo string) bool {
	ku, err := url.Parse("https://" + key)
	if err != nil {
		return false
	}
	iu, err := url.Parse("https://" + repo)
	if err != nil {
		return false
	}
	kLabels, kPort := splitHost(ku)
	iLabels, iPort := splitHost(iu)
	if kPort != iPort || len(kLabels) != len(iLabels) {
		return false
	}
	if !strings.HasPrefix(iu.Path, ku.Path) {
		return false
	}
	for i, pattern := range kLabels {
		ok, err := filepath.Match(pattern, iLabels[i])
		if err != nil || !ok {
			return false
		}
	}
	return true
}

// keyringEntry is one credential under the key it was configured with.
type keyringEntry struct {
	key   string // as written in the config or plugin response
	entry string // how logs name the entry without its key: "auths entry 3"
	cred  Credential
}

// keyring indexes credentials by normalized key, as the kubelet's
// BasicDockerKeyring does: keys de-duplicated and reverse-sorted so that
// "registry.example/team" is tried before "registry.example", credentials
// under one key kept in insertion order, none de-duplicated.
type keyring struct {
	index []string
	creds map[string][]Credential
}

// newKeyring builds a keyring; invalid keys are dropped with a debug line
// that names the entry, never the key.
func newKeyring(entries []keyringEntry, log logrus.FieldLogger) *keyring {
	k := &keyring{creds: map[string][]Credential{}}
	for _, e := range entries {
		norm, err := normalizeKey(e.key)
		if err != nil {
			log.WithFields(logrus.Fields{"entry": e.entry, "source": e.cred.Source}).
				Debugf("ignoring invalid registry credential key: %v", err)
			continue
		}
		c := e.cred
		c.Pattern = keyForLogs(e)
		if _, seen := k.creds[norm]; !seen {
			k.index = append(k.index, norm)
		}
		k.creds[norm] = append(k.creds[norm], c)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(k.index)))
	return k
}

// lookup returns the credentials of every key matching the normalized
// repository, most specific first; when none matched and the image is on
// Docker Hub, those of the Docker Hub key (keyring.go Lookup).
func (k *keyring) lookup(repo string) []Credential {
	var out []Credential
	for _, key := range k.index {
		if urlsMatch(key, repo) {
			out = append(out, k.creds[key]...)
		}
	}
	if len(out) == 0 && isDockerHub(repo) {
		out = append(out, k.creds[dockerHubKey]...)
	}
	return out
}

// keyForLogs names a key in logs: the key as written when it has no '@',
// else only its entry ("auths entry 3"). A key with an '@' may carry user
// information, and no redaction of it can be trusted when a password holds
// the characters that make a URL parse differently.
func keyForLogs(e keyringEntry) string {
	if strings.Contains(e.key, "@") {
		return e.entry
	}
	return e.key
}
