# shellcheck shell=bash
# config.sh: containerd, CNI, registry and crictl configuration under $BED_DIR. Sourced by bed.sh.

bed_config() {
  log "config: $BED_DIR"
  mkdir -p "$BED_DIR"/{root,state,runc-root,kata-sim-root,logs,podlogs,run,cni/net.d,cni/data,certs.d} \
    "$BED_DIR"/registry/{data-open,data-auth} "$DOCKER_CONFIG"
  write_cni_config
  write_containerd_config
  write_registry_hosts
  write_registry_configs
  cat >"$BED_DIR/crictl.yaml" <<EOF2
runtime-endpoint: unix://$CONTAINERD_SOCK
image-endpoint: unix://$CONTAINERD_SOCK
timeout: 30
debug: false
pull-image-on-create: false
EOF2
}

# Our own bridge and subnet so the bed never collides with a host's cni0/10.88.0.0/16;
# host-local IPAM keeps its leases under $BED_DIR; no masquerade (nothing leaves the machine).
write_cni_config() {
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
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

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

# hosts.toml files, read by containerd on every pull (no restart needed).
write_registry_hosts() {
  local reg
  for reg in "$REGISTRY" "$AUTH_REGISTRY"; do
    mkdir -p "$BED_DIR/certs.d/$reg"
    cat >"$BED_DIR/certs.d/$reg/hosts.toml" <<EOF2
server = "http://$reg"

[host."http://$reg"]
  capabilities = ["pull", "resolve", "push"]
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
