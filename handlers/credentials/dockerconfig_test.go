package credentials

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func b64(s string) string    { return base64.StdEncoding.EncodeToString([]byte(s)) }
func b64raw(s string) string { return base64.RawStdEncoding.EncodeToString([]byte(s)) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

type userPass struct{ User, Pass, Pattern string }

func userPasses(creds []Credential) []userPass {
	out := []userPass{}
	for _, c := range creds {
		out = append(out, userPass{c.Username, c.Password, c.Pattern})
	}
	return out
}

// TestDockerConfigParsing checks both file formats and every entry form the
// kubelet reads (pkg/credentialprovider/config.go).
func TestDockerConfigParsing(t *testing.T) {
	tests := []struct {
		desc, file, content, image string
		want                       []userPass
	}{
		{
			desc:    "config.json auth, padded base64",
			file:    "config.json",
			content: `{"auths": {"registry.example": {"auth": "` + b64("robot:pa:ss") + `"}}}`,
			image:   "registry.example/app:1",
			want:    []userPass{{"robot", "pa:ss", "registry.example"}},
		},
		{
			desc:    "config.json auth, unpadded base64",
			file:    "config.json",
			content: `{"auths": {"registry.example": {"auth": "` + b64raw("robot1:pw") + `"}}}`,
			image:   "registry.example/app",
			want:    []userPass{{"robot1", "pw", "registry.example"}},
		},
		{
			desc:    "config.json username and password",
			file:    "config.json",
			content: `{"auths": {"https://registry.example:5000/v2/": {"username": "u", "password": "p", "email": "e@x"}}, "credsStore": "desktop"}`,
			image:   "registry.example:5000/a/b:1",
			want:    []userPass{{"u", "p", "https://registry.example:5000/v2/"}},
		},
		{
			desc:    "auth wins over username and password",
			file:    "config.json",
			content: `{"auths": {"registry.example": {"username": "u", "password": "p", "auth": "` + b64("a:b") + `"}}}`,
			image:   "registry.example/app",
			want:    []userPass{{"a", "b", "registry.example"}},
		},
		{
			desc:    "field names match case-insensitively, as encoding/json does for the kubelet",
			file:    "config.json",
			content: `{"auths": {"registry.example": {"Username": "U", "Password": "P"}}}`,
			image:   "registry.example/app",
			want:    []userPass{{"U", "P", "registry.example"}},
		},
		{
			desc:    "legacy .dockercfg",
			file:    ".dockercfg",
			content: `{"https://index.docker.io/v1/": {"auth": "` + b64("hub:pw") + `", "email": "x@y"}}`,
			image:   "busybox",
			want:    []userPass{{"hub", "pw", "https://index.docker.io/v1/"}},
		},
		{
			desc:    "ordering most specific first",
			file:    "config.json",
			content: `{"auths": {"*.example": {"auth": "` + b64("glob:1") + `"}, "registry.example": {"auth": "` + b64("host:2") + `"}, "registry.example/team": {"auth": "` + b64("team:3") + `"}}}`,
			image:   "registry.example/team/app",
			want:    []userPass{{"team", "3", "registry.example/team"}, {"host", "2", "registry.example"}, {"glob", "1", "*.example"}},
		},
		{
			desc:    "no match",
			file:    "config.json",
			content: `{"auths": {"registry.example": {"auth": "` + b64("a:b") + `"}}}`,
			image:   "other.example/app",
			want:    []userPass{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			log, _ := newLog(t)
			path := filepath.Join(t.TempDir(), tc.file)
			writeFile(t, path, tc.content)
			got := userPasses(NewDockerConfig([]string{path}, log).Lookup(context.Background(), tc.image))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Lookup(%q) = %+v, want %+v", tc.image, got, tc.want)
			}
			for _, c := range NewDockerConfig([]string{path}, log).Lookup(context.Background(), tc.image) {
				if c.Source != SourceDockerConfig {
					t.Errorf("Source = %q, want %q", c.Source, SourceDockerConfig)
				}
			}
		})
	}
}

