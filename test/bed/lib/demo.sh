# shellcheck shell=bash
# demo.sh: a real kubelet's pods through crishim in front of the bed's runtime, each pod showing
# one decision crishim makes; then a summary read back from the runtime, crishim's metrics and
# the kubelet's log. Sourced by bed.sh. Everything is left running; `make demo-down` stops it.

DEMO_DIR=$BED_DIR/demo
DEMO_SHARED_IMAGE=$REGISTRY/e2e-test-images/busybox:1.29-2

# demo_kubelet_config DIR CGROUP_ROOT PORT HEALTHZ: the bed's standalone kubelet configuration
# (test/bed/kubelet.yaml.in, shared with the e2e tests) on crishim's socket, pulling for
# several pods at once so that crishim can merge identical pulls.
demo_kubelet_config() {
  sed -e "s|@DIR@|$1|g" -e "s|@CRI_SOCK@|$CRISHIM_SOCK|g" -e "s|@CGROUP_ROOT@|$2|g" \
    -e "s|@PORT@|$3|g" -e "s|@HEALTHZ_PORT@|$4|g" -e "s|@SERIALIZE_PULLS@|false|g" \
    "$REPO_ROOT/test/bed/kubelet.yaml.in"
}

# demo_pod NAMESPACE NAME IMAGE: a static pod manifest, written atomically (the kubelet
# watches the directory).
demo_pod() {
  local f=$DEMO_DIR/kubelet/manifests/$2.yaml
  cat >"$DEMO_DIR/kubelet/manifests/.$2.yaml" <<EOF2
apiVersion: v1
kind: Pod
metadata:
  name: $2
  namespace: $1
  labels: {app: crishim-demo}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: $3
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", "echo hello from $1/$2; trap 'exit 0' TERM; while true; do sleep 1; done"]
    resources:
      limits: {cpu: 100m, memory: 32Mi}
EOF2
  mv "$DEMO_DIR/kubelet/manifests/.$2.yaml" "$f"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || shuf -i 20000-29999 -n 1; }

demo_start_kubelet() {
  local k=$DEMO_DIR/kubelet port healthz root d
  mkdir -p "$k"/{manifests,root,certs,pod-logs,volume-plugins} "$(dirname "$PID_KUBELET")"
  echo "nameserver 127.0.0.1" >"$k/resolv.conf"
  root=/$BED_CGROUP/demo-kubelet
  for d in /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/cgroup.procs; do
    [ -e "$d" ] && mkdir -p "$(dirname "$d")$root"
  done
  port=$(free_port) healthz=$(free_port)
  demo_kubelet_config "$k" "$root" "$port" "$healthz" >"$k/kubelet.yaml"
  start_daemon kubelet "$PID_KUBELET" "$k/kubelet.log" "$BED_BIN/kubelet" --config "$k/kubelet.yaml" \
    --root-dir "$k/root" --cert-dir "$k/certs" --hostname-override crishim-demo --v=3
  wait_for 60 "the kubelet's healthz" curl -sf "http://127.0.0.1:$healthz/healthz"
}

# the runtime's view (its own socket, not crishim's)
rt() { crictl_to "$RUNTIME_SOCK" "$@"; }
# demo_sandbox NS NAME: the pod's ready sandbox id, if any
demo_sandbox() { rt pods --namespace "$1" --name "^$2-crishim-demo\$" --state ready -q 2>/dev/null | head -1; }
demo_running() {
  local sb
  sb=$(demo_sandbox "$1" "$2")
  [ -n "$sb" ] && [ -n "$(rt ps --pod "$sb" --state running -q 2>/dev/null)" ]
}
# demo_refusal NS NAME: crishim's message for the pod, from the kubelet's events (logged at
# --v=3 without an API server): FailedCreatePodSandBox or Failed (CreateContainerError)
demo_refusal() {
  grep 'Event occurred' "$DEMO_DIR/kubelet/kubelet.log" | grep -F "object=\"$1/$2-crishim-demo\"" |
    grep -o 'crishim: .*' | tail -1 | sed -E -e 's/"$//' -e 's/\\"/"/g' || true
}
demo_refused() { [ -n "$(demo_refusal "$1" "$2")" ]; }
demo_settled() { demo_running "$1" "$2" || demo_refused "$1" "$2"; }

