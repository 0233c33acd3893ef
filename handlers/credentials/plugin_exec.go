package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	apijson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/kubelet/pkg/apis/credentialprovider/install"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// pluginTimeout bounds one plugin call, as the kubelet's catch-all 1-minute
// timeout does (plugin.go ExecPlugin).
const pluginTimeout = time.Minute

// pluginWaitDelay is how long, once the plugin has exited (or been killed at
// its timeout), its stdout and stderr may stay open before the call stops
// waiting for their end: a child the plugin left behind may hold them for as
// long as it lives. What the plugin itself wrote is in the pipes by then and
// is read out whatever the delay (see outputPipe.finish), so a short one
// loses nothing.
const pluginWaitDelay = 200 * time.Millisecond

// maxDrain bounds what is read from a pipe that a lingering child still
// holds once the plugin has exited: the child may write without end.
const maxDrain = 2 * maxPluginStdout

// Output limits: a plugin's answer is a small JSON document. Of stderr only
// the end is kept, as only a failure's last words are logged (at debug
// level: a plugin may echo a token there); the larger tail kept lets
// redaction see a secret whole before the logged part is cut from it.
const (
	maxPluginStdout = 1 << 20
	maxStderrKeep   = 4 << 10
	maxStderrLog    = 512
)

// minRedactLen is the shortest config env value or arg redacted from a
// plugin's stderr: shorter ones ("1", "true", "fail", "eu-1") are hardly
// secrets, and replacing them wherever they occur would garble the text.
const minRedactLen = 6

// stderrHint ends the error of a failed call whose plugin wrote to stderr.
const stderrHint = "its stderr is logged at debug level (log.level: debug)"

// responseDecoder decodes plugin answers as strictly as the kubelet does
// (plugin.go: a codec factory with serializer.EnableStrict over the
// credentialprovider API): unknown and duplicate fields are refused, and
// field names match case-sensitively.
var responseDecoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// exec runs the plugin once for a normalized image: the request on stdin,
// args and env from the config (env added to crishim's own environment, the
// config winning, as plugin.go mergeEnvVars does), the answer on stdout.
// Errors never quote stdout, which may hold credentials (plugin.go does not
// wrap its decode error for the same reason), nor stderr, which may too: a
// failed call's stderr goes to its own debug-level line only.
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
	stderr := &tailBuffer{max: maxStderrKeep}
	cmd := exec.CommandContext(ctx, pl.path, pl.args...)
	cmd.Stdin = bytes.NewReader(req)
	cmd.Env = append(os.Environ(), pl.env...) // later entries win in os/exec
	// The plugin leads its own process group, so that a timeout kills what
	// it started along with it instead of orphaning it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killProcessGroup(cmd.Process) }
	// Bounds Wait on the stdin copy too, should a child the plugin left
	// behind hold stdin unread (the request fits a pipe's buffer, so it
	// should never matter).
	cmd.WaitDelay = pluginWaitDelay

	log := pl.log.WithField("image", repo)
	start := pl.now()
	log.Debug("calling credential provider plugin")
	lingering, err := runPlugin(cmd, stdout, stderr)
	elapsed := pl.now().Sub(start)
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// The plugin exited 0, but a child it left behind still holds its
		// stdin: its answer is complete all the same.
		lingering, err = true, nil
	}
	if lingering {
		log.Debug("a child of the credential provider plugin still holds its stdin, stdout or stderr after it exited; the plugin's own output is used")
	}
	var resp *credentialproviderv1.CredentialProviderResponse
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("plugin %q timed out after %s", pl.name, pl.timeout)
	case err != nil:
		err = fmt.Errorf("plugin %q failed after %s: %w", pl.name, elapsed.Round(time.Millisecond), err)
	case stdout.overflow:
		err = fmt.Errorf("plugin %q wrote more than %d bytes to stdout", pl.name, maxPluginStdout)
	default:
		resp, err = pl.decodeResponse(stdout.Bytes())
	}
	if err != nil {
		if tail := pl.stderrTail(stderr); tail != "" {
			log.WithField("stderr", tail).Debug("stderr of the failed credential provider plugin (its end)")
			err = fmt.Errorf("%w; %s", err, stderrHint)
		}
		return nil, err
	}
	return resp, nil
}

