package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// imageIDOf returns an image ID of 64 times c.
func imageIDOf(c string) string { return "sha256:" + strings.Repeat(c, 64) }

// fakeClock is a fake clock a second further on each reading, so every Record
// has its own updated time.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time {
	c.t = c.t.Add(time.Second)
	return c.t
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

// mustOpen opens a Store in dir and fails the test on any error.
func mustOpen(t *testing.T, dir string, limits Limits) *Store {
	t.Helper()
	s, err := Open(dir, limits)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

// mustRecord records and fails the test unless the result is wantChanged
// without error.
func mustRecord(t *testing.T, s *Store, imageID, registry, namespace string, wantChanged bool) {
	t.Helper()
	changed, err := s.Record(imageID, registry, namespace, false)
	if err != nil || changed != wantChanged {
		t.Fatalf("Record(%s, %s, %s) = %v, %v; want %v, nil", imageID, registry, namespace, changed, err, wantChanged)
	}
}

// lookupAll is everything Lookup says about every image of ids.
func lookupAll(s *Store, ids ...string) map[string]string {
	out := map[string]string{}
	for _, i := range ids {
		reg, ns, _, ok := s.Lookup(i)
		if ok {
			out[i] = strings.Join(reg, ",") + " " + strings.Join(ns, ",")
		}
	}
	return out
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRecordRules(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Limits{})
	steps := []struct {
		image, registry, ns string
		wantChanged         bool
	}{
		{imageIDOf("a"), "docker.io", "team-a", true},
		{imageIDOf("a"), "docker.io", "team-b", true},
		{imageIDOf("a"), "docker.io", "team-a", false}, // idempotent
		{imageIDOf("b"), "registry.example", "team-a", true},
		{imageIDOf("c"), "localhost:5001", "team-c", true},
		{imageIDOf("c"), "mirror.example", "team-c", true}, // another registry of the same image is added
		{imageIDOf("c"), "mirror.example", "team-c", false},
	}
	for _, st := range steps {
		mustRecord(t, s, st.image, st.registry, st.ns, st.wantChanged)
	}
	if s.Len() != 3 {
		t.Errorf("Len() = %d, want 3", s.Len())
	}

	lookups := []struct {
		image   string
		wantReg []string
		wantNS  []string
		wantOK  bool
	}{
		{imageIDOf("a"), []string{"docker.io"}, []string{"team-a", "team-b"}, true},
		{imageIDOf("b"), []string{"registry.example"}, []string{"team-a"}, true},
		{imageIDOf("c"), []string{"localhost:5001", "mirror.example"}, []string{"team-c"}, true},
		{imageIDOf("d"), nil, nil, false},
		{"", nil, nil, false},
	}
	for _, tc := range lookups {
		reg, ns, _, ok := s.Lookup(tc.image)
		if !reflect.DeepEqual(reg, tc.wantReg) || !reflect.DeepEqual(ns, tc.wantNS) || ok != tc.wantOK {
			t.Errorf("Lookup(%s) = %q, %q, %v; want %q, %q, %v", tc.image, reg, ns, ok, tc.wantReg, tc.wantNS, tc.wantOK)
		}
	}

	allowed := []struct {
		desc, image, ns       string
		wantKnown, wantAllowd bool
	}{
		{"first namespace", imageIDOf("a"), "team-a", true, true},
		{"second namespace", imageIDOf("a"), "team-b", true, true},
		{"namespace that did not pull", imageIDOf("a"), "team-c", true, false},
		{"namespace of another image", imageIDOf("b"), "team-b", true, false},
		{"empty namespace", imageIDOf("a"), "", true, false},
		{"unknown image", imageIDOf("d"), "team-a", false, false},
		// IDs only: a tag or digest naming the image is the caller's to
		// resolve, and an ID is compared exactly.
		{"tag", "docker.io/library/busybox:latest", "team-a", false, false},
		{"repo digest", "docker.io/library/busybox@" + imageIDOf("a"), "team-a", false, false},
		{"ID in upper case", strings.ToUpper(imageIDOf("a")), "team-a", false, false},
		{"ID without algorithm", strings.Repeat("a", 64), "team-a", false, false},
	}
	for _, tc := range allowed {
		known, ok := s.Allowed(tc.image, tc.ns)
		if known != tc.wantKnown || ok != tc.wantAllowd {
			t.Errorf("%s: Allowed(%s, %q) = %v, %v; want %v, %v", tc.desc, tc.image, tc.ns, known, ok, tc.wantKnown, tc.wantAllowd)
		}
	}

	// Lookup returns a copy: changing it does not change the record.
	_, ns, _, _ := s.Lookup(imageIDOf("a"))
	ns[0] = "team-z"
	if known, ok := s.Allowed(imageIDOf("a"), "team-z"); !known || ok {
		t.Errorf("changing Lookup's result changed the record")
	}
}

func TestRecordRefusesEmptyArguments(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	for _, tc := range []struct{ image, ns string }{{"", "team-a"}, {imageIDOf("a"), ""}, {"", ""}} {
		changed, err := s.Record(tc.image, "docker.io", tc.ns, false)
		if err == nil || changed {
			t.Errorf("Record(%q, docker.io, %q) = %v, %v; want false and an error", tc.image, tc.ns, changed, err)
		}
	}
	if s.Len() != 0 || s.writes != 0 {
		t.Errorf("got %d images and %d writes, want none", s.Len(), s.writes)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written: %v", err)
	}
	// An empty registry is the caller's to give: it is kept as given.
	mustRecord(t, s, imageIDOf("a"), "", "team-a", true)
	if reg, _, _, ok := s.Lookup(imageIDOf("a")); !ok || !reflect.DeepEqual(reg, []string{""}) {
		t.Errorf("Lookup = %q, %v; want \"\", true", reg, ok)
	}
}

func TestRecordIdempotentDoesNotRewrite(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-a", true)
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-b", true)
	if s.writes != 2 {
		t.Fatalf("got %d writes after two changes, want 2", s.writes)
	}
	// Set the file's mtime into the past so a rewrite is visible even on
	// a file system with coarse timestamps.
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(s.Path(), past, past); err != nil {
		t.Fatal(err)
	}
	before := mustRead(t, s.Path())
	for _, ns := range []string{"team-a", "team-b", "team-a"} {
		mustRecord(t, s, imageIDOf("a"), "docker.io", ns, false)
	}
	if s.writes != 2 {
		t.Errorf("got %d writes, want still 2: an unchanged record must not be rewritten", s.writes)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(past) {
		t.Errorf("file mtime %v, want unchanged %v", fi.ModTime(), past)
	}
	if got := mustRead(t, s.Path()); string(got) != string(before) {
		t.Errorf("file changed:\n got %s\nwant %s", got, before)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	s.now = newFakeClock().now
	mustRecord(t, s, imageIDOf("b"), "registry.example", "team-b", true)
	mustRecord(t, s, imageIDOf("b"), "registry.example", "team-a", true)
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-a", true)

	want := `{
  "version": 1,
  "images": {
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": {
      "registries": [
        "docker.io"
      ],
      "namespaces": [
        "team-a"
      ],
      "updated": "2026-01-02T03:04:08Z"
    },
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb": {
      "registries": [
        "registry.example"
      ],
      "namespaces": [
        "team-a",
        "team-b"
      ],
      "updated": "2026-01-02T03:04:07Z"
    }
  }
}
`
	if got := string(mustRead(t, s.Path())); got != want {
		t.Errorf("file:\n got %s\nwant %s", got, want)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %#o, want 0600", fi.Mode().Perm())
	}

	s2 := mustOpen(t, dir, Limits{})
	ids := []string{imageIDOf("a"), imageIDOf("b"), imageIDOf("c")}
	if got, want := lookupAll(s2, ids...), lookupAll(s, ids...); !reflect.DeepEqual(got, want) {
		t.Errorf("after re-Open got %v, want %v", got, want)
	}
	if s2.Len() != 2 {
		t.Errorf("after re-Open Len() = %d, want 2", s2.Len())
	}
	// The loaded updated times order eviction as before.
	if !s2.images[imageIDOf("a")].updated.Equal(s.images[imageIDOf("a")].updated) {
		t.Errorf("updated time after re-Open %v, want %v", s2.images[imageIDOf("a")].updated, s.images[imageIDOf("a")].updated)
	}
	// Nothing else is left in the directory.
	assertDir(t, dir, FileName)
}

// assertDir checks that dir holds exactly the named files.
func assertDir(t *testing.T, dir string, want ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("directory holds %q, want %q", got, want)
	}
}

// setBeforeRename installs the crash hook for one test.
func setBeforeRename(t *testing.T, f func() error) {
	t.Helper()
	beforeRename = f
	t.Cleanup(func() { beforeRename = nil })
}

type simulatedCrash struct{}

func TestCrashBetweenWriteAndRename(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-a", true)
	before := mustRead(t, s.Path())

	setBeforeRename(t, func() error { panic(simulatedCrash{}) })
	func() {
		defer func() {
			if r := recover(); r != (simulatedCrash{}) {
				t.Fatalf("recovered %v, want the simulated crash", r)
			}
		}()
		s.Record(imageIDOf("a"), "docker.io", "team-b", false)
	}()
	beforeRename = nil

	if got := mustRead(t, s.Path()); string(got) != string(before) {
		t.Errorf("the crash changed the file:\n got %s\nwant %s", got, before)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	if len(leftovers) != 1 {
		t.Fatalf("got leftovers %q, want the one temporary file the crash left", leftovers)
	}

	s2, err := Open(dir, Limits{})
	if err != nil {
		t.Fatalf("Open after the crash: %v", err)
	}
	if got, want := lookupAll(s2, imageIDOf("a")), map[string]string{imageIDOf("a"): "docker.io team-a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the crash got %v, want the record before it %v", got, want)
	}
	assertDir(t, dir, FileName)
}

func TestSaveErrorKeepsChangeInMemory(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-a", true)
	before := mustRead(t, s.Path())

	disk := errors.New("no space left on device")
	setBeforeRename(t, func() error { return disk })
	changed, err := s.Record(imageIDOf("a"), "docker.io", "team-b", false)
	if !changed || !errors.Is(err, disk) || !strings.Contains(err.Error(), s.Path()) {
		t.Fatalf("Record = %v, %v; want true and an error naming %s and wrapping %v", changed, err, s.Path(), disk)
	}
	if known, ok := s.Allowed(imageIDOf("a"), "team-b"); !known || !ok {
		t.Errorf("Allowed(team-b) = %v, %v after a failed save; want the change kept in memory", known, ok)
	}
	if got := mustRead(t, s.Path()); string(got) != string(before) {
		t.Errorf("a failed save changed the file:\n got %s\nwant %s", got, before)
	}
	assertDir(t, dir, FileName)

	// The next successful save writes both changes.
	beforeRename = nil
	mustRecord(t, s, imageIDOf("b"), "docker.io", "team-c", true)
	s2 := mustOpen(t, dir, Limits{})
	if known, ok := s2.Allowed(imageIDOf("a"), "team-b"); !known || !ok {
		t.Errorf("after re-Open Allowed(team-b) = %v, %v; want the change saved by the next Record", known, ok)
	}
}

func TestCorruptFile(t *testing.T) {
	valid := `{"version":1,"images":{"` + imageIDOf("a") + `":{"registries":["docker.io"],"namespaces":["team-a"],"updated":"2026-01-02T03:04:05Z"}}}` + "\n"
	entry := func(e string) string { return `{"version":1,"images":{"` + imageIDOf("a") + `":` + e + `}}` }
	tests := []struct {
		desc, content, wantReason string
	}{
		{"truncated", valid[:len(valid)/2], "not valid JSON: unexpected end of JSON input"},
		{"empty", "", "not valid JSON"},
		{"bad JSON", `{"version":1,"images":{,}}`, "not valid JSON"},
		{"not an object", `[1]`, "not a valid record"},
		{"version not a number", strings.Replace(valid, `"version":1`, `"version":"1"`, 1), "not a valid record"},
		{"wrong version", strings.Replace(valid, `"version":1`, `"version":2`, 1), "version 2, want 1"},
		{"version 0", strings.Replace(valid, `"version":1`, `"version":0`, 1), "version 0, want 1"},
		{"no version", `{"images":{}}`, "no version"},
		{"no images", `{"version":1}`, "no images"},
		{"images null", `{"version":1,"images":null}`, "no images"},
		{"empty image ID", `{"version":1,"images":{"":{"registries":["docker.io"],"namespaces":["team-a"],"updated":"2026-01-02T03:04:05Z"}}}`, "empty image ID"},
		{"empty namespace", entry(`{"registries":["r"],"namespaces":["team-a",""],"updated":"2026-01-02T03:04:05Z"}`), "empty namespace"},
		{"no namespaces", entry(`{"registries":["r"],"namespaces":[],"updated":"2026-01-02T03:04:05Z"}`), "has no namespaces"},
		{"namespaces null", entry(`{"registries":["r"],"updated":"2026-01-02T03:04:05Z"}`), "has no namespaces"},
		{"namespace not a string", entry(`{"registries":["r"],"namespaces":[1],"updated":"2026-01-02T03:04:05Z"}`), "not a valid record"},
		{"unsorted namespaces", entry(`{"registries":["r"],"namespaces":["b","a"],"updated":"2026-01-02T03:04:05Z"}`), "not sorted or repeated"},
		{"repeated namespace", entry(`{"registries":["r"],"namespaces":["a","a"],"updated":"2026-01-02T03:04:05Z"}`), "not sorted or repeated"},
		{"no registries", entry(`{"registries":[],"namespaces":["a"],"updated":"2026-01-02T03:04:05Z"}`), "has no registries"},
		{"unsorted registries", entry(`{"registries":["b","a"],"namespaces":["a"],"updated":"2026-01-02T03:04:05Z"}`), "registries not sorted or repeated"},
		{"no updated time", entry(`{"registries":["r"],"namespaces":["a"]}`), "no updated time"},
		{"bad updated time", entry(`{"registries":["r"],"namespaces":["a"],"updated":"yesterday"}`), "not a valid record"},
		{"entry null", entry(`null`), "has no namespaces"},
		{"unknown field", entry(`{"registries":["r"],"namespaces":["a"],"updated":"2026-01-02T03:04:05Z","expires":"never"}`), `unknown field "expires"`},
		{"data after the record", valid + `{}`, "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			assertCorrupt(t, dir, tc.wantReason, tc.content)
		})
	}

	// Not a regular file: a directory in its place.
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, FileName), 0o700); err != nil {
			t.Fatal(err)
		}
		assertCorrupt(t, dir, "not a regular file", "")
	})
}

