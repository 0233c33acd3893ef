# shellcheck shell=bash
# shellcheck disable=SC2034 # variables set here are used by the files sourced beside this one
# daemons.sh: start/stop the bed's processes (registries, containerd, crishim) and tear down what
# they leave behind. Sourced by bed.sh. Every process is started with nohup, tracked by a pid file
# under $BED_DIR/run and stopped by that pid.

# the runtime's pid file (containerd 1.6, containerd 2.x or CRI-O); PID_CONTAINERD is its old name
PID_RUNTIME=$BED_DIR/run/runtime.pid
PID_CONTAINERD=$PID_RUNTIME
PID_CRISHIM=$BED_DIR/run/crishim.pid
PID_REGISTRY_OPEN=$BED_DIR/run/registry-open.pid
PID_REGISTRY_AUTH=$BED_DIR/run/registry-auth.pid
# written by the kubelet e2e test (test/e2e/kubelet_test.go) while its kubelet runs
PID_KUBELET=$BED_DIR/kubelet/kubelet.pid

runtime_ready() { crictl_to "$RUNTIME_SOCK" version; }
containerd_ready() { runtime_ready; }

# start_runtime: the selected runtime on $RUNTIME_SOCK, with the configuration of bed_config
start_runtime() {
  case $RUNTIME in
    containerd1)
      start_daemon containerd "$PID_RUNTIME" "$BED_DIR/logs/runtime.log" \
        containerd --config "$BED_DIR/containerd.toml" ;;
    containerd2)
      start_daemon "containerd $CONTAINERD2_VERSION" "$PID_RUNTIME" "$BED_DIR/logs/runtime.log" \
        "$CONTAINERD2_BIN/containerd" --config "$BED_DIR/containerd.toml" ;;
    crio)
      # registries: the flags, not just the environment variable (which CRI-O ignores here)
      start_daemon "CRI-O $CRIO_VERSION" "$PID_RUNTIME" "$BED_DIR/logs/runtime.log" \
        env -u DOCKER_CONFIG CONTAINERS_STORAGE_CONF="$BED_DIR/storage.conf" \
        CONTAINERS_REGISTRIES_CONF="$BED_DIR/registries.conf" REGISTRY_AUTH_FILE="$BED_DIR/crio-auth.json" \
        "$CRIO_BIN/crio" --config "$BED_DIR/crio.conf" --config-dir "$BED_DIR/crio.conf.d" \
        --registries-conf "$BED_DIR/registries.conf" --registries-conf-dir "$BED_DIR/registries.conf.d" ;;
  esac
}

# runtime_kill / runtime_start: for the fault tests (test/e2e/faults_test.go): SIGKILL just the
# runtime, as a crash would, and start it again on the same socket and state.
runtime_kill() {
  local pid
  [ -f "$PID_RUNTIME" ] || die "no runtime pid file $PID_RUNTIME: is the bed up?"
  pid=$(cat "$PID_RUNTIME")
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
  rm -f "$PID_RUNTIME"
  echo "$RUNTIME killed (pid $pid)"
}

runtime_start() {
  start_runtime
  wait_for 30 "$RUNTIME on $RUNTIME_SOCK" runtime_ready || die "$RUNTIME did not come back on $RUNTIME_SOCK"
}

