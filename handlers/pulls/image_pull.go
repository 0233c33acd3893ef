package pulls

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// Puller intercepts PullImage to schedule the pull (serial or parallel,
// per-registry limits, priority namespaces) and to merge identical
// concurrent pulls that carry the same credentials. It runs after
// credential injection (handlers/credentials), so the credentials it keys
// pulls by are the ones the runtime gets.
type Puller struct {
	sched    *Scheduler
	priority atomic.Pointer[[]string]
	keyAnns  atomic.Pointer[[]string] // image annotation globs that keep pulls apart
	log      logrus.FieldLogger
	salt     []byte
}

// NewPuller returns the PullImage feature over sched; pulls for pods in
// priorityNamespaces (exact names) go before all others. A nil log logs to
// logrus's standard logger; a nil scheduler schedules with no limits.
func NewPuller(log logrus.FieldLogger, sched *Scheduler, priorityNamespaces []string) *Puller {
	salt := make([]byte, 32)
	_, _ = rand.Read(salt)
	if log == nil {
		log = logrus.StandardLogger()
	}
	if sched == nil {
		sched = NewScheduler(Limits{MaxParallel: unlimited}, true, nil)
	}
	p := &Puller{log: log, salt: salt, sched: sched}
	p.SetPriority(priorityNamespaces)
	return p
}

// SetPriority changes the priority namespaces for pulls that start later.
func (p *Puller) SetPriority(namespaces []string) { p.priority.Store(&namespaces) }

// SetKeyAnnotations changes which image annotations keep otherwise
// identical pulls apart (path.Match globs of annotation keys), for pulls
// that start later. None by default: the kubelet copies every annotation of
// the pod into the PullImage request's image spec
// (pkg/kubelet/images/image_manager.go), so pods that share an image always
// differ there (kubernetes.io/config.hash for static pods, and whatever
// their owners annotate), and keying on them would never merge two pods'
// pulls.
func (p *Puller) SetKeyAnnotations(globs []string) { p.keyAnns.Store(&globs) }

// Handler returns the typed handler to register with the shim.
func (p *Puller) Handler() shim.Handler {
	return shim.Intercept(runtimeapi.ImageService_PullImage_FullMethodName, p.PullImage)
}

// pullNext is the next PullImage: the runtime's.
type pullNext = shim.Next[*runtimeapi.PullImageRequest, *runtimeapi.PullImageResponse]

// PullImage schedules one pull, or joins an identical one in flight.
func (p *Puller) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest, next pullNext) (*runtimeapi.PullImageResponse, error) {
	image := req.GetImage().GetImage()
	if image == "" {
		return nil, status.Error(codes.InvalidArgument, "crishim: PullImage needs image.image, the reference to pull")
	}
	ref := registry.Parse(image)
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	start := time.Now()
	key := Key{
		Image:       ref.Name,
		Handler:     req.GetImage().GetRuntimeHandler(),
		Annotations: p.annotationsKey(req.GetImage().GetAnnotations()),
		Credentials: p.fingerprint(req.GetAuth()),
	}
	md, _ := metadata.FromIncomingContext(ctx)
	// The upstream call carries the first caller's request metadata but
	// runs on the scheduler's context, so it outlives that caller when
	// others still wait for it.
	fnCtx := func(base context.Context) context.Context { return metadata.NewIncomingContext(base, md.Copy()) }
	var priority []string
	if pp := p.priority.Load(); pp != nil {
		priority = *pp
	}
	r := p.sched.Pull(ctx, key, ref.Registry, slices.Contains(priority, ns), fnCtx, func(ctx context.Context) (proto.Message, error) {
		return next(ctx, req)
	})
	p.logPull(logrus.Fields{"image": image, "registry": ref.Registry, "namespace": ns, "credentials": credentialsField(req.GetAuth())}, start, r)
	if r.Err != nil {
		return nil, r.Err
	}
	return r.Response.(*runtimeapi.PullImageResponse), nil
}

// credentialsField says whether a pull carried credentials, for logs; never
// which.
func credentialsField(a *runtimeapi.AuthConfig) string {
	if a == nil || proto.Equal(a, &runtimeapi.AuthConfig{}) {
		return "none"
	}
	return "set"
}

func (p *Puller) logPull(fields logrus.Fields, start time.Time, r Result) {
	fields["shared"] = r.Shared
	fields["wait"] = r.Wait.Round(time.Millisecond).String()
	fields["duration"] = time.Since(start).Round(time.Millisecond).String()
	fields["result"] = status.Code(r.Err).String()
	if r.Err != nil {
		p.log.WithFields(fields).WithField("error", status.Convert(r.Err).Message()).Info("image pull failed")
		return
	}
	p.log.WithFields(fields).Info("image pulled")
}

// fingerprint identifies a credential without revealing it: an HMAC under a
// per-process random key, so even the fingerprint cannot be used to test
// password guesses. No credentials fingerprint as "".
func (p *Puller) fingerprint(a *runtimeapi.AuthConfig) string {
	if a == nil || proto.Equal(a, &runtimeapi.AuthConfig{}) {
		return ""
	}
	h := hmac.New(sha256.New, p.salt)
	for _, f := range []string{a.GetUsername(), a.GetPassword(), a.GetAuth(), a.GetServerAddress(), a.GetIdentityToken(), a.GetRegistryToken()} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// annotationsKey is a stable text of the image annotations that keep pulls
// apart (SetKeyAnnotations): pulls that ask for different things
// (platforms, snapshotter hints an operator names) are not merged.
func (p *Puller) annotationsKey(a map[string]string) string {
	var globs []string
	if g := p.keyAnns.Load(); g != nil {
		globs = *g
	}
	if len(a) == 0 || len(globs) == 0 {
		return ""
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		if slices.ContainsFunc(globs, func(g string) bool { ok, _ := path.Match(g, k); return ok }) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(a[k])
		b.WriteByte(0)
	}
	return b.String()
}
