package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// op is one unit of workload: a call, a stream or a pod cycle. It returns the
// units it completed (1 per call, events for a stream), partial ones included
// when ctx ends it.
type op func(ctx context.Context, cc *grpc.ClientConn, worker, iter int) (int, error)

// dial connects the load generator to a socket. Like the kubelet, it uses
// one connection per endpoint for all calls.
func dial(socket string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)))
	if err != nil {
		return nil, err
	}
	cc.Connect()
	return cc, nil
}

// unaryOp calls method with req. Typed, it decodes the response like the
// kubelet's CRI client does; raw, it takes the response bytes as they come.
func unaryOp(method string, req func(worker, iter int) proto.Message, resp func() proto.Message, raw bool) op {
	return func(ctx context.Context, cc *grpc.ClientConn, w, i int) (int, error) {
		r := req(w, i)
		if raw {
			b, err := proto.Marshal(r)
			if err != nil {
				return 0, err
			}
			out := new(rawMsg)
			if err := cc.Invoke(ctx, method, canned(b), out); err != nil {
				return 0, err
			}
			out.data.Free()
			return 1, nil
		}
		if err := cc.Invoke(ctx, method, r, resp()); err != nil {
			return 0, err
		}
		return 1, nil
	}
}

var serverStream = &grpc.StreamDesc{ServerStreams: true}

// streamOp opens a server stream of method with the request metadata md and
// reads it to its end.
func streamOp(method string, req proto.Message, md metadata.MD, resp func() proto.Message, raw bool) op {
	return func(ctx context.Context, cc *grpc.ClientConn, _, _ int) (int, error) {
		ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, md))
		defer cancel()
		cs, err := cc.NewStream(ctx, serverStream, method)
		if err != nil {
			return 0, err
		}
		if err := cs.SendMsg(req); err != nil {
			return 0, err
		}
		if err := cs.CloseSend(); err != nil {
			return 0, err
		}
		n := 0
		for {
			if raw {
				m := new(rawMsg)
				err = cs.RecvMsg(m)
				if err == nil {
					m.data.Free()
				}
			} else {
				err = cs.RecvMsg(resp())
			}
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			n++
		}
	}
}

// sample is what one measurement phase of one target produced.
type sample struct {
	lat     []time.Duration
	units   int
	elapsed time.Duration
	cpu     map[string]time.Duration // CPU used per process during the phase
}

func (s *sample) add(o sample) {
	s.lat = append(s.lat, o.lat...)
	s.units += o.units
	s.elapsed += o.elapsed
	if s.cpu == nil {
		s.cpu = map[string]time.Duration{}
	}
	for k, v := range o.cpu {
		s.cpu[k] += v
	}
}

func (s *sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.units) / s.elapsed.Seconds()
}

// cpuPerUnit is a process's CPU time per completed unit.
func (s *sample) cpuPerUnit(proc string) time.Duration {
	if s.units == 0 {
		return 0
	}
	return s.cpu[proc] / time.Duration(s.units)
}

// latency runs op back to back (concurrency 1) for d and at least minIters
// times, recording each duration.
func latency(cc *grpc.ClientConn, o op, d time.Duration, minIters int, timeout time.Duration) (sample, error) {
	var s sample
	start := time.Now()
	for i := 0; time.Since(start) < d || i < minIters; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		t := time.Now()
		n, err := o(ctx, cc, 0, i)
		el := time.Since(t)
		cancel()
		if err != nil {
			return s, fmt.Errorf("call %d: %w", i, err)
		}
		s.lat = append(s.lat, el)
		s.units += n
	}
	s.elapsed = time.Since(start)
	return s, nil
}

// throughput runs op from conc workers for d. Cancellable ops (streams) are
// cut at the deadline and their partial units counted; others are not
// started after it (a pod cycle is never abandoned half way).
func throughput(cc *grpc.ClientConn, o op, conc int, d time.Duration, cancellable bool, timeout time.Duration) (sample, error) {
	var units atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	runCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				parent := context.Background()
				if cancellable {
					parent = runCtx
				}
				ctx, c := context.WithTimeout(parent, timeout)
				n, err := o(ctx, cc, w, i)
				c()
				units.Add(int64(n))
				if err != nil {
					// The deadline travels with the call: a proxy may end the
					// stream on it a moment before our own timer fires.
					if cancellable && isCancel(err) && time.Until(deadline) < 100*time.Millisecond {
						return
					}
					once.Do(func() { firstErr = fmt.Errorf("worker %d call %d: %w", w, i, err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return sample{units: int(units.Load()), elapsed: time.Since(start)}, firstErr
}

func isCancel(err error) bool {
	c := status.Code(err)
	return c == codes.Canceled || c == codes.DeadlineExceeded || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
