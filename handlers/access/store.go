package access

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// FileName is the name of the record's file in the state directory.
const FileName = "image-access.json"

// FileVersion is the only version of the file format Open trusts.
const FileVersion = 1

// tmpPrefix names the temporary files a write goes through. They start with
// a dot so an operator listing the directory sees the record first; any
// found at Open are what a crash left between write and rename.
const tmpPrefix = "." + FileName + ".tmp-"

// corruptSuffix is added, with a UTC timestamp, to a file Open did not
// trust, so it is kept for inspection and never read again.
const corruptSuffix = ".corrupt-"

// DefaultMaxImages is how many images the record keeps when Limits does not
// say: far more than a node's disk holds at once (Prune drops the ones the
// runtime removed), while the file stays small enough to rewrite on every
// change.
const DefaultMaxImages = 10000

// DefaultMaxNamespacesPerImage is how many namespaces one image keeps when
// Limits does not say: more than a cluster's namespaces that share one image
// on one node, so the bound only stops a runaway.
const DefaultMaxNamespacesPerImage = 1000

// ErrTooManyNamespaces is wrapped by the error of a Record that did not add
// a namespace because its image already has MaxNamespacesPerImage of them.
var ErrTooManyNamespaces = errors.New("too many namespaces for one image")

// Limits bounds the record, so that neither memory nor the file grows
// without end however many images and namespaces pull on the node. A zero or
// negative field takes its default. A file written under larger limits is
// loaded whole; the limits apply to what Record adds.
type Limits struct {
	// MaxImages is how many images the record keeps (DefaultMaxImages).
	// Recording one more evicts the least recently updated image: an
	// evicted image is unknown again, as if it had never been pulled, until
	// its next pull records it.
	MaxImages int
	// MaxNamespacesPerImage is how many namespaces one image keeps
	// (DefaultMaxNamespacesPerImage). A namespace beyond it is not recorded:
	// Record returns an error wrapping ErrTooManyNamespaces and Allowed
	// keeps reporting that namespace not allowed.
	MaxNamespacesPerImage int
}

func (l Limits) withDefaults() Limits {
	if l.MaxImages <= 0 {
		l.MaxImages = DefaultMaxImages
	}
	if l.MaxNamespacesPerImage <= 0 {
		l.MaxNamespacesPerImage = DefaultMaxNamespacesPerImage
	}
	return l
}

// CorruptError is what Open returns, together with a usable empty Store,
// when the record's file exists but is not trusted: it cannot be read, does
// not parse, is truncated, has another version or breaks a rule of the
// format. Trusting part of such a file could let a namespace run an image it
// never pulled, so none of it is used; the caller logs the error and treats
// every image as unknown until pulls record them again.
type CorruptError struct {
	// Path is the file that was not trusted.
	Path string
	// Reason says what is wrong with it: "not valid JSON: unexpected end of
	// JSON input", "version 2, want 1", "image \"\": empty image ID".
	Reason string
	// MovedTo is where the file was moved so it is kept for inspection and
	// not read again (Path plus ".corrupt-" and a UTC timestamp); empty when
	// moving failed.
	MovedTo string
	// MoveErr is why the file could not be moved aside, or nil. The file
	// is then read (and refused) again at the next Open, unless the next
	// change overwrites it first.
	MoveErr error
	// Err is the read or parse error behind Reason, or nil when the file
	// parsed but broke a rule of the format.
	Err error
}

// Error names the file, the reason and where the file was kept.
func (e *CorruptError) Error() string {
	msg := fmt.Sprintf("image access record %s is not trusted (%s): starting with an empty record", e.Path, e.Reason)
	if e.MoveErr != nil {
		return msg + fmt.Sprintf("; moving it aside failed (%v): remove it or move it away by hand", e.MoveErr)
	}
	return msg + "; the file is kept for inspection as " + e.MovedTo
}

// Unwrap returns Err.
func (e *CorruptError) Unwrap() error { return e.Err }

// Store records, per image ID, which namespaces proved they may pull the
// image and the registries it was pulled from (one image ID can be pulled
// under names of several registries), and keeps the record in a file so it
// survives restarts. It is safe for concurrent use.
//
// It knows image IDs only ("sha256:<64 hex>", as the runtime returns them
// from PullImage): mapping tags and digests to IDs is the caller's business.
// One process owns a state directory: Open removes temporary files other
// writers would still be using.
type Store struct {
	path   string
	dir    string
	limits Limits
	// now is the clock; tests replace it.
	now func() time.Time

	mu     sync.RWMutex
	images map[string]*entry
	// evictions counts images evicted by MaxImages.
	evictions int
	// gen counts changes; a write saves the snapshot of one generation.
	gen uint64

	// writeMu serializes writes so that Allowed is not held up by fsync:
	// changes marshal their snapshot under mu and write under writeMu.
	writeMu sync.Mutex
	// written is the generation of the file on disk.
	written uint64
	// writes counts files written, for tests.
	writes int
}

