// Command plugin is a kubelet credential-provider exec plugin for the tests
// of package credentials. The tests build it and drive it through the env
// and args of the provider config:
//
//	CRED_RECORD          file to append one JSON line per call to: args, stdin, CRED_EXTRA, CRED_INHERITED
//	CRED_MODE            echo (default), fail, badjson, wrongversion, wrongkind, unknownkey, badcachekey,
//	                     dupkey, wrongcase, unknownnested, linger
//	CRED_SLEEP           Go duration to sleep before answering
//	CRED_AUTH            JSON auth map of the answer ({"registry.example": {"username": ..., "password": ...}})
//	CRED_CACHE_KEY       cacheKeyType of the answer (default Image)
//	CRED_CACHE_DURATION  cacheDuration of the answer (unset: none)
//	CRED_STDERR_FILE     fail mode: file whose content goes to stderr first
//	CRED_STDERR          fail mode: text that goes to stderr next, before the failure message
//	CRED_CHILD_PIDFILE   linger mode: file to write the child's PID to
//	CRED_CHILD_SLEEP     linger mode: how long the child sleeps (default 30s)
//
// In linger mode the plugin starts a child (itself, with CRED_CHILD_SLEEP
// set and CRED_CHILD=1) that inherits its stdout and stderr and sleeps, then
// goes on as in echo mode (CRED_SLEEP included): the child keeps the pipes
// open after the plugin has answered and exited, or outlives it when the
// plugin is killed.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func main() {
	if os.Getenv("CRED_CHILD") == "1" {
		child()
		return
	}
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(2, "reading stdin: %v", err)
	}
	if path := os.Getenv("CRED_RECORD"); path != "" {
		line, _ := json.Marshal(map[string]any{"args": os.Args[1:], "stdin": string(stdin), "extra": os.Getenv("CRED_EXTRA"), "inherited": os.Getenv("CRED_INHERITED")})
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			fail(2, "recording: %v", err)
		}
		f.Write(append(line, '\n'))
		f.Close()
	}
	var req struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Image      string `json:"image"`
	}
	if err := json.Unmarshal(stdin, &req); err != nil || req.Kind != "CredentialProviderRequest" || req.Image == "" {
		fail(3, "bad request on stdin")
	}
	mode := os.Getenv("CRED_MODE")
	if mode == "linger" {
		spawnChild()
	}
	if d := os.Getenv("CRED_SLEEP"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			fail(2, "CRED_SLEEP: %v", err)
		}
		time.Sleep(dur)
	}

	auth := map[string]any{}
	if a := os.Getenv("CRED_AUTH"); a != "" {
		if err := json.Unmarshal([]byte(a), &auth); err != nil {
			fail(2, "CRED_AUTH: %v", err)
		}
	}
	resp := map[string]any{
		"apiVersion":   req.APIVersion,
		"kind":         "CredentialProviderResponse",
		"cacheKeyType": "Image",
		"auth":         auth,
	}
	if k := os.Getenv("CRED_CACHE_KEY"); k != "" {
		resp["cacheKeyType"] = k
	}
	if d := os.Getenv("CRED_CACHE_DURATION"); d != "" {
		resp["cacheDuration"] = d
	}
	switch mode {
	case "", "echo", "linger":
	case "fail":
		if path := os.Getenv("CRED_STDERR_FILE"); path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				fail(2, "CRED_STDERR_FILE: %v", err)
			}
			os.Stderr.Write(b)
		}
		os.Stderr.WriteString(os.Getenv("CRED_STDERR"))
		fail(1, "plugin failing on purpose")
	case "badjson":
		// Broken JSON that still carries the secret, to prove it is not logged.
		fmt.Printf(`{"apiVersion": %q, "auth": %s`, req.APIVersion, os.Getenv("CRED_AUTH"))
		return
	case "wrongversion":
		resp["apiVersion"] = "credentialprovider.kubelet.k8s.io/v1beta1"
	case "wrongkind":
		resp["kind"] = "CredentialProviderRequest"
	case "unknownkey":
		resp["extraKey"] = true
	case "badcachekey":
		resp["cacheKeyType"] = "Pod"
	case "dupkey":
		// "auth" twice: an empty map, then the real one. A lenient decoder
		// keeps the last and accepts the answer; the kubelet refuses it.
		b, _ := json.Marshal(resp)
		fmt.Printf("{%q: {}, %s\n", "auth", b[1:])
		return
	case "wrongcase":
		// "Auth" for "auth": a case-insensitive decoder accepts it; the
		// kubelet refuses it.
		resp["Auth"] = resp["auth"]
		delete(resp, "auth")
	case "unknownnested":
		// An unknown key inside each auth entry, so that a strict decoder's
		// error names a path through the registry key.
		for _, entry := range auth {
			if m, ok := entry.(map[string]any); ok {
				m["token"] = m["password"]
			}
		}
	default:
		fail(2, "unknown CRED_MODE %q", mode)
	}
	json.NewEncoder(os.Stdout).Encode(resp)
}

// spawnChild starts a copy of this binary that inherits stdout and stderr
// and sleeps, and records its PID in CRED_CHILD_PIDFILE before going on.
func spawnChild() {
	self, err := os.Executable()
	if err != nil {
		fail(2, "linger: %v", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "CRED_CHILD=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fail(2, "linger: starting the child: %v", err)
	}
	if path := os.Getenv("CRED_CHILD_PIDFILE"); path != "" {
		if err := os.WriteFile(path, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			fail(2, "linger: %v", err)
		}
	}
	// Not waited for: the child is meant to outlive this process.
}

// child is the lingering child of linger mode: it only sleeps, holding the
// stdout and stderr it inherited.
func child() {
	d := 30 * time.Second
	if s := strings.TrimSpace(os.Getenv("CRED_CHILD_SLEEP")); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			fail(2, "CRED_CHILD_SLEEP: %v", err)
		}
	}
	time.Sleep(d)
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(code)
}