// runPlugin runs cmd with its stdout and stderr copied to the writers and
// reports whether a child of the plugin still held one of them once the
// plugin had exited. os/exec's own copying is not used for them: when
// WaitDelay expires it closes the pipes at once, dropping whatever its
// copying goroutines, if not scheduled in time, had yet to read, which may
// be the whole answer of a plugin that exited 0.
func runPlugin(cmd *exec.Cmd, stdout, stderr io.Writer) (lingering bool, err error) {
	out, outW, err := newOutputPipe(stdout)
	if err != nil {
		return false, err
	}
	errp, errW, err := newOutputPipe(stderr)
	if err != nil {
		out.r.Close()
		outW.Close()
		return false, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	// The plugin has its own copies of the write ends (if it started):
	// ours would keep the pipes from ever ending.
	outW.Close()
	errW.Close()
	if err != nil {
		out.r.Close()
		errp.r.Close()
		return false, err
	}
	go out.copy()
	go errp.copy()
	err = cmd.Wait()
	grace, cancel := context.WithTimeout(context.Background(), pluginWaitDelay)
	defer cancel()
	outEnded := out.finish(grace)
	errEnded := errp.finish(grace)
	return !outEnded || !errEnded, err
}

// outputPipe is the read end of one of the plugin's output pipes and the
// copy of what comes out of it to w.
type outputPipe struct {
	r    *os.File
	w    io.Writer
	done chan struct{}
}

func newOutputPipe(w io.Writer) (*outputPipe, *os.File, error) {
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return &outputPipe{r: r, w: w, done: make(chan struct{})}, pw, nil
}

// copy copies the pipe to w until its end, or until finish stops it.
func (p *outputPipe) copy() {
	defer close(p.done)
	io.Copy(p.w, p.r)
}

// finish is called once the plugin has exited, so that all it wrote is in
// the pipe or already copied. It waits until grace is done for the pipe's
// end and reports whether it came. If not, a child of the plugin still
// holds the write end: the copy is stopped by a read deadline, which leaves
// unread data in the pipe, and what the pipe holds is then read out without
// waiting for more. Either way the read end is closed.
func (p *outputPipe) finish(grace context.Context) (ended bool) {
	defer p.r.Close()
	select {
	case <-p.done:
		return true
	case <-grace.Done():
	}
	if err := p.r.SetReadDeadline(time.Now()); err != nil {
		// Not pollable (never so for os.Pipe on Linux): stop as os/exec
		// does, by closing, at the risk of losing what is left unread.
		p.r.Close()
		<-p.done
		return false
	}
	<-p.done
	p.r.SetReadDeadline(time.Time{}) // a passed deadline would fail the reads below unattempted
	rc, err := p.r.SyscallConn()
	if err != nil {
		return false
	}
	buf := make([]byte, 32<<10)
	rc.Read(func(fd uintptr) bool {
		for drained := 0; drained < maxDrain; {
			n, err := syscall.Read(int(fd), buf)
			if err == syscall.EINTR {
				continue
			}
			if n <= 0 || err != nil {
				break // EAGAIN: empty for now; 0: the child closed it meanwhile
			}
			p.w.Write(buf[:n])
			drained += n
		}
		return true // done, not "wait until readable"
	})
	return false
}

// killProcessGroup kills the plugin and every process of its group (the
// plugin's children, unless they left it), as the plugin leads a group of
// its own.
func killProcessGroup(p *os.Process) error {
	// The plugin itself first: os.ErrProcessDone means it has been reaped,
	// so its PID, and with it the group's ID once the group is empty, may
	// already name someone else; os/exec then adds no error of its own.
	if err := p.Kill(); errors.Is(err, os.ErrProcessDone) {
		return err
	}
	// Until it is reaped the plugin keeps the group's ID taken, whatever it
	// did, so the group is still the plugin's.
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing the plugin's process group: %w", err)
	}
	return nil
}