bed_start() {
  require_root
  [ -f "$BED_DIR/crictl.yaml" ] || bed_config
  # A bridge left behind by an earlier bed (or another one routing our subnet) would swallow pod
  # traffic: remove our stale bridge, refuse to start next to a foreign one.
  if ! alive "$PID_RUNTIME" && ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    echo "removing stale bridge $CNI_BRIDGE"
    ip link del "$CNI_BRIDGE"
  fi
  if ip route show "$CNI_SUBNET" | grep -v "dev $CNI_BRIDGE" | grep -q .; then
    die "another interface already routes $CNI_SUBNET: $(ip route show "$CNI_SUBNET")"
  fi
  log "start registries + $RUNTIME"
  mkdir -p "$BED_DIR/run" "$BED_DIR/logs"
  start_daemon registry-open "$PID_REGISTRY_OPEN" "$BED_DIR/logs/registry-open.log" \
    docker-registry serve "$BED_DIR/registry/config-open.yml"
  start_daemon registry-auth "$PID_REGISTRY_AUTH" "$BED_DIR/logs/registry-auth.log" \
    docker-registry serve "$BED_DIR/registry/config-auth.yml"
  start_runtime
  wait_for 20 "open registry on $REGISTRY" curl -sf "http://$REGISTRY/v2/"
  wait_for 20 "htpasswd registry on $AUTH_REGISTRY" \
    sh -c "curl -s -o /dev/null -w '%{http_code}' http://$AUTH_REGISTRY/v2/ | grep -q 401"
  local i
  for i in $(seq 150); do
    runtime_ready >/dev/null 2>&1 && break
    alive "$PID_RUNTIME" || { tail -20 "$BED_DIR/logs/runtime.log" >&2; die "$RUNTIME exited during startup (log $BED_DIR/logs/runtime.log)"; }
    sleep 0.2
  done
  runtime_ready >/dev/null 2>&1 || die "timed out after 30s waiting for $RUNTIME on $RUNTIME_SOCK"
  crictl_to "$RUNTIME_SOCK" version
}

crishim_ready() { curl -sf "http://127.0.0.1:$CRISHIM_METRICS_PORT/readyz"; }

crishim_up() {
  require_root
  alive "$PID_RUNTIME" || die "$RUNTIME is not running: run '$0 up' first"
  [ -x "$CRISHIM_BIN" ] || die "$CRISHIM_BIN not found: build it first (make build)"
  local args=(--listen "$CRISHIM_SOCK"
    --runtime-endpoint "unix://$RUNTIME_SOCK" --image-endpoint "unix://$RUNTIME_SOCK"
    --metrics-address "127.0.0.1:$CRISHIM_METRICS_PORT" --log-level "${CRISHIM_LOG_LEVEL:-info}")
  # CRISHIM_CONFIG selects a config file. Without it crishim runs on its defaults: a bed-owned
  # empty file, so that an /etc/crishim/config.yaml on the machine never changes what is tested.
  local config=${CRISHIM_CONFIG:-$BED_DIR/crishim-defaults.yaml}
  if [ -z "${CRISHIM_CONFIG:-}" ]; then echo "# crishim test bed: defaults only" >"$config"; fi
  "$CRISHIM_BIN" validate --config "$config" >/dev/null || die "crishim rejects $config"
  args+=(--config "$config")
  log "start crishim ($CRISHIM_BIN)"
  # CRISHIM_ARGS is a list of words by design (extra flags)
  # shellcheck disable=SC2086
  start_daemon crishim "$PID_CRISHIM" "$BED_DIR/logs/crishim.log" "$CRISHIM_BIN" "${args[@]}" ${CRISHIM_ARGS:-}
  local _
  for _ in $(seq 100); do
    crishim_ready >/dev/null 2>&1 && break
    if ! alive "$PID_CRISHIM"; then
      tail -20 "$BED_DIR/logs/crishim.log" >&2
      die "crishim exited during startup (log: $BED_DIR/logs/crishim.log)"
    fi
    sleep 0.2
  done
  crishim_ready >/dev/null 2>&1 ||
    die "crishim /readyz not ready after 20 s: $(curl -s "http://127.0.0.1:$CRISHIM_METRICS_PORT/readyz") (log: $BED_DIR/logs/crishim.log)"
  echo "crishim ready: socket $CRISHIM_SOCK, metrics http://127.0.0.1:$CRISHIM_METRICS_PORT/metrics"
}

crishim_down() { stop_daemon crishim "$PID_CRISHIM"; }

bed_down() {
  require_root
  log "down: $BED_DIR ($RUNTIME)"
  stop_daemon kubelet "$PID_KUBELET"
  crishim_down
  if alive "$PID_RUNTIME"; then
    crictl_to "$RUNTIME_SOCK" rmp -fa || true
  fi
  # CRI-O was seen ignoring SIGTERM after a critest run: stop_daemon escalates to SIGKILL
  stop_daemon "$RUNTIME" "$PID_RUNTIME"
  stop_orphan_shims
  stop_leftover_containers
  stop_daemon registry-open "$PID_REGISTRY_OPEN"
  stop_daemon registry-auth "$PID_REGISTRY_AUTH"
  unmount_under "$BED_DIR"
  if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    ip link del "$CNI_BRIDGE" && echo "bridge $CNI_BRIDGE removed"
  fi
  # CRI-O's host-port table (only when this bed ran CRI-O)
  if [ "$RUNTIME" = crio ] && command -v nft >/dev/null && nft list table ip crio-hostports >/dev/null 2>&1; then
    nft delete table ip crio-hostports && echo "nft table ip crio-hostports removed"
  fi
  remove_cgroups
  remove_kubelet_leftovers
  rm -f "$CRISHIM_SOCK" "$RUNTIME_SOCK" "$RUNTIME_SOCK.ttrpc" "$BED_DIR/containerd-debug.sock"
}

