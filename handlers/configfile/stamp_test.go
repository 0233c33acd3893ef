package configfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStampOf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if StampOf(p).Exists() || StampOf(p) != (Stamp{}) {
		t.Fatalf("absent file: got %+v, want the zero stamp", StampOf(p))
	}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	first := StampOf(p)
	if !first.Exists() || StampOf(p) != first {
		t.Fatalf("unchanged file: stamps differ")
	}
	steps := []struct {
		desc   string
		change func()
	}{
		{"size", func() { write("ab") }},
		{"mtime", func() {
			if err := os.Chtimes(p, time.Now(), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced by rename, same size and mtime", func() {
			fi, _ := os.Stat(p)
			q := filepath.Join(dir, "g")
			if err := os.WriteFile(q, []byte("xy"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(q, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(q, p); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed", func() { os.Remove(p) }},
	}
	prev := StampOf(p)
	for _, step := range steps {
		step.change()
		now := StampOf(p)
		if now == prev {
			t.Errorf("%s: stamp unchanged", step.desc)
		}
		prev = now
	}
}