// decodeResponse checks and decodes the answer as the kubelet does
// (plugin.go ExecPlugin, decodeResponse): apiVersion equal to the configured
// one, kind CredentialProviderResponse, strict decoding, a known cacheKeyType.
// Decode errors are never wrapped: they may quote the answer or name a field
// path through an auth key, which may hold user information.
func (pl *plugin) decodeResponse(out []byte) (*credentialproviderv1.CredentialProviderResponse, error) {
	gvk, err := apijson.DefaultMetaFactory.Interpret(out)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: stdout is not a JSON object with a valid apiVersion (not shown: it may hold credentials)", pl.name)
	}
	if got := gvk.GroupVersion().String(); got != pl.apiVersion {
		return nil, fmt.Errorf("plugin %q: response apiVersion %q does not match the configured %q", pl.name, clip(got), pl.apiVersion)
	}
	if gvk.Kind != "CredentialProviderResponse" {
		return nil, fmt.Errorf("plugin %q: response kind %q, want CredentialProviderResponse", pl.name, clip(gvk.Kind))
	}
	obj, gvk, err := responseDecoder.Decode(out, nil, &credentialproviderv1.CredentialProviderResponse{})
	switch {
	case runtime.IsStrictDecodingError(err):
		return nil, fmt.Errorf("plugin %q: response has unknown, duplicate or wrongly-cased fields (not shown: they may hold credentials)", pl.name)
	case err != nil:
		return nil, fmt.Errorf("plugin %q: response is not a valid CredentialProviderResponse (not shown: it may hold credentials)", pl.name)
	}
	resp, ok := obj.(*credentialproviderv1.CredentialProviderResponse)
	if !ok || gvk.Group != credentialproviderv1.SchemeGroupVersion.Group || gvk.Kind != "CredentialProviderResponse" {
		return nil, fmt.Errorf("plugin %q: response decoded as %s, want a CredentialProviderResponse", pl.name, clip(gvk.String()))
	}
	switch resp.CacheKeyType {
	case credentialproviderv1.ImagePluginCacheKeyType, credentialproviderv1.RegistryPluginCacheKeyType, credentialproviderv1.GlobalPluginCacheKeyType:
	default:
		return nil, fmt.Errorf("plugin %q: invalid cacheKeyType %q, want Image, Registry or Global", pl.name, clip(string(resp.CacheKeyType)))
	}
	return resp, nil
}

// stderrTail returns the end of a failed plugin's stderr for its debug line:
// the config's env values and args redacted (a plugin may echo them; they
// are often tokens), at most maxStderrLog bytes, "..." marking a cut.
func (pl *plugin) stderrTail(b *tailBuffer) string {
	secrets := make([]string, 0, len(pl.env)+len(pl.args))
	for _, e := range pl.env {
		_, v, _ := strings.Cut(e, "=")
		secrets = append(secrets, v)
	}
	secrets = append(secrets, pl.args...)
	s := strings.TrimSpace(redact(string(b.Bytes()), secrets))
	cut := b.cut
	if len(s) > maxStderrLog {
		s, cut = s[len(s)-maxStderrLog:], true
	}
	if s == "" {
		return ""
	}
	s = strings.ToValidUTF8(s, "") // a cut may split a character
	if cut {
		s = "..." + s
	}
	return s
}

// redact replaces every occurrence of each secret of at least minRedactLen
// bytes in s, longest first so that a secret holding another goes whole.
func redact(s string, secrets []string) string {
	sorted := make([]string, 0, len(secrets))
	for _, v := range secrets {
		if len(v) >= minRedactLen {
			sorted = append(sorted, v)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, v := range sorted {
		s = strings.ReplaceAll(s, v, "[redacted]")
	}
	return s
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

// tailBuffer keeps the last max bytes written and notes whether earlier ones
// were dropped: the end of a failing plugin's stderr says why it failed.
type tailBuffer struct {
	buf []byte
	max int
	cut bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= b.max {
		b.cut = b.cut || len(b.buf) > 0 || len(p) > b.max
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if drop := len(b.buf) + len(p) - b.max; drop > 0 {
		b.buf = append(b.buf[:0], b.buf[drop:]...)
		b.cut = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *tailBuffer) Bytes() []byte { return b.buf }
