#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# bed.sh: a private CRI test bed for crishim on one Debian bookworm machine (root, no systemd).
#
# RUNTIME selects the runtime: containerd1 (Debian's containerd 1.6, the default), containerd2
# (containerd 2.x) or crio (CRI-O), the last two built from the Go module proxy and cached. Each
# runtime's bed has its own directory, CNI bridge and subnet, registries and ports.
# Registries (docker-registry, open and htpasswd), images built offline, crictl/critest/crane/kubelet
# built from the Go module proxy, crishim in front of the runtime. Everything lives under $BED_DIR
# (state, sockets, logs) and $BED_CACHE (tool and runtime binaries, Go caches).
# Every use of a bed, from start to tear-down, should hold flock $BED_LOCK (bed.mk does).
#
# Usage: [RUNTIME=containerd1|containerd2|crio] test/bed/bed.sh COMMAND
#   install       apt-get the packages the bed needs (skips what is installed)
#   tools         build crictl, critest, crane, kubelet and the runtime into $BED_CACHE (skips what is built)
#   prepare       install + tools (needs no bed, so no lock)
#   config        write the runtime's, CNI, registry and crictl configs under $BED_DIR
#   up            install + tools + config + start + images
#   start         start the registries and the runtime (configured by `config`)
#   images        build the test images offline and push them (skips when already pushed)
#   crishim-up    start bin/crishim in front of the bed's runtime on $BED_DIR/crishim.sock
#   crishim-down  stop crishim
#   runtime-kill  SIGKILL the runtime only (fault tests); runtime-start starts it again
#   e2e           go test -tags e2e ./test/e2e/... against the running bed and crishim
#   down          stop everything the bed started (pods, kubelet, crishim, runtime, registries)
#   env           print shell exports describing the bed (eval "$(test/bed/bed.sh env)")
#   demo          up + crishim-up, then run a pod through crishim with crictl and leave it running
#   conformance   critest v1.34.0 directly against the runtime and through crishim, then compare
#   matrix [RT..] for each runtime (default all three): fresh bed under the lock, e2e, conformance,
#                 tear-down; then one table
#   status        show what is running
set -euo pipefail

BED_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib
# shellcheck source=lib/common.sh
. "$BED_LIB/common.sh"
# shellcheck source=lib/install.sh
. "$BED_LIB/install.sh"
# shellcheck source=lib/tools.sh
. "$BED_LIB/tools.sh"
# shellcheck source=lib/config.sh
. "$BED_LIB/config.sh"
# shellcheck source=lib/daemons.sh
. "$BED_LIB/daemons.sh"
# shellcheck source=lib/images.sh
. "$BED_LIB/images.sh"
# shellcheck source=lib/demo.sh
. "$BED_LIB/demo.sh"
# shellcheck source=lib/conformance.sh
. "$BED_LIB/conformance.sh"
# shellcheck source=lib/matrix.sh
. "$BED_LIB/matrix.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | grep -v '^# shellcheck' | sed -n 's/^# \{0,1\}//p'; }

cmd=${1:-}
shift || true
case $cmd in
  install)      bed_install ;;
  tools)        bed_tools ;;
  prepare)      bed_install; bed_tools ;;
  config)       bed_config ;;
  up)           bed_install; bed_tools; bed_config; bed_start; bed_images ;;
  start)        bed_start ;;
  images)       bed_images ;;
  crishim-up)   crishim_up ;;
  crishim-down) crishim_down ;;
  runtime-kill) runtime_kill ;;
  runtime-start) runtime_start ;;
  down)         bed_down ;;
  env)          bed_env ;;
  demo)         bed_demo ;;
  conformance)  bed_conformance "$@" ;;
  e2e)          bed_e2e ;;
  matrix)       bed_matrix "$@" ;;
  matrix-one)   matrix_one ;;
  status)       bed_status ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