type entry struct {
	registries map[string]struct{}
	namespaces map[string]struct{}
	// own are the namespaces that proved access with credentials of their
	// own (an imagePullSecret): their proof holds whatever the policy says
	// later; the others' holds only while the policy grants them the node's
	// credentials for the registry.
	own map[string]struct{}
	// updated is when the entry last changed, in UTC, as saved.
	updated time.Time
	// seen is when a Record last named the image, changed or not; it is
	// not saved (Open sets it to updated) and keeps an image recorded
	// while the caller listed images from being pruned.
	seen time.Time
}

// fileFormat is the file: {"version": 1, "images": {"sha256:...":
// {"registries": ["..."], "namespaces": ["a", "b"], "ownCredentials": ["b"],
// "updated": "RFC 3339"}}}.
type fileFormat struct {
	Version int                  `json:"version"`
	Images  map[string]fileEntry `json:"images"`
}

type fileEntry struct {
	Registries []string  `json:"registries"`
	Namespaces []string  `json:"namespaces"`
	Own        []string  `json:"ownCredentials,omitempty"`
	Updated    time.Time `json:"updated"`
}

// beforeRename, when set by a test, runs after the temporary file is
// written and synced and before it is renamed over the record: panicking
// simulates a crash there, an error a failed rename.
var beforeRename func() error

// Open loads the record kept in dir (crishim's state directory, normally
// /var/lib/crishim) as dir/image-access.json.
//
// A missing dir is created with mode 0700; an existing one must not be
// world-writable, since whoever can replace the file decides which
// namespaces may run which images. A missing file is an empty record (the
// first start). Temporary files a crash left behind are removed.
//
// A file that exists but is not trusted (see CorruptError) is moved aside
// and Open returns a usable empty Store together with a *CorruptError; the
// caller logs it and should treat every image as unknown. Any other error
// (the directory cannot be created, read or is unsafe) returns a nil Store.
func Open(dir string, limits Limits) (*Store, error) {
	if dir == "" {
		return nil, errors.New("image access record: no state directory given")
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	s := &Store{
		dir:    dir,
		path:   filepath.Join(dir, FileName),
		limits: limits.withDefaults(),
		now:    time.Now,
		images: map[string]*entry{},
	}
	if err := removeLeftovers(dir); err != nil {
		return nil, err
	}
	images, reason, cause := load(s.path)
	if reason == "" {
		s.images = images
		return s, nil
	}
	cerr := &CorruptError{Path: s.path, Reason: reason, Err: cause}
	cerr.MovedTo, cerr.MoveErr = moveAside(s.path)
	return s, cerr
}

// prepareDir creates dir with mode 0700 when it is missing and refuses it
// when it is not a directory or is world-writable.
func prepareDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating the state directory %s for the image access record: %w", dir, err)
		}
		// The umask may have taken bits away; 0700 is what is wanted.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("setting the mode of the state directory %s to 0700: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("state directory %s of the image access record: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s of the image access record is not a directory: remove it or configure another state directory", dir)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("state directory %s is world-writable (mode %#o): any local user could rewrite the image access record and let a namespace run images it never pulled; run chmod 0700 %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// removeLeftovers removes the temporary files of writes a crash interrupted:
// they are never read, and would otherwise pile up.
func removeLeftovers(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("listing the state directory %s of the image access record: %w", dir, err)
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			// Best effort: a leftover that stays is harmless, it is
			// never read.
			_ = os.Remove(filepath.Join(dir, de.Name()))
		}
	}
	return nil
}

// load reads and validates the file. A missing file is an empty record; a
// file that is not trusted gives a non-empty reason and, when there is one,
// the error behind it.
func load(path string) (images map[string]*entry, reason string, cause error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*entry{}, "", nil
	}
	if err != nil {
		return nil, "cannot be read: " + err.Error(), err
	}
	if !fi.Mode().IsRegular() {
		return nil, "not a regular file (" + fi.Mode().Type().String() + ")", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "cannot be read: " + err.Error(), err
	}
	return parse(data)
}

