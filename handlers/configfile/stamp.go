package configfile

import (
	"os"
	"syscall"
)

// Stamp identifies one version of a file as cheaply as a stat can: whether
// it exists, which file it is (device and inode: an editor's or a
// secret-syncer's rename is a new file), its size and modification time.
// Stamps are comparable: two equal stamps mean no change a stat can see.
type Stamp struct {
	exists     bool
	dev, ino   uint64
	size       int64
	mtimeNanos int64
}

// StampOf stamps the file at path; a file that is absent or cannot be
// stat'ed has the zero Stamp.
func StampOf(path string) Stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{}
	}
	s := Stamp{exists: true, size: fi.Size(), mtimeNanos: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	return s
}

// Exists reports whether the file existed when it was stamped.
func (s Stamp) Exists() bool { return s.exists }
