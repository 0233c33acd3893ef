package shim

// Version is crishim's version, set at build time with
// -ldflags "-X github.com/crishim/crishim/shim.Version=v1.2.3".
var Version = "dev"
