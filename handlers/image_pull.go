package handlers

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// ImagePuller intercepts PullImage: it injects node credentials where the
// request carries none (docker config files, credential-provider plugins,
// within the namespace policy), schedules the pull (serial or parallel,
// per-registry limits, priority namespaces) and merges identical concurrent
// pulls that carry the same credentials.
type ImagePuller struct {
	sched    *PullScheduler // nil: no scheduling, pulls go straight through
	priority atomic.Pointer[[]string]
	creds    atomic.Pointer[credentialState] // nil: no injection
	metrics  *CredentialMetrics
	log      logrus.FieldLogger
	salt     []byte
}

// credentialState is what injection uses; a reload swaps it whole.
type credentialState struct {
	provider credentials.Provider
	policy   CredentialPolicy
}

// PullerOption configures an ImagePuller.
type PullerOption func(*ImagePuller)

// WithScheduler schedules pulls; pulls for pods in priorityNamespaces
// (exact names) go before all others.
func WithScheduler(s *PullScheduler, priorityNamespaces []string) PullerOption {
	return func(p *ImagePuller) {
		p.sched = s
		p.SetPriority(priorityNamespaces)
	}
}

// SetPriority changes the priority namespaces for pulls that start later.
func (p *ImagePuller) SetPriority(namespaces []string) { p.priority.Store(&namespaces) }

// SetCredentials changes the credential sources and policy for pulls that
// start later (on reload).
func (p *ImagePuller) SetCredentials(provider credentials.Provider, policy CredentialPolicy) {
	if provider == nil {
		p.creds.Store(nil)
		return
	}
	p.creds.Store(&credentialState{provider: provider, policy: policy.canonical()})
}

// WithCredentials injects node credentials from provider into pulls that
// carry none, for the namespaces policy allows. A nil provider injects
// nothing; nil metrics count nothing.
func WithCredentials(provider credentials.Provider, policy CredentialPolicy, m *CredentialMetrics) PullerOption {
	return func(p *ImagePuller) {
		p.metrics = m
		p.SetCredentials(provider, policy)
	}
}

// NewImagePuller returns the PullImage handler. A nil log logs to logrus's
// standard logger.
func NewImagePuller(log logrus.FieldLogger, opts ...PullerOption) *ImagePuller {
	salt := make([]byte, 32)
	_, _ = rand.Read(salt)
	if log == nil {
		log = logrus.StandardLogger()
	}
	p := &ImagePuller{log: log, salt: salt}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Handler returns the typed handler to register with the shim.
func (p *ImagePuller) Handler() shim.Handler {
	return shim.Intercept(runtimeapi.ImageService_PullImage_FullMethodName, p.PullImage)
}

// pullNext is the upstream PullImage.
type pullNext = shim.Next[*runtimeapi.PullImageRequest, *runtimeapi.PullImageResponse]

// PullImage injects credentials and schedules one pull.
func (p *ImagePuller) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest, next pullNext) (*runtimeapi.PullImageResponse, error) {
	image := req.GetImage().GetImage()
	if image == "" {
		return nil, status.Error(codes.InvalidArgument, "crishim: PullImage needs image.image, the reference to pull")
	}
	ref := registry.Parse(image)
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	cs := p.creds.Load()
	if cs == nil || hasAuth(req.GetAuth()) {
		// The pod's own pull secret (or no injection configured) wins.
		source := "none"
		if hasAuth(req.GetAuth()) {
			source = "request"
		}
		resp, err := p.pull(ctx, req, ref, ns, source, next)
		p.countCredential(ref.Registry, source, err)
		return resp, err
	}
	creds := cs.provider.Lookup(ctx, image)
	if len(creds) > 0 && !cs.policy.Allows(ref.Registry, ns) {
		p.metrics.count(ref.Registry, "policy", "denied")
		p.log.WithFields(logrus.Fields{"image": image, "registry": ref.Registry, "namespace": ns, "credentials": len(creds)}).
			Info("node credentials withheld by images.credentials.policy; pulling without them")
		creds = nil
	}
	if len(creds) == 0 {
		resp, err := p.pull(ctx, req, ref, ns, "none", next)
		p.countCredential(ref.Registry, "none", err)
		return resp, err
	}
	// The kubelet's order: each matching credential in turn until one works.
	var lastErr error
	for i, c := range creds {
		r := proto.Clone(req).(*runtimeapi.PullImageRequest)
		// server_address stays empty: containerd ignores credentials whose
		// server_address host differs from the registry's.
		r.Auth = &runtimeapi.AuthConfig{Username: c.Username, Password: c.Password}
		resp, err := p.pull(ctx, r, ref, ns, c.Source, next)
		p.countCredential(ref.Registry, c.Source, err)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !isAuthFailure(err) || ctx.Err() != nil {
			break
		}
		if i < len(creds)-1 {
			p.log.WithFields(logrus.Fields{"image": image, "source": c.Source, "pattern": c.Pattern}).
				Info("registry refused a node credential; trying the next one")
		}
	}
	return nil, lastErr // the runtime's last error, unchanged
}

