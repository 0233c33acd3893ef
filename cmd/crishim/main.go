// Command crishim is a CRI proxy: it serves the kubelet on a unix socket and
// forwards every call to the real runtime, intercepting the few it manages.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "crishim:", err)
		os.Exit(1)
	}
}
