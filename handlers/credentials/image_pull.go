package credentials

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// Injector intercepts PullImage to inject node credentials (docker config
// files, credential-provider plugins) into pulls that carry none, for the
// namespaces the policy allows, trying each matching credential in turn as
// the kubelet does. It acts before pull scheduling (handlers/pulls), so each
// attempt is scheduled and de-duplicated with the credentials it carries.
type Injector struct {
	state   atomic.Pointer[injectorState] // nil: inject nothing
	metrics *Metrics
	log     logrus.FieldLogger
}

// injectorState is what injection uses; a reload swaps it whole.
type injectorState struct {
	provider Provider
	policy   Policy
}

// NewInjector returns the PullImage feature injecting credentials from
// provider within policy. A nil provider injects nothing, nil metrics count
// nothing, a nil log logs to logrus's standard logger.
func NewInjector(provider Provider, policy Policy, m *Metrics, log logrus.FieldLogger) *Injector {
	if log == nil {
		log = logrus.StandardLogger()
	}
	i := &Injector{metrics: m, log: log}
	i.Set(provider, policy)
	return i
}

// Set changes the credential sources and policy for pulls that start later
// (on reload). The policy's registry patterns are canonicalized here, once.
func (i *Injector) Set(provider Provider, policy Policy) {
	if provider == nil {
		i.state.Store(nil)
		return
	}
	i.state.Store(&injectorState{provider: provider, policy: policy.Canonical()})
}

// Handler returns the typed handler to register with the shim.
func (i *Injector) Handler() shim.Handler {
	return shim.Intercept(runtimeapi.ImageService_PullImage_FullMethodName, i.PullImage)
}

// pullNext is the next PullImage: pull scheduling's, or the runtime's.
type pullNext = shim.Next[*runtimeapi.PullImageRequest, *runtimeapi.PullImageResponse]

// PullImage injects node credentials where the request carries none and the
// policy allows, and calls next once per credential until one works.
func (i *Injector) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest, next pullNext) (*runtimeapi.PullImageResponse, error) {
	image := req.GetImage().GetImage()
	if image == "" {
		return nil, status.Error(codes.InvalidArgument, "crishim: PullImage needs image.image, the reference to pull")
	}
	ref := registry.Parse(image)
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	st := i.state.Load()
	if st == nil || HasAuth(req.GetAuth()) {
		// The pod's own pull secret (or no injection configured) wins.
		source := "none"
		if HasAuth(req.GetAuth()) {
			source = "request"
		}
		resp, err := next(ctx, req)
		i.count(ref.Registry, source, err)
		return resp, err
	}
	creds := st.provider.Lookup(ctx, image)
	if len(creds) > 0 && !st.policy.Allows(ref.Registry, ns) {
		i.metrics.count(ref.Registry, "policy", "denied")
		i.log.WithFields(logrus.Fields{"image": image, "registry": ref.Registry, "namespace": ns, "credentials": len(creds)}).
			Info("node credentials withheld by images.credentials.policy; pulling without them")
		creds = nil
	}
	if len(creds) == 0 {
		resp, err := next(ctx, req)
		i.count(ref.Registry, "none", err)
		return resp, err
	}
	// The kubelet's order: each matching credential in turn until one works.
	var lastErr error
	for n, c := range creds {
		r := proto.Clone(req).(*runtimeapi.PullImageRequest)
		// server_address stays empty: containerd ignores credentials whose
		// server_address host differs from the registry's.
		r.Auth = &runtimeapi.AuthConfig{Username: c.Username, Password: c.Password}
		i.log.WithFields(logrus.Fields{"image": image, "registry": ref.Registry, "namespace": ns, "source": c.Source, "pattern": c.Pattern}).
			Debug("pulling with a node credential")
		resp, err := next(ctx, r)
		i.count(ref.Registry, c.Source, err)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !isAuthFailure(err) || ctx.Err() != nil {
			break
		}
		if n < len(creds)-1 {
			i.log.WithFields(logrus.Fields{"image": image, "source": c.Source, "pattern": c.Pattern}).
				Info("registry refused a node credential; trying the next one")
		}
	}
	return nil, lastErr // the runtime's last error, unchanged
}

// count adds one attempt by its outcome.
func (i *Injector) count(reg, source string, err error) {
	result := "success"
	switch {
	case err == nil:
	case isAuthFailure(err):
		result = "auth_failed"
	default:
		result = "error"
	}
	i.metrics.count(reg, source, result)
}

// HasAuth reports whether a pull carries credentials of its own (the pod's
// imagePullSecret, as the kubelet passes it).
func HasAuth(a *runtimeapi.AuthConfig) bool {
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
