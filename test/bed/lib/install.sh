# shellcheck shell=bash
# install.sh: Debian packages for the bed. Sourced by bed.sh.

BED_PACKAGES=(containerd runc containernetworking-plugins docker-registry apache2-utils busybox
  iptables gcc libc6-dev curl iproute2 ca-certificates)
# CRI-O's own needs: conmon, libseccomp-dev + pkg-config to build it, jq for the runc wrapper
# (config.sh), nftables (without `nft` a pod with a host port crashes CRI-O's hostport manager)
CRIO_PACKAGES=(conmon libseccomp-dev pkg-config jq nftables)

bed_install() {
  require_root
  local missing=() p pkgs=("${BED_PACKAGES[@]}")
  [ "$RUNTIME" != crio ] || pkgs+=("${CRIO_PACKAGES[@]}")
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "install: all ${#pkgs[@]} packages present"
    return
  fi
  log "install: ${missing[*]}"
  # only refresh the package lists when apt does not know a candidate for what is missing
  for p in "${missing[@]}"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9a-z]'; then
      apt-get update
      break
    fi
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  containerd --version
  runc --version | head -1
}
