# shellcheck shell=bash
# common.sh: paths, versions and helpers shared by every bed.sh command. Sourced, not run.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
BED_DIR=${BED_DIR:-/var/tmp/crishim-bed}
BED_CACHE=${BED_CACHE:-/var/cache/crishim-bed}
BED_BIN=$BED_CACHE/bin
CRISHIM_BIN=${CRISHIM_BIN:-$REPO_ROOT/bin/crishim}
CRISHIM_METRICS_PORT=${CRISHIM_METRICS_PORT:-9810}

CRI_TOOLS_VERSION=v1.34.0
CRANE_VERSION=v0.21.0
KUBERNETES_VERSION=v1.37.1

CONTAINERD_SOCK=$BED_DIR/containerd.sock
CRISHIM_SOCK=$BED_DIR/crishim.sock
REGISTRY=127.0.0.1:5000
AUTH_REGISTRY=127.0.0.1:5001
AUTH_USER=testuser
AUTH_PASS=testpass
CNI_BRIDGE=crishim0
CNI_SUBNET=10.89.0.0/16
# cgroup parent (cgroupfs) that e2e pods and the kubelet's pods live under, removed by `down`
BED_CGROUP=crishim-bed

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
  local i
  for i in $(seq $((secs * 5))); do
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
