package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
)

// ptr returns a pointer to v, for the optional fields of config.
func ptr[T any](v T) *T { return &v }

// devNull is what -device /dev/null must produce. Its numbers are fixed by
// the Linux ABI; its mode is read so that an unusual host does not fail the
// test.
func devNull(t *testing.T) deviceSpec {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/dev/null", &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR {
		t.Skipf("/dev/null is not a character device here (%v)", err)
	}
	return deviceSpec{path: "/dev/null", typ: "c", major: 1, minor: 3, fileMode: uint32(st.Mode &^ syscall.S_IFMT)}
}

// defaults is the config of an empty command line.
func defaults() *config {
	return &config{
		socket: api.DefaultSocketPath,
		name:   "crishim-test",
		idx:    "10",
		hang:   eventSet{},
		exitOn: eventSet{},
		failOn: eventSet{},
	}
}

func TestParseFlags(t *testing.T) {
	null := devNull(t)
	tests := []struct {
		name string
		args []string
		want func(c *config) // edits defaults() into the expected config
	}{
		{"defaults", nil, func(*config) {}},
		{
			"identity and filter",
			[]string{"-socket", "/run/crishim/nri.sock", "-name", "other", "-idx", "05", "-namespace", "e2e", "-events", "/tmp/ev"},
			func(c *config) {
				c.socket, c.name, c.idx, c.namespace, c.eventsFile = "/run/crishim/nri.sock", "other", "05", "e2e", "/tmp/ev"
			},
		},
		{
			"repeatable adjustments keep order",
			[]string{
				"-env", "B=2", "-env", "A=x=y", "-env", "EMPTY=",
				"-annotation", "example.com/a=1", "-annotation", "example.com/b=",
				"-mount", "/src:/dst", "-mount", "/etc/hosts:/mnt/hosts",
				"-device", "/dev/null",
				"-rlimit", "nofile=1024:2048", "-rlimit", "RLIMIT_CORE=0:0",
			},
			func(c *config) {
				c.env = []keyValue{{"B", "2"}, {"A", "x=y"}, {"EMPTY", ""}}
				c.annotations = []keyValue{{"example.com/a", "1"}, {"example.com/b", ""}}
				c.mounts = []mountSpec{{"/src", "/dst"}, {"/etc/hosts", "/mnt/hosts"}}
				c.devices = []deviceSpec{null}
				c.rlimits = []rlimitSpec{{"RLIMIT_NOFILE", 1024, 2048}, {"RLIMIT_CORE", 0, 0}}
			},
		},
		{
			"resources",
			[]string{"-cpu-shares", "512", "-cpu-quota", "-1", "-cpu-period", "100000", "-cpuset-cpus", "0-1", "-memory-limit", "67108864", "-oom-score-adj", "-500"},
			func(c *config) {
				c.cpuShares, c.cpuQuota, c.cpuPeriod = ptr[uint64](512), ptr[int64](-1), ptr[int64](100000)
				c.cpusetCPUs, c.memoryLimit, c.oomScoreAdj = ptr("0-1"), ptr[int64](67108864), ptr(-500)
			},
		},
		{
			"explicit zeros are kept",
			[]string{"-cpu-quota", "0", "-cpuset-cpus", "", "-oom-score-adj", "0", "-update-shares", "0"},
			func(c *config) {
				c.cpuQuota, c.cpusetCPUs, c.oomScoreAdj, c.updateShares = ptr[int64](0), ptr(""), ptr(0), ptr[uint64](0)
			},
		},
		{
			"failure flags repeat",
			[]string{"-hang", "CreateContainer", "-exit-on", "Synchronize", "-fail-on", "StartContainer", "-fail-on", "RunPodSandbox", "-update-shares", "1024"},
			func(c *config) {
				c.hang[evCreateContainer] = true
				c.exitOn[evSynchronize] = true
				c.failOn[evStartContainer], c.failOn[evRunPodSandbox] = true, true
				c.updateShares = ptr[uint64](1024)
			},
		},
		{
			"fail-request declares a policy",
			[]string{"-fail-request"},
			func(c *config) { c.failurePolicy = &api.FailurePolicy{FailRequest: true} },
		},
		{
			"both policy fields",
			[]string{"-fail-request", "-keep-connected"},
			func(c *config) { c.failurePolicy = &api.FailurePolicy{FailRequest: true, KeepConnected: true} },
		},
		{
			"explicit false still declares a policy",
			[]string{"-keep-connected=false"},
			func(c *config) { c.failurePolicy = &api.FailurePolicy{} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags("nriplugin", tt.args, io.Discard)
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			want := defaults()
			tt.want(want)
			// FailurePolicy is a protobuf message: compare it apart.
			if !proto.Equal(got.failurePolicy, want.failurePolicy) || (got.failurePolicy == nil) != (want.failurePolicy == nil) {
				t.Errorf("failure policy: got %v, want %v", got.failurePolicy, want.failurePolicy)
			}
			got.failurePolicy, want.failurePolicy = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseFlags(%q):\n got %+v\nwant %+v", tt.args, got, want)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the error
	}{
		{"env without =", []string{"-env", "X"}, "want KEY=VALUE"},
		{"env without key", []string{"-env", "=v"}, "want KEY=VALUE"},
		{"annotation without =", []string{"-annotation", "a"}, "want KEY=VALUE"},
		{"mount without destination", []string{"-mount", "/src"}, "want /SOURCE:/DESTINATION"},
		{"relative mount source", []string{"-mount", "src:/dst"}, "want /SOURCE:/DESTINATION"},
		{"relative mount destination", []string{"-mount", "/src:dst"}, "want /SOURCE:/DESTINATION"},
		{"relative device", []string{"-device", "null"}, "absolute device path"},
		{"missing device", []string{"-device", "/dev/nriplugin-test-missing"}, "no such file"},
		{"not a device", []string{"-device", "/"}, "not a character or block device"},
		{"rlimit without limits", []string{"-rlimit", "nofile"}, "want TYPE=SOFT:HARD"},
		{"rlimit without hard", []string{"-rlimit", "nofile=1"}, "want TYPE=SOFT:HARD"},
		{"unknown rlimit", []string{"-rlimit", "files=1:2"}, "unknown rlimit RLIMIT_FILES"},
		{"rlimit soft above hard", []string{"-rlimit", "nofile=2:1"}, "soft limit above hard"},
		{"rlimit not a number", []string{"-rlimit", "nofile=x:1"}, "soft limit"},
		{"negative shares", []string{"-cpu-shares", "-1"}, "invalid syntax"},
		{"negative period", []string{"-cpu-period", "-1"}, "must not be negative"},
		{"memory not a number", []string{"-memory-limit", "64M"}, "invalid syntax"},
		{"oom score out of range", []string{"-oom-score-adj", "1001"}, "[-1000, 1000]"},
		{"unknown hang event", []string{"-hang", "CreateContainers"}, "unknown event"},
		{"shutdown cannot fail", []string{"-fail-on", "Shutdown"}, "unknown event"},
		{"unknown exit event", []string{"-exit-on", "createcontainer"}, "unknown event"},
		{"one-digit index", []string{"-idx", "1"}, "must be 2 digits"},
		{"non-digit index", []string{"-idx", "ab"}, "not [0-9][0-9]"},
		{"bad name", []string{"-name", "a b"}, "invalid character"},
		{"empty name", []string{"-name", ""}, "name is empty"},
		{"positional argument", []string{"extra"}, "unexpected arguments"},
		{"unknown flag", []string{"-nope"}, "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			_, err := parseFlags("nriplugin", tt.args, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseFlags(%q) = %v, want error containing %q", tt.args, err, tt.want)
			}
			// main prints nothing itself, so the error must be on output.
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("output %q does not report %q", out.String(), tt.want)
			}
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	var out strings.Builder
	if _, err := parseFlags("nriplugin", []string{"-help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: err = %v, want flag.ErrHelp", err)
	}
	for _, s := range []string{"-update-shares", "CreateContainer", "2 connection lost"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("usage does not mention %q:\n%s", s, out.String())
		}
	}
}

