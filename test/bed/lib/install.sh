# shellcheck shell=bash
# install.sh: Debian packages for the bed. Sourced by bed.sh.

BED_PACKAGES=(containerd runc containernetworking-plugins docker-registry apache2-utils busybox
  iptables gcc libc6-dev curl iproute2 ca-certificates)

bed_install() {
  require_root
  local missing=() p
  for p in "${BED_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "install: all ${#BED_PACKAGES[@]} packages present"
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
