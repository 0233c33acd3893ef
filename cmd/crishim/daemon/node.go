package daemon

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/access"
	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/handlers/plugins"
	"github.com/crishim/crishim/handlers/pulls"
	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/handlers/routing"
	"github.com/crishim/crishim/interceptors"
	"github.com/crishim/crishim/interceptors/metrics"
	"github.com/crishim/crishim/shim"
)

// node is a running crishim's configurable parts: what Run builds from the
// configuration and what a reload changes in place.
type node struct {
	log *logrus.Logger
	cfg atomic.Pointer[Config]
	// started is the configuration at start: settings that need a restart
	// are compared with it, not with the last reload, so that every reload
	// keeps saying they are not applied.
	started *Config
	grace   atomic.Int64 // shutdownGracePeriod, ns

	access    *access.Access         // nil without images.access
	lostState bool                   // the access record was corrupt at start
	runner    *routing.SandboxRunner // nil without handlers
	inventory *routing.Inventory
	injector  *credentials.Injector // nil without images.credentials
	sched     *pulls.Scheduler      // nil without images.pulls
	puller    *pulls.Puller         // nil without images.pulls
	labels    *registry.Labels      // the registry label bound shared by the image metrics
	plugins   *plugins.Host         // nil without nri
}

// Features act on the RPCs they intercept in this order, fixed here and
// nowhere else (README "Development" shows it): each sees the request its
// predecessor passes on, the last one's next is the runtime.
//
//	RunPodSandbox:   routing → plugins → runtime
//	PullImage:       image access → credentials → pulls → runtime
//	CreateContainer: image access → plugins → runtime
//	StopPodSandbox, RemovePodSandbox, UpdatePodSandboxResources,
//	StartContainer, UpdateContainerResources, StopContainer,
//	RemoveContainer: plugins → runtime
//
// Credentials come before pulls so that each credential attempt is
// scheduled, and de-duplicated, with the credentials the runtime will get.
// Image access comes first on PullImage so that it records the outcome of
// the whole pull, whichever credentials made it. Plugins come after routing
// so that they see the runtime handler the pod gets, and after image access
// so that a refused container never reaches them.
func (n *node) handlers() []shim.Handler {
	var hs []shim.Handler
	if n.access != nil {
		hs = append(hs, n.access.Handlers()...)
	}
	if n.runner != nil {
		hs = append(hs, n.runner.Handler())
	}
	if n.plugins != nil {
		hs = append(hs, n.plugins.Handlers()...)
	}
	if n.injector != nil {
		hs = append(hs, n.injector.Handler())
	}
	if n.puller != nil {
		hs = append(hs, n.puller.Handler())
	}
	return hs
}

// newNode builds the parts cfg enables and returns the server options that
// install them.
//
// checkOnly builds for crishim validate: nothing is created or moved on disk
// (the image access state directory is only checked).
func newNode(cfg *Config, log *logrus.Logger, reg prometheus.Registerer, checkOnly bool) (*node, []shim.Option, error) {
	n := &node{log: log, labels: registry.NewLabels(cfg.Metrics.MaxRegistryLabels)}
	n.cfg.Store(cfg)
	n.started = cfg
	n.grace.Store(int64(cfg.gracePeriod()))
	methods := shim.NewMethods()
	m, err := metrics.New(reg, methods)
	if err != nil {
		return nil, nil, err
	}
	opts := []shim.Option{shim.WithMethods(methods), interceptors.Chain(log, methods, m)}
	if len(cfg.Handlers) > 0 {
		hm, err := routing.NewMetrics(reg)
		if err != nil {
			return nil, nil, err
		}
		router := routing.NewRouter(cfg.Handlers, cfg.Routing)
		n.inventory = routing.NewInventory(log, hm, router.Known(), routing.DefaultResyncInterval)
		n.runner = routing.NewSandboxRunner(router, n.inventory, hm, log)
	}
	if cc := cfg.Images.Credentials; cc != nil {
		provider, err := credentials.NewProvider(cc, log)
		if err != nil {
			return nil, nil, err
		}
		cm, err := credentials.NewMetrics(reg, n.labels)
		if err != nil {
			return nil, nil, err
		}
		n.injector = credentials.NewInjector(provider, cc.Policy, cm, log)
		if ac := cfg.Images.Access; ac != nil {
			if err := n.newAccess(ac, cc.Policy, reg, checkOnly); err != nil {
				return nil, nil, err
			}
		}
	}
	if pc := cfg.Images.Pulls; pc != nil {
		pm, err := pulls.NewMetrics(reg, n.labels)
		if err != nil {
			return nil, nil, err
		}
		n.sched = pulls.NewScheduler(pc.Limits(), pc.Dedup(), pm)
		n.puller = pulls.NewPuller(log, n.sched, pc.PriorityNamespaces)
		n.puller.SetKeyAnnotations(pc.KeyAnnotations)
	}
	if nc := cfg.NRI; nc != nil {
		if err := nc.CheckFiles(); err != nil {
			return nil, nil, err
		}
	}
	if nc := cfg.NRI; nc != nil && !checkOnly {
		pm, err := plugins.NewMetrics(reg)
		if err != nil {
			return nil, nil, err
		}
		if n.plugins, err = plugins.New(nc, log, pm); err != nil {
			return nil, nil, err
		}
	}
	opts = append(opts, shim.WithHandlers(n.handlers()...))
	return n, opts, nil
}

