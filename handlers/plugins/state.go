package plugins

import (
	"sync"

	"github.com/containerd/nri/pkg/api"
)

// state is what crishim knows of the runtime's pods and containers for
// NRI's events: the NRI shapes built when they were created (CRI's Stop and
// Remove calls carry only an ID), the ID each container has for plugins,
// and which events a container already had, so that each gets one
// StopContainer and one RemoveContainer whichever way it ends (a
// StopContainer call, an exit of its own, a RemoveContainer of a running
// container).
type state struct {
	mu   sync.Mutex
	pods map[string]*api.PodSandbox // by pod ID
	// stoppedPods had their NRI StopPodSandbox
	stoppedPods map[string]bool
	ctrs        map[string]*ctrState // by runtime ID
	rtOf        map[string]string    // runtime ID by NRI ID
}

type ctrState struct {
	c       *api.Container // Id is the NRI ID
	stopped bool           // NRI StopContainer sent
}

func newState() *state {
	return &state{pods: map[string]*api.PodSandbox{}, stoppedPods: map[string]bool{}, ctrs: map[string]*ctrState{}, rtOf: map[string]string{}}
}

func (s *state) putPod(p *api.PodSandbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods[p.Id] = p
}

func (s *state) pod(id string) *api.PodSandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods[id]
}

func (s *state) removePod(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pods, id)
	delete(s.stoppedPods, id)
}

// markPodStopped reports whether the pod still needed its NRI
// StopPodSandbox, and marks it sent.
func (s *state) markPodStopped(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pods[id]; !ok || s.stoppedPods[id] {
		return false
	}
	s.stoppedPods[id] = true
	return true
}

func (s *state) putContainer(rtID string, c *api.Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.ctrs[rtID]; ok {
		old.c = c
		return
	}
	s.ctrs[rtID] = &ctrState{c: c}
	s.rtOf[c.Id] = rtID
}

// container returns a copy of the NRI container of a runtime ID.
func (s *state) container(rtID string) (*api.Container, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.ctrs[rtID]
	if !ok {
		return nil, false
	}
	return cloneContainer(cs.c), true
}

// setState records a container's state (and exit) for later events.
func (s *state) setState(rtID string, st api.ContainerState, update func(*api.Container)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs, ok := s.ctrs[rtID]; ok {
		cs.c.State = st
		if update != nil {
			update(cs.c)
		}
	}
}

// markStopped reports whether the container still needed its NRI
// StopContainer, and marks it sent.
func (s *state) markStopped(rtID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.ctrs[rtID]
	if !ok || cs.stopped {
		return false
	}
	cs.stopped = true
	cs.c.State = api.ContainerState_CONTAINER_STOPPED
	return true
}

func (s *state) removeContainer(rtID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs, ok := s.ctrs[rtID]; ok {
		delete(s.rtOf, cs.c.Id)
		delete(s.ctrs, rtID)
	}
}

// runtimeID maps a plugin's container ID to the runtime's.
func (s *state) runtimeID(nriID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.rtOf[nriID]
	return id, ok
}

// running lists the runtime IDs of containers not yet stopped.
func (s *state) running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, cs := range s.ctrs {
		if !cs.stopped {
			out = append(out, id)
		}
	}
	return out
}

func cloneContainer(c *api.Container) *api.Container {
	if c == nil {
		return nil
	}
	return protoClone(c)
}

// containersOf lists the runtime IDs of a pod's containers.
func (s *state) containersOf(podID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, cs := range s.ctrs {
		if cs.c.PodSandboxId == podID {
			out = append(out, id)
		}
	}
	return out
}

// live reports whether a known container still needs its StopContainer.
func (s *state) live(rtID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.ctrs[rtID]
	return ok && !cs.stopped
}

// known lists the IDs of the pods and the runtime IDs of the containers
// crishim knows.
func (s *state) known() (pods, ctrs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.pods {
		pods = append(pods, id)
	}
	for id := range s.ctrs {
		ctrs = append(ctrs, id)
	}
	return pods, ctrs
}