// pull runs one upstream pull, through the scheduler when there is one.
func (p *ImagePuller) pull(ctx context.Context, req *runtimeapi.PullImageRequest, ref registry.Ref, ns, source string, next pullNext) (*runtimeapi.PullImageResponse, error) {
	start := time.Now()
	fields := logrus.Fields{"image": req.GetImage().GetImage(), "registry": ref.Registry, "namespace": ns, "credentials": source}
	if p.sched == nil {
		resp, err := next(ctx, req)
		p.logPull(fields, start, PullResult{Err: err})
		return resp, err
	}
	key := PullKey{
		Image:       ref.Name,
		Handler:     req.GetImage().GetRuntimeHandler(),
		Annotations: annotationsKey(req.GetImage().GetAnnotations()),
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
	p.logPull(fields, start, r)
	if r.Err != nil {
		return nil, r.Err
	}
	return r.Response.(*runtimeapi.PullImageResponse), nil
}

func (p *ImagePuller) logPull(fields logrus.Fields, start time.Time, r PullResult) {
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

func (p *ImagePuller) countCredential(reg, source string, err error) {
	result := "success"
	switch {
	case err == nil:
	case isAuthFailure(err):
		result = "auth_failed"
	default:
		result = "error"
	}
	p.metrics.count(reg, source, result)
}

func hasAuth(a *runtimeapi.AuthConfig) bool {
	return a != nil && !proto.Equal(a, &runtimeapi.AuthConfig{})
}

// authFailureHints are how runtimes word a registry's refusal: containerd
// passes the registry's status line ("401 Unauthorized", "403 Forbidden"),
// CRI-O and registries their own text.
var authFailureHints = []string{
	"401 unauthorized", "403 forbidden", "unauthorized", "authentication required",
	"access denied", "denied: ", "may require authorization", "authorization failed",
}

// isAuthFailure reports whether a pull failed because the registry refused
// the credentials, the one failure another credential may cure.
func isAuthFailure(err error) bool {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	case codes.Canceled, codes.DeadlineExceeded, codes.OK:
		return false
	}
	msg := strings.ToLower(st.Message())
	return slices.ContainsFunc(authFailureHints, func(h string) bool { return strings.Contains(msg, h) })
}

// fingerprint identifies a credential without revealing it: an HMAC under a
// per-process random key, so even the fingerprint cannot be used to test
// password guesses. No credentials fingerprint as "".
func (p *ImagePuller) fingerprint(a *runtimeapi.AuthConfig) string {
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

// annotationsKey is a stable text of the image annotations: pulls that ask
// for different things (platforms, snapshotter hints) are not merged.
func annotationsKey(a map[string]string) string {
	if len(a) == 0 {
		return ""
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
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
