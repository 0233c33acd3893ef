// Command plugin is a kubelet credential-provider exec plugin for the tests
// of package credentials. The tests build it and drive it through the env
// and args of the provider config:
//
//	CRED_RECORD          file to append one JSON line per call to: args, stdin, CRED_EXTRA, CRED_INHERITED
//	CRED_MODE            echo (default), fail, badjson, wrongversion, wrongkind, unknownkey, badcachekey
//	CRED_SLEEP           Go duration to sleep before answering
//	CRED_AUTH            JSON auth map of the answer ({"registry.example": {"username": ..., "password": ...}})
//	CRED_CACHE_KEY       cacheKeyType of the answer (default Image)
//	CRED_CACHE_DURATION  cacheDuration of the answer (unset: none)
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
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
	switch mode := os.Getenv("CRED_MODE"); mode {
	case "", "echo":
	case "fail":
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
	default:
		fail(2, "unknown CRED_MODE %q", mode)
	}
	json.NewEncoder(os.Stdout).Encode(resp)
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(code)
}