// parse decodes a file's content and checks every rule of the format: the
// whole file is trusted or none of it.
func parse(data []byte) (images map[string]*entry, reason string, cause error) {
	// Unmarshal refuses anything but one JSON value, so a truncated file
	// or one with data after the record stops here. The version first, so
	// that a file of another version is reported as such rather than by
	// the first field this version does not know.
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, "not valid JSON: " + err.Error(), err
		}
		return nil, "not a valid record: " + err.Error(), err
	}
	if head.Version == nil {
		return nil, "no version", nil
	}
	if *head.Version != FileVersion {
		return nil, fmt.Sprintf("version %d, want %d", *head.Version, FileVersion), nil
	}
	var f fileFormat
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, "not a valid record: " + err.Error(), err
	}
	if f.Images == nil {
		return nil, "no images", nil
	}
	images = make(map[string]*entry, len(f.Images))
	for id, fe := range f.Images {
		if reason := checkEntry(id, fe); reason != "" {
			return nil, reason, nil
		}
		e := &entry{registries: make(map[string]struct{}, len(fe.Registries)), namespaces: make(map[string]struct{}, len(fe.Namespaces)), updated: fe.Updated.UTC(), seen: fe.Updated}
		for _, ns := range fe.Namespaces {
			e.namespaces[ns] = struct{}{}
		}
		for _, r := range fe.Registries {
			e.registries[r] = struct{}{}
		}
		e.own = make(map[string]struct{}, len(fe.Own))
		for _, ns := range fe.Own {
			e.own[ns] = struct{}{}
		}
		images[id] = e
	}
	return images, "", nil
}

// checkEntry returns what is wrong with one image's entry, or "". Entries
// are held to what Record writes (sorted, distinct, non-empty namespaces),
// so anything else is a file crishim did not write.
func checkEntry(id string, fe fileEntry) string {
	if id == "" {
		return "an image with an empty image ID"
	}
	if len(fe.Namespaces) == 0 {
		return fmt.Sprintf("image %q has no namespaces", id)
	}
	for i, ns := range fe.Namespaces {
		if ns == "" {
			return fmt.Sprintf("image %q has an empty namespace", id)
		}
		if i > 0 && fe.Namespaces[i-1] >= ns {
			return fmt.Sprintf("image %q: namespaces not sorted or repeated", id)
		}
	}
	if len(fe.Registries) == 0 {
		return fmt.Sprintf("image %q has no registries", id)
	}
	for i := 1; i < len(fe.Registries); i++ {
		if fe.Registries[i-1] >= fe.Registries[i] {
			return fmt.Sprintf("image %q: registries not sorted or repeated", id)
		}
	}
	if fe.Updated.IsZero() {
		return fmt.Sprintf("image %q has no updated time", id)
	}
	return ""
}

// moveAside renames a file Open did not trust to path.corrupt-<UTC time>,
// with a counter when a file of that second exists.
func moveAside(path string) (string, error) {
	base := path + corruptSuffix + time.Now().UTC().Format("20060102T150405Z")
	to := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if i == 100 {
			return "", fmt.Errorf("%s and 99 more names are taken", base)
		}
		to = fmt.Sprintf("%s.%d", base, i)
	}
	if err := os.Rename(path, to); err != nil {
		return "", err
	}
	_ = syncDir(filepath.Dir(path))
	return to, nil
}

// Path returns the record's file.
func (s *Store) Path() string { return s.path }

// Len returns how many images the record holds.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.images)
}

// Record notes that namespace pulled the image imageID from registry (its
// canonical identity), and saves the record when that changed it: a new
// image, a new namespace for it, or another registry it came from. changed is false when the record already said so, and then nothing
// is written.
//
// A new image beyond MaxImages evicts the least recently updated one. A
// namespace beyond MaxNamespacesPerImage is not added: the error wraps
// ErrTooManyNamespaces and changed is false.
//
// An error saving the file is returned with changed true: the change is
// kept in memory, and the file gets it with the next successful save, since
// a pull must not fail because a disk is full. Empty imageID or namespace
// is an error and changes nothing.
func (s *Store) Record(imageID, registry, namespace string, ownCredentials bool) (changed bool, err error) {
	if imageID == "" || namespace == "" {
		return false, fmt.Errorf("recording image access: empty image ID (%q) or namespace (%q)", imageID, namespace)
	}
	now := s.now()
	s.mu.Lock()
	e := s.images[imageID]
	switch {
	case e == nil:
		for len(s.images) >= s.limits.MaxImages {
			s.evictLocked()
		}
		e = &entry{registries: map[string]struct{}{registry: {}}, namespaces: map[string]struct{}{namespace: {}}, own: map[string]struct{}{}}
		if ownCredentials {
			e.own[namespace] = struct{}{}
		}
		s.images[imageID] = e
	default:
		e.seen = now
		_, known := e.namespaces[namespace]
		_, knownRegistry := e.registries[registry]
		_, knownOwn := e.own[namespace]
		if known && knownRegistry && (knownOwn || !ownCredentials) {
			s.mu.Unlock()
			return false, nil
		}
		if !known && len(e.namespaces) >= s.limits.MaxNamespacesPerImage {
			s.mu.Unlock()
			return false, fmt.Errorf("image %s: namespace %s not recorded: the image already has %d namespaces with access, the most the image access record keeps (%w); its pods may be refused the image until the limit is raised", imageID, namespace, len(e.namespaces), ErrTooManyNamespaces)
		}
		e.namespaces[namespace] = struct{}{}
		e.registries[registry] = struct{}{}
		if ownCredentials {
			e.own[namespace] = struct{}{}
		}
	}
	e.updated, e.seen = now.UTC(), now
	return true, s.saveUnlock()
}

