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
	// The reference the pod author wrote names the image in messages and,
	// for images without a record, its registry.
	named := userImage
	if named == "" && !isImageID(image) {
		named = image
	}
	refRegistry := ""
	if named != "" {
		if r := registry.Parse(named).Registry; r != registry.Invalid {
			refRegistry = r
		}
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
	registries, namespaces, known := a.store.Lookup(imageKey(id))
	if !known {
		deny := (m.denyUnknown || m.conservative) && (refRegistry == "" || m.policy.Restricts(refRegistry))
		a.metrics.decision("unknown_image", refRegistry)
		if deny {
			a.log.WithFields(fields).WithField("registry", refRegistry).Info("image access: denied an image crishim has no record of (images.access.unknownImages: deny)")
			return nil, status.Error(codes.PermissionDenied, deniedMessage(displayName(named, image), id, refRegistry, ns, true))
		}
		a.log.WithFields(fields).WithField("registry", refRegistry).Info("image access: allowed an image crishim has no record of (pulled before crishim or by another client; images.access.unknownImages: allow)")
		return next(ctx, req)
	}
	// One image ID can be pulled under names of several registries: it is
	// restricted only if every registry it came from is. If one of them
	// does not restrict its node credentials, the same bytes are there for
	// every namespace anyway.
	reg, restricted := restrictedRegistry(m.policy, registries)
	if !restricted || slices.Contains(namespaces, ns) {
		a.metrics.decision("allowed", reg)
		return next(ctx, req)
	}
	a.metrics.decision("denied", reg)
	a.log.WithFields(fields).WithField("registry", reg).Info("image access: denied: the namespace has not proven access to the image")
	return nil, status.Error(codes.PermissionDenied, deniedMessage(displayName(named, image), id, reg, ns, false))
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
// runtime's ImageStatus answer for the reference (cached).
func (a *Access) resolve(ctx context.Context, image string) (string, error) {
	if isImageID(image) {
		return image, nil
	}
	if id, ok := a.resolved.get(image); ok {
		return id, nil
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
