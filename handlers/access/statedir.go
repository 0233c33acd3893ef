package access

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// CheckDir checks the state directory as Open would use it, without
// creating or changing anything (for crishim validate): it may be missing
// (Open creates it), else it must be a directory no other user may write to.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("images.access.stateDir %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("images.access.stateDir %s: not a directory", dir)
	case fi.Mode().Perm()&0o002 != 0:
		return fmt.Errorf("images.access.stateDir %s is world-writable (mode %#o): any local user could forge the record of who may run which image; run chmod 0700 %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}
