package handlers

import "testing"

func TestParseImage(t *testing.T) {
	tests := []struct{ in, name, registry string }{
		{"busybox", "docker.io/library/busybox:latest", "docker.io"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "docker.io"},
		{"library/busybox", "docker.io/library/busybox:latest", "docker.io"},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest", "docker.io"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "docker.io"},
		{"myorg/app:v2", "docker.io/myorg/app:v2", "docker.io"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io"},
		{"localhost:5000/x/y", "localhost:5000/x/y:latest", "localhost:5000"},
		{"localhost/app", "localhost/app:latest", "localhost"},
		{"127.0.0.1:5001/private/busybox:1.35", "127.0.0.1:5001/private/busybox:1.35", "127.0.0.1:5001"},
		{"quay.io/a/b@sha256:" + sixtyFour, "quay.io/a/b@sha256:" + sixtyFour, "quay.io"},
		{"Not A Ref", "Not A Ref", "invalid"},
		{"", "", "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := ParseImage(tc.in)
			if got.Name != tc.name || got.Registry != tc.registry {
				t.Errorf("got %+v, want %s %s", got, tc.name, tc.registry)
			}
		})
	}
}

const sixtyFour = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/a:b", "quay.io/a/b@sha256:" + sixtyFour, "A:B/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := ParseImage(s)
		if r.Registry == "" {
			t.Errorf("%q: empty registry", s)
		}
	})
}