// TestDockerConfigInvalidFiles checks that an invalid file is skipped with a
// warning naming it and the search goes on to the next one, as in the
// kubelet, where one bad entry invalidates its whole file.
func TestDockerConfigInvalidFiles(t *testing.T) {
	good := `{"auths": {"registry.example": {"auth": "` + b64("fallback:pw") + `"}}}`
	tests := []struct {
		desc, content, wantLog string
	}{
		{"bad base64", `{"auths": {"registry.example": {"auth": "!!!notbase64"}, "other.example": {"auth": "` + b64("x:y") + `"}}}`, "auths entry 1: auth: not valid base64"},
		{"bad entry named by position, not key", `{"auths": {"a.example": {"auth": "` + b64("x:y") + `"}, "https://u:p/w#x@b.example": {"auth": "!!!"}}}`, "auths entry 2: auth: not valid base64"},
		{"auth without colon", `{"auths": {"registry.example": {"auth": "` + b64("nocolon") + `"}}}`, "no ':'"},
		{"bad JSON", `{"auths": {"registry.example": {"auth": `, "not valid JSON"},
		{"wrong JSON type", `{"auths": {"registry.example": {"username": 5}}}`, "where string was expected"},
		{"auths not a map", `{"auths": []}`, "want a JSON object of registry keys"},
		{"not an object", `[1, 2]`, "where struct"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			log, sink := newLog(t)
			dir := t.TempDir()
			bad := filepath.Join(dir, "bad", "config.json")
			next := filepath.Join(dir, "next", "config.json")
			writeFile(t, bad, tc.content)
			writeFile(t, next, good)
			got := users(NewDockerConfig([]string{bad, next}, log).Lookup(context.Background(), "registry.example/app"))
			if want := []string{"fallback"}; !reflect.DeepEqual(got, want) {
				t.Errorf("Lookup = %v, want %v (the next file)", got, want)
			}
			if !sink.has(logrus.WarnLevel, "ignoring invalid docker config file", bad, tc.wantLog) {
				t.Errorf("no warning naming %s and %q", bad, tc.wantLog)
			}
		})
	}
}

// TestDefaultDockerConfigPaths checks the kubelet's search list
// (pkg/credentialprovider/config.go DefaultDockerConfigJSONPaths, then
// DefaultDockercfgPaths).
func TestDefaultDockerConfigPaths(t *testing.T) {
	home, wd := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Chdir(wd)
	wd, _ = os.Getwd()
	got := DefaultDockerConfigPaths("/var/lib/kubelet")
	want := []string{
		"/var/lib/kubelet/config.json",
		filepath.Join(wd, "config.json"),
		filepath.Join(home, ".docker", "config.json"),
		"/.docker/config.json",
		"/var/lib/kubelet/.dockercfg",
		filepath.Join(wd, ".dockercfg"),
		filepath.Join(home, ".dockercfg"),
		"/.dockercfg",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultDockerConfigPaths =\n%q\nwant\n%q", got, want)
	}
	if got := DefaultDockerConfigPaths(""); len(got) != 6 {
		t.Errorf("without a root dir: %q, want the 6 others", got)
	}
}

// TestDockerConfigSearchOrder checks that the first valid file in the
// search list wins, whatever the later ones hold.
func TestDockerConfigSearchOrder(t *testing.T) {
	entry := func(user string) string {
		return `{"auths": {"registry.example": {"auth": "` + b64(user+":pw") + `"}}}`
	}
	legacy := func(user string) string {
		return `{"registry.example": {"auth": "` + b64(user+":pw") + `"}}`
	}
	tests := []struct {
		desc  string
		files map[string]string // relative to root, home, wd: "root/config.json"
		want  []string
	}{
		{"root config.json first", map[string]string{"root/config.json": entry("root"), "wd/config.json": entry("wd"), "home/.docker/config.json": entry("home")}, []string{"root"}},
		{"working dir next", map[string]string{"wd/config.json": entry("wd"), "home/.docker/config.json": entry("home"), "root/.dockercfg": legacy("legacy")}, []string{"wd"}},
		{"home next", map[string]string{"home/.docker/config.json": entry("home"), "root/.dockercfg": legacy("legacy")}, []string{"home"}},
		{"any config.json before any .dockercfg", map[string]string{"home/.docker/config.json": entry("home"), "root/.dockercfg": legacy("root-legacy")}, []string{"home"}},
		{"invalid first file skipped", map[string]string{"root/config.json": "{not json", "wd/config.json": entry("wd")}, []string{"wd"}},
		{".dockercfg in root dir", map[string]string{"root/.dockercfg": legacy("root-legacy"), "home/.dockercfg": legacy("home-legacy")}, []string{"root-legacy"}},
		{".dockercfg in home", map[string]string{"home/.dockercfg": legacy("home-legacy")}, []string{"home-legacy"}},
		{"a valid file without the key still wins", map[string]string{"root/config.json": `{}`, "wd/config.json": entry("wd")}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			base := t.TempDir()
			dirs := map[string]string{"root": filepath.Join(base, "root"), "wd": filepath.Join(base, "wd"), "home": filepath.Join(base, "home")}
			for _, d := range dirs {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for rel, content := range tc.files {
				first, rest, _ := cutFirst(rel)
				writeFile(t, filepath.Join(dirs[first], rest), content)
			}
			t.Setenv("HOME", dirs["home"])
			t.Chdir(dirs["wd"])
			log, _ := newLog(t)
			paths := DefaultDockerConfigPaths(dirs["root"])
			// /.docker/config.json and /.dockercfg are this machine's; leave them out.
			var own []string
			for _, p := range paths {
				if p != "/.docker/config.json" && p != "/.dockercfg" {
					own = append(own, p)
				}
			}
			got := users(NewDockerConfig(own, log).Lookup(context.Background(), "registry.example/app"))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Lookup = %v, want %v", got, tc.want)
			}
		})
	}
}

