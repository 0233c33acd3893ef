package plugins

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"
)

// lockedBuffer is a log sink safe for the host's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoEnvValuesInLogs: plugins inject secrets as environment variables
// (tokens, keys); crishim logs at trace level and NRI's own lines must not
// show their values, on success, on a refusal and on a conflict.
func TestNoEnvValuesInLogs(t *testing.T) {
	const secret = "s3cr3t-token-value"
	var logs lockedBuffer
	r := newRig(t, &Config{}, createScript)
	r.host.log.SetOutput(&logs)
	r.host.log.SetLevel(logrus.TraceLevel)
	withSecret := func(extra func(*api.ContainerAdjustment)) func(*api.ContainerAdjustment) {
		return func(a *api.ContainerAdjustment) {
			a.AddEnv("TOKEN", secret)
			a.AddAnnotation("plugin.example/token", secret)
			if extra != nil {
				extra(a)
			}
		}
	}
	r.connect(t, "injector", "10", &testPlugin{adjust: withSecret(nil)})
	if _, err := r.RC.CreateContainer(context.Background(), createReq()); err != nil {
		t.Fatal(err)
	}
	// a second plugin: the same variable (a conflict) and an rlimit (refused)
	r.connect(t, "other", "20", &testPlugin{adjust: withSecret(func(a *api.ContainerAdjustment) { a.AddRlimit("RLIMIT_NOFILE", 2, 1) })})
	_, err := r.RC.CreateContainer(context.Background(), createReq())
	if err == nil {
		t.Fatal("conflicting plugins: CreateContainer succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error shows the value: %v", err)
	}
	if !strings.Contains(logs.String(), "nri:") {
		t.Fatal("no nri log lines captured: the test would not see a leak")
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the logs show a plugin's env value:\n%s", logs.String())
	}
}