// assertCorrupt opens dir, whose record is not to be trusted, and checks
// that Open gives an empty usable Store and a CorruptError with wantReason,
// that the file was moved aside (with content, when it is a file), and that
// the next Record writes a fresh valid file.
func assertCorrupt(t *testing.T, dir, wantReason, content string) {
	t.Helper()
	path := filepath.Join(dir, FileName)
	s, err := Open(dir, Limits{})
	var cerr *CorruptError
	if !errors.As(err, &cerr) {
		t.Fatalf("Open: got %v, want a *CorruptError", err)
	}
	if s == nil {
		t.Fatal("Open returned no Store with its CorruptError")
	}
	if cerr.Path != path || !strings.Contains(cerr.Reason, wantReason) {
		t.Errorf("got path %q reason %q, want %q and a reason containing %q", cerr.Path, cerr.Reason, path, wantReason)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, wantReason) || !strings.Contains(msg, cerr.MovedTo) {
		t.Errorf("error %q does not name the file, the reason and where it was moved", msg)
	}
	if cerr.MoveErr != nil || !strings.HasPrefix(cerr.MovedTo, path+corruptSuffix) {
		t.Fatalf("got MovedTo %q, MoveErr %v; want %s%s<time>", cerr.MovedTo, cerr.MoveErr, path, corruptSuffix)
	}
	if fi, err := os.Lstat(cerr.MovedTo); err != nil {
		t.Errorf("the bad file was not kept: %v", err)
	} else if fi.Mode().IsRegular() {
		if got := string(mustRead(t, cerr.MovedTo)); got != content {
			t.Errorf("kept file holds %q, want %q", got, content)
		}
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the bad file is still at %s: %v", path, err)
	}
	if s.Len() != 0 {
		t.Errorf("Len() = %d, want an empty record", s.Len())
	}
	if known, _ := s.Allowed(imageIDOf("a"), "team-a"); known {
		t.Error("an image of the bad file is known")
	}

	mustRecord(t, s, imageIDOf("f"), "docker.io", "team-f", true)
	s2, err := Open(dir, Limits{})
	if err != nil {
		t.Fatalf("Open after a fresh Record: %v", err)
	}
	if got, want := lookupAll(s2, imageIDOf("a"), imageIDOf("f")), map[string]string{imageIDOf("f"): "docker.io team-f"}; !reflect.DeepEqual(got, want) {
		t.Errorf("fresh file holds %v, want %v", got, want)
	}
	var f fileFormat
	if err := json.Unmarshal(mustRead(t, path), &f); err != nil || f.Version != FileVersion {
		t.Errorf("fresh file: version %d, %v; want version %d", f.Version, err, FileVersion)
	}
}

