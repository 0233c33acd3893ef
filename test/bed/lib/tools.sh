# shellcheck shell=bash
# tools.sh: crictl, critest, crane and kubelet built from the Go module proxy into $BED_CACHE/bin.
# Sourced by bed.sh. Each tool is rebuilt only when its binary or version stamp is missing.

# Private Go caches so repeated runs on one machine are fast and the user's caches stay clean.
bed_go_env() {
  export GOMODCACHE=$BED_CACHE/gomodcache GOCACHE=$BED_CACHE/gocache
  export GOFLAGS=-mod=mod CGO_ENABLED=0
  # The proxy serves cri-tools v1.34.0 but the checksum DB answers 404 for it and its k8s.io/cri-*
  # dependencies: skip the sumdb for exactly those modules (go.sum of the scratch module still pins).
  export GONOSUMDB=sigs.k8s.io/cri-tools,k8s.io/cri-api,k8s.io/cri-client
}

# have_tool NAME VERSION: binary present and stamped with VERSION
have_tool() { [ -x "$BED_BIN/$1" ] && [ "$(cat "$BED_BIN/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp_tool() { echo "$2" >"$BED_BIN/.$1.version"; }

# scratch_module DIR MODULE REQUIRE IMPORT: a throwaway module whose tools.go imports IMPORT.
# `go install pkg@version` does not work here (the proxy answers 403 to @v/list deprecation
# queries, and k8s.io/kubernetes replaces its staging modules with ./staging paths).
scratch_module() {
  local dir=$1 module=$2 require=$3 import=$4
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module $module

go 1.24.1

require $require
GOMOD
  cat >"$dir/tools.go" <<GOSRC
//go:build tools

package tools

import _ "$import"
GOSRC
}

# BED_CRITEST=0 leaves critest out (the demo does not run it).
build_cri_tools() {
  local want_critest=${BED_CRITEST:-1}
  if have_tool crictl "$CRI_TOOLS_VERSION" && { [ "$want_critest" = 0 ] || have_tool critest "$CRI_TOOLS_VERSION"; }; then
    echo "crictl$([ "$want_critest" = 0 ] || echo ", critest") $CRI_TOOLS_VERSION: cached"
    return
  fi
  log "build crictl$([ "$want_critest" = 0 ] || echo " + critest") $CRI_TOOLS_VERSION"
  local dir=$BED_CACHE/src/cri-tools
  scratch_module "$dir" crishim.test/critools "sigs.k8s.io/cri-tools $CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
  local ldf="-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
  (
    cd "$dir" || exit
    go mod tidy
    time go build -trimpath -ldflags "$ldf" -o "$BED_BIN/crictl" sigs.k8s.io/cri-tools/cmd/crictl
    if [ "$want_critest" != 0 ]; then
      time go test -c -trimpath -ldflags "$ldf" -o "$BED_BIN/critest" sigs.k8s.io/cri-tools/cmd/critest
    fi
  )
  stamp_tool crictl "$CRI_TOOLS_VERSION"
  if [ "$want_critest" != 0 ]; then stamp_tool critest "$CRI_TOOLS_VERSION"; fi
}

build_crane() {
  if have_tool crane "$CRANE_VERSION"; then
    echo "crane $CRANE_VERSION: cached"
    return
  fi
  log "build crane $CRANE_VERSION"
  local dir=$BED_CACHE/src/crane
  scratch_module "$dir" crishim.test/crane "github.com/google/go-containerregistry $CRANE_VERSION" \
    github.com/google/go-containerregistry/cmd/crane
  (
    cd "$dir" || exit
    go mod tidy
    time go build -trimpath -o "$BED_BIN/crane" github.com/google/go-containerregistry/cmd/crane
  )
  stamp_tool crane "$CRANE_VERSION"
}

# The staging modules k8s.io/kubernetes replaces with ./staging/src/k8s.io/NAME (its go.mod).
KUBE_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
  kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver streaming)

build_kubelet() {
  if have_tool kubelet "$KUBERNETES_VERSION"; then
    echo "kubelet $KUBERNETES_VERSION: cached"
    return
  fi
  log "build kubelet $KUBERNETES_VERSION (about 4 min cold on 2 cores)"
  local dir=$BED_CACHE/src/kubelet staging=v0${KUBERNETES_VERSION#v1}
  scratch_module "$dir" crishim.test/kubelet "k8s.io/kubernetes $KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kubelet
  {
    echo
    echo "replace ("
    local m
    for m in "${KUBE_STAGING[@]}"; do echo "	k8s.io/$m => k8s.io/$m $staging"; done
    echo ")"
  } >>"$dir/go.mod"
  local v=k8s.io/component-base/version minor
  minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  local ldf="-s -w -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ldf="$ldf -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  (
    cd "$dir" || exit
    go mod tidy
    time go build -trimpath -ldflags "$ldf" -o "$BED_BIN/kubelet" k8s.io/kubernetes/cmd/kubelet
  )
  "$BED_BIN/kubelet" --version
  stamp_tool kubelet "$KUBERNETES_VERSION"
}

# containerd 2.x: containerd, its runc shim (a handler must point at this shim: Debian's 1.6 shim
# is found first otherwise) and ctr. Static (CGO_ENABLED=0); no_btrfs needs no btrfs headers.
# `go install ...@VERSION` is refused for some versions (exclude directives): a scratch module.
build_containerd2() {
  local stamp=$CONTAINERD2_BIN/.version
  if [ -x "$CONTAINERD2_BIN/containerd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$CONTAINERD2_VERSION" ]; then
    echo "containerd $CONTAINERD2_VERSION: cached"
    return
  fi
  log "build containerd $CONTAINERD2_VERSION (about 2 min cold on 2 cores)"
  local dir=$BED_CACHE/src/containerd2 c
  mkdir -p "$dir" "$CONTAINERD2_BIN"
  scratch_module "$dir" crishim.test/containerd2 "github.com/containerd/containerd/v2 $CONTAINERD2_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd
  cat >"$dir/tools.go" <<GOSRC
//go:build tools

package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
GOSRC
  local ldf="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD2_VERSION"
  (
    cd "$dir" || exit
    go mod tidy
    for c in containerd containerd-shim-runc-v2 ctr; do
      time go build -trimpath -tags no_btrfs -ldflags "$ldf" -o "$CONTAINERD2_BIN/$c" "github.com/containerd/containerd/v2/cmd/$c"
    done
  )
  "$CONTAINERD2_BIN/containerd" --version
  echo "$CONTAINERD2_VERSION" >"$stamp"
}

# CRI-O: crio (cgo: seccomp needs libseccomp-dev) with the build tags its Makefile picks on a host
# without btrfs/gpgme headers, and pinns, compiled from the C sources in the module zip. conmon and
# runc come from Debian (bed_install). `go install` is refused (@v/list answers 403).
build_crio() {
  local stamp=$CRIO_BIN/.version
  if [ -x "$CRIO_BIN/crio" ] && [ -x "$CRIO_BIN/pinns" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$CRIO_VERSION" ]; then
    echo "CRI-O $CRIO_VERSION: cached"
    return
  fi
  log "build CRI-O $CRIO_VERSION + pinns (about 1.5 min cold on 2 cores)"
  local dir=$BED_CACHE/src/crio
  mkdir -p "$dir" "$CRIO_BIN"
  scratch_module "$dir" crishim.test/crio "github.com/cri-o/cri-o $CRIO_VERSION" github.com/cri-o/cri-o/cmd/crio
  (
    cd "$dir" || exit
    # the checksum DB answers 404 for these (go.sum of the scratch module still pins them)
    export GONOSUMDB=$GONOSUMDB,github.com/cri-o/cri-o,github.com/containerd/nri,github.com/CloudNativeAI/model-spec
    go mod tidy
    time CGO_ENABLED=1 go build -trimpath \
      -tags "containers_image_ostree_stub apparmor exclude_graphdriver_btrfs containers_image_openpgp seccomp selinux" \
      -ldflags "-X github.com/cri-o/cri-o/internal/version.buildDate=1970-01-01T00:00:00Z" \
      -o "$CRIO_BIN/crio" github.com/cri-o/cri-o/cmd/crio
    local src
    src=$(go list -m -f '{{.Dir}}' github.com/cri-o/cri-o)
    gcc -std=c99 -O2 -Wall -Wextra -static -o "$CRIO_BIN/pinns" "$src"/pinns/src/*.c
    strip -s "$CRIO_BIN/pinns"
  )
  "$CRIO_BIN/crio" --version | head -1
  echo "$CRIO_VERSION" >"$stamp"
}

# build_runtime: the selected runtime, when it is built here (containerd1 is Debian's)
build_runtime() {
  case $RUNTIME in
    containerd2) build_containerd2 ;;
    crio) build_crio ;;
  esac
}

bed_tools() {
  command -v go >/dev/null || die "go not found in PATH"
  mkdir -p "$BED_BIN"
  (
    bed_go_env
    build_cri_tools
    build_crane
    build_kubelet
    build_runtime
  )
  "$BED_BIN/crictl" --version
  "$BED_BIN/crane" version
  "$BED_BIN/kubelet" --version
}