metric() { # metric NAME LABEL-REGEXP: the sum of the matching samples
  curl -sf "http://127.0.0.1:$CRISHIM_METRICS_PORT/metrics" |
    awk -v n="$1" -v l="$2" '$1 ~ "^"n"({|$)" && $1 ~ l {s += $NF} END {print s + 0}'
}

# annotation SANDBOX KEY: the sandbox's annotation as the runtime reports it, or nothing
annotation() {
  local v
  v=$(rt inspectp -o go-template --template "{{index .status.annotations \"$2\"}}" "$1" 2>/dev/null || true)
  [ "$v" = "<no value>" ] || echo "$v"
}

# demo_line NS NAME: what happened to one pod, read back from the runtime and the kubelet's log
demo_line() {
  local ns=$1 name=$2 sb handler rule vcpus mem why
  sb=$(demo_sandbox "$ns" "$name")
  if [ -z "$sb" ] || ! demo_running "$ns" "$name"; then
    why=$(demo_refusal "$ns" "$name")
    printf '  %-24s %-9s %s\n' "$ns/$name" refused "${why:-(no refusal in the kubelet log yet)}"
    return
  fi
  handler=$(annotation "$sb" crishim.io/handler)
  rule=$(annotation "$sb" crishim.io/routing-rule)
  vcpus=$(annotation "$sb" io.katacontainers.config.hypervisor.default_vcpus)
  mem=$(annotation "$sb" io.katacontainers.config.hypervisor.default_memory)
  why="rule $rule"
  [ "$rule" = default ] && why="no rule matched: the runtime's default"
  [ -n "$vcpus" ] && why="$why; Kata VM sized by crishim: $vcpus vCPU, $mem MiB (pod + overhead)"
  printf '  %-24s %-9s %s\n' "$ns/$name" "${handler:-?}" "$why"
}