// evictLocked removes the least recently updated image (the smallest image
// ID among equals, so eviction is deterministic).
func (s *Store) evictLocked() {
	var oldest string
	var oldestT time.Time
	for id, e := range s.images {
		if oldest == "" || e.updated.Before(oldestT) || e.updated.Equal(oldestT) && id < oldest {
			oldest, oldestT = id, e.updated
		}
	}
	delete(s.images, oldest)
	s.evictions++
}

// Evictions reports how many images were evicted to keep the record within
// MaxImages since Open. An evicted image is unknown again, which any
// namespace able to pull enough distinct images could use to open a
// restricted one: the caller treats the node as conservative once this is
// not zero.
func (s *Store) Evictions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.evictions
}

// Lookup returns the registries an image was pulled from and the
// namespaces that proved access to it, and those of them that proved it
// with their own credentials, all sorted; ok is false when the image is
// unknown.
func (s *Store) Lookup(imageID string) (registries, namespaces, own []string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.images[imageID]
	if e == nil {
		return nil, nil, nil, false
	}
	return sortedSet(e.registries), sortedNamespaces(e), sortedSet(e.own), true
}

// Allowed reports whether the image is known (some namespace pulled it
// since it was last pruned or evicted) and, if so, whether namespace is one
// of those that did.
func (s *Store) Allowed(imageID, namespace string) (known, allowed bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.images[imageID]
	if e == nil {
		return false, false
	}
	_, allowed = e.namespaces[namespace]
	return true, allowed
}

// Prune drops the images the runtime no longer has, so that an image pulled
// again later must be proved again, and saves the record when it removed
// any. present reports whether the runtime has an image (the caller builds
// it from ListImages); it is called with the Store locked and must not call
// the Store.
//
// listedAt is when the caller started listing images: an image recorded at
// or after it is kept whatever present says, since a pull that finished
// while the list was taken may be missing from it. The zero time prunes by
// present alone.
//
// A save error is returned with the images removed from memory all the
// same, as Record does.
func (s *Store) Prune(listedAt time.Time, present func(imageID string) bool) (removed int, err error) {
	s.mu.Lock()
	for id, e := range s.images {
		if present(id) || !listedAt.IsZero() && !e.seen.Before(listedAt) {
			continue
		}
		delete(s.images, id)
		removed++
	}
	if removed == 0 {
		s.mu.Unlock()
		return 0, nil
	}
	return removed, s.saveUnlock()
}

func sortedNamespaces(e *entry) []string { return sortedSet(e.namespaces) }

// saveUnlock takes a snapshot of the record, releases mu and writes the
// snapshot unless a newer one is already on disk (it includes this change).
// s.mu must be held for writing.
func (s *Store) saveUnlock() error {
	s.gen++
	gen := s.gen
	f := fileFormat{Version: FileVersion, Images: make(map[string]fileEntry, len(s.images))}
	for id, e := range s.images {
		f.Images[id] = fileEntry{Registries: sortedSet(e.registries), Namespaces: sortedNamespaces(e), Own: sortedSet(e.own), Updated: e.updated}
	}
	s.mu.Unlock()
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the image access record %s: %w", s.path, err)
	}
	data = append(data, '\n')

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if gen <= s.written {
		return nil
	}
	if err := s.writeFile(data); err != nil {
		return fmt.Errorf("saving the image access record %s: %w; the change is kept in memory and lost at restart unless a later save succeeds: check free space and permissions in %s", s.path, err, s.dir)
	}
	s.written = gen
	s.writes++
	return nil
}

// writeFile replaces the record's file with data so that a crash at any
// point leaves either the old file or the new one: write a temporary file in
// the same directory, sync it, rename it over the record, sync the
// directory so the rename itself is durable.
func (s *Store) writeFile(data []byte) error {
	f, err := os.CreateTemp(s.dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// Not deferred: a crash (simulated by a panicking beforeRename) must
	// leave the temporary file behind, as a real one would.
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	// CreateTemp makes the file 0600 already; say it, the record is
	// nobody else's business.
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if beforeRename != nil {
		if err := beforeRename(); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sortedSet returns a set's members sorted.
func sortedSet(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
