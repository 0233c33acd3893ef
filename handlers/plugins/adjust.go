package plugins

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeletAnnotation reports whether a container annotation is the
// kubelet's (io.kubernetes.*: the container hash, restart count,
// termination settings it reads back from ContainerStatus) or crishim's
// container ID for plugins. containerd's NRI puts plugin annotations into
// the OCI spec only; through CRI they would reach the kubelet.
func kubeletAnnotation(key string) bool {
	return strings.HasPrefix(key, "io.kubernetes.") || key == IDAnnotation
}

// isEmptyAdjustment reports whether an adjustment changes nothing.
func isEmptyAdjustment(a *api.ContainerAdjustment) bool {
	l := a.GetLinux()
	return len(a.GetAnnotations()) == 0 && len(a.GetMounts()) == 0 && len(a.GetEnv()) == 0 &&
		len(a.GetHooks().GetPrestart())+len(a.GetHooks().GetCreateRuntime())+len(a.GetHooks().GetCreateContainer())+
			len(a.GetHooks().GetStartContainer())+len(a.GetHooks().GetPoststart())+len(a.GetHooks().GetPoststop()) == 0 &&
		len(a.GetRlimits()) == 0 && len(a.GetCDIDevices()) == 0 && len(a.GetArgs()) == 0 &&
		(l == nil || len(l.GetDevices()) == 0 && resourcesEmpty(l.GetResources()) && l.GetCgroupsPath() == "" && l.GetOomScoreAdj() == nil &&
			!set(l.GetIoPriority()) && !set(l.GetSeccompPolicy()) && len(l.GetNamespaces()) == 0 && len(l.GetSysctl()) == 0 &&
			len(l.GetNetDevices()) == 0 && !set(l.GetScheduler()) && !set(l.GetRdt()) && !set(l.GetMemoryPolicy()))
}

// set reports whether an optional message says anything: the adaptation's
// merged answer can hold empty ones.
func set(m proto.Message) bool {
	return m != nil && m.ProtoReflect().IsValid() && proto.Size(m) > 0
}

// resourcesEmpty reports whether NRI resources set nothing (the
// adaptation's merged answer always has the structure, empty).
func resourcesEmpty(r *api.LinuxResources) bool {
	if r == nil {
		return true
	}
	c, m := r.GetCpu(), r.GetMemory()
	return c.GetShares() == nil && c.GetQuota() == nil && c.GetPeriod() == nil && c.GetRealtimeRuntime() == nil &&
		c.GetRealtimePeriod() == nil && c.GetCpus() == "" && c.GetMems() == "" &&
		m.GetLimit() == nil && m.GetReservation() == nil && m.GetSwap() == nil && m.GetKernel() == nil &&
		m.GetKernelTcp() == nil && m.GetSwappiness() == nil && m.GetDisableOomKiller() == nil && m.GetUseHierarchy() == nil &&
		len(r.GetHugepageLimits()) == 0 && len(r.GetUnified()) == 0 && r.GetPids() == nil &&
		r.GetBlockioClass() == nil && r.GetRdtClass() == nil && len(r.GetDevices()) == 0
}

// unsupportedIn lists what an adjustment asks for that CRI cannot carry to
// the runtime, each with the plugin that asked (from NRI's field owners).
func unsupportedIn(id string, a *api.ContainerAdjustment, owners *api.OwningPlugins) []unsupported {
	if a == nil {
		return nil
	}
	owner := func(name string, ok bool) string {
		if ok {
			return name
		}
		return ""
	}
	var out []unsupported
	add := func(field, detail, plugin string) {
		out = append(out, unsupported{field: field, detail: detail, owner: plugin})
	}
	if h := a.GetHooks(); h != nil && len(h.GetPrestart())+len(h.GetCreateRuntime())+len(h.GetCreateContainer())+len(h.GetStartContainer())+len(h.GetPoststart())+len(h.GetPoststop()) > 0 {
		add("hooks", "OCI hooks", owner(owners.HooksOwner(id)))
	}
	for _, k := range sortedKeys(a.GetAnnotations()) {
		if key := api.ClearRemovalMarker(k); kubeletAnnotation(key) {
			add("annotations.kubelet", key, owner(owners.AnnotationOwner(id, key)))
		}
	}
	for _, r := range a.GetRlimits() {
		add("rlimits", fmt.Sprintf("%s=%d:%d", r.GetType(), r.GetSoft(), r.GetHard()), owner(owners.RlimitOwner(id, r.GetType())))
	}
	for _, m := range a.GetMounts() {
		if _, removed := m.IsMarkedForRemoval(); removed {
			continue
		}
		if _, err := mountToCRI(m); err != nil {
			add("mounts.nonBind", err.Error(), owner(owners.MountOwner(id, m.Destination)))
		}
	}
	l := a.GetLinux()
	if l == nil {
		return out
	}
	for _, d := range l.GetDevices() {
		if _, removed := d.IsMarkedForRemoval(); removed {
			continue
		}
		if _, err := deviceToCRI(d); err != nil {
			add("devices.unresolved", err.Error(), owner(owners.DeviceOwner(id, d.Path)))
		}
	}
	if l.GetCgroupsPath() != "" {
		add("cgroupsPath", l.GetCgroupsPath(), owner(owners.CgroupsPathOwner(id)))
	}
	if set(l.GetIoPriority()) {
		add("ioPriority", l.GetIoPriority().String(), owner(owners.IOPriorityOwner(id)))
	}
	if set(l.GetSeccompPolicy()) {
		add("seccompPolicy", "seccomp policy", owner(owners.SeccompPolicyOwner(id)))
	}
	for _, n := range l.GetNamespaces() {
		add("namespaces", n.GetType(), owner(owners.NamespaceOwner(id, n.GetType())))
	}
	for _, k := range sortedKeys(l.GetSysctl()) {
		add("sysctl", k, owner(owners.SysctlOwner(id, api.ClearRemovalMarker(k))))
	}
	for k := range l.GetNetDevices() {
		add("netDevices", k, owner(owners.LinuxNetDeviceOwner(id, k)))
	}
	if set(l.GetScheduler()) {
		add("scheduler", l.GetScheduler().GetPolicy().String(), owner(owners.LinuxSchedulerOwner(id)))
	}
	if set(l.GetRdt()) {
		add("rdt", "RDT", owner(owners.RdtClosIDOwner(id)))
	}
	if set(l.GetMemoryPolicy()) {
		add("memoryPolicy", l.GetMemoryPolicy().GetMode().String(), owner(owners.MemoryPolicyOwner(id)))
	}
	var probe runtimeapi.LinuxContainerResources
	for _, u := range applyResources(&probe, l.GetResources()) {
		if of, ok := resourceOwners[u.field]; ok {
			u.owner = owner(of(owners, id))
		}
		out = append(out, u)
	}
	return out
}

// resourceOwners names, per resource field CRI cannot carry, NRI's
// lookup of the plugin that set it.
var resourceOwners = map[string]func(*api.OwningPlugins, string) (string, bool){
	"memory.reservation":      (*api.OwningPlugins).MemReservationOwner,
	"memory.kernel":           (*api.OwningPlugins).MemKernelLimitOwner,
	"memory.kernelTCP":        (*api.OwningPlugins).MemTCPLimitOwner,
	"memory.swappiness":       (*api.OwningPlugins).MemSwappinessOwner,
	"memory.disableOOMKiller": (*api.OwningPlugins).MemDisableOomKillerOwner,
	"memory.useHierarchy":     (*api.OwningPlugins).MemUseHierarchyOwner,
	"cpu.realtimeRuntime":     (*api.OwningPlugins).CPURealtimeRuntimeOwner,
	"cpu.realtimePeriod":      (*api.OwningPlugins).CPURealtimePeriodOwner,
	"pids":                    (*api.OwningPlugins).PidsLimitOwner,
	"blockioClass":            (*api.OwningPlugins).BlockioClassOwner,
	"rdtClass":                (*api.OwningPlugins).RdtClassOwner,
}

// callKey carries a CreateContainer's call record through NRI's adaptation
// to crishim's validator (the adaptation passes the caller's context on).
type callKey struct{}

// call is what the validator found for one CreateContainer.
type call struct {
	refused []unsupported
	dropped []unsupported
}

// validate is crishim's built-in NRI validator: it sees the merged
// adjustment of all plugins with the owner of every field, before anything
// is applied, and refuses (or marks to drop, per nri.unsupportedFields)
// what CRI cannot carry.
func (h *Host) validate(ctx context.Context, req *api.ValidateContainerAdjustmentRequest) error {
	cfg := h.cfg.Load()
	found := unsupportedIn(req.GetContainer().GetId(), req.GetAdjust(), req.GetOwners())
	c, _ := ctx.Value(callKey{}).(*call)
	if c == nil {
		c = &call{}
	}
	for _, u := range found {
		if cfg.unsupportedPolicy(u.field) == UnsupportedDrop {
			c.dropped = append(c.dropped, u)
		} else {
			c.refused = append(c.refused, u)
		}
	}
	if len(c.refused) > 0 {
		return fmt.Errorf("%s", describe(c.refused))
	}
	return nil
}

// describe names each unsupported adjustment with its plugin and field.
func describe(us []unsupported) string {
	parts := make([]string, 0, len(us))
	for _, u := range us {
		who := u.owner
		if who == "" {
			who = "a plugin"
		} else {
			who = "plugin " + who
		}
		parts = append(parts, fmt.Sprintf("%s set %s (%s)", who, u.field, u.detail))
	}
	return strings.Join(parts, "; ")
}