func TestCorruptFilesKeptApart(t *testing.T) {
	// Two bad files within one second are both kept.
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	var moved []string
	for _, content := range []string{"first", "second"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, Limits{})
		var cerr *CorruptError
		if !errors.As(err, &cerr) || cerr.MovedTo == "" {
			t.Fatalf("Open: got %v, want a CorruptError with the file moved", err)
		}
		moved = append(moved, cerr.MovedTo)
	}
	if moved[0] == moved[1] {
		t.Fatalf("both bad files moved to %s", moved[0])
	}
	for i, want := range []string{"first", "second"} {
		if got := string(mustRead(t, moved[i])); got != want {
			t.Errorf("%s holds %q, want %q", moved[i], got, want)
		}
	}
}

func TestMaxImagesEvictsLeastRecentlyUpdated(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{MaxImages: 3})
	s.now = newFakeClock().now
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-a", true)
	mustRecord(t, s, imageIDOf("b"), "docker.io", "team-a", true)
	mustRecord(t, s, imageIDOf("c"), "docker.io", "team-a", true)
	// a is updated again; b is pulled again without a change, which
	// does not make it more recently updated.
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-b", true)
	mustRecord(t, s, imageIDOf("b"), "docker.io", "team-a", false)

	steps := []struct {
		add         string
		wantEvicted string
	}{
		{imageIDOf("d"), imageIDOf("b")},
		{imageIDOf("e"), imageIDOf("c")},
		{imageIDOf("f"), imageIDOf("a")},
	}
	for _, st := range steps {
		mustRecord(t, s, st.add, "docker.io", "team-a", true)
		if known, _ := s.Allowed(st.wantEvicted, "team-a"); known {
			t.Errorf("after adding %s, %s is still known; want it evicted as the least recently updated", st.add, st.wantEvicted)
		}
		if known, ok := s.Allowed(st.add, "team-a"); !known || !ok {
			t.Errorf("%s was not recorded", st.add)
		}
		if s.Len() != 3 {
			t.Errorf("Len() = %d, want the bound 3", s.Len())
		}
	}
	s2 := mustOpen(t, dir, Limits{MaxImages: 3})
	if got, want := lookupAll(s2, imageIDOf("a"), imageIDOf("b"), imageIDOf("c"), imageIDOf("d"), imageIDOf("e"), imageIDOf("f")), lookupAll(s, imageIDOf("d"), imageIDOf("e"), imageIDOf("f")); !reflect.DeepEqual(got, want) {
		t.Errorf("after re-Open got %v, want %v", got, want)
	}

	// A file written under a larger bound is loaded whole; the next new
	// image brings it down to the bound.
	s3 := mustOpen(t, dir, Limits{MaxImages: 2})
	if s3.Len() != 3 {
		t.Fatalf("Len() = %d after loading 3 images under a bound of 2, want 3", s3.Len())
	}
	mustRecord(t, s3, imageIDOf("g"), "docker.io", "team-a", true)
	if s3.Len() != 2 {
		t.Errorf("Len() = %d, want the bound 2", s3.Len())
	}
	if got := lookupAll(s3, imageIDOf("d"), imageIDOf("e"), imageIDOf("f"), imageIDOf("g")); len(got) != 2 || got[imageIDOf("f")] == "" || got[imageIDOf("g")] == "" {
		t.Errorf("got %v, want the two most recently updated f and g", got)
	}
}