func TestAdjustment(t *testing.T) {
	null := devNull(t)
	nullDev := func() *api.LinuxDevice {
		return &api.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: api.FileMode(null.fileMode)}
	}
	tests := []struct {
		name string
		args []string
		want *api.ContainerAdjustment // nil: no adjustment at all
	}{
		{"no flags", nil, nil},
		{"only non-adjustment flags", []string{"-namespace", "e2e", "-fail-on", "StartContainer", "-update-shares", "2", "-fail-request"}, nil},
		{
			"env",
			[]string{"-env", "B=2", "-env", "A=x=y"},
			&api.ContainerAdjustment{Env: []*api.KeyValue{{Key: "B", Value: "2"}, {Key: "A", Value: "x=y"}}},
		},
		{
			"annotations",
			[]string{"-annotation", "example.com/a=1", "-annotation", "example.com/b=2"},
			&api.ContainerAdjustment{Annotations: map[string]string{"example.com/a": "1", "example.com/b": "2"}},
		},
		{
			"mounts",
			[]string{"-mount", "/src:/dst", "-mount", "/a:/b"},
			&api.ContainerAdjustment{Mounts: []*api.Mount{
				{Source: "/src", Destination: "/dst", Type: "bind", Options: []string{"rbind", "ro"}},
				{Source: "/a", Destination: "/b", Type: "bind", Options: []string{"rbind", "ro"}},
			}},
		},
		{
			"device",
			[]string{"-device", "/dev/null"},
			&api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Devices: []*api.LinuxDevice{nullDev()}}},
		},
		{
			"cpu",
			[]string{"-cpu-shares", "512", "-cpu-quota", "50000", "-cpu-period", "100000", "-cpuset-cpus", "0"},
			&api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Resources: &api.LinuxResources{
				Cpu: &api.LinuxCPU{Shares: api.UInt64(uint64(512)), Quota: api.Int64(int64(50000)), Period: api.UInt64(uint64(100000)), Cpus: "0"},
			}}},
		},
		{
			"explicit zero quota",
			[]string{"-cpu-quota", "0"},
			&api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Resources: &api.LinuxResources{
				Cpu: &api.LinuxCPU{Quota: api.Int64(int64(0))},
			}}},
		},
		{
			"memory",
			[]string{"-memory-limit", "67108864"},
			&api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Resources: &api.LinuxResources{
				Memory: &api.LinuxMemory{Limit: api.Int64(int64(67108864))},
			}}},
		},
		{
			"rlimit",
			[]string{"-rlimit", "nofile=1024:2048"},
			&api.ContainerAdjustment{Rlimits: []*api.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2048}}},
		},
		{
			"oom score",
			[]string{"-oom-score-adj", "-999"},
			&api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{OomScoreAdj: api.Int(-999)}},
		},
		{
			"everything",
			[]string{
				"-env", "E=1", "-annotation", "a=b", "-mount", "/s:/d", "-device", "/dev/null",
				"-cpu-shares", "2", "-memory-limit", "1048576", "-oom-score-adj", "10", "-rlimit", "core=0:0",
			},
			&api.ContainerAdjustment{
				Env:         []*api.KeyValue{{Key: "E", Value: "1"}},
				Annotations: map[string]string{"a": "b"},
				Mounts:      []*api.Mount{{Source: "/s", Destination: "/d", Type: "bind", Options: []string{"rbind", "ro"}}},
				Rlimits:     []*api.POSIXRlimit{{Type: "RLIMIT_CORE"}},
				Linux: &api.LinuxContainerAdjustment{
					Devices: []*api.LinuxDevice{nullDev()},
					Resources: &api.LinuxResources{
						Cpu:    &api.LinuxCPU{Shares: api.UInt64(uint64(2))},
						Memory: &api.LinuxMemory{Limit: api.Int64(int64(1048576))},
					},
					OomScoreAdj: api.Int(10),
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags("nriplugin", tt.args, io.Discard)
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			got := adjustment(cfg)
			if tt.want == nil {
				if got != nil {
					t.Fatalf("adjustment(%q) = %v, want nil", tt.args, got)
				}
				return
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("adjustment(%q):\n got %v\nwant %v", tt.args, got, tt.want)
			}
		})
	}
}

// TestAdjustmentFresh checks that adjustments of different containers share
// nothing, so that the stub (or a test) changing one cannot change another.
func TestAdjustmentFresh(t *testing.T) {
	cfg, err := parseFlags("nriplugin", []string{"-env", "A=1", "-mount", "/s:/d", "-oom-score-adj", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, b := adjustment(cfg), adjustment(cfg)
	a.Env[0].Value = "changed"
	a.Mounts[0].Options[0] = "changed"
	a.Linux.OomScoreAdj.Value = 2
	if b.Env[0].Value != "1" || b.Mounts[0].Options[0] != "rbind" || b.Linux.OomScoreAdj.Value != 1 || *cfg.oomScoreAdj != 1 {
		t.Fatalf("adjustments share state: %v", b)
	}
}

// readEvents returns the lines of an events file, decoded.
func readEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		events = append(events, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

func TestRecorderFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte("{\"event\":\"earlier\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := newRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	p := &plugin{cfg: defaults(), rec: rec}
	pod := &api.PodSandbox{Id: "pod-id", Name: "web", Namespace: "e2e"}
	ctr := &api.Container{Id: "ctr-id", PodSandboxId: "pod-id", Name: "app"}
	p.RunPodSandbox(context.Background(), pod)
	p.CreateContainer(context.Background(), pod, ctr)
	p.CreateContainer(context.Background(), pod, ctr)
	p.Synchronize(context.Background(), nil, nil)

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"event":"earlier"}
{"event":"RunPodSandbox","pod":"e2e/web","pod_id":"pod-id","count":1}
{"event":"CreateContainer","pod":"e2e/web","container":"app","id":"ctr-id","pod_id":"pod-id","count":1}
{"event":"CreateContainer","pod":"e2e/web","container":"app","id":"ctr-id","pod_id":"pod-id","count":2}
{"event":"Synchronize","pods":0,"containers":0,"count":1}
`
	if string(data) != want {
		t.Fatalf("events file:\n%s\nwant (appended to the existing line):\n%s", data, want)
	}
}

// TestRecorderConcurrent checks that concurrent handlers write whole lines
// and distinct counts.
func TestRecorderConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	rec, err := newRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec.record(eventRecord{Event: evStartContainer, Pod: "ns/" + strings.Repeat("p", 500)})
		}()
	}
	wg.Wait()
	events := readEvents(t, path)
	if len(events) != n {
		t.Fatalf("%d lines, want %d", len(events), n)
	}
	seen := map[float64]bool{}
	for i, e := range events {
		c := e["count"].(float64)
		if c != float64(i+1) || seen[c] {
			t.Fatalf("line %d has count %v: counts must follow file order", i, c)
		}
		seen[c] = true
	}
}

// fakeUpdater records the unsolicited updates the plugin sends.
type fakeUpdater struct{ got chan []*api.ContainerUpdate }

// UpdateContainers implements updater; it fails every update so that the
// plugin's failure logging runs too.
func (f fakeUpdater) UpdateContainers(u []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	f.got <- u
	return u, nil
}

func TestHandlers(t *testing.T) {
	cfg, err := parseFlags("nriplugin", []string{
		"-namespace", "e2e", "-env", "A=1",
		"-fail-on", "StartContainer", "-fail-on", "Synchronize",
		"-exit-on", "RemoveContainer", "-update-shares", "1024",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var exits []int
	upd := fakeUpdater{got: make(chan []*api.ContainerUpdate, 1)}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	rec, err := newRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	p := &plugin{cfg: cfg, rec: rec, stub: upd, exit: func(code int) { exits = append(exits, code) }}
	ctx := context.Background()
	in := &api.PodSandbox{Id: "in", Name: "a", Namespace: "e2e"}
	out := &api.PodSandbox{Id: "out", Name: "b", Namespace: "kube-system"}
	ctr := &api.Container{Id: "c1", PodSandboxId: "in", Name: "app"}

	if adj, _, err := p.CreateContainer(ctx, in, ctr); err != nil || adj == nil || adj.Env[0].Key != "A" {
		t.Errorf("CreateContainer in namespace = %v, %v; want the -env adjustment", adj, err)
	}
	if adj, _, err := p.CreateContainer(ctx, out, ctr); err != nil || adj != nil {
		t.Errorf("CreateContainer outside namespace = %v, %v; want no adjustment", adj, err)
	}

	if err := p.StartContainer(ctx, in, ctr); err == nil || err.Error() != "crishim-test plugin: refusing StartContainer" {
		t.Errorf("StartContainer in namespace: err = %v", err)
	}
	if err := p.StartContainer(ctx, out, ctr); err != nil {
		t.Errorf("StartContainer outside namespace: err = %v", err)
	}
	// Synchronize is about no pod in particular: the filter does not apply.
	if _, err := p.Synchronize(ctx, []*api.PodSandbox{in, out}, []*api.Container{ctr}); err == nil || err.Error() != "crishim-test plugin: refusing Synchronize" {
		t.Errorf("Synchronize: err = %v", err)
	}

	if err := p.PostStartContainer(ctx, out, ctr); err != nil {
		t.Fatal(err)
	}
	if err := p.PostStartContainer(ctx, in, ctr); err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-upd.got:
		want := &api.ContainerUpdate{}
		want.SetContainerId("c1")
		want.SetLinuxCPUShares(1024)
		if len(u) != 1 || !proto.Equal(u[0], want) {
			t.Errorf("unsolicited update = %v, want %v", u, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no unsolicited update after PostStartContainer")
	}
	select {
	case u := <-upd.got:
		t.Errorf("unexpected second update %v (pod outside namespace?)", u)
	case <-time.After(50 * time.Millisecond):
	}

	p.RemoveContainer(ctx, out, ctr)
	if len(exits) != 0 {
		t.Errorf("RemoveContainer outside namespace exited with %v", exits)
	}
	p.RemoveContainer(ctx, in, ctr)
	if !reflect.DeepEqual(exits, []int{exitRequested}) {
		t.Errorf("RemoveContainer in namespace: exits = %v, want [%d]", exits, exitRequested)
	}

	// Every event is logged, whatever the namespace.
	var got []string
	for _, e := range readEvents(t, path) {
		got = append(got, e["event"].(string)+" "+fmtAny(e["pod"]))
	}
	want := []string{
		"CreateContainer e2e/a", "CreateContainer kube-system/b",
		"StartContainer e2e/a", "StartContainer kube-system/b",
		"Synchronize <nil>",
		"PostStartContainer kube-system/b", "PostStartContainer e2e/a",
		"RemoveContainer kube-system/b", "RemoveContainer e2e/a",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

// fmtAny formats a decoded JSON value, "<nil>" when absent.
func fmtAny(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return "<nil>"
}

// TestHang checks that -hang blocks the handler even after the runtime has
// given up on the request.
func TestHang(t *testing.T) {
	cfg, err := parseFlags("nriplugin", []string{"-hang", "RunPodSandbox"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := newRecorder("")
	p := &plugin{cfg: cfg, rec: rec}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.RunPodSandbox(ctx, &api.PodSandbox{Namespace: "ns", Name: "p"}) }()
	cancel()
	select {
	case err := <-done:
		t.Fatalf("hanging handler returned %v", err)
	case <-time.After(100 * time.Millisecond):
		// Still blocked; the goroutine stays blocked until the test binary
		// exits, as the plugin's would until the process exits.
	}
	if err := p.StopPodSandbox(context.Background(), &api.PodSandbox{}); err != nil {
		t.Errorf("other events must not hang or fail: %v", err)
	}
}