bed_demo() {
  require_root
  local t0=$SECONDS
  log "demo 1/5: test bed (packages, tools, $RUNTIME, registries, images; cached after the first run)"
  bed_install
  # crictl, crane (images), the kubelet and the runtime; critest is not used here
  BED_CRITEST=0 bed_tools
  bed_config
  bed_start
  bed_images
  log "demo 2/5: crishim with configs/crishim-demo.yaml"
  mkdir -p "$DEMO_DIR"
  # the node's registry credentials, which the kubelet does not have
  printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$AUTH_REGISTRY" "$(printf '%s:%s' "$AUTH_USER" "$AUTH_PASS" | base64 -w0)" >"$DEMO_DIR/config.json"
  chmod 0600 "$DEMO_DIR/config.json"
  rm -rf "$DEMO_DIR/state"
  sed -e "s|@AUTH_REGISTRY@|$AUTH_REGISTRY|g" -e "s|@DEMO_DIR@|$DEMO_DIR|g" "$REPO_ROOT/configs/crishim-demo.yaml" >"$DEMO_DIR/crishim.yaml"
  stop_daemon kubelet "$PID_KUBELET"
  crishim_down
  alive "$PID_RUNTIME" && { rt rmp -fa >/dev/null 2>&1 || true; }
  remove_kubelet_leftovers
  # start from images the node does not have, so that the pulls happen
  local img
  for img in "$PRIVATE_APP_IMAGE" "$DEMO_SHARED_IMAGE"; do
    rt rmi "$img" >/dev/null 2>&1 || true
  done
  # this run's part of crishim's log starts here (the log is appended to)
  local logfrom
  logfrom=$(($(wc -l <"$BED_DIR/logs/crishim.log" 2>/dev/null || echo 0) + 1))
  CRISHIM_CONFIG=$DEMO_DIR/crishim.yaml crishim_up
  log "demo 3/5: a real kubelet ($("$BED_BIN/kubelet" --version)), standalone, on crishim's socket"
  unmount_under "$DEMO_DIR/kubelet"
  rm -rf "$DEMO_DIR/kubelet"
  demo_start_kubelet
  log "demo 4/5: static pods, each showing one decision"
  demo_pod untrusted-web frontend "$BUSYBOX_IMAGE"     # routed to the VM handler
  demo_pod default app "$BUSYBOX_IMAGE"                # the default handler
  demo_pod forbidden batch "$BUSYBOX_IMAGE"            # refused by a rule
  demo_pod shared one "$DEMO_SHARED_IMAGE"             # three pods, one image, pulled at once
  demo_pod shared two "$DEMO_SHARED_IMAGE"
  demo_pod shared three "$DEMO_SHARED_IMAGE"
  demo_pod team-a private "$PRIVATE_APP_IMAGE"             # credentials the kubelet does not have
  local p
  for p in untrusted-web/frontend default/app forbidden/batch shared/one shared/two shared/three team-a/private; do
    wait_for 120 "pod $p to run or be refused" demo_settled "${p%/*}" "${p#*/}"
  done
  # the private image is on the node now: a pod of a namespace that may not use it
  demo_pod other private "$PRIVATE_APP_IMAGE"
  wait_for 60 "pod other/private to run or be refused" demo_settled other private

  log "demo 5/5: what crishim decided ($((SECONDS - t0)) s)"
  echo
  echo "Pods of a real kubelet, through crishim (read back from $RUNTIME and the kubelet's log):"
  printf '  %-24s %-9s %s\n' POD HANDLER WHY
  for p in untrusted-web/frontend default/app forbidden/batch team-a/private other/private; do
    demo_line "${p%/*}" "${p#*/}"
  done
  local pulls joined inj
  # crishim logs each PullImage once, with whether it joined an identical pull in flight
  pulls=$(tail -n +"$logfrom" "$BED_DIR/logs/crishim.log" | grep -F 'msg="image pulled"' | grep -cF "image=\"$DEMO_SHARED_IMAGE\"" || true)
  joined=$(tail -n +"$logfrom" "$BED_DIR/logs/crishim.log" | grep -F 'msg="image pulled"' | grep -F "image=\"$DEMO_SHARED_IMAGE\"" | grep -c 'shared=true' || true)
  inj=$(metric crishim_image_pull_credentials_total 'result="success",source="dockerconfig"')
  echo
  echo "Images (crishim's log and metrics, http://127.0.0.1:$CRISHIM_METRICS_PORT/metrics):"
  echo "  shared/one, two, three: 3 pods of $DEMO_SHARED_IMAGE; the kubelet sent $pulls PullImage call(s),"
  echo "    crishim made $((pulls - joined)) upstream pull(s): $joined call(s) joined an identical pull in flight"
  echo "  team-a/private: $PRIVATE_APP_IMAGE pulled with the node's credentials ($inj pull(s), source dockerconfig);"
  echo "    the kubelet has no credentials for it"
  echo "  other/private: refused by image access ($(metric crishim_image_access_decisions_total 'result="denied"') denial(s)):"
  echo "    namespace other may not use the node's credentials, so it may not run what they pulled"
  echo
  echo "Where to look next:"
  echo "  $BED_BIN/crictl --runtime-endpoint unix://$CRISHIM_SOCK pods        (through crishim)"
  echo "  curl -s http://127.0.0.1:$CRISHIM_METRICS_PORT/metrics | grep ^crishim_"
  echo "  crishim's log:      $BED_DIR/logs/crishim.log"
  echo "  the kubelet's log:  $DEMO_DIR/kubelet/kubelet.log (grep crishim:)"
  echo "  crishim's config:   $DEMO_DIR/crishim.yaml"
  echo "Everything keeps running; stop it all with: make demo-down"
}