func TestMaxNamespacesPerImage(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{MaxNamespacesPerImage: 2})
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-a", true)
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-b", true)
	writes := s.writes

	changed, err := s.Record(imageIDOf("a"), "docker.io", "team-c", false)
	if changed || !errors.Is(err, ErrTooManyNamespaces) {
		t.Fatalf("Record of a third namespace = %v, %v; want false, %v", changed, err, ErrTooManyNamespaces)
	}
	if !strings.Contains(err.Error(), imageIDOf("a")) || !strings.Contains(err.Error(), "team-c") {
		t.Errorf("error %q does not name the image and the namespace", err)
	}
	if known, ok := s.Allowed(imageIDOf("a"), "team-c"); !known || ok {
		t.Errorf("Allowed(team-c) = %v, %v; want known and not allowed", known, ok)
	}
	if s.writes != writes {
		t.Errorf("a refused namespace wrote the file")
	}
	// Namespaces already there and other images are not affected.
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-b", false)
	mustRecord(t, s, imageIDOf("b"), "docker.io", "team-c", true)
	if _, ns, _, _ := s.Lookup(imageIDOf("a")); !reflect.DeepEqual(ns, []string{"team-a", "team-b"}) {
		t.Errorf("namespaces of a = %q, want [team-a team-b]", ns)
	}
}

