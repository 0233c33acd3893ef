# shellcheck shell=bash
# config.sh: containerd, CNI, registry and crictl configuration under $BED_DIR. Sourced by bed.sh.

bed_config() {
  log "config: $BED_DIR ($RUNTIME)"
  mkdir -p "$BED_DIR"/{root,state,runc-root,kata-sim-root,logs,podlogs,run,cni/net.d,cni/data,certs.d} \
    "$BED_DIR"/registry/{data-open,data-auth} "$DOCKER_CONFIG"
  write_cni_config
  case $RUNTIME in
    containerd1) write_containerd_config; write_registry_hosts ;;
    containerd2) write_containerd2_config; write_registry_hosts ;;
    crio) write_crio_config ;;
  esac
  write_registry_configs
  cat >"$BED_DIR/crictl.yaml" <<EOF2
runtime-endpoint: unix://$RUNTIME_SOCK
image-endpoint: unix://$RUNTIME_SOCK
timeout: 30
debug: false
pull-image-on-create: false
EOF2
}

# Our own bridge and subnet so the bed never collides with a host's cni0/10.88.0.0/16;
# host-local IPAM keeps its leases under $BED_DIR; no masquerade (nothing leaves the machine).
write_cni_config() {
  rm -f "$BED_DIR"/cni/net.d/*.conflist
  cat >"$BED_DIR/cni/net.d/10-crishim-bed.conflist" <<EOF2
{
  "cniVersion": "1.0.0",
  "name": "crishim-bed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$BED_DIR/cni/data",
        "ranges": [[{"subnet": "$CNI_SUBNET"}]],
        "routes": [{"dst": "$CNI_SUBNET"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF2
}

# containerd 1.6 config (version 2). Two handlers: runc (default) and kata-sim, a runc-based
# stand-in for kata that passes io.katacontainers.* pod annotations to the OCI spec.
write_containerd_config() {
  cat >"$BED_DIR/containerd.toml" <<EOF2
version = 2
root = "$BED_DIR/root"
state = "$BED_DIR/state"

[grpc]
  address = "$RUNTIME_SOCK"

[ttrpc]
  address = "$RUNTIME_SOCK.ttrpc"

[debug]
  address = "$BED_DIR/containerd-debug.sock"
  level = "info"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$REGISTRY/pause:3.9"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    # required here: without CAP_SYS_RESOURCE runc cannot set the sandbox's oom_score_adj=-998
    # ("failed to update /proc/self/oom_score_adj: Permission denied")
    restrict_oom_score_adj = true
    # pod network namespaces under the state dir, not /var/run/netns
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/bin/runc"
          Root = "$BED_DIR/runc-root"
          SystemdCgroup = false
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-sim]
        runtime_type = "io.containerd.runc.v2"
        pod_annotations = ["io.katacontainers.*"]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-sim.options]
          BinaryName = "/usr/bin/runc"
          Root = "$BED_DIR/kata-sim-root"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$BED_DIR/cni/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$BED_DIR/certs.d"
EOF2
}

# containerd 2.x config (version 3; 2.4 migrates it on load). The same two handlers, each pointing
# at the runc shim built with this containerd; everything else kept off host-global paths.
write_containerd2_config() {
  mkdir -p "$BED_DIR"/{tmp,opt,cdi,nri}
  local r="plugins.'io.containerd.cri.v1.runtime'" h
  {
    cat <<EOF2
version = 3
root = "$BED_DIR/root"
state = "$BED_DIR/state"
temp = "$BED_DIR/tmp"

[grpc]
  address = "$RUNTIME_SOCK"

[ttrpc]
  address = "$RUNTIME_SOCK.ttrpc"

[debug]
  address = "$BED_DIR/containerd-debug.sock"
  level = "info"

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$REGISTRY/pause:3.9"
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = "$BED_DIR/certs.d"

  [$r]
    enable_selinux = false
    disable_apparmor = true
    # see write_containerd_config: no CAP_SYS_RESOURCE here
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = ["$BED_DIR/cdi"]
    [$r.containerd]
      default_runtime_name = "runc"
EOF2
    for h in runc kata-sim; do
      cat <<EOF2
      [$r.containerd.runtimes.$h]
        runtime_type = "io.containerd.runc.v2"
        runtime_path = "$CONTAINERD2_BIN/containerd-shim-runc-v2"
EOF2
      [ $h = runc ] || echo '        pod_annotations = ["io.katacontainers.*"]'
      cat <<EOF2
        [$r.containerd.runtimes.$h.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$BED_DIR/$h-root"
          SystemdCgroup = false
EOF2
    done
    cat <<EOF2
    [$r.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = "$BED_DIR/cni/net.d"
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

  [plugins.'io.containerd.nri.v1.nri']
    disable = true
    socket_path = "$BED_DIR/nri/nri.sock"
  [plugins.'io.containerd.internal.v1.opt']
    path = "$BED_DIR/opt"
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = "$BED_DIR/opt/image-verifier/bin"
EOF2
  } >"$BED_DIR/containerd.toml"
}

# CRI-O: everything under $BED_DIR, handlers runc and kata-sim (both runc through the
# oom-clamping wrapper below, each with its own runc root), pod events on for GetContainerEvents,
# registries from its own registries.conf (mirrors as in write_registry_hosts). kata-sim needs no
# allowed_annotations: CRI-O copies every pod annotation into the OCI spec, and CRI-O 1.34 accepts
# only its own list there (`allowed_annotations = ["io.katacontainers.*"]` makes it ignore the
# whole handler: "Runtime handler \"kata-sim\" is being ignored due to: invalid allowed_annotation").
write_crio_config() {
  mkdir -p "$BED_DIR"/{storage,crio-run,lib,crio.conf.d,hooks.d,cdi,keys,policies,registries.conf.d,bin}
  local h
  {
    cat <<EOF2
[crio]
root = "$BED_DIR/storage"
runroot = "$BED_DIR/crio-run/storage"
storage_driver = "overlay"
log_dir = "$BED_DIR/podlogs"
version_file = "$BED_DIR/crio-run/version"
version_file_persist = "$BED_DIR/lib/version"
clean_shutdown_file = "$BED_DIR/lib/clean.shutdown"

[crio.api]
listen = "$RUNTIME_SOCK"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
default_runtime = "runc"
container_exits_dir = "$BED_DIR/crio-run/exits"
container_attach_socket_dir = "$BED_DIR/crio-run"
namespaces_dir = "$BED_DIR/crio-run/ns"
pinns_path = "$CRIO_BIN/pinns"
# GetContainerEvents answers only with this on
enable_pod_events = true
hooks_dir = ["$BED_DIR/hooks.d"]
cdi_spec_dirs = ["$BED_DIR/cdi"]
decryption_keys_path = "$BED_DIR/keys/"
irqbalance_config_file = "$BED_DIR/irqbalance"
irqbalance_config_restore_file = "$BED_DIR/orig_irq_banned_cpus"
log_level = "info"
EOF2
    for h in runc kata-sim; do
      cat <<EOF2

[crio.runtime.runtimes.$h]
runtime_path = "$BED_DIR/bin/runc-oomclamp"
runtime_type = "oci"
runtime_root = "$BED_DIR/$h-root"
monitor_path = "/usr/bin/conmon"
monitor_cgroup = "pod"
EOF2
    done
    cat <<EOF2

[crio.image]
pause_image = "$REGISTRY/pause:3.9"
signature_policy = "$BED_DIR/policy.json"
signature_policy_dir = "$BED_DIR/policies"
# only this (empty) file: never credentials from the environment (DOCKER_CONFIG of bed.sh, ...)
global_auth_file = "$BED_DIR/crio-auth.json"
insecure_registries = ["$REGISTRY", "$AUTH_REGISTRY", "$SLOW_REGISTRY"]

[crio.network]
network_dir = "$BED_DIR/cni/net.d/"
plugin_dirs = ["/usr/lib/cni"]

[crio.nri]
enable_nri = false
nri_listen = "$BED_DIR/crio-run/nri.sock"
EOF2
  } >"$BED_DIR/crio.conf"
  # CRI-O sets oomScoreAdj -998 on the infra container and has no restrict_oom_score_adj; without
  # CAP_SYS_RESOURCE runc fails ("failed to update /proc/self/oom_score_adj: Permission denied").
  # Clamp process.oomScoreAdj to our own value in the bundle's config.json on create/run.
  cat >"$BED_DIR/bin/runc-oomclamp" <<'EOF2'
#!/bin/sh
prev="" bundle="" create=0
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle=$a ;; esac
  case "$a" in --bundle=*) bundle=${a#--bundle=} ;; create|run) create=1 ;; esac
  prev=$a
done
if [ $create = 1 ] && [ -f "${bundle:-.}/config.json" ]; then
  cfg=${bundle:-.}/config.json min=$(cat /proc/self/oom_score_adj) hugetlb=true
  # no hugetlb controller (this machine's cgroup v1 has none): drop the kubelet's hugepage limits,
  # as containerd does; runc fails otherwise ("cannot set hugetlb limit")
  [ -d /sys/fs/cgroup/hugetlb ] || grep -qw hugetlb /sys/fs/cgroup/cgroup.controllers 2>/dev/null || hugetlb=false
  jq -c --argjson m "$min" --argjson h $hugetlb \
    'if (.process.oomScoreAdj // 0) < $m then .process.oomScoreAdj = $m else . end
     | if $h then . else del(.linux.resources.hugepageLimits) end' \
    "$cfg" >"$cfg.clamp" && mv "$cfg.clamp" "$cfg"
fi
exec /usr/sbin/runc "$@"
EOF2
  chmod 755 "$BED_DIR/bin/runc-oomclamp"
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$BED_DIR/policy.json"
  echo '{"auths": {}}' >"$BED_DIR/crio-auth.json"
  cat >"$BED_DIR/storage.conf" <<EOF2
[storage]
driver = "overlay"
runroot = "$BED_DIR/crio-run/storage"
graphroot = "$BED_DIR/storage"
EOF2
  {
    echo 'unqualified-search-registries = []'
    echo 'short-name-mode = "disabled"'
    local reg
    for reg in "$REGISTRY" "$AUTH_REGISTRY" "$SLOW_REGISTRY"; do
      printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$reg" "$reg"
    done
    # critest's hard-coded upstream images, mirrored to the open registry (same repository paths)
    for reg in registry.k8s.io gcr.io; do
      printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$reg" "$REGISTRY"
    done
    # the htpasswd registry under other spellings of its name (policy spelling tests)
    for reg in $(auth_registry_spellings); do
      printf '\n[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$reg" "$AUTH_REGISTRY"
    done
  } >"$BED_DIR/registries.conf"
}

# auth_registry_spellings: names that reach the htpasswd registry as DNS and
# TLS would (letter case), so a test can pull one image under several
# spellings, as a pod author may write them.
auth_registry_spellings() {
  local port=${AUTH_REGISTRY##*:}
  echo "localhost:$port LOCALHOST:$port LocalHost:$port"
}

# hosts.toml files, read by containerd on every pull (no restart needed).
write_registry_hosts() {
  local reg
  for reg in "$REGISTRY" "$AUTH_REGISTRY" "$SLOW_REGISTRY"; do
    mkdir -p "$BED_DIR/certs.d/$reg"
    cat >"$BED_DIR/certs.d/$reg/hosts.toml" <<EOF2
server = "http://$reg"

[host."http://$reg"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
EOF2
  done
  for reg in $(auth_registry_spellings); do
    mkdir -p "$BED_DIR/certs.d/$reg"
    cat >"$BED_DIR/certs.d/$reg/hosts.toml" <<EOF2
server = "http://$AUTH_REGISTRY"

[host."http://$AUTH_REGISTRY"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF2
  done
  # critest hard-codes registry.k8s.io/... and gcr.io/k8s-staging-cri-tools/... images: mirror both
  # to the open registry, which holds the same repository paths. `server` points there too so a miss
  # never falls back to the real (unreachable) upstream.
  for reg in registry.k8s.io gcr.io; do
    mkdir -p "$BED_DIR/certs.d/$reg"
    cat >"$BED_DIR/certs.d/$reg/hosts.toml" <<EOF2
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF2
  done
}

write_registry_configs() {
  htpasswd -Bbc "$BED_DIR/registry/htpasswd" "$AUTH_USER" "$AUTH_PASS" 2>/dev/null
  local name addr extra
  for name in open auth; do
    if [ $name = open ]; then addr=$REGISTRY extra=""; else
      addr=$AUTH_REGISTRY
      extra="auth:
  htpasswd:
    realm: crishim-bed
    path: $BED_DIR/registry/htpasswd"
    fi
    cat >"$BED_DIR/registry/config-$name.yml" <<EOF2
version: 0.1
log:
  level: warn
  fields:
    service: registry-$name
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $BED_DIR/registry/data-$name
  delete:
    enabled: true
http:
  addr: $addr
  headers:
    X-Content-Type-Options: [nosniff]
$extra
EOF2
  done
}
