# shellcheck shell=bash
# shellcheck disable=SC2034 # variables set here are used by the files sourced beside this one
# common.sh: paths, versions and helpers shared by every bed.sh command. Sourced, not run.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

# RUNTIME selects the runtime under test: containerd1 (Debian's containerd 1.6), containerd2
# (containerd 2.x built from the Go module proxy) or crio (CRI-O built from the Go module proxy).
# Each has its own directory, CNI bridge and subnet, registry and metrics ports and cgroup, so two
# beds never collide. `bed.sh env` exports BED_RUNTIME; a RUNTIME that differs from it ignores the
# BED_DIR and CRISHIM_METRICS_PORT of that other bed's environment.
RUNTIME=${RUNTIME:-${BED_RUNTIME:-containerd1}}
if [ -n "${BED_RUNTIME:-}" ] && [ "$BED_RUNTIME" != "$RUNTIME" ]; then
  unset BED_DIR CRISHIM_METRICS_PORT
fi
BED_RUNTIMES="containerd1 containerd2 crio"
case $RUNTIME in
  containerd1) _dir=/var/tmp/crishim-bed _n=0 CNI_BRIDGE=crishim0 BED_CGROUP=crishim-bed ;;
  containerd2) _dir=/var/tmp/crishim-bed-containerd2 _n=1 CNI_BRIDGE=crishim-c2 BED_CGROUP=crishim-bed-c2 ;;
  crio) _dir=/var/tmp/crishim-bed-crio _n=2 CNI_BRIDGE=crishim-crio BED_CGROUP=crishim-bed-crio ;;
  *) echo "bed: unknown RUNTIME=$RUNTIME (one of: $BED_RUNTIMES)" >&2; exit 2 ;;
esac
BED_DIR=${BED_DIR:-$_dir}
BED_CACHE=${BED_CACHE:-/var/cache/crishim-bed}
BED_BIN=$BED_CACHE/bin
CRISHIM_BIN=${CRISHIM_BIN:-$REPO_ROOT/bin/crishim}
CRISHIM_METRICS_PORT=${CRISHIM_METRICS_PORT:-981$_n}

CRI_TOOLS_VERSION=v1.34.0
CRANE_VERSION=v0.21.0
KUBERNETES_VERSION=v1.37.1
CONTAINERD2_VERSION=${CONTAINERD2_VERSION:-v2.4.2}
CRIO_VERSION=${CRIO_VERSION:-v1.34.0}
# The runtimes built from the Go module proxy live in a directory per version, outside $BED_BIN:
# a `containerd` there would shadow Debian's containerd 1.6 on the PATH.
CONTAINERD2_BIN=$BED_CACHE/containerd-$CONTAINERD2_VERSION
CRIO_BIN=$BED_CACHE/crio-$CRIO_VERSION

# RUNTIME_SOCK is the runtime's CRI socket; CONTAINERD_SOCK names the same socket for every
# runtime (older scripts and tests use it).
case $RUNTIME in
  crio) RUNTIME_SOCK=$BED_DIR/crio.sock ;;
  *) RUNTIME_SOCK=$BED_DIR/containerd.sock ;;
esac
CONTAINERD_SOCK=$RUNTIME_SOCK
CRISHIM_SOCK=$BED_DIR/crishim.sock
REGISTRY=127.0.0.1:50${_n}0
AUTH_REGISTRY=127.0.0.1:50${_n}1
# a port configured as a plain-HTTP registry in the runtime, for a test's own registry proxy
SLOW_REGISTRY=127.0.0.1:50${_n}9
AUTH_USER=testuser
AUTH_PASS=testpass
# BED_CGROUP: cgroup parent (cgroupfs) that e2e pods and the kubelet's pods live under, removed by `down`
CNI_SUBNET=10.$((89 + _n)).0.0/16
unset _dir _n
# the lock every use of a bed holds, from start to tear-down (bed.mk and `bed.sh matrix` take it)
BED_LOCK=${BED_LOCK:-/var/tmp/crishim-bed.lock}

export PATH=$BED_BIN:$PATH
export DOCKER_CONFIG=$BED_DIR/docker-config
export GOTOOLCHAIN=local

log() { echo "=== [$(date +%T)] $*"; }
die() { echo "bed: $*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (containerd, CNI and cgroups need it)"
}

# running PID: true when PID is a live process. A zombie is not: daemons started with nohup are
# reparented to PID 1, which may reap them late (or never, when PID 1 is not a real init).
running() {
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# alive PIDFILE: true when the pid file names a running process
alive() { [ -f "$1" ] && running "$(cat "$1")"; }

# start_daemon NAME PIDFILE LOGFILE CMD...: start CMD in the background unless already running
start_daemon() {
  local name=$1 pidfile=$2 logfile=$3; shift 3
  if alive "$pidfile"; then
    echo "$name already running (pid $(cat "$pidfile"))"
    return
  fi
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  nohup "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "$name started (pid $!, log $logfile)"
}

# stop_daemon NAME PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL; removes the pid file
stop_daemon() {
  local name=$1 pidfile=$2 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if running "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
      echo "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
    echo "$name stopped (pid $pid)"
  fi
  rm -f "$pidfile"
}

# wait_for SECONDS DESC CMD...: poll CMD every 0.2 s
wait_for() {
  local secs=$1 desc=$2; shift 2
  local _
  for _ in $(seq $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for $desc"
}

# crictl_to SOCKET ARGS...: crictl against one endpoint
crictl_to() {
  local sock=$1; shift
  "$BED_BIN/crictl" --config "$BED_DIR/crictl.yaml" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 30s "$@"
}