func TestLimitsDefaults(t *testing.T) {
	tests := []struct {
		in, want Limits
	}{
		{Limits{}, Limits{DefaultMaxImages, DefaultMaxNamespacesPerImage}},
		{Limits{-1, -1}, Limits{DefaultMaxImages, DefaultMaxNamespacesPerImage}},
		{Limits{5, 0}, Limits{5, DefaultMaxNamespacesPerImage}},
		{Limits{0, 7}, Limits{DefaultMaxImages, 7}},
	}
	for _, tc := range tests {
		s := mustOpen(t, t.TempDir(), tc.in)
		if s.limits != tc.want {
			t.Errorf("Open with %+v: limits %+v, want %+v", tc.in, s.limits, tc.want)
		}
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	all := []string{imageIDOf("a"), imageIDOf("b"), imageIDOf("c"), imageIDOf("d")}
	for _, i := range all {
		mustRecord(t, s, i, "docker.io", "team-a", true)
	}
	listedAt := time.Now()
	present := map[string]bool{imageIDOf("a"): true, imageIDOf("c"): true}
	writes := s.writes

	removed, err := s.Prune(listedAt, func(i string) bool { return present[i] })
	if removed != 2 || err != nil {
		t.Fatalf("Prune = %d, %v; want 2, nil", removed, err)
	}
	want := map[string]string{imageIDOf("a"): "docker.io team-a", imageIDOf("c"): "docker.io team-a"}
	if got := lookupAll(s, all...); !reflect.DeepEqual(got, want) {
		t.Errorf("after Prune got %v, want %v", got, want)
	}
	if s.writes != writes+1 {
		t.Errorf("Prune wrote %d times, want once", s.writes-writes)
	}
	if got := lookupAll(mustOpen(t, dir, Limits{}), all...); !reflect.DeepEqual(got, want) {
		t.Errorf("after re-Open got %v, want %v", got, want)
	}

	// Nothing to remove: nothing written.
	removed, err = s.Prune(time.Now(), func(string) bool { return true })
	if removed != 0 || err != nil || s.writes != writes+1 {
		t.Errorf("Prune of present images = %d, %v with %d writes; want 0, nil and no write", removed, err, s.writes-writes-1)
	}

	// An image recorded while the list was taken is kept although the
	// list misses it; so is one pulled again without a change.
	listedAt = time.Now()
	mustRecord(t, s, imageIDOf("e"), "docker.io", "team-a", true)
	mustRecord(t, s, imageIDOf("a"), "docker.io", "team-a", false)
	removed, err = s.Prune(listedAt, func(string) bool { return false })
	if removed != 1 || err != nil {
		t.Fatalf("Prune = %d, %v; want 1 (c), nil", removed, err)
	}
	if got, want := lookupAll(s, imageIDOf("a"), imageIDOf("c"), imageIDOf("e")), map[string]string{imageIDOf("a"): "docker.io team-a", imageIDOf("e"): "docker.io team-a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Prune got %v, want %v", got, want)
	}

	// The zero time prunes by present alone.
	if removed, err := s.Prune(time.Time{}, func(string) bool { return false }); removed != 2 || err != nil || s.Len() != 0 {
		t.Errorf("Prune(zero time) = %d, %v leaving %d; want 2, nil leaving 0", removed, err, s.Len())
	}
}