func cutFirst(rel string) (string, string, bool) {
	for i := range rel {
		if rel[i] == '/' {
			return rel[:i], rel[i+1:], true
		}
	}
	return rel, "", false
}

// TestDockerConfigReload checks that a changed, replaced, removed or new file
// is picked up on the next Lookup after the once-a-second check, without a
// restart.
func TestDockerConfigReload(t *testing.T) {
	log, _ := newLog(t)
	clock := newClock()
	dir := t.TempDir()
	first := filepath.Join(dir, "a", "config.json")
	second := filepath.Join(dir, "b", "config.json")
	d := NewDockerConfig([]string{first, second}, log)
	d.now = clock.now
	lookup := func() []string {
		return users(d.Lookup(context.Background(), "registry.example/app"))
	}
	entry := func(user string) string {
		return `{"auths": {"registry.example": {"auth": "` + b64(user+":pw") + `"}}}`
	}
	expect := func(step string, want ...string) {
		t.Helper()
		if want == nil {
			want = []string{}
		}
		if got := lookup(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Lookup = %v, want %v", step, got, want)
		}
	}

	expect("no files")
	writeFile(t, second, entry("second"))
	expect("new file, within the second: not checked yet")
	clock.advance(time.Second)
	expect("new file after the check", "second")

	writeFile(t, first, entry("one"))
	clock.advance(time.Second)
	expect("earlier file appears", "one")

	writeFile(t, first, entry("two"))                       // same size as "one"
	later := time.Now().Add(time.Hour)                      // a different mtime whatever the clock's granularity
	if err := os.Chtimes(first, later, later); err != nil { // keep the test independent of mtime granularity
		t.Fatal(err)
	}
	expect("rewritten, within the second", "one")
	clock.advance(1500 * time.Millisecond)
	expect("rewritten", "two")

	tmp := first + ".new"
	writeFile(t, tmp, entry("three"))
	if err := os.Chtimes(tmp, later, later); err != nil { // same size and mtime: only the inode differs
		t.Fatal(err)
	}
	if err := os.Rename(tmp, first); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Second)
	expect("replaced by rename", "three")

	writeFile(t, first, "{broken")
	clock.advance(time.Second)
	expect("broken: the next file", "second")

	if err := os.Remove(second); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Second)
	expect("all gone")
}

// TestDockerConfigWorldWritableRefused: a config.json any user can write is
// skipped (anyone could point the node's credentials anywhere), and the
// search goes on to the next file.
func TestDockerConfigWorldWritableRefused(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a", "config.json"), filepath.Join(dir, "b", "config.json")
	writeFile(t, first, `{"auths": {"registry.example": {"username": "evil", "password": "x"}}}`)
	writeFile(t, second, `{"auths": {"registry.example": {"username": "good", "password": "y"}}}`)
	if err := os.Chmod(first, 0o666); err != nil {
		t.Fatal(err)
	}
	log, buf := newLog(t)
	creds := NewDockerConfig([]string{first, second}, log).Lookup(context.Background(), "registry.example/app")
	if len(creds) != 1 || creds[0].Username != "good" {
		t.Errorf("got %v, want the second file's credentials", creds)
	}
	if !strings.Contains(buf.text.String(), "world-writable") {
		t.Errorf("no log line about the refused file: %s", buf.text.String())
	}
}
