package shim

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestListen(t *testing.T) {
	tests := []struct {
		desc    string
		setup   func(t *testing.T, path string)
		path    func(dir string) string
		mode    os.FileMode
		wantErr string
	}{
		{
			desc: "creates the parent directory and sets the mode",
			path: func(dir string) string { return filepath.Join(dir, "a", "b", "s.sock") },
			mode: 0o660,
		},
		{
			desc: "custom mode",
			path: func(dir string) string { return filepath.Join(dir, "s.sock") },
			mode: 0o600,
		},
		{
			desc: "removes a stale socket",
			setup: func(t *testing.T, path string) {
				l, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				// Close without unlinking, as a crashed process leaves it.
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				l.Close()
				if _, err := os.Stat(path); err != nil {
					t.Fatalf("stale socket not left behind: %v", err)
				}
			},
			path: func(dir string) string { return filepath.Join(dir, "s.sock") },
			mode: 0o660,
		},
		{
			desc: "refuses a socket another process serves",
			setup: func(t *testing.T, path string) {
				l, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
			},
			path:    func(dir string) string { return filepath.Join(dir, "s.sock") },
			mode:    0o660,
			wantErr: "another process is serving on the socket",
		},
		{
			desc: "refuses to replace a regular file",
			setup: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			path:    func(dir string) string { return filepath.Join(dir, "s.sock") },
			mode:    0o660,
			wantErr: "a regular file is in the way",
		},
		{
			desc:    "relative path",
			path:    func(string) string { return "rel.sock" },
			wantErr: "must be absolute",
		},
		{
			desc:    "path over the unix socket limit",
			path:    func(dir string) string { return filepath.Join(dir, strings.Repeat("x", 120)) },
			wantErr: "over the 107-byte unix socket limit",
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			path := tc.path(shortTempDir(t))
			if tc.setup != nil {
				tc.setup(t, path)
			}
			l, err := Listen(path, tc.mode)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the path", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != tc.mode {
				t.Errorf("socket mode = %v, want socket %v", fi.Mode(), tc.mode)
			}
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("dial the new socket: %v", err)
			}
			c.Close()
		})
	}
}

func TestListenInUseIsErrSocketInUse(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "s.sock")
	l1, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	_, err = Listen(path, 0o660)
	if !errors.Is(err, ErrSocketInUse) {
		t.Errorf("got %v, want ErrSocketInUse", err)
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "unix:///run/containerd/containerd.sock", want: "/run/containerd/containerd.sock"},
		{in: "/run/crio/crio.sock", want: "/run/crio/crio.sock"},
		{in: "tcp://127.0.0.1:1234", wantErr: "only unix://"},
		{in: "unix://relative.sock", wantErr: "want unix:///absolute/path"},
		{in: "", wantErr: "want unix:///absolute/path"},
		{in: "unix:///" + strings.Repeat("x", 120), wantErr: "unix socket limit"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEndpoint(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