func TestOpenDirectory(t *testing.T) {
	t.Run("created 0700 when missing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "var", "lib", "crishim")
		s := mustOpen(t, dir, Limits{})
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("got %v, want a directory of mode 0700", fi.Mode())
		}
		if s.Len() != 0 || s.Path() != filepath.Join(dir, FileName) {
			t.Errorf("got Len %d and path %s, want an empty record at %s", s.Len(), s.Path(), filepath.Join(dir, FileName))
		}
		assertDir(t, dir)
	})

	tests := []struct {
		mode    os.FileMode
		wantErr bool
	}{{0o700, false}, {0o755, false}, {0o770, false}, {0o777, true}, {0o703, true}, {0o1777, true}}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, Limits{})
			if (err != nil) != tc.wantErr {
				t.Fatalf("got %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			if s != nil {
				t.Error("got a Store with the error")
			}
			var cerr *CorruptError
			if errors.As(err, &cerr) {
				t.Errorf("got a CorruptError %v, want a plain error", err)
			}
			if fix := "chmod 0700 " + dir; !strings.Contains(err.Error(), fix) {
				t.Errorf("error %q does not name the fix %q", err, fix)
			}
		})
	}

	t.Run("not a directory", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "state")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(p, Limits{}); err == nil || s != nil || !strings.Contains(err.Error(), p) {
			t.Errorf("got %v, %v; want no Store and an error naming %s", s, err, p)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if s, err := Open("", Limits{}); err == nil || s != nil {
			t.Errorf("got %v, %v; want an error", s, err)
		}
	})
}

func TestConcurrentRecordAndAllowed(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	const goroutines, images = 16, 8
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ns := fmt.Sprintf("ns-%02d", g)
			for i := 0; i < images; i++ {
				img := imageIDOf(fmt.Sprint(i))
				if _, err := s.Record(img, "docker.io", ns, false); err != nil {
					t.Errorf("Record: %v", err)
				}
				if known, ok := s.Allowed(img, ns); !known || !ok {
					t.Errorf("Allowed(%s, %s) = %v, %v right after Record", img, ns, known, ok)
				}
				s.Lookup(img)
				s.Len()
				s.Prune(time.Time{}, func(string) bool { return true })
			}
		}(g)
	}
	wg.Wait()
	if s.Len() != images {
		t.Fatalf("Len() = %d, want %d", s.Len(), images)
	}
	// The file is the last change: every namespace of every image.
	s2 := mustOpen(t, dir, Limits{})
	for i := 0; i < images; i++ {
		_, ns, _, _ := s2.Lookup(imageIDOf(fmt.Sprint(i)))
		if len(ns) != goroutines {
			t.Errorf("image %d has %d namespaces after re-Open, want %d", i, len(ns), goroutines)
		}
	}
	assertDir(t, dir, FileName)
}
