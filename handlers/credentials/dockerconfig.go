package credentials

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/handlers/configfile"
)

// dockerConfigRecheck is how often Lookup checks the files for changes.
const dockerConfigRecheck = time.Second

// DockerConfig is a keyring from docker config.json / .dockercfg files,
// re-read when a file changes: Lookup checks the files' identity, size and
// modification time at most once a second, so no restart is needed after a
// credential rotation.
type DockerConfig struct {
	paths []string
	log   logrus.FieldLogger
	now   func() time.Time // injectable for tests

	mu        sync.Mutex
	loaded    bool
	checkedAt time.Time
	seen      []configfile.Stamp // per path
	ring      *keyring
	from      string // the file the keyring came from, "" for none
}

// NewDockerConfig returns a keyring over paths, in order: the first valid
// file wins, as in the kubelet. A file named ".dockercfg" is read in the
// legacy format (a map of keys to entries), any other as config.json
// ({"auths": {...}}). nil paths mean the kubelet's search list without a root
// directory; use DefaultDockerConfigPaths to give one. Nothing is read until
// the first Lookup.
func NewDockerConfig(paths []string, log logrus.FieldLogger) *DockerConfig {
	if paths == nil {
		paths = DefaultDockerConfigPaths("")
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &DockerConfig{
		paths: append([]string(nil), paths...),
		log:   log.WithField("component", "credentials.dockerconfig"),
		now:   time.Now,
	}
}

// DefaultDockerConfigPaths returns the kubelet's search list
// (pkg/credentialprovider/config.go, ReadDockerConfigFile): config.json in
// the kubelet root directory, the working directory, $HOME/.docker and
// /.docker, then .dockercfg in the root directory, the working directory,
// $HOME and /. The first valid file wins. An empty kubeletRootDir, or an
// unknown working or home directory, leaves those entries out (the kubelet
// would look relative to its working directory instead).
func DefaultDockerConfigPaths(kubeletRootDir string) []string {
	var jsonDirs, cfgDirs []string
	add := func(jsonDir, cfgDir string) {
		jsonDirs = append(jsonDirs, jsonDir)
		cfgDirs = append(cfgDirs, cfgDir)
	}
	if kubeletRootDir != "" {
		add(kubeletRootDir, kubeletRootDir)
	}
	if wd, err := os.Getwd(); err == nil {
		add(wd, wd)
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		add(filepath.Join(home, ".docker"), home)
	}
	add("/.docker", "/")
	var paths []string
	for _, d := range jsonDirs {
		paths = append(paths, filepath.Join(d, "config.json"))
	}
	for _, d := range cfgDirs {
		paths = append(paths, filepath.Join(d, ".dockercfg"))
	}
	return paths
}

// Lookup returns the credentials of every key in the active file that
// matches image, most specific first, or those of the Docker Hub key
// ("https://index.docker.io/v1/") when none matched and image is on Docker
// Hub (pkg/credentialprovider/keyring.go). Nil for an image that does not
// parse: the kubelet would not have pulled it.
func (d *DockerConfig) Lookup(_ context.Context, image string) []Credential {
	if d == nil {
		return nil
	}
	repo, ok := normalizeImage(image)
	if !ok {
		d.log.WithField("image", image).Debug("image reference does not parse; no docker config credentials")
		return nil
	}
	ring, from := d.current()
	creds := ring.lookup(repo)
	d.log.WithFields(logrus.Fields{"image": image, "file": from, "credentials": len(creds)}).Trace("docker config lookup")
	return creds
}

// current returns the keyring and the file it came from, re-reading the
// files when one of them changed since the last check (at most one check a
// second).
func (d *DockerConfig) current() (*keyring, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.loaded && now.Sub(d.checkedAt) < dockerConfigRecheck {
		return d.ring, d.from
	}
	d.checkedAt = now
	seen := make([]configfile.Stamp, len(d.paths))
	for i, p := range d.paths {
		seen[i] = configfile.StampOf(p)
	}
	if d.loaded && slices.Equal(d.seen, seen) {
		return d.ring, d.from
	}
	d.seen = seen
	d.loaded = true
	d.ring, d.from = d.read()
	return d.ring, d.from
}

// read builds the keyring from the first valid file, as the kubelet's
// ReadDockerConfigFile does: missing files are skipped quietly, unreadable
// or invalid ones with a warning (naming the file and the problem, never its
// content) and the search goes on.
func (d *DockerConfig) read() (*keyring, string) {
	for _, p := range d.paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			d.log.WithField("file", p).Trace("no docker config file")
			continue
		}
		if err != nil {
			d.log.WithField("file", p).Warnf("cannot read docker config file, trying the next one: %v", err)
			continue
		}
		if err := configfile.CheckNotWorldWritable(p); err != nil {
			d.log.WithField("file", p).Errorf("refusing docker config file, trying the next one: %v", err)
			continue
		}
		var entries []keyringEntry
		if filepath.Base(p) == ".dockercfg" {
			entries, err = parseDockercfg(data)
		} else {
			entries, err = parseConfigJSON(data)
		}
		if err != nil {
			d.log.WithField("file", p).Warnf("ignoring invalid docker config file, trying the next one: %v", err)
			continue
		}
		d.log.WithFields(logrus.Fields{"file": p, "keys": len(entries)}).Info("loaded registry credentials from docker config")
		return newKeyring(entries, d.log.WithField("file", p)), p
	}
	d.log.WithField("searched", d.paths).Debug("no valid docker config file")
	return newKeyring(nil, d.log), ""
}

