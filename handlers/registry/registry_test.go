package registry

import (
	"strings"
	"testing"
)

const sixtyFour = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	tests := []struct{ in, name, registry, repo string }{
		{"busybox", "docker.io/library/busybox:latest", "docker.io", "docker.io/library/busybox"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "docker.io", "docker.io/library/busybox"},
		{"library/busybox", "docker.io/library/busybox:latest", "docker.io", "docker.io/library/busybox"},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest", "docker.io", "docker.io/library/busybox"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "docker.io", "docker.io/library/busybox"},
		{"myorg/app:v2", "docker.io/myorg/app:v2", "docker.io", "docker.io/myorg/app"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io", "registry.k8s.io/pause"},
		{"localhost:5000/x/y", "localhost:5000/x/y:latest", "localhost:5000", "localhost:5000/x/y"},
		{"localhost/app", "localhost/app:latest", "localhost", "localhost/app"},
		{"127.0.0.1:5001/private/busybox:1.35", "127.0.0.1:5001/private/busybox:1.35", "127.0.0.1:5001", "127.0.0.1:5001/private/busybox"},
		{"quay.io/a/b@sha256:" + sixtyFour, "quay.io/a/b@sha256:" + sixtyFour, "quay.io", "quay.io/a/b"},
		// Spellings of one registry: the name keeps the spelling (the
		// runtime stores the image under it), the registry is canonical.
		{"LOCALHOST:5001/private/x", "LOCALHOST:5001/private/x:latest", "localhost:5001", "localhost:5001/private/x"},
		{"Localhost:5001/private/x", "Localhost:5001/private/x:latest", "localhost:5001", "localhost:5001/private/x"},
		{"PROD.corp.example/app", "PROD.corp.example/app:latest", "prod.corp.example", "prod.corp.example/app"},
		{"INDEX.DOCKER.IO/busybox", "INDEX.DOCKER.IO/busybox:latest", "docker.io", "docker.io/library/busybox"},
		{"Docker.IO/library/busybox", "Docker.IO/library/busybox:latest", "docker.io", "docker.io/library/busybox"},
		{"registry.example:443/app", "registry.example:443/app:latest", "registry.example", "registry.example/app"},
		{"XN--BCHER-KVA.example/app", "XN--BCHER-KVA.example/app:latest", "xn--bcher-kva.example", "xn--bcher-kva.example/app"},
		{"[::A]:5000/app", "[::A]:5000/app:latest", "[::a]:5000", "[::a]:5000/app"},
		// An upper-case first segment is a host in docker's grammar.
		{"Foo/bar", "Foo/bar:latest", "foo", "foo/bar"},
		// Not folded: other names of a server, and port 80.
		{"registry-1.docker.io/library/busybox", "registry-1.docker.io/library/busybox:latest", "registry-1.docker.io", "registry-1.docker.io/library/busybox"},
		{"registry.example:80/app", "registry.example:80/app:latest", "registry.example:80", "registry.example:80/app"},
		// The grammar refuses these: no node credentials, the runtime errs.
		{"registry.example./app", "registry.example./app", "invalid", ""},
		{"bücher.example/app", "bücher.example/app", "invalid", ""},
		{"Not A Ref", "Not A Ref", "invalid", ""},
		{"", "", "invalid", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := Parse(tc.in)
			want := Ref{Name: tc.name, Registry: tc.registry, Repository: tc.repo}
			if got != want {
				t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, want)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"registry.example", "registry.example"},
		{"REGISTRY.Example", "registry.example"},
		{"registry.example.", "registry.example"},
		{"registry.example:443", "registry.example"},
		{"Registry.Example.:443", "registry.example"},
		{"registry.example:5000", "registry.example:5000"},
		{"index.docker.io", "docker.io"},
		{"INDEX.docker.IO:443", "docker.io"},
		{"[::1]:443", "[::1]"},
		{"[::1]", "[::1]"},
		{"[FE80::1]:5000", "[fe80::1]:5000"},
		// patterns
		{"*.Corp.Example", "*.corp.example"},
		{"*:5001", "*:5001"},
		{"*", "*"},
		// only ASCII folds: the Kelvin sign is not the letter k
		{"\u212A.example", "\u212A.example"},
	}
	for _, tc := range tests {
		if got := Canonical(tc.in); got != tc.want {
			t.Errorf("Canonical(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPattern(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Registry.Example/Team", "registry.example/Team"},
		{"INDEX.docker.io/library", "docker.io/library"},
		{"*.corp.example:443/x", "*.corp.example/x"},
		{"localhost:5001", "localhost:5001"},
	}
	for _, tc := range tests {
		if got := Pattern(tc.in); got != tc.want {
			t.Errorf("Pattern(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLabelsBound(t *testing.T) {
	l := NewLabels(3)
	var got []string
	for _, r := range []string{"a.example", "B.example", "a.example", "c.example", "d.example", "b.example", Invalid, "e.example"} {
		got = append(got, l.Value(r))
	}
	want := []string{"a.example", "b.example", "a.example", "c.example", Other, "b.example", Invalid, Other}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
	// Many distinct registries, concurrently: never more than the bound.
	l = NewLabels(10)
	distinct := map[string]bool{}
	done := make(chan []string)
	for g := 0; g < 4; g++ {
		go func(g int) {
			var vals []string
			for i := 0; i < 1000; i++ {
				vals = append(vals, l.Value(string(rune('a'+g))+strings.Repeat("x", i%50)+".example"))
			}
			done <- vals
		}(g)
	}
	for g := 0; g < 4; g++ {
		for _, v := range <-done {
			distinct[v] = true
		}
	}
	if len(distinct) != 11 || !distinct[Other] {
		t.Errorf("got %d distinct label values, want the bound 10 plus %q", len(distinct), Other)
	}
	if NewLabels(0).Max() != DefaultMaxLabels {
		t.Errorf("NewLabels(0).Max() = %d, want %d", NewLabels(0).Max(), DefaultMaxLabels)
	}
}

// isHostname reports whether s is a DNS name or glob without a port, one
// that ":443" can be added to.
func isHostname(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '.' || c == '-' || c == '*' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// flipCase changes the case of the ASCII letters of s where mask has a bit
// set: the spellings DNS treats as one name.
func flipCase(s string, mask uint64) string {
	b := []byte(s)
	for i, c := range b {
		if mask&(1<<(uint(i)%64)) == 0 {
			continue
		}
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// FuzzCanonical checks that spellings of one registry never compare
// unequal: any change of letter case in the host, the Docker Hub aliases and
// the default port give one canonical identity, through Canonical and
// through Parse of an image on that host.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"localhost:5001", "registry.example", "docker.io", "index.docker.io", "*.corp.example", "[::1]:5000", "xn--bcher-kva.example", "a"} {
		f.Add(s, uint64(0xffff), false)
	}
	f.Fuzz(func(t *testing.T, host string, mask uint64, port443 bool) {
		c := Canonical(host)
		if Canonical(c) != c {
			t.Fatalf("Canonical not idempotent: %q -> %q -> %q", host, c, Canonical(c))
		}
		variant := flipCase(host, mask)
		if port443 && isHostname(host) {
			variant += ":443"
		}
		if cv := Canonical(variant); cv != c {
			t.Fatalf("Canonical(%q) = %q but Canonical(%q) = %q", host, c, variant, cv)
		}
		// The same through image references on that host: host+".example"
		// has a dot, so it is the reference's registry in every spelling,
		// unless it holds a '/' (then case decides what the first segment
		// is, and the spellings are different references, not spellings).
		if strings.ContainsAny(host, "/@") {
			return
		}
		a, b := Parse(host+".example/x/app:1"), Parse(variant+".example/x/app:1")
		if port443 {
			b = Parse(strings.TrimSuffix(variant, ":443") + ".example:443/x/app:1")
		}
		if (a.Registry == Invalid) != (b.Registry == Invalid) {
			return // case can make a segment a host or not; both sides differ in grammar, not spelling
		}
		if a.Registry != b.Registry || a.Repository != b.Repository {
			t.Fatalf("one registry, two identities: %q -> %+v, %q -> %+v", host, a, variant, b)
		}
		if a.Registry != Invalid && a.Registry != Canonical(a.Registry) {
			t.Fatalf("Parse gave a non-canonical registry %q", a.Registry)
		}
	})
}
