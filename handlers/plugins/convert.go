package plugins

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// IDAnnotation carries the container ID NRI plugins know a container by.
// CRI assigns container IDs in the runtime, after CreateContainer, but NRI
// plugins see a container first at CreateContainer and key their state by
// its ID (resource managers allocate there and release at
// RemoveContainer). crishim gives the container an ID at CreateContainer
// and records it on the container, so that every later event, a
// Synchronize after a restart of crishim or of the plugin, and the
// plugin's updates name the container the same way.
const IDAnnotation = "nri.crishim.io/container-id"

// podFromConfig is the NRI pod of a sandbox config, as far as CRI tells.
func podFromConfig(id, handler string, cfg *runtimeapi.PodSandboxConfig) *api.PodSandbox {
	md := cfg.GetMetadata()
	pod := &api.PodSandbox{
		Id:             id,
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         cloneMap(cfg.GetLabels()),
		Annotations:    cloneMap(cfg.GetAnnotations()),
		RuntimeHandler: handler,
	}
	if l := cfg.GetLinux(); l != nil {
		pod.Linux = &api.LinuxPodSandbox{
			CgroupParent: l.GetCgroupParent(),
			PodOverhead:  resourcesFromCRI(l.GetOverhead()),
			PodResources: resourcesFromCRI(l.GetResources()),
		}
	}
	return pod
}

// podFromStatus is the NRI pod of a sandbox the runtime reports.
func podFromStatus(s *runtimeapi.PodSandboxStatus) *api.PodSandbox {
	md := s.GetMetadata()
	pod := &api.PodSandbox{
		Id:             s.GetId(),
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         cloneMap(s.GetLabels()),
		Annotations:    cloneMap(s.GetAnnotations()),
		RuntimeHandler: s.GetRuntimeHandler(),
	}
	pod.Ips = podIPs(s)
	return pod
}

func podIPs(s *runtimeapi.PodSandboxStatus) []string {
	var ips []string
	if ip := s.GetNetwork().GetIp(); ip != "" {
		ips = append(ips, ip)
	}
	for _, ip := range s.GetNetwork().GetAdditionalIps() {
		ips = append(ips, ip.GetIp())
	}
	return ips
}

