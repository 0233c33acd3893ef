package access

import (
	"context"
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// CreateContainer refuses, with PermissionDenied and before the runtime
// sees the call, a container whose image the pod's namespace has not proven
// access to, where the image's registry is restricted by
// images.credentials.policy. Everything else goes on to the runtime
// unchanged.
func (a *Access) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest,
	next shim.Next[*runtimeapi.CreateContainerRequest, *runtimeapi.CreateContainerResponse]) (*runtimeapi.CreateContainerResponse, error) {
	m := a.mode.Load()
	if !m.enforce {
		return next(ctx, req)
	}
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	spec := req.GetConfig().GetImage()
	image, userImage := spec.GetImage(), spec.GetUserSpecifiedImage()
	if image == "" {
		return next(ctx, req) // the runtime refuses it in its own words
	}
	// The reference the pod author wrote names the image in messages only:
	// what an image is and where it came from is the runtime's to say, since
	// a pod may name an image by its ID ("sha256:…"), which the reference
	// grammar would read as a Docker Hub image.
	named := userImage
	if named == "" && !isImageID(image) {
		named = image
	}
	id, err := a.resolve(ctx, image)
	if err != nil {
		// Not on the node (the runtime will say so) or the runtime is
		// away: nothing crishim could allow or refuse.
		a.metrics.failed("resolve")
		a.log.WithFields(logrus.Fields{"image": image, "namespace": ns}).WithError(err).Debug("image access: image not resolved; the runtime decides")
		return next(ctx, req)
	}
	fields := logrus.Fields{"image": displayName(named, image), "image_id": id, "namespace": ns, "pod": req.GetSandboxConfig().GetMetadata().GetName()}
	registries, namespaces, own, known := a.store.Lookup(imageKey(id))
	if !known {
		// No record: the registries the runtime knows the image under
		// (its tags and digests) decide whether it is restricted.
		registries = a.runtimeRegistries(ctx, id)
		reg, restricted := restrictedRegistry(m.policy, registries)
		// Images the runtime names under no registry cannot be told apart
		// from restricted ones.
		restricted = restricted || len(registries) == 0
		conservative := m.conservative || a.store.Evictions() > 0
		deny := (m.denyUnknown || conservative) && restricted
		a.metrics.decision("unknown_image", reg)
		if deny {
			a.log.WithFields(fields).WithField("registry", reg).Info("image access: denied an image crishim has no record of (images.access.unknownImages: deny, or the record lost entries)")
			return nil, status.Error(codes.PermissionDenied, deniedMessage(displayName(named, image), id, reg, ns, true))
		}
		a.log.WithFields(fields).WithField("registry", reg).Info("image access: allowed an image crishim has no record of (pulled before crishim or by another client; images.access.unknownImages: allow)")
		return next(ctx, req)
	}
	// One image ID can be pulled under names of several registries: it is
	// restricted only if every registry it came from is. If one of them
	// does not restrict its node credentials, the same bytes are there for
	// every namespace anyway.
	reg, restricted := restrictedRegistry(m.policy, registries)
	if !restricted || proven(m.policy, registries, namespaces, own, ns) {
		a.metrics.decision("allowed", reg)
		return next(ctx, req)
	}
	a.metrics.decision("denied", reg)
	a.log.WithFields(fields).WithField("registry", reg).Info("image access: denied: the namespace has not proven access to the image")
	return nil, status.Error(codes.PermissionDenied, deniedMessage(displayName(named, image), id, reg, ns, false))
}

// proven reports whether ns proved access to a restricted image: with its
// own credentials (which the policy does not govern), or with node
// credentials (or none) that the policy still grants it for one of the
// image's registries. A namespace taken out of a policy rule thus loses the
// access its node-credential pulls gave it, at the next reload.
func proven(p credentials.Policy, registries, namespaces, own []string, ns string) bool {
	if slices.Contains(own, ns) {
		return true
	}
	if !slices.Contains(namespaces, ns) {
		return false
	}
	return slices.ContainsFunc(registries, func(r string) bool { return p.Allows(r, ns) })
}

// runtimeRegistries returns the canonical registries the runtime knows an
// image under (its tags and digests), or nil when it cannot say.
func (a *Access) runtimeRegistries(ctx context.Context, id string) []string {
	if a.images == nil {
		return nil
	}
	resp, err := a.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: id}})
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, ref := range append(resp.GetImage().GetRepoTags(), resp.GetImage().GetRepoDigests()...) {
		if r := registry.Parse(ref).Registry; r != registry.Invalid && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// restrictedRegistry reports whether every registry of an image is
// restricted by the policy, and names the registry to report: the first
// restricted one, or the first unrestricted one.
func restrictedRegistry(p credentials.Policy, registries []string) (string, bool) {
	for _, r := range registries {
		if !p.Restricts(r) {
			return r, false
		}
	}
	if len(registries) == 0 {
		return "", false
	}
	return registries[0], true
}

// resolve returns the ID of the image a CreateContainer names: the image
// itself when it is an ID (the kubelet sends the ID it resolved), else the
// runtime's ImageStatus answer for the reference (cached; every pull
// refreshes the entry of its reference).
func (a *Access) resolve(ctx context.Context, image string) (string, error) {
	if id, ok := a.resolved.get(image); ok && !isImageID(image) {
		return id, nil
	}
	return a.resolveFresh(ctx, image)
}

// resolveFresh is resolve without the cache.
func (a *Access) resolveFresh(ctx context.Context, image string) (string, error) {
	if isImageID(image) {
		return image, nil
	}
	if a.images == nil {
		return "", fmt.Errorf("the runtime's image service is not connected yet")
	}
	resp, err := a.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return "", err
	}
	id := resp.GetImage().GetId()
	if id == "" {
		return "", fmt.Errorf("image %q is not on the node", image)
	}
	a.resolved.put(image, id)
	return id, nil
}

// displayName is how messages name the image: as the pod spec wrote it,
// else by its ID.
func displayName(named, image string) string {
	if named != "" {
		return named
	}
	return image
}

// deniedMessage says what was refused, on which image, registry and
// namespace, and what to do.
func deniedMessage(image, id, reg, ns string, unknown bool) string {
	why := fmt.Sprintf("namespace %q has not pulled it through crishim with credentials it may use", ns)
	if unknown {
		why = "crishim has no record of who may use it (images.access.unknownImages: deny)"
	}
	regText := reg
	if regText == "" {
		regText = "its registry"
	}
	return fmt.Sprintf("crishim: image access denied: image %q (%s, registry %s) is restricted by images.credentials.policy and %s; "+
		"give the pod an imagePullSecret for %s and set imagePullPolicy: Always so that the pull proves access, "+
		"or add namespace %q to the policy rule for %s", image, id, regText, why, regText, ns, regText)
}