// applyAdjustment returns the CreateContainer request the runtime gets:
// req with the plugins' adjustments that CRI carries. final is NRI's view
// of the container after the adjustments (the adaptation updates the
// request's container in place), adjust the merged adjustment. What CRI
// cannot carry was refused or marked to drop by the validator; it is left
// out here.
func applyAdjustment(req *runtimeapi.CreateContainerRequest, final *api.Container, adjust *api.ContainerAdjustment) *runtimeapi.CreateContainerRequest {
	if adjust == nil || isEmptyAdjustment(adjust) {
		return req
	}
	out := cloneCreate(req)
	cfg := out.Config
	// Annotations and environment: NRI's final view, in the original order
	// where it kept entries. The kubelet's own annotations stay as it sent
	// them (a change was refused, or dropped by policy).
	cfg.Annotations = cloneMap(final.GetAnnotations())
	for k := range cfg.Annotations {
		if kubeletAnnotation(k) {
			delete(cfg.Annotations, k)
		}
	}
	for k, v := range req.GetConfig().GetAnnotations() {
		if kubeletAnnotation(k) {
			cfg.Annotations[k] = v
		}
	}
	envs := make([]*runtimeapi.KeyValue, 0, len(final.GetEnv()))
	for _, e := range final.GetEnv() {
		k, v, _ := strings.Cut(e, "=")
		envs = append(envs, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
	}
	cfg.Envs = envs
	// Mounts: keep the kubelet's own entries (with the fields NRI's shape
	// lacks: SELinux relabelling, ID mappings, image volumes) where NRI kept
	// the destination unchanged; convert the plugins' additions.
	changed := map[string]bool{}
	for _, m := range adjust.GetMounts() {
		changed[api.ClearRemovalMarker(m.Destination)] = true
	}
	var mounts []*runtimeapi.Mount
	for _, m := range final.GetMounts() {
		orig := slices.IndexFunc(req.GetConfig().GetMounts(), func(o *runtimeapi.Mount) bool { return o.GetContainerPath() == m.Destination })
		if !changed[m.Destination] && orig >= 0 {
			mounts = append(mounts, req.GetConfig().GetMounts()[orig])
			continue
		}
		if cm, err := mountToCRI(m); err == nil {
			mounts = append(mounts, cm)
		} else if orig >= 0 {
			// a replacement CRI cannot carry, dropped: the kubelet's stays
			mounts = append(mounts, req.GetConfig().GetMounts()[orig])
		}
	}
	cfg.Mounts = mounts
	// Devices likewise, resolved to host nodes.
	changedDev := map[string]bool{}
	for _, d := range adjust.GetLinux().GetDevices() {
		changedDev[api.ClearRemovalMarker(d.Path)] = true
	}
	var devices []*runtimeapi.Device
	for _, d := range final.GetLinux().GetDevices() {
		orig := slices.IndexFunc(req.GetConfig().GetDevices(), func(o *runtimeapi.Device) bool { return o.GetContainerPath() == d.Path })
		if !changedDev[d.Path] && orig >= 0 {
			devices = append(devices, req.GetConfig().GetDevices()[orig])
			continue
		}
		if cd, err := deviceToCRI(d); err == nil {
			devices = append(devices, cd)
		} else if orig >= 0 {
			// a replacement with no host node, dropped: the kubelet's stays
			devices = append(devices, req.GetConfig().GetDevices()[orig])
		}
	}
	// Devices the kubelet asked for that NRI could not describe (no node)
	// were never in NRI's view: keep them.
	for _, d := range req.GetConfig().GetDevices() {
		if !changedDev[d.GetContainerPath()] && !slices.ContainsFunc(devices, func(o *runtimeapi.Device) bool { return o.GetContainerPath() == d.GetContainerPath() }) {
			if _, err := deviceFromHost(d.GetHostPath(), d.GetContainerPath()); err != nil {
				devices = append(devices, d)
			}
		}
	}
	cfg.Devices = devices
	for _, d := range adjust.GetCDIDevices() {
		if !slices.ContainsFunc(cfg.CDIDevices, func(o *runtimeapi.CDIDevice) bool { return o.GetName() == d.GetName() }) {
			cfg.CDIDevices = append(cfg.CDIDevices, &runtimeapi.CDIDevice{Name: d.GetName()})
		}
	}
	if args := adjust.GetArgs(); len(args) > 0 {
		// NRI's args are the whole command line.
		cfg.Command, cfg.Args = append([]string{}, args...), nil
	}
	if r := adjust.GetLinux().GetResources(); !resourcesEmpty(r) || adjust.GetLinux().GetOomScoreAdj() != nil {
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxContainerConfig{}
		}
		if cfg.Linux.Resources == nil {
			cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{}
		}
		applyResources(cfg.Linux.Resources, r)
		if o := adjust.GetLinux().GetOomScoreAdj(); o != nil {
			cfg.Linux.Resources.OomScoreAdj = int64(o.GetValue())
		}
	}
	return out
}