// containerFromCreate is the NRI container a CreateContainer asks for.
func containerFromCreate(nriID string, req *runtimeapi.CreateContainerRequest) *api.Container {
	cfg := req.GetConfig()
	c := &api.Container{
		Id:           nriID,
		PodSandboxId: req.GetPodSandboxId(),
		Name:         cfg.GetMetadata().GetName(),
		State:        api.ContainerState_CONTAINER_UNKNOWN,
		Labels:       cloneMap(cfg.GetLabels()),
		Annotations:  cloneMap(cfg.GetAnnotations()),
		Args:         append(append([]string{}, cfg.GetCommand()...), cfg.GetArgs()...),
		Image:        &api.Image{Name: cfg.GetImage().GetImage()},
	}
	for _, kv := range cfg.GetEnvs() {
		c.Env = append(c.Env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	for _, m := range cfg.GetMounts() {
		c.Mounts = append(c.Mounts, mountFromCRI(m))
	}
	c.Linux = &api.LinuxContainer{}
	for _, d := range cfg.GetDevices() {
		if dev, err := deviceFromHost(d.GetHostPath(), d.GetContainerPath()); err == nil {
			c.Linux.Devices = append(c.Linux.Devices, dev)
		}
	}
	for _, d := range cfg.GetCDIDevices() {
		c.CDIDevices = append(c.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		c.Linux.Resources = resourcesFromCRI(r)
		c.Linux.OomScoreAdj = api.Int(int(r.GetOomScoreAdj()))
	}
	if u := cfg.GetLinux().GetSecurityContext().GetRunAsUser(); u != nil {
		c.User = &api.User{Uid: uint32(u.GetValue())}
	}
	return c
}

// containerFromStatus is the NRI container of one the runtime reports.
func containerFromStatus(podID string, s *runtimeapi.ContainerStatus) *api.Container {
	c := &api.Container{
		Id:            nriIDOf(s.GetId(), s.GetAnnotations()),
		PodSandboxId:  podID,
		Name:          s.GetMetadata().GetName(),
		State:         stateFromCRI(s.GetState()),
		Labels:        cloneMap(s.GetLabels()),
		Annotations:   cloneMap(s.GetAnnotations()),
		CreatedAt:     s.GetCreatedAt(),
		StartedAt:     s.GetStartedAt(),
		FinishedAt:    s.GetFinishedAt(),
		ExitCode:      s.GetExitCode(),
		StatusReason:  s.GetReason(),
		StatusMessage: s.GetMessage(),
		Image:         &api.Image{Name: s.GetImage().GetImage()},
	}
	for _, m := range s.GetMounts() {
		c.Mounts = append(c.Mounts, mountFromCRI(m))
	}
	if r := s.GetResources().GetLinux(); r != nil {
		c.Linux = &api.LinuxContainer{Resources: resourcesFromCRI(r), OomScoreAdj: api.Int(int(r.GetOomScoreAdj()))}
	}
	return c
}

// nriID returns the ID plugins know a runtime container by.
func nriIDOf(runtimeID string, annotations map[string]string) string {
	if id := annotations[IDAnnotation]; id != "" {
		return id
	}
	return runtimeID
}

func stateFromCRI(s runtimeapi.ContainerState) api.ContainerState {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return api.ContainerState_CONTAINER_CREATED
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return api.ContainerState_CONTAINER_RUNNING
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return api.ContainerState_CONTAINER_STOPPED
	default:
		return api.ContainerState_CONTAINER_UNKNOWN
	}
}

// mountFromCRI is a CRI bind mount in NRI's (runtime-spec) shape.
func mountFromCRI(m *runtimeapi.Mount) *api.Mount {
	opts := []string{"rbind"}
	if m.GetReadonly() {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	switch m.GetPropagation() {
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		opts = append(opts, "rshared")
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		opts = append(opts, "rslave")
	default:
		opts = append(opts, "rprivate")
	}
	return &api.Mount{Destination: m.GetContainerPath(), Type: "bind", Source: m.GetHostPath(), Options: opts}
}

// mountToCRI is an NRI mount as a CRI mount, or an error when CRI cannot
// carry it (only bind mounts of host paths exist in CRI).
func mountToCRI(m *api.Mount) (*runtimeapi.Mount, error) {
	bind := m.Type == "bind" || m.Type == "rbind" || m.Type == ""
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			bind = true
		}
	}
	if !bind || m.Type != "" && m.Type != "bind" && m.Type != "rbind" {
		return nil, fmt.Errorf("mount %s of type %q: CRI carries bind mounts only", m.Destination, m.Type)
	}
	out := &runtimeapi.Mount{ContainerPath: m.Destination, HostPath: m.Source}
	for _, o := range m.Options {
		switch o {
		case "ro":
			out.Readonly = true
		case "rw":
			out.Readonly = false
		case "rshared", "shared":
			out.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
		case "rslave", "slave":
			out.Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
		case "rprivate", "private":
			out.Propagation = runtimeapi.MountPropagation_PROPAGATION_PRIVATE
		}
	}
	return out, nil
}

// deviceFromHost is the NRI device of a host device node.
func deviceFromHost(hostPath, containerPath string) (*api.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(hostPath, &st); err != nil {
		return nil, err
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return nil, fmt.Errorf("%s is not a device node", hostPath)
	}
	return &api.LinuxDevice{Path: containerPath, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
		FileMode: api.FileMode(os.FileMode(st.Mode & 0o777))}, nil
}

// devRoot is where host device nodes are looked up; a variable for tests.
var devRoot = "/dev"

// deviceToCRI resolves an NRI device (type, major, minor, path in the
// container) to the host device node CRI needs: the node at the same path
// if it is that device, else the first node under /dev that is.
func deviceToCRI(d *api.LinuxDevice) (*runtimeapi.Device, error) {
	matches := func(p string) bool {
		dev, err := deviceFromHost(p, d.Path)
		return err == nil && dev.Type == normType(d.Type) && dev.Major == d.Major && dev.Minor == d.Minor
	}
	perms := "rwm"
	if strings.HasPrefix(d.Path, devRoot+"/") && matches(d.Path) {
		return &runtimeapi.Device{ContainerPath: d.Path, HostPath: d.Path, Permissions: perms}, nil
	}
	var found string
	_ = filepath.WalkDir(devRoot, func(p string, e os.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		if e.Type()&os.ModeDevice != 0 && matches(p) {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return nil, fmt.Errorf("device %s (%s %d:%d) has no node on the host under %s, which CRI needs", d.Path, d.Type, d.Major, d.Minor, devRoot)
	}
	return &runtimeapi.Device{ContainerPath: d.Path, HostPath: found, Permissions: perms}, nil
}

func normType(t string) string {
	if t == "u" {
		return "c"
	}
	return t
}

// resourcesFromCRI is CRI's container resources in NRI's shape.
func resourcesFromCRI(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Cpu: &api.LinuxCPU{
			Cpus: r.GetCpusetCpus(),
			Mems: r.GetCpusetMems(),
		},
		Memory:  &api.LinuxMemory{},
		Unified: cloneMap(r.GetUnified()),
	}
	if r.CpuShares != 0 {
		out.Cpu.Shares = api.UInt64(uint64(r.CpuShares))
	}
	if r.CpuQuota != 0 {
		out.Cpu.Quota = api.Int64(r.CpuQuota)
	}
	if r.CpuPeriod != 0 {
		out.Cpu.Period = api.UInt64(uint64(r.CpuPeriod))
	}
	if r.MemoryLimitInBytes != 0 {
		out.Memory.Limit = api.Int64(r.MemoryLimitInBytes)
	}
	if r.MemorySwapLimitInBytes != 0 {
		out.Memory.Swap = api.Int64(r.MemorySwapLimitInBytes)
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// unsupported is one adjustment CRI cannot carry.
type unsupported struct {
	field  string // one of UnsupportedFieldNames
	detail string // what was asked, for the message
	owner  string // the plugin that asked, "" when NRI does not say
}

// applyResources puts NRI resources into CRI's, field by field, and returns
// the fields CRI cannot carry.
func applyResources(dst *runtimeapi.LinuxContainerResources, r *api.LinuxResources) []unsupported {
	if r == nil {
		return nil
	}
	var out []unsupported
	if c := r.Cpu; c != nil {
		if c.Shares != nil {
			dst.CpuShares = int64(c.Shares.GetValue())
		}
		if c.Quota != nil {
			dst.CpuQuota = c.Quota.GetValue()
		}
		if c.Period != nil {
			dst.CpuPeriod = int64(c.Period.GetValue())
		}
		if c.Cpus != "" {
			dst.CpusetCpus = c.Cpus
		}
		if c.Mems != "" {
			dst.CpusetMems = c.Mems
		}
		if c.RealtimeRuntime != nil {
			out = append(out, unsupported{field: "cpu.realtimeRuntime", detail: fmt.Sprint(c.RealtimeRuntime.GetValue())})
		}
		if c.RealtimePeriod != nil {
			out = append(out, unsupported{field: "cpu.realtimePeriod", detail: fmt.Sprint(c.RealtimePeriod.GetValue())})
		}
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			// As NRI's own spec generator (containerd): the swap limit
			// follows the memory limit. Kept at the kubelet's value, a
			// raised limit would exceed memsw on cgroup v1 (EINVAL).
			dst.MemoryLimitInBytes = m.Limit.GetValue()
			dst.MemorySwapLimitInBytes = m.Limit.GetValue()
		}
		if m.Swap != nil {
			dst.MemorySwapLimitInBytes = m.Swap.GetValue()
		}
		for _, f := range []struct {
			name string
			set  bool
			v    any
		}{
			{"memory.reservation", m.Reservation != nil, m.Reservation.GetValue()},
			{"memory.kernel", m.Kernel != nil, m.Kernel.GetValue()},
			{"memory.kernelTCP", m.KernelTcp != nil, m.KernelTcp.GetValue()},
			{"memory.swappiness", m.Swappiness != nil, m.Swappiness.GetValue()},
			{"memory.disableOOMKiller", m.DisableOomKiller != nil, m.DisableOomKiller.GetValue()},
			{"memory.useHierarchy", m.UseHierarchy != nil, m.UseHierarchy.GetValue()},
		} {
			if f.set {
				out = append(out, unsupported{field: f.name, detail: fmt.Sprint(f.v)})
			}
		}
	}
	for _, h := range r.HugepageLimits {
		set := false
		for _, e := range dst.HugepageLimits {
			if e.PageSize == h.PageSize {
				e.Limit, set = h.Limit, true
			}
		}
		if !set {
			dst.HugepageLimits = append(dst.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
		}
	}
	for k, v := range r.Unified {
		if dst.Unified == nil {
			dst.Unified = map[string]string{}
		}
		dst.Unified[k] = v
	}
	if len(r.Devices) > 0 {
		out = append(out, unsupported{field: "devices.cgroup", detail: fmt.Sprintf("%d device cgroup rules", len(r.Devices))})
	}
	if r.Pids != nil {
		out = append(out, unsupported{field: "pids", detail: fmt.Sprint(r.Pids.GetLimit())})
	}
	if r.BlockioClass != nil {
		out = append(out, unsupported{field: "blockioClass", detail: r.BlockioClass.GetValue()})
	}
	if r.RdtClass != nil {
		out = append(out, unsupported{field: "rdtClass", detail: r.RdtClass.GetValue()})
	}
	return out
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