// newAccess opens the image access record and builds the feature. A
// corrupt record is set aside and reported, and the node is then
// conservative: images without a record are refused where their registry is
// restricted, since the proofs that would have allowed them are lost.
func (n *node) newAccess(ac *access.Config, policy credentials.Policy, reg prometheus.Registerer, checkOnly bool) error {
	if checkOnly {
		return access.CheckDir(ac.Dir())
	}
	store, err := access.Open(ac.Dir(), access.Limits{})
	var corrupt *access.CorruptError
	switch {
	case errors.As(err, &corrupt):
		n.lostState = true
	case err != nil:
		return fmt.Errorf("images.access.stateDir: %w", err)
	}
	am, merr := access.NewMetrics(reg, n.labels, func() float64 { return float64(store.Len()) })
	if merr != nil {
		return merr
	}
	if corrupt != nil {
		am.StateLost()
		n.log.WithError(corrupt).Error("image access: the record on disk was corrupt and is set aside; until images are pulled again through crishim, images without a record are refused where images.credentials.policy restricts their registry")
	}
	n.access = access.New(store, am, n.log)
	n.access.Set(ac, policy, n.lostState)
	return nil
}

// start begins the background work that needs the server's upstream.
func (n *node) start(srv *shim.Server) error {
	if n.plugins != nil {
		if err := n.plugins.Start(runtimeapi.NewRuntimeServiceClient(srv.ClientConn(shim.RuntimeUpstream))); err != nil {
			return err
		}
	}
	if n.inventory != nil {
		n.inventory.Start(runtimeapi.NewRuntimeServiceClient(srv.ClientConn(shim.RuntimeUpstream)))
	}
	if n.access != nil {
		n.access.Start(runtimeapi.NewImageServiceClient(srv.ClientConn(shim.ImageUpstream)), access.DefaultResyncInterval)
	}
	return nil
}

// drain is the start of shutdown: queued pulls leave at once.
func (n *node) drain() {
	if n.sched != nil {
		n.sched.Drain()
	}
}

func (n *node) close() {
	if n.plugins != nil {
		n.plugins.Stop()
	}
	if n.access != nil {
		n.access.Stop()
	}
	if n.inventory != nil {
		n.inventory.Stop()
	}
	if n.sched != nil {
		n.sched.Close()
	}
}

func (n *node) gracePeriod() time.Duration { return time.Duration(n.grace.Load()) }

// restartOnly lists the settings of next that differ from the running ones
// but cannot change without a restart.
func (n *node) restartOnly(next *Config) []string {
	cur := n.started
	if cur == nil {
		cur = n.cfg.Load()
	}
	var keys []string
	diff := func(key string, changed bool) {
		if changed {
			keys = append(keys, key)
		}
	}
	diff("listen.path", cur.Listen.Path != next.Listen.Path)
	diff("listen.mode", cur.Listen.Mode != next.Listen.Mode)
	// The listener and the gRPC server's HTTP/2 settings are made at start.
	diff("listen.maxConnections", cur.Listen.MaxConnections != next.Listen.MaxConnections)
	diff("listen.maxConcurrentStreams", cur.Listen.MaxConcurrentStreams != next.Listen.MaxConcurrentStreams)
	diff("runtimeEndpoint", cur.RuntimeEndpoint != next.RuntimeEndpoint)
	diff("imageEndpoint", cur.ImageEndpoint != next.ImageEndpoint)
	diff("maxMessageSize", cur.shimConfig().MaxMessageSize != next.shimConfig().MaxMessageSize)
	diff("metrics.address", cur.metricsAddress() != next.metricsAddress())
	diff("metrics.pprof", cur.Metrics.Pprof != next.Metrics.Pprof)
	diff("metrics.maxRegistryLabels", cur.Metrics.MaxRegistryLabels != next.Metrics.MaxRegistryLabels)
	// Intercepting a method or not is fixed when the server starts.
	diff("handlers (turning routing on or off)", (n.runner == nil) != (len(next.Handlers) == 0))
	diff("images.pulls (turning scheduling on or off)", (n.sched == nil) != (next.Images.Pulls == nil))
	diff("images.credentials (turning injection on or off)", (n.injector == nil) != (next.Images.Credentials == nil))
	diff("images.access (turning it on or off; enforce can change live)", (n.access == nil) != (next.Images.Access == nil || next.Images.Credentials == nil))
	diff("nri (turning plugins on or off)", (n.plugins == nil) != (next.NRI == nil))
	if cur.NRI != nil && next.NRI != nil {
		keys = append(keys, cur.NRI.RestartOnly(next.NRI)...)
	}
	diff("images.access.stateDir", cur.Images.Access != nil && next.Images.Access != nil && cur.Images.Access.Dir() != next.Images.Access.Dir())
	return keys
}

// prepare builds what a reload to next needs and can fail (credential
// sources), before anything changes.
func (n *node) prepare(next *Config) (apply func(), err error) {
	var provider credentials.Provider
	if cc := next.Images.Credentials; cc != nil && n.injector != nil {
		if provider, err = credentials.NewProvider(cc, n.log); err != nil {
			return nil, err
		}
	}
	return func() {
		configureLogger(n.log, next.Log)
		n.grace.Store(int64(next.gracePeriod()))
		if n.runner != nil && len(next.Handlers) > 0 {
			n.runner.SetRouter(routing.NewRouter(next.Handlers, next.Routing))
		}
		if pc := next.Images.Pulls; pc != nil && n.sched != nil {
			n.sched.SetLimits(pc.Limits())
			n.sched.SetDedup(pc.Dedup())
			n.puller.SetPriority(pc.PriorityNamespaces)
			n.puller.SetKeyAnnotations(pc.KeyAnnotations)
		}
		if provider != nil {
			n.injector.Set(provider, next.Images.Credentials.Policy)
		}
		if ac := next.Images.Access; ac != nil && n.access != nil {
			n.access.Set(ac, next.Images.Credentials.Policy, n.lostState)
		}
		if next.NRI != nil && n.plugins != nil {
			n.plugins.Set(next.NRI)
		}
		n.cfg.Store(next)
	}, nil
}
