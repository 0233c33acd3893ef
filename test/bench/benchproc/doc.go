// Package benchproc is what crishim's benchmark programs (test/bench/proxy,
// test/bench/nri) share, so that they start, wait for and stop their child
// processes the same way, run crishim with the same configuration, and
// describe the machine and compute latency quantiles alike: two reports
// whose figures are meant to be read side by side must not differ in how
// they were obtained.
//
// It holds no benchmark of its own and nothing specific to one program:
// workloads, checks and the reports' tables stay with each program.
package benchproc
