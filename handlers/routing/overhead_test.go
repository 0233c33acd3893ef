package routing

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func mustQ(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

func TestOverheadToLinuxResources(t *testing.T) {
	tests := []struct {
		cpu, mem                string
		shares, quota, memLimit int64
	}{
		{"250m", "160Mi", 256, 25000, 160 << 20},
		{"0.5", "1Gi", 512, 50000, 1 << 30},
		{"100m", "128M", 102, 10000, 128_000_000},
		{"1", "", 1024, 100000, 0},
		{"5m", "", 5, 1000, 0}, // the quota floor of 1 ms
		{"1m", "", 2, 1000, 0}, // the shares floor of 2
		{"", "320Mi", 2, 0, 320 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.cpu+"/"+tc.mem, func(t *testing.T) {
			o := &Overhead{}
			if tc.cpu != "" {
				o.CPU = mustQ(tc.cpu)
			}
			if tc.mem != "" {
				o.Memory = mustQ(tc.mem)
			}
			r := o.linuxResources()
			if r.CpuShares != tc.shares || r.CpuQuota != tc.quota || r.CpuPeriod != 100000 || r.MemoryLimitInBytes != tc.memLimit {
				t.Errorf("got shares=%d quota=%d period=%d mem=%d, want %d %d 100000 %d", r.CpuShares, r.CpuQuota, r.CpuPeriod, r.MemoryLimitInBytes, tc.shares, tc.quota, tc.memLimit)
			}
		})
	}
}

func TestOverheadComparison(t *testing.T) {
	kata := (&Overhead{CPU: mustQ("250m"), Memory: mustQ("160Mi")}).linuxResources()
	tests := []struct {
		desc       string
		got        *runtimeapi.LinuxContainerResources
		absent, eq bool
	}{
		{"nil", nil, true, false},
		{"empty message (no RuntimeClass overhead)", &runtimeapi.LinuxContainerResources{}, true, false},
		{"same as the kubelet would send", &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 25000, CpuPeriod: 100000, MemoryLimitInBytes: 160 << 20}, false, true},
		{"same CPU on another CFS period", &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 12500, CpuPeriod: 50000, MemoryLimitInBytes: 160 << 20}, false, true},
		{"other memory", &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 25000, CpuPeriod: 100000, MemoryLimitInBytes: 130 << 20}, false, false},
		{"other CPU", &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 160 << 20}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if a := absent(tc.got); a != tc.absent {
				t.Errorf("absent = %v, want %v", a, tc.absent)
			}
			if !tc.absent {
				if eq := sameOverhead(tc.got, kata); eq != tc.eq {
					t.Errorf("sameOverhead = %v, want %v", eq, tc.eq)
				}
			}
		})
	}
}

func TestKataVMSize(t *testing.T) {
	res := func(cpuMilli, memBytes int64) *runtimeapi.LinuxContainerResources {
		r := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, MemoryLimitInBytes: memBytes}
		if cpuMilli > 0 {
			r.CpuQuota = cpuMilli * 100
			r.CpuShares = cpuMilli * 1024 / 1000
		}
		return r
	}
	overhead := (&Overhead{CPU: mustQ("250m"), Memory: mustQ("160Mi")}).linuxResources()
	tests := []struct {
		desc         string
		sizing       VMSizing
		pod, over    *runtimeapi.LinuxContainerResources
		vcpus, memMi int64
	}{
		{"limits plus overhead round up", VMSizing{}, res(1500, 1<<30), overhead, 2, 1024 + 160},
		{"exactly whole CPUs", VMSizing{}, res(750, 512<<20), overhead, 1, 512 + 160},
		{"requests only (no quota)", VMSizing{}, &runtimeapi.LinuxContainerResources{CpuShares: 2048}, overhead, 3, 256},
		{"best effort pod gets the floor", VMSizing{}, &runtimeapi.LinuxContainerResources{}, nil, 1, 256},
		{"nil resources", VMSizing{}, nil, nil, 1, 256},
		{"odd bytes round up to a MiB", VMSizing{}, res(100, 100_000_000), nil, 1, 256},
		{"odd bytes above the floor", VMSizing{}, res(100, 300_000_001), nil, 1, 287},
		{"min and max vCPUs", VMSizing{MinVCPUs: 2, MaxVCPUs: 4}, res(8000, 0), nil, 4, 256},
		{"min vCPUs", VMSizing{MinVCPUs: 2, MaxVCPUs: 4}, res(100, 0), nil, 2, 256},
		{"custom memory floor", VMSizing{MinMemory: mustQ("1Gi")}, res(100, 64<<20), nil, 1, 1024},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			v, m := tc.sizing.vmSize(tc.pod, tc.over)
			if v != tc.vcpus || m != tc.memMi {
				t.Errorf("got %d vCPUs %d MiB, want %d, %d", v, m, tc.vcpus, tc.memMi)
			}
		})
	}
	a := (&VMSizing{}).vmAnnotations(res(1500, 1<<30), overhead)
	if a[KataVCPUsAnnotation] != "2" || a[KataMemoryAnnotation] != "1184" {
		t.Errorf("annotations %v", a)
	}
}
