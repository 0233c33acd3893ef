package credentials

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"
)

// pluginBinary is the test plugin (testdata/plugin) built once by TestMain.
var pluginBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crishim-credentials-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBinary = filepath.Join(dir, "plugin")
	build := exec.Command("go", "build", "-o", pluginBinary, "./testdata/plugin")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test plugin: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// logSink captures everything a logger writes, in the text format and, via
// a hook, in the JSON format (which encodes field values differently).
type logSink struct {
	mu      sync.Mutex
	text    bytes.Buffer
	json    bytes.Buffer
	entries []logrus.Entry
}

func (s *logSink) Levels() []logrus.Level { return logrus.AllLevels }

func (s *logSink) Fire(e *logrus.Entry) error {
	b, err := (&logrus.JSONFormatter{}).Format(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.json.Write(b)
	s.entries = append(s.entries, *e)
	return nil
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.Write(p)
}

// all returns both renderings.
func (s *logSink) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.String() + s.json.String()
}

// has reports whether an entry at level (or more severe) contains every part,
// in its message, error or fields.
func (s *logSink) has(level logrus.Level, parts ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if e.Level > level {
			continue
		}
		text := e.Message + " " + fmt.Sprint(e.Data)
		ok := true
		for _, p := range parts {
			if !strings.Contains(text, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// newLog returns a trace-level logger writing into a sink.
func newLog(t *testing.T) (*logrus.Logger, *logSink) {
	t.Helper()
	sink := &logSink{}
	log := logrus.New()
	log.SetLevel(logrus.TraceLevel)
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true})
	log.SetOutput(sink)
	log.AddHook(sink)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", sink.text.String())
		}
	})
	return log, sink
}

// fakeClock is a settable clock for cache and reload tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// users lists the usernames of creds, for compact comparisons.
func users(creds []Credential) []string {
	out := []string{}
	for _, c := range creds {
		out = append(out, c.Username)
	}
	return out
}
