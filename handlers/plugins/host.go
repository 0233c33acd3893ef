package plugins

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/adaptation/builtin"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// RuntimeName and the version are what plugins are told they run in.
const RuntimeName = "crishim"

// builtinName is crishim's own validator among the plugins.
const builtinName = "crishim-validator"

// Host hosts NRI plugins in front of the runtime: NRI's own adaptation
// talks to the plugins; Host turns CRI calls into its events, applies the
// adjustments CRI can carry, and turns plugin updates into CRI calls.
type Host struct {
	log     *logrus.Logger
	metrics *Metrics
	cfg     atomic.Pointer[Config]
	nri     *nri.Adaptation
	tracker *tracker
	state   *state
	errs    *pluginErrors
	rt      atomic.Pointer[runtimeapi.RuntimeServiceClient]

	stopExits context.CancelFunc
	wg        sync.WaitGroup
}

// New builds the plugin host; nothing listens until Start.
func New(cfg *Config, log *logrus.Logger, m *Metrics) (*Host, error) {
	h := &Host{log: log, metrics: m, state: newState(), errs: &pluginErrors{Metrics: m}}
	h.cfg.Store(cfg)
	m.known(cfg)
	h.tracker = newTracker(log, m, func(name string) string {
		p, _ := h.cfg.Load().plugin(name)
		return p.FailurePolicy
	})
	nriLogOnce.Do(func() { nrilog.Set(&nriLogger{log: log}) })
	setTimeouts(cfg)
	clientOpts, serverOpts := h.tracker.ttrpcOptions()
	opts := []nri.Option{
		nri.WithSocketPath(cfg.SocketPath()),
		nri.WithPluginPath(cfg.PluginDir),
		nri.WithPluginConfigPath(cfg.PluginConfigDir),
		nri.WithMetrics(h.errs),
		nri.WithTTRPCOptions(clientOpts, serverOpts),
		nri.WithBuiltinPlugins(&builtin.BuiltinPlugin{
			Base: builtinName, Index: "99",
			Handlers: builtin.BuiltinHandlers{ValidateContainerAdjustment: h.validate},
		}),
	}
	// An empty nri.pluginDir stays empty: NRI reads "" as a directory that
	// does not exist, so no plugins are started (its default directory
	// belongs to the runtime's own NRI).
	a, err := nri.New(RuntimeName, shim.Version, h.synchronize, h.updateContainers, opts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	h.nri = a
	return h, nil
}

func setTimeouts(cfg *Config) {
	nri.SetPluginRegistrationTimeout(cfg.registrationTimeout())
	nri.SetPluginRequestTimeout(cfg.requestTimeout())
}

// Set applies a reloaded configuration: timeouts, failure policies (for
// plugins that connect from now on), unsupported-field policies and
// required plugins.
func (h *Host) Set(cfg *Config) {
	h.cfg.Store(cfg)
	h.metrics.known(cfg)
	setTimeouts(cfg)
}

// Start connects the host to the runtime and opens the plugin socket
// (starting pre-installed plugins first, synchronized with the runtime).
func (h *Host) Start(rt runtimeapi.RuntimeServiceClient) error {
	h.rt.Store(&rt)
	sock := h.cfg.Load().SocketPath()
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return fmt.Errorf("nri.socket: %w", err)
	}
	if err := h.nri.Start(); err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	// Only root may connect: a plugin changes what containers run with.
	if err := os.Chmod(sock, 0o600); err != nil {
		h.nri.Stop()
		return fmt.Errorf("nri.socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stopExits = cancel
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.watchExits(ctx, rt)
	}()
	go func() {
		defer h.wg.Done()
		h.pruneGone(ctx, rt)
	}()
	h.log.WithField("socket", sock).Info("nri: plugin socket listening")
	return nil
}

// Stop closes the plugin socket and the plugins' connections.
func (h *Host) Stop() {
	if h.stopExits != nil {
		h.stopExits()
	}
	h.wg.Wait()
	h.nri.Stop()
	_ = os.Remove(h.cfg.Load().SocketPath())
}

// Connected lists the connected plugins by name.
func (h *Host) Connected() []string { return h.tracker.connected() }

func (h *Host) runtime() runtimeapi.RuntimeServiceClient {
	if p := h.rt.Load(); p != nil {
		return *p
	}
	return nil
}

// newID returns a container ID for plugins (see IDAnnotation), in the shape
// of the runtimes' own: 64 hex digits.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// synchronize gives a (re)connecting plugin the pods and containers the
// runtime has, as containerd does: pods that are not in an unknown state,
// containers created or running.
func (h *Host) synchronize(ctx context.Context, cb nri.SyncCB) error {
	rt := h.runtime()
	if rt == nil {
		if _, err := cb(ctx, nil, nil); err != nil {
			return err
		}
		h.tracker.synchronized()
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pods, ctrs, err := h.list(ctx, rt)
	if err != nil {
		h.log.WithError(err).Warn("nri: listing the runtime's pods and containers for a plugin's synchronization failed; the plugin starts with what the listing returned before the failure (nothing if ListPodSandbox failed)")
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	h.tracker.synchronized()
	h.applyUpdates(ctx, updates)
	return nil
}

// list returns the runtime's pods and live containers in NRI's shapes, and
// learns them.
func (h *Host) list(ctx context.Context, rt runtimeapi.RuntimeServiceClient) ([]*api.PodSandbox, []*api.Container, error) {
	pl, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, nil, err
	}
	var pods []*api.PodSandbox
	for _, p := range pl.GetItems() {
		pod := h.state.pod(p.GetId())
		st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.GetId()})
		switch {
		case pod == nil && err != nil:
			continue
		case pod == nil:
			pod = podFromStatus(st.GetStatus())
			h.state.putPod(pod)
		case err == nil:
			// What crishim saw at RunPodSandbox (resources, cgroup parent),
			// with the runtime's current IPs.
			pod = protoClone(pod)
			pod.Ips = podIPs(st.GetStatus())
			h.state.putPod(pod)
		}
		pods = append(pods, protoClone(pod))
	}
	cl, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return pods, nil, err
	}
	var ctrs []*api.Container
	for _, c := range cl.GetContainers() {
		if c.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED && c.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		known, ok := h.state.container(c.GetId())
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.GetId()})
		if err != nil {
			if ok {
				ctrs = append(ctrs, known)
			}
			continue
		}
		nc := containerFromStatus(c.GetPodSandboxId(), st.GetStatus())
		if ok {
			// What CRI's status lacks (args, env, devices) is what
			// crishim saw at creation.
			known.State, known.StartedAt, known.Mounts = nc.State, nc.StartedAt, nc.Mounts
			if nc.Linux != nil {
				if known.Linux == nil {
					known.Linux = &api.LinuxContainer{}
				}
				known.Linux.Resources = nc.Linux.Resources
			}
			nc = known
		}
		h.state.putContainer(c.GetId(), nc)
		ctrs = append(ctrs, protoClone(nc))
	}
	return pods, ctrs, nil
}

