#!/usr/bin/env bash
# Build the pinned Kubernetes control plane, etcd, kwok and helm from the Go module proxy into a
# versioned cache, rebuilding only what is missing. Nothing here is committed. Each step says when
# it starts and ends, with its time, and a long one says every minute that it is still running.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces every staging module with a
# local path), so a throw-away wrapper module requires it and pins each staging module to the
# matching v0.Y.Z tag. kwok is built on its own: it needs newer staging modules than the wrapper.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.4.1}
PROMETHEUS_OPERATOR_VERSION=${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}
CLUSTER_API_VERSION=${CLUSTER_API_VERSION:-v1.14.2}
KARPENTER_VERSION=${KARPENTER_VERSION:-v1.14.1}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE_ROOT=${VIGIL_K8S_CACHE:-$HOME/.cache/vigil/k8s}
OUT="$CACHE_ROOT/$K8S_VERSION"
HELM_OUT="$CACHE_ROOT/helm-$HELM_VERSION"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath GOWORK=off
mkdir -p "$OUT"

log() { printf '[k8s-bins] %s\n' "$*" >&2; }

# step WHAT CMD...: run CMD, saying when it starts, every minute while it runs, and when it ends.
step() {
  local what=$1 start ticker rc=0
  shift
  start=$(date +%s)
  log "$what: started"
  (  # the trap also ends the sleep, which would otherwise hold our caller's pipe open for up to a minute
    trap 'kill $nap 2>/dev/null; exit 0' TERM
    while :; do sleep 60 & nap=$!; wait $nap; log "$what: still running ($((($(date +%s) - start) / 60)) min)"; done
  ) &
  ticker=$!
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  if ((rc)); then log "$what: FAILED after $(($(date +%s) - start)) s"; return "$rc"; fi
  log "$what: done in $(($(date +%s) - start)) s"
}

# Binaries an envtest install already provides are used from there.
have() {
  local name=$1
  [[ -x "$OUT/$name" ]] && return 0
  [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/$name" ]] && return 0
  return 1
}

missing=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd; do
  have "$b" || missing+=("$b")
done

if ((${#missing[@]})); then
  log "building ${missing[*]} for Kubernetes $K8S_VERSION (measured cold: about 7 min on 2 cores; warm: seconds)"
  start=$(date +%s)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  go mod init example.invalid/k8sbins >/dev/null 2>&1
  log "modules for k8s.io/kubernetes $K8S_VERSION: resolving"
  upstream_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  go_line=$(awk '$1=="go"{print $2; exit}' "$upstream_mod")
  go mod edit -go="$go_line"
  awk '$1=="godebug" && $2 ~ /=/{print $2}' "$upstream_mod" | while read -r kv; do go mod edit -godebug="$kv"; done
  staging_tag="v0.${K8S_VERSION#v1.}"
  grep -Eo 'k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/[a-z0-9-]+' "$upstream_mod" | awk '{print $1}' | sort -u |
    while read -r mod; do go mod edit -replace="$mod=$mod@$staging_tag"; done
  go get "k8s.io/kubernetes@$K8S_VERSION" >/dev/null 2>&1 || true
  step "modules for the control plane (download)" go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  step "modules for etcd $etcd_version (download)" go get "go.etcd.io/etcd/server/v3@$etcd_version"
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  # One binary at a time, so each one's start, end and time are visible (the shared packages are
  # compiled once, by the first; the others reuse them from GOCACHE).
  for b in "${missing[@]}"; do
    if [[ $b == etcd ]]; then
      step "build etcd" go build -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
    else
      step "build $b" go build -ldflags "$ld" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    fi
    mv "$OUT/$b.tmp" "$OUT/$b"
  done
  log "built ${missing[*]} in $(($(date +%s) - start)) s"
fi

if [[ ! -x "$OUT/kwok" ]]; then
  step "build kwok $KWOK_VERSION" env GOBIN="$OUT" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

# helm, for the chart's lint/template/dry-run tests (measured cold: about 3 min on 2 cores).
if [[ ! -x "$HELM_OUT/helm" ]]; then
  mkdir -p "$HELM_OUT"
  step "build helm $HELM_VERSION" bash -c "cd /tmp && GOBIN='$HELM_OUT.tmp' go install -ldflags \
    '-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean' \
    'helm.sh/helm/v3/cmd/helm@$HELM_VERSION'"
  mv "$HELM_OUT.tmp/helm" "$HELM_OUT/helm" && rmdir "$HELM_OUT.tmp"
fi

crds="$OUT/gateway-api-$GATEWAY_API_VERSION-standard.yaml"
if [[ ! -s "$crds" ]]; then
  dir=$(cd /tmp && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  for f in "$dir"/config/crd/standard/*.yaml; do printf -- '---\n'; cat "$f"; done > "$crds.tmp"
  mv "$crds.tmp" "$crds"
fi

# The Prometheus Operator CRDs the deploy/prometheus-operator overlay and the Helm chart use, for
# their dry-run tests (a cache from before AlertmanagerConfig was added is refreshed).
pcrds="$OUT/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION-crds.yaml"
if [[ ! -s "$pcrds" ]] || ! grep -q 'name: alertmanagerconfigs.monitoring.coreos.com' "$pcrds"; then
  dir=$(cd /tmp && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  for k in servicemonitors podmonitors prometheusrules alertmanagerconfigs; do
    printf -- '---\n'; cat "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml"
  done > "$pcrds.tmp"
  mv "$pcrds.tmp" "$pcrds"
fi

# The repair providers' CRDs (only their YAML: the modules are not built), for replace_node's tests.
module_file() {  # module version path-inside-module output
  local out=$4
  [[ -s "$out" ]] && return 0
  local dir
  dir=$(cd /tmp && go mod download -json "$1@$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$dir/$3" "$out.tmp" && chmod 644 "$out.tmp" && mv "$out.tmp" "$out"
}
module_file sigs.k8s.io/cluster-api "$CLUSTER_API_VERSION" core/config/crd/bases/cluster.x-k8s.io_machines.yaml \
  "$OUT/cluster-api-$CLUSTER_API_VERSION-machines.yaml"
module_file sigs.k8s.io/karpenter "$KARPENTER_VERSION" pkg/apis/crds/karpenter.sh_nodeclaims.yaml \
  "$OUT/karpenter-$KARPENTER_VERSION-nodeclaims.yaml"

log "binaries ready in $OUT and $HELM_OUT"
