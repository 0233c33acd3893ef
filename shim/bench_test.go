package shim_test

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

func BenchmarkMethodLookup(b *testing.B) {
	tab := shim.NewMethods()
	for b.Loop() {
		_ = tab.Lookup(runtimeapi.RuntimeService_ListContainers_FullMethodName)
	}
}

// BenchmarkVersionThroughCrishim is one tiny unary call through crishim (all
// interceptors on) to an in-process fake runtime, over unix sockets.
func BenchmarkVersionThroughCrishim(b *testing.B) {
	e := newEnv(b, envOptions{})
	ctx := context.Background()
	for b.Loop() {
		if err := e.conn.Invoke(ctx, runtimeapi.RuntimeService_Version_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall); err != nil {
			b.Fatal(err)
		}
	}
}
