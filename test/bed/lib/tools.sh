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

build_cri_tools() {
  if have_tool crictl $CRI_TOOLS_VERSION && have_tool critest $CRI_TOOLS_VERSION; then
    echo "crictl, critest $CRI_TOOLS_VERSION: cached"
    return
  fi
  log "build crictl + critest $CRI_TOOLS_VERSION"
  local dir=$BED_CACHE/src/cri-tools
  scratch_module "$dir" crishim.test/critools "sigs.k8s.io/cri-tools $CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
  local ldf="-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
  (
    cd "$dir"
    go mod tidy
    time go build -trimpath -ldflags "$ldf" -o "$BED_BIN/crictl" sigs.k8s.io/cri-tools/cmd/crictl
    time go test -c -trimpath -ldflags "$ldf" -o "$BED_BIN/critest" sigs.k8s.io/cri-tools/cmd/critest
  )
  stamp_tool crictl $CRI_TOOLS_VERSION
  stamp_tool critest $CRI_TOOLS_VERSION
}

build_crane() {
  if have_tool crane $CRANE_VERSION; then
    echo "crane $CRANE_VERSION: cached"
    return
  fi
  log "build crane $CRANE_VERSION"
  local dir=$BED_CACHE/src/crane
  scratch_module "$dir" crishim.test/crane "github.com/google/go-containerregistry $CRANE_VERSION" \
    github.com/google/go-containerregistry/cmd/crane
  (
    cd "$dir"
    go mod tidy
    time go build -trimpath -o "$BED_BIN/crane" github.com/google/go-containerregistry/cmd/crane
  )
  stamp_tool crane $CRANE_VERSION
}

# The staging modules k8s.io/kubernetes replaces with ./staging/src/k8s.io/NAME (its go.mod).
KUBE_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
  kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver streaming)

build_kubelet() {
  if have_tool kubelet $KUBERNETES_VERSION; then
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
    cd "$dir"
    go mod tidy
    time go build -trimpath -ldflags "$ldf" -o "$BED_BIN/kubelet" k8s.io/kubernetes/cmd/kubelet
  )
  "$BED_BIN/kubelet" --version
  stamp_tool kubelet $KUBERNETES_VERSION
}

bed_tools() {
  command -v go >/dev/null || die "go not found in PATH"
  mkdir -p "$BED_BIN"
  (
    bed_go_env
    build_cri_tools
    build_crane
    build_kubelet
  )
  "$BED_BIN/crictl" --version
  "$BED_BIN/crane" version
  "$BED_BIN/kubelet" --version
}