// dockerConfigEntry is one entry of either format, decoded as the kubelet
// does (config.go dockerConfigEntryWithAuth): field names match case-
// insensitively and a non-empty "auth" replaces username and password.
type dockerConfigEntry struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Email    string `json:"email,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

// parseConfigJSON reads config.json: {"auths": {"<key>": {...}}}. Other
// top-level keys (credHelpers, credsStore, HttpHeaders) are ignored, as the
// kubelet ignores them.
func parseConfigJSON(data []byte) ([]keyringEntry, error) {
	var doc struct {
		Auths json.RawMessage `json:"auths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, describeJSONError(err)
	}
	if len(doc.Auths) == 0 || string(doc.Auths) == "null" {
		return nil, nil
	}
	return parseAuths(doc.Auths, "auths entry")
}

// parseDockercfg reads the legacy .dockercfg: {"<key>": {...}}.
func parseDockercfg(data []byte) ([]keyringEntry, error) {
	return parseAuths(data, "entry")
}

// member is one key and value of a JSON object.
type member struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the members of a JSON object in file order (a key
// given twice keeps its last value, as decoding into a map does), so that
// errors can name an entry by its position instead of its key.
func objectMembers(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, describeJSONError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("want a JSON object of registry keys")
	}
	var out []member
	at := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, describeJSONError(err)
		}
		key, _ := tok.(string) // object keys are strings
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, describeJSONError(err)
		}
		if i, seen := at[key]; seen {
			out[i].value = value
			continue
		}
		at[key] = len(out)
		out = append(out, member{key, value})
	}
	if _, err := dec.Token(); err != nil {
		return nil, describeJSONError(err)
	}
	return out, nil
}

// parseAuths decodes every entry of an object of registry keys; one bad
// entry invalidates the whole file, as in the kubelet (its UnmarshalJSON
// error fails the file's decode). Errors name the entry by its position in
// the file, counted from 1 ("auths entry 3"), never by its key: a key may
// carry user information. Keys are taken in sorted order so that two keys
// normalizing to the same index key give their credentials in a stable
// order.
func parseAuths(data []byte, what string) ([]keyringEntry, error) {
	members, err := objectMembers(data)
	if err != nil {
		return nil, err
	}
	entries := make([]keyringEntry, 0, len(members))
	for i, m := range members {
		where := fmt.Sprintf("%s %d", what, i+1)
		var e dockerConfigEntry
		if err := json.Unmarshal(m.value, &e); err != nil {
			return nil, fmt.Errorf("%s: %w", where, describeJSONError(err))
		}
		if e.Auth != "" {
			user, pass, err := decodeAuthField(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("%s: auth: %w", where, err)
			}
			e.Username, e.Password = user, pass
		}
		entries = append(entries, keyringEntry{key: m.key, entry: where, cred: Credential{
			Username: e.Username, Password: e.Password, Source: SourceDockerConfig,
		}})
	}
	sort.SliceStable(entries, func(a, b int) bool { return entries[a].key < entries[b].key })
	return entries, nil
}

// decodeAuthField decodes "auth", base64(username:password). Padded values
// use standard base64 and unpadded ones raw base64, as the kubelet does
// (config.go decodeDockerConfigFieldAuth). Errors never include the value.
func decodeAuthField(field string) (user, pass string, err error) {
	var raw []byte
	if strings.HasSuffix(strings.TrimSpace(field), "=") {
		raw, err = base64.StdEncoding.DecodeString(field)
	} else {
		raw, err = base64.RawStdEncoding.DecodeString(field)
	}
	if err != nil {
		return "", "", errors.New("not valid base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("not base64(username:password): no ':'")
	}
	return user, pass, nil
}

// describeJSONError says what is wrong with a JSON document without quoting
// it: encoding/json's messages are kept only where they carry positions and
// types, never values.
func describeJSONError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("not valid JSON (at byte %d)", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field != "" {
			return fmt.Errorf("%s: a JSON %s where %s was expected", typ.Field, typ.Value, typ.Type)
		}
		return fmt.Errorf("a JSON %s where %s was expected", typ.Value, typ.Type)
	}
	return errors.New("not valid JSON")
}