// updateContainers carries out updates a plugin asks for on its own.
func (h *Host) updateContainers(ctx context.Context, updates []*nri.ContainerUpdate) ([]*nri.ContainerUpdate, error) {
	return h.applyUpdates(ctx, updates), nil
}

// applyUpdates turns plugin updates into UpdateContainerResources calls
// and returns the ones that failed (NRI's contract: failures are reported
// unless the plugin set IgnoreFailure).
func (h *Host) applyUpdates(ctx context.Context, updates []*nri.ContainerUpdate) []*nri.ContainerUpdate {
	rt := h.runtime()
	var failed []*nri.ContainerUpdate
	for _, u := range updates {
		rtID, ok := h.state.runtimeID(u.GetContainerId())
		if !ok {
			rtID = u.GetContainerId() // a container from before crishim hosted plugins
		}
		res := &runtimeapi.LinuxContainerResources{}
		if c, ok := h.state.container(rtID); ok && c.GetLinux().GetResources() != nil {
			// CRI replaces the resources: start from the current ones.
			applyResources(res, c.GetLinux().GetResources())
		}
		dropped := applyResources(res, u.GetLinux().GetResources())
		log := h.log.WithFields(logrus.Fields{"container": rtID, "nri_id": u.GetContainerId()})
		if len(dropped) > 0 {
			log.Warnf("nri: a plugin's container update asks for what CRI cannot carry, left out: %s", describe(dropped))
		}
		var err error
		if rt == nil {
			err = errors.New("the runtime is not connected yet")
		} else {
			_, err = rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: rtID, Linux: res})
		}
		if err != nil {
			log.WithError(err).Warn("nri: a plugin's container update failed")
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
			continue
		}
		log.Info("nri: container updated for a plugin")
		h.state.setState(rtID, api.ContainerState_CONTAINER_UNKNOWN, func(c *api.Container) {
			if c.Linux == nil {
				c.Linux = &api.LinuxContainer{}
			}
			c.Linux.Resources = resourcesFromCRI(res)
		})
	}
	return failed
}

