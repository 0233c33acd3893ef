//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The URLs that Exec, Attach and PortForward return point at containerd's streaming server;
// crishim only passes them on. These tests use them with the Kubernetes websocket channel
// protocol (k8s.io/apimachinery/pkg/util/httpstream/wsstream): every binary message starts with
// a channel byte (remotecommand: 0 stdin, 1 stdout, 2 stderr, 3 error; port forward: 2i data,
// 2i+1 error for the i-th port).
const channelProtocol = "v4.channel.k8s.io"

// dialStream opens a websocket on a streaming URL returned through crishim.
func dialStream(t *testing.T, raw string) *websocket.Conn {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("streaming URL %q: %v", raw, err)
	}
	if u.Scheme != "http" {
		t.Fatalf("streaming URL %q: scheme %q, want http (containerd's stream server)", raw, u.Scheme)
	}
	u.Scheme = "ws"
	cfg, err := websocket.NewConfig(u.String(), "http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{channelProtocol}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	_ = ws.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { ws.Close() })
	return ws
}

// readChannels reads messages until the server closes the websocket or until stop returns true,
// collecting the payload of each channel.
func readChannels(t *testing.T, ws *websocket.Conn, stop func(map[byte]*bytes.Buffer) bool) map[byte]*bytes.Buffer {
	t.Helper()
	got := map[byte]*bytes.Buffer{}
	for {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			if err != io.EOF {
				t.Logf("websocket receive: %v", err)
			}
			return got
		}
		if len(msg) == 0 {
			continue
		}
		if got[msg[0]] == nil {
			got[msg[0]] = &bytes.Buffer{}
		}
		got[msg[0]].Write(msg[1:])
		if stop != nil && stop(got) {
			return got
		}
	}
}

func channelText(got map[byte]*bytes.Buffer, ch byte) string {
	if got[ch] == nil {
		return ""
	}
	return got[ch].String()
}

func TestExecURL(t *testing.T) {
	p := newTestPod(t)
	b, ctx, rs, podCfg, pod := p.bed, p.ctx, p.rs, p.cfg, p.id
	ctr := startContainer(ctx, t, rs, pod, podCfg, b.busyboxContainer("sleeper", "exec sleep 3600"))

	resp, err := rs.Exec(ctx, &runtimeapi.ExecRequest{
		ContainerId: ctr,
		Cmd:         []string{"sh", "-c", "echo exec-through-url; echo on-stderr >&2; exit 7"},
		Stdout:      true,
		Stderr:      true,
	})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	ws := dialStream(t, resp.Url)
	got := readChannels(t, ws, nil)
	if out := channelText(got, 1); out != "exec-through-url\n" {
		t.Errorf("exec stdout = %q, want \"exec-through-url\\n\"", out)
	}
	if errOut := channelText(got, 2); errOut != "on-stderr\n" {
		t.Errorf("exec stderr = %q, want \"on-stderr\\n\"", errOut)
	}
	// the error channel carries a metav1.Status with the exit code
	var st struct {
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Details struct {
			Causes []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	if err := json.Unmarshal([]byte(channelText(got, 3)), &st); err != nil {
		t.Fatalf("exec error channel %q: %v", channelText(got, 3), err)
	}
	exitCode := ""
	for _, c := range st.Details.Causes {
		if c.Reason == "ExitCode" {
			exitCode = c.Message
		}
	}
	if st.Status != "Failure" || st.Reason != "NonZeroExitCode" || exitCode != "7" {
		t.Errorf("exec status = %+v, want Failure NonZeroExitCode with exit code 7", st)
	}

	// stdin through the URL
	resp, err = rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: ctr, Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatalf("Exec(cat): %v", err)
	}
	ws = dialStream(t, resp.Url)
	if err := websocket.Message.Send(ws, append([]byte{0}, "piped-through-stdin\n"...)); err != nil {
		t.Fatalf("send stdin: %v", err)
	}
	got = readChannels(t, ws, func(g map[byte]*bytes.Buffer) bool {
		return strings.Contains(channelText(g, 1), "piped-through-stdin")
	})
	if out := channelText(got, 1); out != "piped-through-stdin\n" {
		t.Errorf("exec cat stdout = %q, want the stdin line back", out)
	}
}

func TestAttachURL(t *testing.T) {
	p := newTestPod(t)
	b, ctx, rs, podCfg, pod := p.bed, p.ctx, p.rs, p.cfg, p.id
	cfg := b.busyboxContainer("echo", "while read line; do echo attached:$line; done")
	cfg.Stdin = true
	ctr := startContainer(ctx, t, rs, pod, podCfg, cfg)

	resp, err := rs.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: ctr, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	ws := dialStream(t, resp.Url)
	if err := websocket.Message.Send(ws, append([]byte{0}, "hello\n"...)); err != nil {
		t.Fatalf("send stdin: %v", err)
	}
	got := readChannels(t, ws, func(g map[byte]*bytes.Buffer) bool {
		return strings.Contains(channelText(g, 1), "attached:hello")
	})
	if out := channelText(got, 1); !strings.Contains(out, "attached:hello\n") {
		t.Errorf("attach stdout = %q, want attached:hello", out)
	}
}

func TestPortForwardURL(t *testing.T) {
	p := newTestPod(t)
	b, ctx, rs, podCfg, pod := p.bed, p.ctx, p.rs, p.cfg, p.id
	ctr := startContainer(ctx, t, rs, pod, podCfg, b.busyboxContainer("web",
		"mkdir -p /www && echo forwarded-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"))
	waitFor(t, 10*time.Second, "httpd listening in the pod", func() (bool, error) {
		_, _, err := rs.ExecSync(ctx, ctr, []string{"wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"}, 5*time.Second)
		return err == nil, nil
	})

	resp, err := rs.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: []int32{8080}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	ws := dialStream(t, resp.Url)
	// the server first sends the port (uint16, little endian) on the data and the error channel
	ports := readChannels(t, ws, func(g map[byte]*bytes.Buffer) bool { return g[0] != nil && g[1] != nil })
	for ch := byte(0); ch < 2; ch++ {
		if ports[ch] == nil || ports[ch].Len() != 2 || binary.LittleEndian.Uint16(ports[ch].Bytes()) != 8080 {
			t.Fatalf("port-forward channel %d opened with %v, want port 8080", ch, ports[ch])
		}
	}
	req := "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
	if err := websocket.Message.Send(ws, append([]byte{0}, req...)); err != nil {
		t.Fatalf("send request: %v", err)
	}
	got := readChannels(t, ws, func(g map[byte]*bytes.Buffer) bool {
		return strings.Contains(channelText(g, 0), "forwarded-from-pod")
	})
	if out := channelText(got, 0); !strings.HasPrefix(out, "HTTP/1.") || !strings.Contains(out, "forwarded-from-pod") {
		t.Errorf("port-forwarded response = %q, want the pod's page", out)
	}
	if e := channelText(got, 1); e != "" {
		t.Errorf("port-forward error channel: %q", e)
	}
}
