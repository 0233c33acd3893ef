package plugins

import (
	"context"
	"net"
	"slices"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
)

// Full ttrpc method names of the NRI calls the tracker watches.
const (
	methodRegister  = "/nri.pkg.api.v1alpha1.Runtime/RegisterPlugin"
	methodConfigure = "/nri.pkg.api.v1alpha1.Plugin/Configure"
)

// tracker knows which plugins are connected, by name, and puts the
// operator's failure policy in place of the one a plugin declares.
//
// NRI's adaptation keeps its plugins private, so the tracker watches the
// plugin connections through the ttrpc options the adaptation accepts:
// a handshaker on the runtime-side server (one per plugin connection) sees
// the connection open and close; a server interceptor sees RegisterPlugin
// (the plugin's name); a client interceptor sees the Configure answer,
// which carries the plugin's failure policy. The adaptation brings plugins
// up one at a time (its accept loop starts, registers and configures a
// plugin before it accepts the next; pre-installed plugins are started in
// sequence before the socket listens), so the Configure that follows a
// RegisterPlugin is that plugin's.
type tracker struct {
	log     *logrus.Logger
	metrics *Metrics
	policy  func(name string) string // the operator's failure policy, "" for the plugin's own

	mu             sync.Mutex
	pending        *pluginConn    // the connection being registered
	lastRegistered string         // the name of the last RegisterPlugin
	lastLabel      string         // and its NN-name, as NRI names it in metrics and errors
	configured     []*pluginConn  // configured, not yet synchronized
	live           map[string]int // synchronized connections per plugin name
	changed        chan struct{}  // closed and replaced when live changes
}

func newTracker(log *logrus.Logger, m *Metrics, policy func(string) string) *tracker {
	return &tracker{log: log, metrics: m, policy: policy, live: map[string]int{}, changed: make(chan struct{})}
}

// ttrpcOptions returns the options to give the adaptation.
func (t *tracker) ttrpcOptions() ([]ttrpc.ClientOpts, []ttrpc.ServerOpt) {
	return []ttrpc.ClientOpts{ttrpc.WithUnaryClientInterceptor(t.clientInterceptor)},
		[]ttrpc.ServerOpt{ttrpc.WithServerHandshaker(t), ttrpc.WithUnaryServerInterceptor(t.serverInterceptor)}
}

// pluginConn is the runtime side of one plugin's connection.
type pluginConn struct {
	net.Conn
	t         *tracker
	name      string // set when the plugin is configured; guarded by t.mu
	label     string // NN-name
	live      bool   // synchronized: the adaptation sends it events
	closed    bool
	closeOnce sync.Once
}

// Handshake wraps each plugin connection so that its end is seen.
func (t *tracker) Handshake(_ context.Context, conn net.Conn) (net.Conn, any, error) {
	pc := &pluginConn{Conn: conn, t: t}
	t.mu.Lock()
	t.pending = pc
	t.mu.Unlock()
	return pc, nil, nil
}

func (c *pluginConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.gone()
	}
	return n, err
}

func (c *pluginConn) Close() error {
	c.gone()
	return c.Conn.Close()
}

// gone marks the connection's plugin as disconnected, once.
func (c *pluginConn) gone() {
	c.closeOnce.Do(func() {
		t := c.t
		t.mu.Lock()
		c.closed = true
		wasLive, name, label := c.live, c.name, c.label
		if wasLive {
			if t.live[name]--; t.live[name] <= 0 {
				delete(t.live, name)
			}
			t.notifyLocked()
		}
		t.configured = slices.DeleteFunc(t.configured, func(o *pluginConn) bool { return o == c })
		if t.pending == c {
			t.pending = nil
		}
		t.mu.Unlock()
		if wasLive {
			t.metrics.disconnected(label)
			t.log.WithField("plugin", label).Warn("nri: plugin disconnected")
		}
	})
}

