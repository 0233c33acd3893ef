# shellcheck shell=bash
# demo.sh: a pod and a container started through crishim with crictl, left running.
# Sourced by bed.sh.

demo_logged() { crictl_to "$CRISHIM_SOCK" logs "$1" 2>&1 | grep -q 'hello from'; }

bed_demo() {
  require_root
  bed_install
  bed_tools >/dev/null
  bed_config
  bed_start
  bed_images
  crishim_up
  local dir=$BED_DIR/demo pod ctr handler=${DEMO_HANDLER:-kata-sim}
  mkdir -p "$dir"
  cat >"$dir/pod.json" <<EOF2
{"metadata": {"name": "crishim-demo", "namespace": "default", "uid": "crishim-demo-uid", "attempt": 0},
 "annotations": {"io.katacontainers.config.hypervisor.default_vcpus": "2"},
 "log_directory": "$BED_DIR/podlogs/demo",
 "linux": {"cgroup_parent": "/$BED_CGROUP/demo"}}
EOF2
  cat >"$dir/ctr.json" <<EOF2
{"metadata": {"name": "hello"}, "image": {"image": "$BUSYBOX_IMAGE"},
 "command": ["/bin/sh", "-c", "echo hello from a container started through crishim; exec sleep 3600"],
 "log_path": "hello.log", "linux": {}}
EOF2
  log "demo: crictl through crishim ($CRISHIM_SOCK)"
  local old
  for old in $(crictl_to "$CRISHIM_SOCK" pods --name '^crishim-demo$' -q); do
    echo "removing the previous demo pod $old"
    crictl_to "$CRISHIM_SOCK" rmp -f "$old" >/dev/null
  done
  rm -rf "$BED_DIR/podlogs/demo" && mkdir -p "$BED_DIR/podlogs/demo"
  crictl_to "$CRISHIM_SOCK" pull "$BUSYBOX_IMAGE"
  pod=$(crictl_to "$CRISHIM_SOCK" runp --runtime "$handler" "$dir/pod.json")
  ctr=$(crictl_to "$CRISHIM_SOCK" create "$pod" "$dir/ctr.json" "$dir/pod.json")
  crictl_to "$CRISHIM_SOCK" start "$ctr" >/dev/null
  wait_for 10 "the demo container's log line" demo_logged "$ctr"
  echo "pod id:          $pod"
  echo "runtime handler: $(crictl_to "$CRISHIM_SOCK" inspectp -o go-template --template '{{.status.runtimeHandler}}' "$pod")"
  echo "OCI annotation:  $(crictl_to "$CRISHIM_SOCK" inspectp "$pod" | grep -m1 -o '"io.katacontainers[^,]*' || echo none)"
  echo "pod ip:          $(crictl_to "$CRISHIM_SOCK" inspectp -o go-template --template '{{.status.network.ip}}' "$pod")"
  echo "container:       $ctr ($(crictl_to "$CRISHIM_SOCK" inspect -o go-template --template '{{.status.state}}' "$ctr"))"
  echo "container log:   $(crictl_to "$CRISHIM_SOCK" logs "$ctr" 2>&1)"
  echo "crishim metrics (http://127.0.0.1:$CRISHIM_METRICS_PORT/metrics):"
  curl -sf "http://127.0.0.1:$CRISHIM_METRICS_PORT/metrics" | grep -E '^crishim_[a-z_]*(_total|_count)\{' |
    grep -E 'RunPodSandbox|CreateContainer|StartContainer|PullImage' | head -8 | sed 's/^/  /'
  echo
  echo "The pod keeps running. Try: eval \"\$($0 env)\"; $BED_BIN/crictl --runtime-endpoint unix://$CRISHIM_SOCK ps"
  echo "Stop everything with: make demo-down"
}
