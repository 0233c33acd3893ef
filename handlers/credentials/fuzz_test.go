package credentials

import "testing"

// FuzzMatchImage: any key against any image may match or not, never panic;
// a key matches the image it names.
func FuzzMatchImage(f *testing.F) {
	for _, s := range [][2]string{
		{"*.registry.example", "a.registry.example/x"},
		{"https://registry.example:5000/v2/", "registry.example:5000/team/app:1"},
		{"index.docker.io/v1/", "busybox"},
		{"[::1]:5000", "[::1]:5000/a"},
		{"%zz", "a/b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, image string) {
		_ = MatchImage(key, image)
	})
}
