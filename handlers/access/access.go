package access

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/shim"
)

// Access is the image access feature: it records successful pulls
// (PullImage) and checks CreateContainer against the record.
type Access struct {
	store   *Store
	metrics *Metrics
	log     logrus.FieldLogger
	mode    atomic.Pointer[mode]

	// images resolves image references to IDs (ImageStatus) for
	// CreateContainer calls that name an image by reference, as crictl
	// does; nil until Start.
	images   runtimeapi.ImageServiceClient
	resolved resolveCache

	stop func() // ends the resync loop
}

// mode is what a reload changes; it is swapped whole.
type mode struct {
	enforce     bool
	denyUnknown bool
	policy      credentials.Policy // canonical
	// conservative is set when the record on disk was corrupt at start:
	// images without a record are then refused as with denyUnknown, since
	// the record that proved them is gone.
	conservative bool
}

// New returns the feature over store. m may be nil (nothing counted), log
// nil (logrus's standard logger). Call Set before serving, Start once the
// runtime's image service can be called.
func New(store *Store, m *Metrics, log logrus.FieldLogger) *Access {
	if log == nil {
		log = logrus.StandardLogger()
	}
	a := &Access{store: store, metrics: m, log: log, resolved: resolveCache{entries: map[string]resolved{}}}
	a.mode.Store(&mode{enforce: true})
	return a
}

// Set applies the configuration and the credentials policy (on start and on
// reload); calls already being checked finish with the old ones.
// conservative says the record was lost (see Open's CorruptError).
func (a *Access) Set(cfg *Config, policy credentials.Policy, conservative bool) {
	a.mode.Store(&mode{enforce: cfg.Enforcing(), denyUnknown: cfg.DenyUnknown(), policy: policy.Canonical(), conservative: conservative})
}

// Handlers returns the typed handlers to register with the shim: PullImage
// (recording; it must come before the credentials and pull features, so
// that it sees the final result of every attempt) and CreateContainer.
func (a *Access) Handlers() []shim.Handler {
	return []shim.Handler{
		shim.Intercept(runtimeapi.ImageService_PullImage_FullMethodName, a.PullImage),
		shim.Intercept(runtimeapi.RuntimeService_CreateContainer_FullMethodName, a.CreateContainer),
	}
}

// Start begins pruning the record of images the runtime no longer has, and
// lets CreateContainer resolve references through images.
func (a *Access) Start(images runtimeapi.ImageServiceClient, interval time.Duration) {
	a.images = images
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.resyncLoop(ctx, interval)
	}()
	a.stop = func() { cancel(); <-done }
}

// Stop ends what Start began.
func (a *Access) Stop() {
	if a.stop != nil {
		a.stop()
	}
}

// imageKey is the form image IDs are recorded and compared in: without the
// "sha256:" prefix, as runtimes report IDs with or without it.
func imageKey(id string) string { return strings.TrimPrefix(id, "sha256:") }

// isImageID reports whether image names an image by its ID, as the kubelet
// does in CreateContainer ("sha256:<64 hex>" or the bare hex).
func isImageID(image string) bool {
	h := imageKey(image)
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// resolveCache remembers which ID a reference named recently: crictl and
// other clients create containers by reference, and each would otherwise
// cost an ImageStatus call. Entries live resolveTTL, since a tag can move
// to another image with the next pull (which refreshes the entry).
type resolveCache struct {
	mu      sync.Mutex
	entries map[string]resolved
}

type resolved struct {
	id string
	at time.Time
}

const (
	resolveTTL        = time.Minute
	resolveCacheLimit = 4096
)

func (c *resolveCache) get(ref string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[ref]
	if !ok || time.Since(e.at) > resolveTTL {
		return "", false
	}
	return e.id, true
}

func (c *resolveCache) put(ref, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= resolveCacheLimit {
		clear(c.entries) // bounded; refilled by the next calls
	}
	c.entries[ref] = resolved{id: id, at: time.Now()}
}