// synchronized counts the configured plugins as connected: the adaptation
// synchronized them and sends them events from now on. It is called at the
// end of a synchronization, which CRI calls wait for (the adaptation's
// plugin sync lock), so a call that sees a plugin connected also reaches it.
func (t *tracker) synchronized() {
	t.mu.Lock()
	promoted := t.configured
	t.configured = nil
	for _, pc := range promoted {
		if !pc.closed {
			pc.live = true
			t.live[pc.name]++
		}
	}
	if len(promoted) > 0 {
		t.notifyLocked()
	}
	t.mu.Unlock()
	for _, pc := range promoted {
		if pc.live {
			t.metrics.connected(pc.label, 1)
			t.log.WithField("plugin", pc.label).Info("nri: plugin connected and synchronized")
		}
	}
}

func (t *tracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// serverInterceptor notes the name a plugin registers with.
func (t *tracker) serverInterceptor(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	if info.FullMethod != methodRegister {
		return method(ctx, unmarshal)
	}
	var req api.RegisterPluginRequest
	if err := unmarshal(&req); err != nil {
		return method(ctx, unmarshal)
	}
	// Noted before the adaptation's handler runs: the handler wakes the
	// adaptation, which configures the plugin at once, possibly before
	// this interceptor would see the handler return.
	t.mu.Lock()
	t.lastRegistered = req.PluginName
	t.lastLabel = req.PluginIdx + "-" + req.PluginName
	t.mu.Unlock()
	return method(ctx, unmarshal)
}

// clientInterceptor rewrites the failure policy in the Configure answer of
// the plugin being registered to the operator's, and counts the plugin as
// connected.
func (t *tracker) clientInterceptor(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	if err := invoke(ctx, req, resp); err != nil || info.FullMethod != methodConfigure {
		return err
	}
	t.mu.Lock()
	pc := t.pending
	t.mu.Unlock()
	if pc == nil {
		return nil
	}
	name, label := t.registeredName(pc)
	var rpl api.ConfigureResponse
	if err := proto.Unmarshal(resp.Payload, &rpl); err != nil {
		return nil // the adaptation reports it
	}
	declared := rpl.GetFailurePolicy()
	switch t.policy(name) {
	case FailurePolicyFail:
		rpl.FailurePolicy = &api.FailurePolicy{FailRequest: true, KeepConnected: declared.GetKeepConnected()}
	case FailurePolicyIgnore:
		rpl.FailurePolicy = &api.FailurePolicy{FailRequest: false, KeepConnected: declared.GetKeepConnected()}
	}
	if payload, err := proto.Marshal(&rpl); err == nil {
		resp.Payload = payload
	}
	t.mu.Lock()
	pc.name, pc.label = name, label
	t.configured = append(t.configured, pc)
	t.mu.Unlock()
	t.log.WithFields(logrus.Fields{"plugin": label, "declared_fail_request": declared.GetFailRequest(),
		"fail_request": rpl.GetFailurePolicy().GetFailRequest(), "keep_connected": rpl.GetFailurePolicy().GetKeepConnected()}).Info("nri: plugin registered")
	return nil
}

// registeredName returns the name the pending connection registered with,
// and its NN-name.
func (t *tracker) registeredName(pc *pluginConn) (string, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pc.name != "" {
		return pc.name, pc.label
	}
	return t.lastRegistered, t.lastLabel
}

// missing returns the names of required plugins that are not connected.
func (t *tracker) missing(required []string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, name := range required {
		if t.live[name] == 0 {
			out = append(out, name)
		}
	}
	return out
}

// any reports whether any plugin is connected: the per-call check of the
// calls NRI has events for, without building a list.
func (t *tracker) any() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live) > 0
}

// connected lists the connected plugin names, sorted.
func (t *tracker) connected() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.live))
	for name := range t.live {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// wait returns a channel closed at the next change of the connected set.
func (t *tracker) wait() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}
