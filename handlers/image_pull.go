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
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// ImagePuller intercepts PullImage: it schedules the pull (serial or
// parallel, per-registry limits, priority namespaces) and merges identical
// concurrent pulls that carry the same credentials.
type ImagePuller struct {
	sched    *PullScheduler
	priority []string
	log      logrus.FieldLogger
	salt     []byte
}

// NewImagePuller returns the PullImage handler. Pulls for pods in priority
// namespaces (exact names) go before all others.
func NewImagePuller(sched *PullScheduler, priorityNamespaces []string, log logrus.FieldLogger) *ImagePuller {
	salt := make([]byte, 32)
	_, _ = rand.Read(salt)
	return &ImagePuller{sched: sched, priority: priorityNamespaces, log: log, salt: salt}
}

// Handler returns the typed handler to register with the shim.
func (p *ImagePuller) Handler() shim.Handler {
	return shim.Intercept(runtimeapi.ImageService_PullImage_FullMethodName, p.PullImage)
}

// PullImage schedules one pull.
func (p *ImagePuller) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest,
	next shim.Next[*runtimeapi.PullImageRequest, *runtimeapi.PullImageResponse]) (*runtimeapi.PullImageResponse, error) {
	image := req.GetImage().GetImage()
	if image == "" {
		return nil, status.Error(codes.InvalidArgument, "crishim: PullImage needs image.image, the reference to pull")
	}
	ref := ParseImage(image)
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	key := PullKey{
		Image:       ref.Name,
		Handler:     req.GetImage().GetRuntimeHandler(),
		Annotations: annotationsKey(req.GetImage().GetAnnotations()),
		Credentials: p.fingerprint(req.GetAuth()),
	}
	start := time.Now()
	md, _ := metadata.FromIncomingContext(ctx)
	// The upstream call carries the first caller's request metadata but
	// runs on the scheduler's context, so it outlives that caller when
	// others still wait for it.
	fnCtx := func(base context.Context) context.Context { return metadata.NewIncomingContext(base, md.Copy()) }
	r := p.sched.Pull(ctx, key, ref.Registry, slices.Contains(p.priority, ns), fnCtx, func(ctx context.Context) (proto.Message, error) {
		return next(ctx, req)
	})
	fields := logrus.Fields{
		"image": image, "registry": ref.Registry, "namespace": ns, "shared": r.Shared,
		"wait": r.Wait.Round(time.Millisecond).String(), "duration": time.Since(start).Round(time.Millisecond).String(),
		"result": status.Code(r.Err).String(),
	}
	if r.Err != nil {
		p.log.WithFields(fields).WithField("error", status.Convert(r.Err).Message()).Info("image pull failed")
		return nil, r.Err
	}
	p.log.WithFields(fields).Info("image pulled")
	return r.Response.(*runtimeapi.PullImageResponse), nil
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
