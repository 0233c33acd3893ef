// Package access is the image access feature: a pod may only run an image
// its namespace was allowed to pull.
//
// Why: credentials crishim injects (package credentials) are invisible to
// the kubelet, which records an image pulled with them as pulled without
// credentials; with imagePullPolicy IfNotPresent every pod on the node could
// then run it, whatever images.credentials.policy says, and the kubelet's
// own fix (KEP-2535) knows only the credentials it passed itself. crishim
// sees every PullImage and every CreateContainer with the pod's namespace,
// so it closes this for node credentials on every kubelet version.
//
// How: every successful PullImage through crishim proves that its namespace
// may have the image: the pull carried the pod's own credentials, node
// credentials the policy grants the namespace, or none (a public image).
// The record (store.go) keeps, per image ID, the registry and the namespaces
// that proved access, on disk. CreateContainer of a namespace without proof
// for an image of a registry the policy restricts is refused with
// PermissionDenied before the runtime sees it. Images without a record
// (pulled before crishim, or by another client) are allowed with a log line
// and a metric, or, with unknownImages: deny, refused when their registry is
// restricted.
//
// Files: config.go (images.access), image_pull.go (recording),
// container_create.go (the check), store.go (the record on disk),
// resync.go (pruning images the runtime no longer has), metrics.go.
package access
