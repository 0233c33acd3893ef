package shim_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/fakecri"
)

// TestThousandClients runs 1,000 clients, each on its own connection, making
// mixed calls (unary, a streamed list, an events stream opened and dropped,
// a runtime error, an RPC unknown to cri-api) for a bounded time: every call
// gets its expected answer, and goleak (TestMain) finds nothing left over.
func TestThousandClients(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	e := newEnv(t, envOptions{})
	e.fake.Script(runtimeapi.RuntimeService_GetContainerEvents_FullMethodName, fakecri.Script{
		Stream: []proto.Message{&runtimeapi.ContainerEventResponse{ContainerId: "c"}}, Hold: true,
	})
	e.fake.Script(runtimeapi.RuntimeService_StreamContainers_FullMethodName, fakecri.Script{
		Stream: []proto.Message{&runtimeapi.StreamContainersResponse{}, &runtimeapi.StreamContainersResponse{}},
	})
	e.fake.Script(runtimeapi.RuntimeService_RemoveContainer_FullMethodName, fakecri.Script{Err: status.Error(codes.NotFound, "gone")})
	const clients = 1000
	duration := 2 * time.Second
	var calls, unexpected atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(duration)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				unexpected.Add(1)
				return
			}
			defer conn.Close()
			rc := runtimeapi.NewRuntimeServiceClient(conn)
			fail := func(what string, err error) {
				if unexpected.Add(1) <= 5 {
					t.Errorf("client %d: %s: %v", i, what, err)
				}
			}
			// Every client makes each kind of call at least once, then
			// goes on until the deadline.
			for n := 0; n < 5 || time.Now().Before(deadline); n++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				calls.Add(1)
				switch n % 5 {
				case 0:
					if _, err := rc.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
						fail("Version", err)
					}
				case 1:
					s, err := rc.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{})
					if err != nil {
						fail("StreamContainers", err)
						break
					}
					got := 0
					for {
						if _, err := s.Recv(); err != nil {
							if !errors.Is(err, io.EOF) || got != 2 {
								fail("StreamContainers recv", err)
							}
							break
						}
						got++
					}
				case 2:
					sctx, scancel := context.WithCancel(ctx)
					s, err := rc.GetContainerEvents(sctx, &runtimeapi.GetEventsRequest{})
					if err == nil {
						_, err = s.Recv()
					}
					scancel()
					if err != nil {
						fail("GetContainerEvents", err)
					}
				case 3:
					if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: "x"}); status.Code(err) != codes.NotFound {
						fail("RemoveContainer", err)
					}
				case 4:
					var out rawMsg
					if err := conn.Invoke(ctx, fakecri.TestUnaryMethod, &rawMsg{b: []byte("ab")}, &out, rawCall); err != nil || string(out.b) != "ba" {
						fail("unknown RPC", err)
					}
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d clients, %v: %d calls, %d unexpected", clients, duration, calls.Load(), unexpected.Load())
	if unexpected.Load() != 0 {
		t.Errorf("%d unexpected results", unexpected.Load())
	}
	if calls.Load() < 5*clients {
		t.Errorf("only %d calls, want at least %d (each client each kind of call)", calls.Load(), 5*clients)
	}
}
