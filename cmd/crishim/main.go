// Command crishim is a CRI proxy: it serves the kubelet on a unix socket and
// forwards every call to the real runtime, intercepting the few it manages.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The signals crishim acts on stay caught from here until the process
	// exits: left to its default action, a SIGHUP arriving while crishim
	// drains (systemctl reload racing a stop) would end the process and cut
	// every call in flight. serve says what each signal does; the other
	// commands ignore them and finish in moments.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, sigs); err != nil {
		fmt.Fprintln(os.Stderr, "crishim:", err)
		os.Exit(1)
	}
}
