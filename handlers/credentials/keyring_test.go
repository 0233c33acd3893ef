package credentials

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestMatchImage covers each rule of the kubelet's keyring matching
// (pkg/credentialprovider/keyring.go and keyring_test.go).
func TestMatchImage(t *testing.T) {
	tests := []struct {
		desc, key, image string
		want             bool
	}{
		// Per-label globs.
		{"star label matches one label", "*.k8s.io", "abc.k8s.io/app", true},
		{"star label needs a label", "*.k8s.io", "k8s.io/app", false},
		{"star label matches exactly one label", "*.k8s.io", "abc.def.k8s.io/app", false},
		{"two star labels match two labels", "*.*.k8s.io", "abc.def.k8s.io/app", true},
		{"two star labels need two labels", "*.*.k8s.io", "abc.k8s.io/app", false},
		{"star in the middle", "prefix.*.io", "prefix.anything.io/app", true},
		{"star in the middle, other prefix", "prefix.*.io", "other.anything.io/app", false},
		{"partial label glob", "*-good.k8s.io", "prefix-good.k8s.io/app", true},
		{"partial label glob, no match", "*-good.k8s.io", "prefix-bad.k8s.io/app", false},
		{"? starts a URL query, so it is no glob (as in the kubelet)", "registry?.example", "registry1.example/app", false},
		{"[ is no valid host character, so no class glob (as in the kubelet)", "registry[0-9].example", "registry1.example/app", false},
		{"globs in the last label", "registry.*", "registry.example/app", true},
		// Canonical hosts (unlike the kubelet, which compares as written):
		// every spelling of one registry finds the same credentials.
		{"key host case does not matter", "REGISTRY.example", "registry.example/app", true},
		{"image host case does not matter", "registry.example", "REGISTRY.Example/app", true},
		{"glob against an upper-case host", "*.corp.example", "PROD.corp.example/app", true},
		{"upper-case glob", "*.CORP.example", "prod.corp.example/app", true},
		{"port 443 is the default port", "registry.example", "registry.example:443/app", true},
		{"key port 443 is the default port", "https://registry.example:443/v2/", "registry.example/app", true},
		{"path case still matters", "registry.example/Team", "registry.example/team/app", false},
		{"exact host", "registry.example", "registry.example/app:1", true},
		{"other host", "registry.example", "other.example/app", false},

		// Ports.
		{"equal ports", "registry.example:5000", "registry.example:5000/a/b:1", true},
		{"key port, image none", "registry.example:5000", "registry.example/a", false},
		{"image port, key none", "registry.example", "registry.example:5000/a", false},
		{"different ports", "registry.example:5000", "registry.example:5001/a", false},
		{"glob host with port", "*.example:5000", "registry.example:5000/a", true},

		// Paths.
		{"path prefix", "registry.example/team", "registry.example/team/app", true},
		{"other path", "registry.example/team", "registry.example/other/app", false},
		{"path prefix is not on a segment boundary (as in the kubelet)", "registry.example/team", "registry.example/teamwork/app", true},
		{"longer key path", "registry.example/team/app/sub", "registry.example/team/app", false},
		{"trailing slash path", "registry.example/team/", "registry.example/team/app", true},
		{"trailing slash path needs the slash", "registry.example/team/", "registry.example/team", false},
		{"tag and digest are not part of the path", "registry.example/team/app", "registry.example/team/app@sha256:" + digest, true},

		// Schemes and registry API suffixes.
		{"https scheme", "https://registry.example", "registry.example/app", true},
		{"http scheme", "http://registry.example/", "registry.example/app", true},
		{"v2 suffix", "https://registry.example:5000/v2/", "registry.example:5000/a/b:1", true},
		{"v1 suffix", "registry.example/v1/", "registry.example/app", true},
		{"v2 then a path", "https://registry.example/v2/team", "registry.example/team/app", true},
		{"v2 then a path, other path", "https://registry.example/v2/team", "registry.example/other/app", false},
		{"v2 without trailing slash is a path", "registry.example/v2", "registry.example/app", false},

		// Docker Hub.
		{"docker.io key, short image", "docker.io", "busybox", true},
		{"docker.io key, user image", "docker.io", "someuser/app:1", true},
		{"docker.io/library key", "docker.io/library", "busybox", true},
		{"docker.io/library key, user image", "docker.io/library", "someuser/app", false},
		{"index.docker.io/v1/ key, short image", "https://index.docker.io/v1/", "busybox", true},
		{"index.docker.io key, user image", "index.docker.io", "someuser/app", true},
		{"index.docker.io image is docker.io", "docker.io", "index.docker.io/library/busybox", true},
		{"Docker Hub key, other registry", "https://index.docker.io/v1/", "registry.example/app", false},
		{"localhost is not Docker Hub", "https://index.docker.io/v1/", "localhost/app", false},
		{"docker.io key, localhost image", "docker.io", "localhost/app", false},
		{"localhost key", "localhost", "localhost/app", true},
		{"glob over docker.io", "*.io", "busybox", true},
		{"first segment with a dot is a host", "docker.io", "registry.example/app", false},

		// Invalid keys and images.
		{"bad port", "https://registry.example:abc", "registry.example/app", false},
		{"bad IP literal", "[.io", "registry.io/app", false},
		{"bad glob", "reg\\istry.example", "registry.example/app", false},
		{"empty key", "", "busybox", false},
		{"image does not parse", "registry.example", "registry.example/UPPER", false},
		{"empty image", "registry.example", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := MatchImage(tc.key, tc.image); got != tc.want {
				t.Errorf("MatchImage(%q, %q) = %v, want %v", tc.key, tc.image, got, tc.want)
			}
		})
	}
}

const digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// TestKeyringLookup checks the order and fallback rules of a lookup: all
// matching keys, most specific (reverse-sorted) first, credentials of one key
// in order and not de-duplicated, the Docker Hub key only as a fallback, and
// invalid keys dropped.
func TestKeyringLookup(t *testing.T) {
	entries := func(pairs ...string) []keyringEntry {
		var out []keyringEntry
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, keyringEntry{key: pairs[i], entry: fmt.Sprintf("entry %d", i/2+1), cred: Credential{Username: pairs[i+1], Source: SourceDockerConfig}})
		}
		return out
	}
	tests := []struct {
		desc    string
		entries []keyringEntry
		image   string
		want    []string
	}{
		{
			desc: "most specific first",
			entries: entries(
				"*.example", "glob",
				"registry.example", "host",
				"registry.example/team", "team",
				"registry.example/team/app", "app",
			),
			image: "registry.example/team/app:1",
			want:  []string{"app", "team", "host", "glob"},
		},
		{
			desc:    "keys normalizing alike keep both credentials, duplicates included",
			entries: entries("https://registry.example/v2/", "a", "registry.example", "b", "http://registry.example", "b"),
			image:   "registry.example/x",
			want:    []string{"a", "b", "b"},
		},
		{
			desc:    "Docker Hub key is a fallback only",
			entries: entries("https://index.docker.io/v1/", "hub", "docker.io/library", "lib"),
			image:   "busybox",
			want:    []string{"lib"},
		},
		{
			desc:    "Docker Hub key when nothing else matches",
			entries: entries("https://index.docker.io/v1/", "hub", "registry.example", "other"),
			image:   "someuser/app",
			want:    []string{"hub"},
		},
		{
			desc:    "Docker Hub key not for other registries",
			entries: entries("https://index.docker.io/v1/", "hub"),
			image:   "registry.example/app",
			want:    []string{},
		},
		{
			desc:    "invalid keys ignored",
			entries: entries("https://registry.example:abc", "badport", "reg\\istry.example", "badglob", "registry.example", "good"),
			image:   "registry.example/app",
			want:    []string{"good"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			log, sink := newLog(t)
			repo, ok := normalizeImage(tc.image)
			if !ok {
				t.Fatalf("image %q does not parse", tc.image)
			}
			got := users(newKeyring(tc.entries, log).lookup(repo))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("lookup(%q) = %v, want %v", tc.image, got, tc.want)
			}
			if tc.desc == "invalid keys ignored" && !sink.has(logrus.DebugLevel, "ignoring invalid registry credential key", "entry:entry 1") {
				t.Errorf("no debug line for the invalid key")
			}
		})
	}
}

// TestKeyringPattern checks that a credential's Pattern is the key as
// configured, and only the entry's position for a key with user
// information.
func TestKeyringPattern(t *testing.T) {
	log, _ := newLog(t)
	k := newKeyring([]keyringEntry{
		{key: "https://registry.example/v2/", cred: Credential{Username: "a"}},
		{key: "https://robot:pw@other.example/", entry: "auths entry 2", cred: Credential{Username: "b"}},
	}, log)
	got := k.lookup("registry.example/x")
	if len(got) != 1 || got[0].Pattern != "https://registry.example/v2/" {
		t.Errorf("pattern = %v, want https://registry.example/v2/", got)
	}
	got = k.lookup("other.example/x")
	if len(got) != 1 || got[0].Pattern != "auths entry 2" {
		t.Errorf("pattern = %q, want the entry's position only", got[0].Pattern)
	}
}
