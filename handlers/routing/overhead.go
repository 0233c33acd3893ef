package routing

import (
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet's CPU conversions (pkg/kubelet/kuberuntime/helpers_linux.go):
// overhead is sent with requests == limits, as CFS shares, quota and period.
const (
	minShares      = 2
	sharesPerCPU   = 1024
	milliCPUToCPU  = 1000
	quotaPeriod    = 100000 // µs
	minQuotaPeriod = 1000   // µs
)

func milliCPUToShares(milli int64) int64 {
	if milli == 0 {
		return minShares
	}
	return max(milli*sharesPerCPU/milliCPUToCPU, minShares)
}

func milliCPUToQuota(milli, period int64) int64 {
	if milli == 0 {
		return 0
	}
	return max(milli*period/milliCPUToCPU, minQuotaPeriod)
}

// linuxResources converts an overhead to the LinuxContainerResources the
// kubelet would have sent for it (convertOverheadToLinuxResources).
func (o *Overhead) linuxResources() *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{}
	var milli int64
	if o.CPU != nil {
		milli = o.CPU.MilliValue()
	}
	r.CpuShares = milliCPUToShares(milli)
	r.CpuPeriod = quotaPeriod
	r.CpuQuota = milliCPUToQuota(milli, quotaPeriod)
	if o.Memory != nil {
		r.MemoryLimitInBytes = o.Memory.Value()
	}
	return r
}

// absent reports whether the kubelet sent no overhead: it sends nil or an
// empty message for a pod whose RuntimeClass has none.
func absent(r *runtimeapi.LinuxContainerResources) bool {
	return r == nil || (r.CpuShares == 0 && r.CpuQuota == 0 && r.MemoryLimitInBytes == 0)
}

// sameOverhead compares what matters of two overheads: CPU (quota over the
// period, so different periods compare right) and memory.
func sameOverhead(a, b *runtimeapi.LinuxContainerResources) bool {
	return milliCPU(a) == milliCPU(b) && a.MemoryLimitInBytes == b.MemoryLimitInBytes
}

// milliCPU reads CPU back from CFS values: the quota when a limit is set,
// else the shares (requests).
func milliCPU(r *runtimeapi.LinuxContainerResources) int64 {
	if r == nil {
		return 0
	}
	if r.CpuQuota > 0 && r.CpuPeriod > 0 {
		return r.CpuQuota * milliCPUToCPU / r.CpuPeriod
	}
	if r.CpuShares > minShares {
		return r.CpuShares * milliCPUToCPU / sharesPerCPU
	}
	return 0
}

const mib = 1 << 20

// vmSize computes Kata's VM size for a sandbox: the pod's CPU (limits, else
// requests) and memory limit, plus the overhead, rounded up to whole vCPUs
// and MiB, within the configured bounds.
func (v *VMSizing) vmSize(pod, overhead *runtimeapi.LinuxContainerResources) (vcpus, memMiB int64) {
	milli := milliCPU(pod) + milliCPU(overhead)
	vcpus = (milli + milliCPUToCPU - 1) / milliCPUToCPU
	vcpus = max(vcpus, v.MinVCPUs, 1)
	if v.MaxVCPUs > 0 {
		vcpus = min(vcpus, v.MaxVCPUs)
	}
	var bytes int64
	if pod != nil {
		bytes += pod.MemoryLimitInBytes
	}
	if overhead != nil {
		bytes += overhead.MemoryLimitInBytes
	}
	minMem := resource.MustParse("256Mi")
	if v.MinMemory != nil {
		minMem = *v.MinMemory
	}
	bytes = max(bytes, minMem.Value())
	return vcpus, (bytes + mib - 1) / mib
}

// vmAnnotations returns Kata's sizing annotations for a sandbox.
func (v *VMSizing) vmAnnotations(pod, overhead *runtimeapi.LinuxContainerResources) map[string]string {
	vcpus, mem := v.vmSize(pod, overhead)
	return map[string]string{
		KataVCPUsAnnotation:  strconv.FormatInt(vcpus, 10),
		KataMemoryAnnotation: strconv.FormatInt(mem, 10),
	}
}
