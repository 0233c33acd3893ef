package credentials

import (
	"strings"
	"testing"
)

// FuzzMatchImage: any key against any image may match or not, never panic;
// and the answer does not depend on how the registry host is spelled: a
// change of letter case in the image's or the key's host, or the default
// port 443, gives the same answer (the namespace policy is checked against
// the same canonical identity, so no spelling reaches credentials another
// spelling is refused).
func FuzzMatchImage(f *testing.F) {
	for _, s := range [][2]string{
		{"*.registry.example", "a.registry.example/x"},
		{"https://registry.example:5000/v2/", "registry.example:5000/team/app:1"},
		{"index.docker.io/v1/", "busybox"},
		{"[::1]:5000", "[::1]:5000/a"},
		{"%zz", "a/b"},
		{"*:5001", "localhost:5001/private/x"},
		{"*.corp.example", "prod.corp.example/app"},
	} {
		f.Add(s[0], s[1], uint64(0x5555))
	}
	f.Fuzz(func(t *testing.T, key, image string, mask uint64) {
		got := MatchImage(key, image)
		if host, rest, ok := strings.Cut(image, "/"); ok && isDomain(host) {
			if v := flipCase(host, mask) + "/" + rest; MatchImage(key, v) != got {
				t.Fatalf("MatchImage(%q, %q) = %v but MatchImage(%q, %q) = %v", key, image, got, key, v, !got)
			}
			if !strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
				if v := host + ":443/" + rest; MatchImage(key, v) != got {
					t.Fatalf("MatchImage(%q, %q) = %v but MatchImage(%q, %q) = %v", key, image, got, key, v, !got)
				}
			}
		}
		if !strings.Contains(key, "://") && !strings.ContainsAny(key, "@%") {
			host, rest, _ := strings.Cut(key, "/")
			v := flipCase(host, mask^0xffff)
			if rest != "" || strings.Contains(key, "/") {
				v += "/" + rest
			}
			if MatchImage(v, image) != got {
				t.Fatalf("MatchImage(%q, %q) = %v but MatchImage(%q, %q) = %v", key, image, got, v, image, !got)
			}
		}
	})
}

// isDomain reports whether the first segment of a reference names a
// registry whatever its letter case (docker's grammar: it has a '.' or ':'
// or is localhost); a segment that is a host only because of an upper-case
// letter would turn into a Docker Hub path when lower-cased.
func isDomain(s string) bool {
	return strings.ContainsAny(s, ".:") || strings.EqualFold(s, "localhost")
}

// flipCase changes the case of the ASCII letters of s where mask has a bit
// set.
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