// failed converts an NRI failure into the caller's status: a plugin that
// timed out or went away under the fail policy is Unavailable (the
// kubelet retries); a plugin's refusal, a conflict between plugins or an
// adjustment CRI cannot carry is FailedPrecondition.
func (h *Host) failed(err error, event, object string) error {
	code := codes.FailedPrecondition
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, ttrpc.ErrServerClosed) || errors.Is(err, ttrpc.ErrProtocol) {
		code = codes.Unavailable
	}
	if c, ok := status.FromError(err); ok && c.Code() == codes.Canceled || errors.Is(err, context.Canceled) {
		code = codes.Canceled
	}
	msg := err.Error()
	if name := h.errs.plugin(err); name != "" && !strings.Contains(msg, name) {
		// a plugin's own error, which NRI passes on without its name
		msg = "plugin " + name + ": " + msg
	}
	h.log.WithError(err).WithFields(logrus.Fields{"event": event, "object": object}).Warn("nri: plugins failed the call")
	return status.Errorf(code, "crishim: NRI %s for %s failed: %s", event, object, msg)
}

// pluginErrors remembers which plugin answered an event with an error: NRI's
// adaptation returns a plugin's own error (a refusal) to the caller
// unchanged, without the plugin's name, and tells only its metrics which
// plugin it was. The last few errors are kept; the adaptation handles one
// event at a time, so the error a call fails with is among them.
type pluginErrors struct {
	*Metrics
	mu   sync.Mutex
	last [16]namedError
	next int
}

type namedError struct {
	err    error
	plugin string
}

// RecordPluginInvocation counts the event and remembers a failure's plugin.
func (p *pluginErrors) RecordPluginInvocation(plugin, event string, err error) {
	p.Metrics.RecordPluginInvocation(plugin, event, err)
	if err == nil || eventResult(err) != "error" {
		return // a timeout or a lost connection: NRI's own error names the plugin
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[p.next%len(p.last)] = namedError{err: err, plugin: plugin}
	p.next++
}

// plugin returns the plugin (NN-name) whose error err is or wraps, the most
// recent first; "" when no plugin's error is.
func (p *pluginErrors) plugin(err error) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 1; i <= len(p.last) && i <= p.next; i++ {
		e := p.last[(p.next-i)%len(p.last)]
		if errors.Is(err, e.err) {
			return e.plugin
		}
	}
	return ""
}

// required refuses a pod while a required plugin is missing, unless the
// pod is exempt.
func (h *Host) required(cfg *Config, pod *runtimeapi.PodSandboxConfig) error {
	names := cfg.required()
	if len(names) == 0 {
		return nil
	}
	ns := pod.GetMetadata().GetNamespace()
	for _, e := range cfg.ExemptNamespaces {
		if e == ns {
			return nil
		}
	}
	if cfg.exemptStatic() && isStatic(pod) {
		return nil
	}
	missing := h.tracker.missing(names)
	if len(missing) == 0 {
		return nil
	}
	for _, m := range missing {
		h.metrics.refused(m)
	}
	h.log.WithFields(logrus.Fields{"pod": ns + "/" + pod.GetMetadata().GetName(), "missing": missing}).Warn("nri: pod refused: a required plugin is not registered")
	return status.Errorf(codes.Unavailable, "crishim: pod %s/%s refused: required NRI plugin %s not registered with crishim (nri.plugins[].required); the kubelet retries, and the pod runs once the plugin connects to %s, or add namespace %q to nri.exemptNamespaces",
		ns, pod.GetMetadata().GetName(), quoteList(missing), cfg.SocketPath(), ns)
}

// isStatic reports whether the kubelet runs the pod from a file or URL
// rather than the API server.
func isStatic(pod *runtimeapi.PodSandboxConfig) bool {
	src := pod.GetAnnotations()["kubernetes.io/config.source"]
	return src != "" && src != "api"
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// nriLogOnce sets NRI's logger, a process-wide variable NRI reads without
// a lock, once: the first Host's logger (crishim has one) gets NRI's lines.
var nriLogOnce sync.Once

// nriLogger sends NRI's own log lines to crishim's logger.
type nriLogger struct{ log *logrus.Logger }

func (l *nriLogger) Debugf(_ context.Context, format string, args ...any) {
	l.log.Debugf("nri: "+format, args...)
}
func (l *nriLogger) Infof(_ context.Context, format string, args ...any) {
	l.log.Debugf("nri: "+format, args...)
}
func (l *nriLogger) Warnf(_ context.Context, format string, args ...any) {
	l.log.Warnf("nri: "+format, args...)
}
func (l *nriLogger) Errorf(_ context.Context, format string, args ...any) {
	l.log.Errorf("nri: "+format, args...)
}
