package configfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckNotWorldWritable(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode    os.FileMode
		wantErr bool
	}{{0o600, false}, {0o644, false}, {0o664, false}, {0o666, true}, {0o602, true}, {0o777, true}} {
		p := filepath.Join(dir, tc.mode.String())
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckNotWorldWritable(p)
		if (err != nil) != tc.wantErr {
			t.Errorf("mode %v: got %v, want error %v", tc.mode, err, tc.wantErr)
		}
		if err != nil && (!strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "chmod o-w")) {
			t.Errorf("error %q does not name the file and the fix", err)
		}
	}
	if err := CheckNotWorldWritable(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file passed")
	}
}
