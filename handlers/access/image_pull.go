package access

import (
	"context"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// PullImage records a successful pull as proof that the pod's namespace may
// have the image: through crishim a pull succeeds only with the pod's own
// credentials, with node credentials the policy grants the namespace, or
// with none (a public image). Pulls without a pod (crictl pull without a
// pod config) prove nothing and are not recorded. A record that cannot be
// written is logged and counted; the pull still succeeds.
func (a *Access) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest,
	next shim.Next[*runtimeapi.PullImageRequest, *runtimeapi.PullImageResponse]) (*runtimeapi.PullImageResponse, error) {
	resp, err := next(ctx, req)
	if err != nil {
		return resp, err
	}
	image, ref := req.GetImage().GetImage(), resp.GetImageRef()
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	if image == "" || ref == "" {
		return resp, nil
	}
	// Runtimes answer with the image ID (containerd) or a reference to it;
	// the record is by ID, which is what the kubelet's CreateContainer
	// names and what ImageStatus reports. Resolved afresh: the pull may have
	// moved a tag.
	id, rerr := a.resolveFresh(ctx, ref)
	if rerr != nil {
		a.metrics.failed("resolve")
		a.log.WithFields(logrus.Fields{"image": image, "image_ref": ref, "namespace": ns}).WithError(rerr).
			Warn("image access: could not resolve a pulled image to its ID; the pull is not recorded")
		return resp, nil
	}
	a.resolved.put(image, id) // every pull, with a pod or not: the tag may have moved
	if ns == "" {
		return resp, nil
	}
	// The pod's own credentials arrive with the request; anything else
	// (node credentials injected after this feature, or none) holds only
	// while the policy grants them to the namespace.
	own := credentials.HasAuth(req.GetAuth())
	reg := registry.Parse(image).Registry
	changed, werr := a.store.Record(imageKey(id), reg, ns, own)
	fields := logrus.Fields{"image": image, "image_id": id, "registry": reg, "namespace": ns}
	switch {
	case werr != nil:
		a.metrics.failed("write")
		a.log.WithFields(fields).WithError(werr).Error("image access: could not record the pull; the namespace's access holds until crishim restarts")
	case changed:
		a.log.WithFields(fields).Debug("image access: namespace proved access to the image")
	}
	return resp, nil
}
