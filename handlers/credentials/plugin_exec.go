package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// pluginTimeout bounds one plugin call, as the kubelet's catch-all 1-minute
// timeout does (plugin.go ExecPlugin).
const pluginTimeout = time.Minute

// Output limits: a plugin's answer is a small JSON document; stderr is only
// quoted (its end) in the error of a failed call.
const (
	maxPluginStdout = 1 << 20
	maxStderrQuote  = 512
)

// exec runs the plugin once for a normalized image: the request on stdin,
// args and env from the config (env added to crishim's own environment, the
// config winning, as plugin.go mergeEnvVars does), the answer on stdout.
// Errors never quote stdout, which may hold credentials (plugin.go does not
// wrap its decode error for the same reason).
func (pl *plugin) exec(repo string) (*credentialproviderv1.CredentialProviderResponse, error) {
	req, err := json.Marshal(credentialproviderv1.CredentialProviderRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: pl.apiVersion, Kind: "CredentialProviderRequest"},
		Image:    repo,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pl.timeout)
	defer cancel()

	stdout := &limitedBuffer{max: maxPluginStdout}
	stderr := &limitedBuffer{max: 64 << 10}
	cmd := exec.CommandContext(ctx, pl.path, pl.args...)
	cmd.Stdin = bytes.NewReader(req)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(), pl.env...) // later entries win in os/exec
	// A plugin's child that keeps stdout open must not hold the call past
	// the timeout.
	cmd.WaitDelay = time.Second

	start := pl.now()
	pl.log.WithField("image", repo).Debug("calling credential provider plugin")
	err = cmd.Run()
	elapsed := pl.now().Sub(start)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("plugin %q timed out after %s", pl.name, pl.timeout)
	case err != nil:
		return nil, fmt.Errorf("plugin %q failed after %s: %w%s", pl.name, elapsed.Round(time.Millisecond), err, quoteStderr(stderr.Bytes()))
	case stdout.overflow:
		return nil, fmt.Errorf("plugin %q wrote more than %d bytes to stdout", pl.name, maxPluginStdout)
	}
	return pl.decodeResponse(stdout.Bytes())
}

// decodeResponse checks and decodes the answer as the kubelet does
// (plugin.go ExecPlugin, decodeResponse): apiVersion equal to the configured
// one, kind CredentialProviderResponse, strict decoding, a known cacheKeyType.
func (pl *plugin) decodeResponse(out []byte) (*credentialproviderv1.CredentialProviderResponse, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(out, &tm); err != nil {
		return nil, fmt.Errorf("plugin %q: stdout is not a JSON object (not shown: it may hold credentials)", pl.name)
	}
	if tm.APIVersion != pl.apiVersion {
		return nil, fmt.Errorf("plugin %q: response apiVersion %q does not match the configured %q", pl.name, clip(tm.APIVersion), pl.apiVersion)
	}
	if tm.Kind != "CredentialProviderResponse" {
		return nil, fmt.Errorf("plugin %q: response kind %q, want CredentialProviderResponse", pl.name, clip(tm.Kind))
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var resp credentialproviderv1.CredentialProviderResponse
	if err := dec.Decode(&resp); err != nil {
		return nil, fmt.Errorf("plugin %q: invalid CredentialProviderResponse: %s (stdout not shown: it may hold credentials)", pl.name, describeDecodeError(err))
	}
	switch resp.CacheKeyType {
	case credentialproviderv1.ImagePluginCacheKeyType, credentialproviderv1.RegistryPluginCacheKeyType, credentialproviderv1.GlobalPluginCacheKeyType:
	default:
		return nil, fmt.Errorf("plugin %q: invalid cacheKeyType %q, want Image, Registry or Global", pl.name, clip(string(resp.CacheKeyType)))
	}
	return &resp, nil
}

// describeDecodeError keeps what a strict decode error says about keys and
// types, never a value.
func describeDecodeError(err error) string {
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown key " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return describeJSONError(err).Error()
}

// quoteStderr returns the end of a failed plugin's stderr for its error.
func quoteStderr(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	if len(s) > maxStderrQuote {
		s = "..." + s[len(s)-maxStderrQuote:]
	}
	return "; stderr: " + s
}

// clip bounds a plugin-chosen string quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// limitedBuffer keeps the first max bytes written and notes overflow, so a
// runaway plugin cannot grow crishim's memory.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.overflow = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }
