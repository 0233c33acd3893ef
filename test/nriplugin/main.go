// Command nriplugin is an NRI test plugin for crishim's end-to-end tests.
//
// The tests run this one binary against containerd 2.x's own NRI socket and
// against crishim's NRI host (/run/crishim/nri.sock) and compare the
// containers that result, so it is written only against the upstream NRI
// stub (github.com/containerd/nri/pkg/stub and pkg/api) and imports nothing
// from crishim: any difference the tests see then comes from the host, not
// from the plugin.
//
// Build it with
//
//	go build -tags nri_no_wasm ./test/nriplugin
//
// It subscribes to every pod and container event the stub can deliver,
// logs each one to stderr and, with -events, appends it as a JSON line to a
// file. On CreateContainer it returns the adjustment described by its flags
// (-env, -annotation, -mount, -device, -cpu-*, -memory-limit, -rlimit,
// -oom-score-adj). -hang, -exit-on and -fail-on simulate a slow, crashing or
// refusing plugin; -fail-request and -keep-connected declare the plugin's
// failure policy; -update-shares makes it send an unsolicited update. Run
// with -help for the full list.
//
// Exit status: 0 after SIGINT/SIGTERM or -help; 1 when it cannot start (bad
// flags, no socket, registration refused); 2 when the connection to the
// runtime is lost, so a supervisor can tell it apart and restart the plugin;
// 3 on the event named by -exit-on.
//
// Each line of the -events file is one JSON object written with a single
// write(2) on a file opened with O_APPEND, so lines never interleave even if
// handlers run concurrently or several processes share the file:
//
//	{"event":"CreateContainer","pod":"ns/name","container":"c","id":"<container id>","pod_id":"<sandbox id>","count":1}
//	{"event":"RunPodSandbox","pod":"ns/name","pod_id":"<sandbox id>","count":1}
//	{"event":"Synchronize","pods":3,"containers":5,"count":1}
//
// count is how many events of that name this process has received so far,
// this one included, across all pods (the -namespace filter does not apply
// to logging). A restarted plugin starts counting again from 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// Exit statuses. They are distinct so that a test (or a supervisor) can tell
// why the plugin went away.
const (
	exitOK        = 0 // stopped by a signal, or -help
	exitStartup   = 1 // bad flags, or could not connect/register
	exitConnLost  = 2 // the runtime closed the connection: restart me
	exitRequested = 3 // -exit-on: a simulated crash
)

// Event names accepted by -hang, -exit-on and -fail-on. They are the names of
// the stub's handler methods, which are also the names written to the events
// file.
const (
	evRunPodSandbox        = "RunPodSandbox"
	evUpdatePodSandbox     = "UpdatePodSandbox"
	evPostUpdatePodSandbox = "PostUpdatePodSandbox"
	evStopPodSandbox       = "StopPodSandbox"
	evRemovePodSandbox     = "RemovePodSandbox"
	evCreateContainer      = "CreateContainer"
	evPostCreateContainer  = "PostCreateContainer"
	evStartContainer       = "StartContainer"
	evPostStartContainer   = "PostStartContainer"
	evUpdateContainer      = "UpdateContainer"
	evPostUpdateContainer  = "PostUpdateContainer"
	evStopContainer        = "StopContainer"
	evRemoveContainer      = "RemoveContainer"
	evSynchronize          = "Synchronize"

	// evShutdown is only logged: its handler cannot return an error, so it
	// is not accepted by the failure flags.
	evShutdown = "Shutdown"
)

// knownEvents lists the events the failure flags accept, so that a typo in
// a test fails at startup instead of silently never triggering.
var knownEvents = []string{
	evRunPodSandbox, evUpdatePodSandbox, evPostUpdatePodSandbox,
	evStopPodSandbox, evRemovePodSandbox,
	evCreateContainer, evPostCreateContainer,
	evStartContainer, evPostStartContainer,
	evUpdateContainer, evPostUpdateContainer,
	evStopContainer, evRemoveContainer,
	evSynchronize,
}

// rlimitTypes are the POSIX resource limits OCI knows. -rlimit is checked
// against them so that a misspelt limit is a startup error rather than a
// runtime rejection that a test would misread as the behaviour under test.
var rlimitTypes = []string{
	"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
	"RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
	"RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
	"RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
}

// config is everything the command line asks for. Optional values are
// pointers so that "not given" (nil) differs from an explicit zero: -cpu-quota
// 0 must reach the runtime as 0, while an absent -cpu-quota must not touch
// the quota at all.
type config struct {
	socket    string
	name      string
	idx       string
	namespace string // "" selects every pod

	env         []keyValue
	annotations []keyValue
	mounts      []mountSpec
	devices     []deviceSpec
	rlimits     []rlimitSpec
	cpuShares   *uint64
	cpuQuota    *int64
	cpuPeriod   *int64 // non-negative; the stub setter takes int64
	cpusetCPUs  *string
	memoryLimit *int64
	oomScoreAdj *int

	hang   eventSet
	exitOn eventSet
	failOn eventSet

	// failurePolicy is nil unless -fail-request or -keep-connected was given,
	// so that by default the plugin declares no policy at all, exactly like
	// a plugin written before failure policies existed.
	failurePolicy *api.FailurePolicy

	updateShares *uint64
	eventsFile   string
}

// keyValue is one K=V pair from -env or -annotation, kept in command-line
// order so that the adjustment (and thus the container) is deterministic.
type keyValue struct{ key, value string }

// mountSpec is one -mount SRC:DST.
type mountSpec struct{ source, destination string }

// deviceSpec is one -device, with the attributes read from the host node at
// startup. Stat'ing at startup keeps adjustment a pure function and makes a
// missing device a startup error.
type deviceSpec struct {
	path         string
	typ          string // "c" or "b"
	major, minor int64
	fileMode     uint32 // st_mode without the file type bits, as containerd's own DeviceFromPath
}

// rlimitSpec is one -rlimit TYPE=SOFT:HARD.
type rlimitSpec struct {
	typ        string // normalized, e.g. RLIMIT_NOFILE
	soft, hard uint64
}

// kvList is the flag.Value of a repeatable K=V flag.
type kvList struct{ list *[]keyValue }

// String implements flag.Value.
func (l kvList) String() string {
	if l.list == nil {
		return ""
	}
	s := make([]string, 0, len(*l.list))
	for _, kv := range *l.list {
		s = append(s, kv.key+"="+kv.value)
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value. The value may be empty and may contain '=';
// only the key must be non-empty.
func (l kvList) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	*l.list = append(*l.list, keyValue{k, v})
	return nil
}

// mountList is the flag.Value of the repeatable -mount.
type mountList struct{ list *[]mountSpec }

// String implements flag.Value.
func (l mountList) String() string {
	if l.list == nil {
		return ""
	}
	s := make([]string, 0, len(*l.list))
	for _, m := range *l.list {
		s = append(s, m.source+":"+m.destination)
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value. Both paths must be absolute: a relative bind
// source would be resolved against the runtime's working directory, which
// differs between containerd and crishim and would make the comparison
// meaningless.
func (l mountList) Set(s string) error {
	src, dst, ok := strings.Cut(s, ":")
	if !ok || !filepath.IsAbs(src) || !filepath.IsAbs(dst) {
		return fmt.Errorf("%q: want /SOURCE:/DESTINATION", s)
	}
	*l.list = append(*l.list, mountSpec{src, dst})
	return nil
}

// deviceList is the flag.Value of the repeatable -device.
type deviceList struct{ list *[]deviceSpec }

// String implements flag.Value.
func (l deviceList) String() string {
	if l.list == nil {
		return ""
	}
	s := make([]string, 0, len(*l.list))
	for _, d := range *l.list {
		s = append(s, d.path)
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value by stat'ing the host device node.
func (l deviceList) Set(s string) error {
	d, err := statDevice(s)
	if err != nil {
		return err
	}
	*l.list = append(*l.list, d)
	return nil
}

// statDevice reads the type, numbers and mode of the host device node at
// path, which is also the path the device gets inside the container.
func statDevice(path string) (deviceSpec, error) {
	if !filepath.IsAbs(path) {
		return deviceSpec{}, fmt.Errorf("%q: want an absolute device path", path)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return deviceSpec{}, fmt.Errorf("stat %s: %w", path, err)
	}
	var typ string
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR:
		typ = "c"
	case syscall.S_IFBLK:
		typ = "b"
	default:
		return deviceSpec{}, fmt.Errorf("%s is not a character or block device", path)
	}
	rdev := uint64(st.Rdev) // Rdev's type differs between platforms
	return deviceSpec{
		path:     path,
		typ:      typ,
		major:    int64(devMajor(rdev)),
		minor:    int64(devMinor(rdev)),
		fileMode: uint32(st.Mode &^ syscall.S_IFMT),
	}, nil
}

// devMajor decodes the major number of a Linux dev_t, as glibc's
// gnu_dev_major does; done by hand to avoid a direct golang.org/x/sys
// dependency in go.mod for one helper.
func devMajor(dev uint64) uint64 {
	return (dev>>8)&0xfff | (dev>>32)&^0xfff
}

// devMinor decodes the minor number of a Linux dev_t, as gnu_dev_minor does.
func devMinor(dev uint64) uint64 {
	return dev&0xff | (dev>>12)&^0xff
}

// rlimitList is the flag.Value of the repeatable -rlimit.
type rlimitList struct{ list *[]rlimitSpec }

// String implements flag.Value.
func (l rlimitList) String() string {
	if l.list == nil {
		return ""
	}
	s := make([]string, 0, len(*l.list))
	for _, r := range *l.list {
		s = append(s, fmt.Sprintf("%s=%d:%d", r.typ, r.soft, r.hard))
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value. TYPE is case-insensitive and may omit the
// RLIMIT_ prefix, so "nofile" means RLIMIT_NOFILE.
func (l rlimitList) Set(s string) error {
	typ, limits, ok := strings.Cut(s, "=")
	softS, hardS, ok2 := strings.Cut(limits, ":")
	if !ok || !ok2 {
		return fmt.Errorf("%q: want TYPE=SOFT:HARD", s)
	}
	typ = strings.ToUpper(typ)
	if !strings.HasPrefix(typ, "RLIMIT_") {
		typ = "RLIMIT_" + typ
	}
	if !slices.Contains(rlimitTypes, typ) {
		return fmt.Errorf("%q: unknown rlimit %s", s, typ)
	}
	soft, err := strconv.ParseUint(softS, 10, 64)
	if err != nil {
		return fmt.Errorf("%q: soft limit: %w", s, err)
	}
	hard, err := strconv.ParseUint(hardS, 10, 64)
	if err != nil {
		return fmt.Errorf("%q: hard limit: %w", s, err)
	}
	if soft > hard {
		return fmt.Errorf("%q: soft limit above hard limit", s)
	}
	*l.list = append(*l.list, rlimitSpec{typ, soft, hard})
	return nil
}

// eventSet is the flag.Value of -hang, -exit-on and -fail-on. It is
// repeatable so that one plugin can, say, refuse both CreateContainer and
// StartContainer.
type eventSet map[string]bool

// String implements flag.Value.
func (s eventSet) String() string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// Set implements flag.Value, accepting only the names in knownEvents.
func (s eventSet) Set(name string) error {
	if !slices.Contains(knownEvents, name) {
		return fmt.Errorf("unknown event %q (known: %s)", name, strings.Join(knownEvents, ", "))
	}
	s[name] = true
	return nil
}

// optional is the flag.Value of a non-repeatable flag whose absence must be
// told apart from its zero value: Set stores a pointer to the parsed value.
type optional[T any] struct {
	dst   **T
	parse func(string) (T, error)
}

// String implements flag.Value. The flag package also calls it on a zero
// optional to print defaults, hence the nil check.
func (o optional[T]) String() string {
	if o.dst == nil || *o.dst == nil {
		return ""
	}
	return fmt.Sprint(**o.dst)
}

// Set implements flag.Value.
func (o optional[T]) Set(s string) error {
	v, err := o.parse(s)
	if err != nil {
		return err
	}
	*o.dst = &v
	return nil
}

// Parsers for optional flags. strconv's errors already quote the input.
func parseUint64(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }
func parseInt64(s string) (int64, error)   { return strconv.ParseInt(s, 10, 64) }
func parseString(s string) (string, error) { return s, nil }

// parsePeriod parses a CPU period: unsigned in OCI, but the stub's setter
// takes an int64, so the value must fit both.
func parsePeriod(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err == nil && v < 0 {
		err = errors.New("must not be negative")
	}
	return v, err
}

// parseOOMScoreAdj parses an OOM score adjustment, within the kernel's range.
func parseOOMScoreAdj(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err == nil && (v < -1000 || v > 1000) {
		err = errors.New("must be within [-1000, 1000]")
	}
	return v, err
}

// parseFlags parses the command line (without the program name). Errors and,
// for -help, the usage go to output; -help returns flag.ErrHelp.
func parseFlags(prog string, args []string, output io.Writer) (*config, error) {
	cfg := &config{
		hang:   eventSet{},
		exitOn: eventSet{},
		failOn: eventSet{},
	}
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintf(output, "Usage: %s [flags]\n\nNRI test plugin for crishim's end-to-end tests.\n"+
			"Exit status: 0 stopped by signal, 1 startup error, 2 connection lost, 3 -exit-on.\n"+
			"EVENT is one of: %s.\n\nFlags:\n", prog, strings.Join(knownEvents, ", "))
		fs.PrintDefaults()
	}

	fs.StringVar(&cfg.socket, "socket", api.DefaultSocketPath, "NRI socket `PATH` to connect to")
	fs.StringVar(&cfg.name, "name", "crishim-test", "plugin `NAME` to register")
	fs.StringVar(&cfg.idx, "idx", "10", "two-digit plugin index `NN` to register (orders plugins)")
	fs.StringVar(&cfg.namespace, "namespace", "", "act (adjust, update, hang, exit, fail) only on pods in namespace `NS`; default all pods")

	fs.Var(kvList{&cfg.env}, "env", "add environment variable `K=V` to created containers (repeatable)")
	fs.Var(kvList{&cfg.annotations}, "annotation", "add annotation `K=V` to created containers (repeatable)")
	fs.Var(mountList{&cfg.mounts}, "mount", "bind mount `SRC:DST` (rbind,ro) into created containers (repeatable)")
	fs.Var(deviceList{&cfg.devices}, "device", "inject host device `/dev/PATH` at the same path (repeatable)")
	fs.Var(optional[uint64]{&cfg.cpuShares, parseUint64}, "cpu-shares", "set CPU shares to `N`")
	fs.Var(optional[int64]{&cfg.cpuQuota, parseInt64}, "cpu-quota", "set CPU quota to `N` microseconds")
	fs.Var(optional[int64]{&cfg.cpuPeriod, parsePeriod}, "cpu-period", "set CPU period to `N` microseconds")
	fs.Var(optional[string]{&cfg.cpusetCPUs, parseString}, "cpuset-cpus", "set cpuset CPUs to `S`, e.g. 0-1")
	fs.Var(optional[int64]{&cfg.memoryLimit, parseInt64}, "memory-limit", "set memory limit to `BYTES`")
	fs.Var(rlimitList{&cfg.rlimits}, "rlimit", "add POSIX rlimit `TYPE=SOFT:HARD`, e.g. nofile=1024:2048 (repeatable)")
	fs.Var(optional[int]{&cfg.oomScoreAdj, parseOOMScoreAdj}, "oom-score-adj", "set OOM score adjustment to `N`")

	fs.Var(cfg.hang, "hang", "block in the `EVENT` handler until the process exits (repeatable)")
	fs.Var(cfg.exitOn, "exit-on", fmt.Sprintf("exit with status %d when `EVENT` arrives (repeatable)", exitRequested))
	fs.Var(cfg.failOn, "fail-on", "return an error from the `EVENT` handler (repeatable)")

	failRequest := fs.Bool("fail-request", false, "declare failure policy FailRequest: the runtime fails requests this plugin fails to answer")
	keepConnected := fs.Bool("keep-connected", false, "declare failure policy KeepConnected: the runtime keeps this plugin after a timeout")

	fs.Var(optional[uint64]{&cfg.updateShares, parseUint64}, "update-shares", "after each container start, send an unsolicited update setting its CPU shares to `N`")
	fs.StringVar(&cfg.eventsFile, "events", "", "append one JSON line per received event to `FILE`")

	if err := fs.Parse(args); err != nil {
		return nil, err // already reported on output by fs
	}

	// Report the remaining errors on output too, as fs does, so that main
	// never has to print a parse error itself.
	fail := func(err error) (*config, error) {
		fmt.Fprintf(output, "%s: %v\n", prog, err)
		return nil, err
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if err := api.CheckPluginIndex(cfg.idx); err != nil {
		return fail(err)
	}
	if err := api.CheckPluginName(cfg.name); err != nil {
		return fail(err)
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "fail-request" || f.Name == "keep-connected" {
			cfg.failurePolicy = &api.FailurePolicy{FailRequest: *failRequest, KeepConnected: *keepConnected}
		}
	})
	return cfg, nil
}

// adjustment builds the adjustment requested by cfg for one created
// container, or nil when cfg asks for none, so that a plugin without
// adjustment flags answers exactly like one that does not implement
// CreateContainer. It builds fresh objects on every call: the result is
// handed to the stub, which must not see state shared between containers.
func adjustment(cfg *config) *api.ContainerAdjustment {
	adj := &api.ContainerAdjustment{}
	empty := true
	for _, kv := range cfg.env {
		adj.AddEnv(kv.key, kv.value)
		empty = false
	}
	for _, kv := range cfg.annotations {
		adj.AddAnnotation(kv.key, kv.value)
		empty = false
	}
	for _, m := range cfg.mounts {
		adj.AddMount(&api.Mount{
			Source:      m.source,
			Destination: m.destination,
			Type:        "bind",
			Options:     []string{"rbind", "ro"},
		})
		empty = false
	}
	for _, d := range cfg.devices {
		adj.AddDevice(&api.LinuxDevice{
			Path:     d.path,
			Type:     d.typ,
			Major:    d.major,
			Minor:    d.minor,
			FileMode: api.FileMode(d.fileMode),
		})
		empty = false
	}
	for _, r := range cfg.rlimits {
		adj.AddRlimit(r.typ, r.hard, r.soft) // note the stub's argument order: hard, soft
		empty = false
	}
	if cfg.cpuShares != nil {
		adj.SetLinuxCPUShares(*cfg.cpuShares)
		empty = false
	}
	if cfg.cpuQuota != nil {
		adj.SetLinuxCPUQuota(*cfg.cpuQuota)
		empty = false
	}
	if cfg.cpuPeriod != nil {
		adj.SetLinuxCPUPeriod(*cfg.cpuPeriod)
		empty = false
	}
	if cfg.cpusetCPUs != nil {
		adj.SetLinuxCPUSetCPUs(*cfg.cpusetCPUs)
		empty = false
	}
	if cfg.memoryLimit != nil {
		adj.SetLinuxMemoryLimit(*cfg.memoryLimit)
		empty = false
	}
	if cfg.oomScoreAdj != nil {
		v := *cfg.oomScoreAdj
		adj.SetLinuxOomScoreAdj(&v)
		empty = false
	}
	if empty {
		return nil
	}
	return adj
}

// eventRecord is one line of the -events file. Pod-level events leave the
// container fields out; only Synchronize has pods and containers, which are
// pointers so that a zero count is still written.
type eventRecord struct {
	Event      string `json:"event"`
	Pod        string `json:"pod,omitempty"`
	Container  string `json:"container,omitempty"`
	ID         string `json:"id,omitempty"`
	PodID      string `json:"pod_id,omitempty"`
	Pods       *int   `json:"pods,omitempty"`
	Containers *int   `json:"containers,omitempty"`
	Count      int    `json:"count"`
}

// recorder counts events and appends them to the events file. The mutex
// makes the count order match the line order in the file; the single Write
// per line on an O_APPEND file is what keeps lines whole.
type recorder struct {
	mu     sync.Mutex
	counts map[string]int
	file   *os.File // nil without -events
}

// newRecorder opens path for appending, or records counts only if path is "".
func newRecorder(path string) (*recorder, error) {
	r := &recorder{counts: map[string]int{}}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		r.file = f
	}
	return r, nil
}

// record logs rec to stderr and appends it to the events file, filling in
// its count. Write errors are only logged: losing a line must not change how
// the plugin answers the runtime.
func (r *recorder) record(rec eventRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[rec.Event]++
	rec.Count = r.counts[rec.Event]
	line, err := json.Marshal(rec)
	if err != nil {
		log.Printf("marshal event: %v", err) // cannot happen for these field types
		return
	}
	log.Printf("event %s", line)
	if r.file == nil {
		return
	}
	if _, err := r.file.Write(append(line, '\n')); err != nil {
		log.Printf("write events file: %v", err)
	}
}

// updater is the part of stub.Stub the plugin calls back into; an interface
// so that tests can run the handlers without a runtime.
type updater interface {
	UpdateContainers([]*api.ContainerUpdate) ([]*api.ContainerUpdate, error)
}

// plugin implements the stub's handler interfaces. The stub subscribes it to
// exactly the events whose handlers it implements, so it implements all of
// them (except ValidateContainerAdjustment, see below) to see every event.
//
// It does not implement ValidateContainerAdjustment: that is not a lifecycle
// event but makes the plugin a validator, which the runtime consults to
// approve every other plugin's adjustments; being one would change the
// behaviour under test.
type plugin struct {
	cfg  *config
	rec  *recorder
	stub updater // set before the stub starts, so never raced
	exit func(int)
}

// selects reports whether the plugin should act on pod. A nil pod (for
// Synchronize, which is not about one pod) is always selected.
func (p *plugin) selects(pod *api.PodSandbox) bool {
	return pod == nil || p.cfg.namespace == "" || pod.GetNamespace() == p.cfg.namespace
}

// podEvent records an event about a pod.
func (p *plugin) podEvent(event string, pod *api.PodSandbox) {
	p.rec.record(eventRecord{
		Event: event,
		Pod:   pod.GetNamespace() + "/" + pod.GetName(),
		PodID: pod.GetId(),
	})
}

// containerEvent records an event about a container.
func (p *plugin) containerEvent(event string, pod *api.PodSandbox, ctr *api.Container) {
	p.rec.record(eventRecord{
		Event:     event,
		Pod:       pod.GetNamespace() + "/" + pod.GetName(),
		Container: ctr.GetName(),
		ID:        ctr.GetId(),
		PodID:     ctr.GetPodSandboxId(),
	})
}

// act applies the failure flags to event, for a selected pod: exit, hang or
// return the refusal error, in that order of precedence.
func (p *plugin) act(ctx context.Context, event string, pod *api.PodSandbox) error {
	if !p.selects(pod) {
		return nil
	}
	if p.cfg.exitOn[event] {
		log.Printf("%s: exiting with status %d (-exit-on)", event, exitRequested)
		p.exit(exitRequested)
	}
	if p.cfg.hang[event] {
		log.Printf("%s: hanging until the process exits (-hang)", event)
		// Log when the runtime gives up on the request, which is what the
		// hang is there to provoke; then keep hanging regardless, as a
		// really stuck plugin would.
		<-ctx.Done()
		log.Printf("%s: request context done (%v); still hanging", event, ctx.Err())
		select {}
	}
	if p.cfg.failOn[event] {
		log.Printf("%s: refusing (-fail-on)", event)
		return fmt.Errorf("crishim-test plugin: refusing %s", event)
	}
	return nil
}

// Synchronize implements stub.SynchronizeInterface. It requests no updates.
func (p *plugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	np, nc := len(pods), len(ctrs)
	p.rec.record(eventRecord{Event: evSynchronize, Pods: &np, Containers: &nc})
	return nil, p.act(ctx, evSynchronize, nil)
}

// Shutdown implements stub.ShutdownInterface: the runtime is going away.
// The connection loss that follows is what ends the process.
func (p *plugin) Shutdown(context.Context) {
	p.rec.record(eventRecord{Event: evShutdown})
}

// RunPodSandbox implements stub.RunPodInterface.
func (p *plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.podEvent(evRunPodSandbox, pod)
	return p.act(ctx, evRunPodSandbox, pod)
}

// UpdatePodSandbox implements stub.UpdatePodInterface. It accepts the
// requested resources unchanged.
func (p *plugin) UpdatePodSandbox(ctx context.Context, pod *api.PodSandbox, _, _ *api.LinuxResources) error {
	p.podEvent(evUpdatePodSandbox, pod)
	return p.act(ctx, evUpdatePodSandbox, pod)
}

// PostUpdatePodSandbox implements stub.PostUpdatePodInterface.
func (p *plugin) PostUpdatePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.podEvent(evPostUpdatePodSandbox, pod)
	return p.act(ctx, evPostUpdatePodSandbox, pod)
}

// StopPodSandbox implements stub.StopPodInterface.
func (p *plugin) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.podEvent(evStopPodSandbox, pod)
	return p.act(ctx, evStopPodSandbox, pod)
}

// RemovePodSandbox implements stub.RemovePodInterface.
func (p *plugin) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.podEvent(evRemovePodSandbox, pod)
	return p.act(ctx, evRemovePodSandbox, pod)
}

// CreateContainer implements stub.CreateContainerInterface: it returns the
// configured adjustment for containers of selected pods, and no updates to
// other containers.
func (p *plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.containerEvent(evCreateContainer, pod, ctr)
	if err := p.act(ctx, evCreateContainer, pod); err != nil {
		return nil, nil, err
	}
	if !p.selects(pod) {
		return nil, nil, nil
	}
	adj := adjustment(p.cfg)
	if adj != nil {
		log.Printf("%s: adjusting %s: %v", evCreateContainer, ctr.GetId(), adj)
	}
	return adj, nil, nil
}

// PostCreateContainer implements stub.PostCreateContainerInterface.
func (p *plugin) PostCreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.containerEvent(evPostCreateContainer, pod, ctr)
	return p.act(ctx, evPostCreateContainer, pod)
}

// StartContainer implements stub.StartContainerInterface.
func (p *plugin) StartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.containerEvent(evStartContainer, pod, ctr)
	return p.act(ctx, evStartContainer, pod)
}

// PostStartContainer implements stub.PostStartContainerInterface. With
// -update-shares it sends the unsolicited update from a new goroutine,
// after this handler has returned: containerd holds its NRI lock while it
// delivers the event and takes the same lock to apply a plugin's update, so
// calling UpdateContainers from inside the handler would block both sides
// until the request timed out.
func (p *plugin) PostStartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.containerEvent(evPostStartContainer, pod, ctr)
	if err := p.act(ctx, evPostStartContainer, pod); err != nil {
		return err
	}
	if p.cfg.updateShares != nil && p.selects(pod) {
		go p.updateShares(ctr.GetId(), *p.cfg.updateShares)
	}
	return nil
}

// updateShares asks the runtime to set the CPU shares of container id, and
// logs the outcome, which is what the tests check.
func (p *plugin) updateShares(id string, shares uint64) {
	u := &api.ContainerUpdate{}
	u.SetContainerId(id)
	u.SetLinuxCPUShares(shares)
	failed, err := p.stub.UpdateContainers([]*api.ContainerUpdate{u})
	for _, f := range failed {
		log.Printf("unsolicited update failed for container %s: %v", f.GetContainerId(), f)
	}
	switch {
	case err != nil:
		log.Printf("unsolicited update of %s (cpu shares %d): %v", id, shares, err)
	case len(failed) == 0:
		log.Printf("unsolicited update of %s (cpu shares %d) applied", id, shares)
	}
}

// UpdateContainer implements stub.UpdateContainerInterface. It requests no
// updates of its own, so the runtime applies the original request.
func (p *plugin) UpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.containerEvent(evUpdateContainer, pod, ctr)
	return nil, p.act(ctx, evUpdateContainer, pod)
}

// PostUpdateContainer implements stub.PostUpdateContainerInterface.
func (p *plugin) PostUpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.containerEvent(evPostUpdateContainer, pod, ctr)
	return p.act(ctx, evPostUpdateContainer, pod)
}

// StopContainer implements stub.StopContainerInterface. It requests no
// updates to other containers.
func (p *plugin) StopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) ([]*api.ContainerUpdate, error) {
	p.containerEvent(evStopContainer, pod, ctr)
	return nil, p.act(ctx, evStopContainer, pod)
}

// RemoveContainer implements stub.RemoveContainerInterface.
func (p *plugin) RemoveContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.containerEvent(evRemoveContainer, pod, ctr)
	return p.act(ctx, evRemoveContainer, pod)
}

// stdLogger routes the stub's own messages (registration, configuration,
// runtime name and version) through the standard log package, so that they
// are interleaved with the plugin's in one stderr stream. It satisfies the
// stub's logger interface structurally.
type stdLogger struct{}

// Debugf logs a stub debug message.
func (stdLogger) Debugf(_ context.Context, format string, args ...any) {
	log.Printf("stub debug: "+format, args...)
}

// Infof logs a stub informational message.
func (stdLogger) Infof(_ context.Context, format string, args ...any) {
	log.Printf("stub: "+format, args...)
}

// Warnf logs a stub warning.
func (stdLogger) Warnf(_ context.Context, format string, args ...any) {
	log.Printf("stub warning: "+format, args...)
}

// Errorf logs a stub error.
func (stdLogger) Errorf(_ context.Context, format string, args ...any) {
	log.Printf("stub error: "+format, args...)
}

// run connects the plugin to the runtime and serves events until a signal
// or the loss of the connection; it returns the exit status.
func run(cfg *config) int {
	rec, err := newRecorder(cfg.eventsFile)
	if err != nil {
		log.Printf("events file: %v", err)
		return exitStartup
	}
	p := &plugin{cfg: cfg, rec: rec, exit: os.Exit}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var opts []stub.Option
	// A plugin the runtime starts itself (a pre-installed one) gets its
	// name, index and connection from the environment; the stub refuses
	// them twice.
	if os.Getenv("NRI_PLUGIN_IDX") == "" {
		opts = append(opts, stub.WithPluginName(cfg.name), stub.WithPluginIdx(cfg.idx), stub.WithSocketPath(cfg.socket))
	}
	opts = append(opts,
		stub.WithLogger(stdLogger{}),
		// The stub calls this when the ttrpc connection closes. Our own
		// Stop on a signal closes it too, which is not a loss: ctx is
		// already cancelled then.
		stub.WithOnClose(func() {
			if ctx.Err() != nil {
				return
			}
			log.Printf("connection to the runtime lost; exiting with status %d", exitConnLost)
			os.Exit(exitConnLost)
		}),
	)
	if cfg.failurePolicy != nil {
		opts = append(opts, stub.WithFailurePolicy(cfg.failurePolicy))
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		log.Printf("create stub: %v", err)
		return exitStartup
	}
	p.stub = s

	// Start rather than Run: Run returns the same way for a failed
	// registration and for a later connection loss, and the two need
	// different exit statuses.
	if err := s.Start(ctx); err != nil {
		log.Printf("start plugin: %v", err)
		return exitStartup
	}
	log.Printf("plugin %s-%s registered on %s (failure policy %v)", cfg.idx, cfg.name, cfg.socket, cfg.failurePolicy)

	go func() {
		<-ctx.Done()
		log.Printf("signal received; stopping")
		s.Stop()
	}()
	s.Wait()
	if ctx.Err() != nil {
		return exitOK
	}
	// Normally WithOnClose has exited already; this covers the server
	// stopping first.
	log.Printf("plugin service stopped; exiting with status %d", exitConnLost)
	return exitConnLost
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	cfg, err := parseFlags(os.Args[0], os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(exitOK)
	}
	if err != nil {
		os.Exit(exitStartup) // parseFlags has reported it
	}
	log.SetPrefix(cfg.idx + "-" + cfg.name + ": ")
	os.Exit(run(cfg))
}
