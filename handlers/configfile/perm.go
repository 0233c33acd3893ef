package configfile

import (
	"fmt"
	"os"
)

// CheckNotWorldWritable refuses a file or directory every local user may
// write: whoever can change crishim's configuration, credentials or plugin
// binaries controls what every pod on the node runs and pulls with.
func CheckNotWorldWritable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s is world-writable (mode %#o): any local user could change it; run chmod o-w %s", path, fi.Mode().Perm(), path)
	}
	return nil
}