# Shims of containers that outlived containerd (e.g. containerd was killed): they name our
# containerd socket in their -address argument; CRI-O's conmons name our directory. Stopped by
# pid, one by one.
stop_orphan_shims() {
  local pid
  for pid in $(pgrep -f -- "-address $RUNTIME_SOCK( |\$)" || true) $(pgrep -f -- "^/usr/bin/conmon .*$BED_DIR/" || true); do
    echo "stopping orphan shim $pid: $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-120)"
    kill "$pid" 2>/dev/null || true
  done
}

# Containers runc still knows in the bed's handler roots (the runtime died before removing them).
stop_leftover_containers() {
  local state root id
  while IFS= read -r state; do
    id=$(basename "$(dirname "$state")") root=$(dirname "$(dirname "$state")")
    echo "removing leftover container $id (runc root $root)"
    runc --root "$root" delete -f "$id" 2>/dev/null || true
  done < <(find "$BED_DIR" -maxdepth 4 -path "$BED_DIR/*-root/*" -name state.json 2>/dev/null)
}

# unmount_under DIR: every mount below DIR, deepest first (lazy as the last resort)
unmount_under() {
  local m
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "could not unmount $m"
  done
}

# Pod cgroups the e2e tests and the kubelet create under /$BED_CGROUP (cgroupfs, v1 or v2).
remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/"$BED_CGROUP" /sys/fs/cgroup/"$BED_CGROUP"; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    if [ -d "$d" ]; then echo "cgroup $d still in use"; fi
  done
}

# What a kubelet writes outside its root dir (see test/e2e/kubelet_test.go).
remove_kubelet_leftovers() {
  local l
  for l in /var/log/containers/*.log; do
    [ -L "$l" ] || continue
    case $(readlink "$l") in "$BED_DIR"/*) rm -f "$l" ;; esac
  done
}

bed_env() {
  cat <<EOF2
export BED_DIR=$BED_DIR
export BED_CACHE=$BED_CACHE
export BED_BIN=$BED_BIN
export BED_CGROUP=$BED_CGROUP
export BED_RUNTIME=$RUNTIME
export RUNTIME_SOCK=$RUNTIME_SOCK
export CONTAINERD_SOCK=$RUNTIME_SOCK
export CRISHIM_SOCK=$CRISHIM_SOCK
export CRISHIM_BIN=$CRISHIM_BIN
export CRISHIM_METRICS_URL=http://127.0.0.1:$CRISHIM_METRICS_PORT
export REGISTRY=$REGISTRY
export AUTH_REGISTRY=$AUTH_REGISTRY
export SLOW_REGISTRY=$SLOW_REGISTRY
export AUTH_USER=$AUTH_USER
export AUTH_PASS=$AUTH_PASS
export CNI_BRIDGE=$CNI_BRIDGE
export CNI_SUBNET=$CNI_SUBNET
export KUBELET_BIN=$BED_BIN/kubelet
export CRICTL_BIN=$BED_BIN/crictl
EOF2
}

bed_status() {
  local name pidfile
  for name in registry-open registry-auth "$RUNTIME" crishim kubelet; do
    case $name in
      registry-open) pidfile=$PID_REGISTRY_OPEN ;; registry-auth) pidfile=$PID_REGISTRY_AUTH ;;
      "$RUNTIME") pidfile=$PID_RUNTIME ;; crishim) pidfile=$PID_CRISHIM ;; kubelet) pidfile=$PID_KUBELET ;;
    esac
    if alive "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; fi
  done
  ip -br link show "$CNI_BRIDGE" 2>/dev/null || echo "bridge $CNI_BRIDGE: absent"
}
