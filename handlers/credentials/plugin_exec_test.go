package credentials

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestPluginLingeringChild checks that a plugin whose child still holds its
// stdout and stderr after the plugin exited is judged on what the plugin
// itself did: a valid answer and exit 0 give credentials, promptly; an
// invalid answer is refused as such. Before the fix the answer was dropped
// with exec.ErrWaitDelay.
func TestPluginLingeringChild(t *testing.T) {
	tests := []struct {
		desc      string
		env       map[string]string
		wantUsers []string // nil: an error is wanted
		wantErr   string
	}{
		{"valid answer", map[string]string{}, []string{"u"}, ""},
		{"valid answer, cached by registry", map[string]string{"CRED_CACHE_KEY": "Registry"}, []string{"u"}, ""},
		{"invalid answer", map[string]string{"CRED_CACHE_KEY": "Pod"}, nil, `invalid cacheKeyType "Pod"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			log, _ := newLog(t)
			pidFile := filepath.Join(t.TempDir(), "child.pid")
			killPluginProcessAtCleanup(t, pidFile)
			env := map[string]string{
				"CRED_MODE": "linger", "CRED_CHILD_PIDFILE": pidFile, "CRED_CHILD_SLEEP": "30s",
				"CRED_AUTH": authJSON("registry.example", "u", "pw"),
			}
			for k, v := range tc.env {
				env[k] = v
			}
			p, _ := newTestPlugins(t, log, newClock(), pluginSpec{name: "lingering", match: []string{"registry.example"}, env: env})
			start := time.Now()
			resp, err := p.plugins[0].exec("registry.example/app")
			elapsed := time.Since(start)
			if tc.wantUsers == nil {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("exec error = %v, want one with %q", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("exec error = %v, want the plugin's answer", err)
				}
				var got []string
				for _, a := range resp.Auth {
					got = append(got, a.Username)
				}
				if !reflect.DeepEqual(got, tc.wantUsers) {
					t.Errorf("answer users = %v, want %v", got, tc.wantUsers)
				}
			}
			if elapsed > 5*time.Second {
				t.Errorf("exec took %s, want it back soon after the plugin exited, not when its child does", elapsed)
			}
			pid := readPIDFile(t, pidFile)
			if !pluginProcessRunning(pid) {
				t.Fatalf("the plugin's child %d is not running: the test exercised no lingering child", pid)
			}
		})
	}
}

// TestPluginTimeoutKillsProcessGroup checks that a plugin killed at its
// timeout takes its children with it: the whole process group is killed,
// not only the direct child, which left grandchildren running before the
// fix.
func TestPluginTimeoutKillsProcessGroup(t *testing.T) {
	log, _ := newLog(t)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	killPluginProcessAtCleanup(t, pidFile)
	p, _ := newTestPlugins(t, log, newClock(), pluginSpec{name: "stuck", match: []string{"registry.example"}, env: map[string]string{
		"CRED_MODE": "linger", "CRED_CHILD_PIDFILE": pidFile, "CRED_CHILD_SLEEP": "30s", "CRED_SLEEP": "20s",
		"CRED_AUTH": authJSON("registry.example", "u", "pw"),
	}})
	pl := p.plugins[0]
	pl.timeout = time.Second
	start := time.Now()
	_, err := pl.exec("registry.example/app")
	if err == nil || !strings.Contains(err.Error(), "timed out after 1s") {
		t.Errorf("exec error = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exec took %s after a 1s timeout", d)
	}
	pid := readPIDFile(t, pidFile)
	deadline := time.Now().Add(5 * time.Second)
	for pluginProcessRunning(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's child %d still runs 5s after the plugin timed out", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPluginStderrOnlyAtDebug checks that a failing plugin's stderr, which
// may echo a token, stays out of errors and of every line above debug level:
// it is logged at debug level only, in its own line naming the plugin, cut
// to its last maxStderrLog bytes, with the config's env values and args
// redacted; the error says where to find it.
func TestPluginStderrOnlyAtDebug(t *testing.T) {
	const (
		head     = "head-of-stderr-beyond-the-limit"
		token    = "token-echoed-on-stderr"
		envValue = "env-value-echoed-on-stderr"
		argValue = "arg-value-echoed-on-stderr"
		hint     = "its stderr is logged at debug level (log.level: debug)"
	)
	stderrFile := filepath.Join(t.TempDir(), "stderr")
	writeFile(t, stderrFile, head+strings.Repeat(".", 2000)+"\nerror: bad token "+token+" for "+argValue+"\n")
	tests := []struct {
		level     logrus.Level
		wantDebug bool // the stderr line is logged
	}{
		{logrus.InfoLevel, false},
		{logrus.DebugLevel, true},
		{logrus.TraceLevel, true},
	}
	for _, tc := range tests {
		t.Run(tc.level.String(), func(t *testing.T) {
			log, sink := newLog(t)
			log.SetLevel(tc.level)
			p, _ := newTestPlugins(t, log, newClock(), pluginSpec{name: "noisy", match: []string{"registry.example"},
				args: []string{argValue},
				env:  map[string]string{"CRED_MODE": "fail", "CRED_STDERR_FILE": stderrFile, "CRED_STDERR": envValue + "\n", "CRED_AUTH": authJSON("registry.example", "u", "pw")}})

			_, err := p.plugins[0].exec("registry.example/app")
			if err == nil {
				t.Fatal("exec of a failing plugin returned no error")
			}
			if !strings.Contains(err.Error(), hint) {
				t.Errorf("exec error = %q, want it to say %q", err, hint)
			}
			if got := p.Lookup(t.Context(), "registry.example/app"); len(got) != 0 {
				t.Errorf("Lookup = %v, want none from a failing plugin", users(got))
			}
			if !sink.has(logrus.ErrorLevel, "credential provider plugin failed", hint) {
				t.Errorf("no error-level line saying %q", hint)
			}
			for _, s := range []string{token, envValue, argValue, head} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("exec error contains %q: %v", s, err)
				}
				if sink.hasAbove(logrus.DebugLevel, s) {
					t.Errorf("a line above debug level contains %q", s)
				}
			}
			logs := sink.all()
			for _, s := range []string{envValue, argValue, head} {
				if strings.Contains(logs, s) {
					t.Errorf("logs contain %q:\n%s", s, logs)
				}
			}
			debugLines := sink.at(logrus.DebugLevel, token)
			if !tc.wantDebug {
				if strings.Contains(logs, token) {
					t.Errorf("logs at %s level contain the stderr:\n%s", tc.level, logs)
				}
				return
			}
			// One line per failed call: exec directly, then through Lookup.
			if len(debugLines) != 2 {
				t.Fatalf("debug lines with the stderr = %d, want 2 (one per failed call); logs:\n%s", len(debugLines), logs)
			}
			for _, e := range debugLines {
				if e.Data["plugin"] != "noisy" {
					t.Errorf("stderr line plugin = %v, want noisy", e.Data["plugin"])
				}
				stderr, _ := e.Data["stderr"].(string)
				if !strings.Contains(stderr, "plugin failing on purpose") || !strings.Contains(stderr, "[redacted]") {
					t.Errorf("stderr field = %q, want the end of the plugin's stderr with its env value and arg redacted", stderr)
				}
				if n := len(strings.TrimPrefix(stderr, "...")); n > maxStderrLog {
					t.Errorf("stderr field holds %d bytes, want at most %d", n, maxStderrLog)
				}
			}
		})
	}
}

// TestPluginStrictDecoding checks that answers the kubelet's strict decoder
// refuses are refused, without quoting them: duplicate keys, keys in the
// wrong case and unknown keys, at the top or inside an auth entry whose
// registry key holds user information.
func TestPluginStrictDecoding(t *testing.T) {
	const wantErr = "response has unknown, duplicate or wrongly-cased fields"
	secrets := []string{"pw-strict", "pw-userinfo"}
	auth := authJSON("https://robot:pw-userinfo@registry.example", "robot", "pw-strict")
	tests := []struct {
		mode    string
		wantErr string // "": accepted
	}{
		{"echo", ""},
		{"dupkey", wantErr},
		{"wrongcase", wantErr},
		{"unknownkey", wantErr},
		{"unknownnested", wantErr},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			log, sink := newLog(t)
			p, _ := newTestPlugins(t, log, newClock(), pluginSpec{name: "strict", match: []string{"registry.example"},
				env: map[string]string{"CRED_MODE": tc.mode, "CRED_AUTH": auth, "CRED_CACHE_DURATION": "1m"}})
			resp, err := p.plugins[0].exec("registry.example/app")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("exec error = %v, want the answer accepted", err)
				}
				if a, ok := resp.Auth["https://robot:pw-userinfo@registry.example"]; !ok || a.Password != "pw-strict" || resp.CacheDuration == nil || resp.CacheDuration.Duration != time.Minute {
					t.Errorf("answer = %d auth keys, cacheDuration %v; want the plugin's key and password, 1m", len(resp.Auth), resp.CacheDuration)
				}
				return
			}
			if err == nil {
				t.Fatalf("exec accepted a %s answer; want an error with %q", tc.mode, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `plugin "strict"`) {
				t.Errorf("exec error = %q, want one naming the plugin and saying %q", err, tc.wantErr)
			}
			p.Lookup(t.Context(), "registry.example/app")
			logs := sink.all()
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("exec error contains %q: %v", s, err)
				}
				if strings.Contains(logs, s) {
					t.Errorf("logs contain %q:\n%s", s, logs)
				}
			}
		})
	}
}

// TestRedactStderr checks the redaction of known secrets in a plugin's
// stderr: longest first, so that a value holding another goes whole, and
// values too short to be secrets are left alone.
func TestRedactStderr(t *testing.T) {
	tests := []struct {
		desc, in string
		secrets  []string
		want     string
	}{
		{"none", "plain failure", nil, "plain failure"},
		{"one", "bad token abc123 given", []string{"abc123"}, "bad token [redacted] given"},
		{"every occurrence", "abc123/abc123", []string{"abc123"}, "[redacted]/[redacted]"},
		{"longest first", "token abc123-extra", []string{"abc123", "abc123-extra"}, "token [redacted]"},
		{"short values kept", "exit 1 on eu: fail", []string{"1", "eu", "", "fail"}, "exit 1 on eu: fail"},
		{"shortest redacted", "bad secret", []string{"secret"}, "bad [redacted]"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := redact(tc.in, tc.secrets); got != tc.want {
				t.Errorf("redact(%q, %q) = %q, want %q", tc.in, tc.secrets, got, tc.want)
			}
		})
	}
}

// TestTailBuffer checks that a failed plugin's stderr keeps its end, bounded,
// whatever the sizes of the writes.
func TestTailBuffer(t *testing.T) {
	tests := []struct {
		desc   string
		max    int
		writes []string
		want   string
		cut    bool
	}{
		{"fits", 8, []string{"abc", "def"}, "abcdef", false},
		{"exactly full", 6, []string{"abc", "def"}, "abcdef", false},
		{"many small writes", 4, []string{"ab", "cd", "ef", "g"}, "defg", true},
		{"one large write", 4, []string{"abcdefgh"}, "efgh", true},
		{"large then small", 4, []string{"abcdefgh", "ij"}, "ghij", true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			b := &tailBuffer{max: tc.max}
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if got := string(b.Bytes()); got != tc.want || b.cut != tc.cut {
				t.Errorf("tail = %q (cut %v), want %q (cut %v)", got, b.cut, tc.want, tc.cut)
			}
		})
	}
}

// readPIDFile reads the PID the test plugin wrote for its child.
func readPIDFile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the plugin wrote no child PID: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("child PID file holds %q", b)
	}
	return pid
}

// pluginProcessRunning reports whether pid is a running instance of the test
// plugin: gone, a zombie (its parent has not reaped it yet) or another
// program that reused the PID all count as not running.
func pluginProcessRunning(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false // gone, or a zombie, whose exe link is unreadable
	}
	want, err := filepath.EvalSymlinks(pluginBinary)
	if err != nil || exe != want {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// hold anything, so look after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	switch stat[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

// killPluginProcessAtCleanup kills the test plugin's child named in pidFile,
// if it still runs when the test ends, so that no test leaves a process
// behind whatever it finds.
func killPluginProcessAtCleanup(t *testing.T, pidFile string) {
	t.Helper()
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && pluginProcessRunning(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// hasAbove reports whether an entry more severe than level contains s.
func (s *logSink) hasAbove(level logrus.Level, str string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if e.Level < level && strings.Contains(e.Message+" "+fmt.Sprint(e.Data), str) {
			return true
		}
	}
	return false
}

// at returns the entries at exactly level that contain str.
func (s *logSink) at(level logrus.Level, str string) []logrus.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logrus.Entry
	for _, e := range s.entries {
		if e.Level == level && strings.Contains(e.Message+" "+fmt.Sprint(e.Data), str) {
			out = append(out, e)
		}
	}
	return out
}
