#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# bed.sh: a private CRI test bed for crishim on one Debian bookworm machine (root, no systemd).
#
# containerd 1.6 (Debian) + runc + CNI bridge, two open/htpasswd docker registries, images built
# offline, crictl/critest/crane/kubelet built from the Go module proxy, crishim in front of containerd.
# Everything lives under $BED_DIR (state, sockets, logs) and $BED_CACHE (tool binaries, Go caches).
#
# Usage: test/bed/bed.sh COMMAND
#   install       apt-get the packages the bed needs (skips what is installed)
#   tools         build crictl, critest, crane and kubelet into $BED_CACHE/bin (skips what is built)
#   config        write containerd, CNI, registry and crictl configs under $BED_DIR
#   up            install + tools + config + start + images
#   start         start the registries and containerd (configured by `config`)
#   images        build the test images offline and push them (skips when already pushed)
#   crishim-up    start bin/crishim in front of the bed's containerd on $BED_DIR/crishim.sock
#   crishim-down  stop crishim
#   down          stop everything the bed started (pods, kubelet, crishim, containerd, registries)
#   env           print shell exports describing the bed (eval "$(test/bed/bed.sh env)")
#   demo          up + crishim-up, then run a pod through crishim with crictl and leave it running
#   conformance   critest v1.34.0 directly against containerd and through crishim, then compare
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

usage() { sed -n '2,/^set -euo/p' "$0" | grep -v '^# shellcheck' | sed -n 's/^# \{0,1\}//p'; }

cmd=${1:-}
shift || true
case $cmd in
  install)      bed_install ;;
  tools)        bed_tools ;;
  config)       bed_config ;;
  up)           bed_install; bed_tools; bed_config; bed_start; bed_images ;;
  start)        bed_start ;;
  images)       bed_images ;;
  crishim-up)   crishim_up ;;
  crishim-down) crishim_down ;;
  down)         bed_down ;;
  env)          bed_env ;;
  demo)         bed_demo ;;
  conformance)  bed_conformance "$@" ;;
  status)       bed_status ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
