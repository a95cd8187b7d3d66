#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3/cmd/helm, at the version tests/helm/go.mod pins,
# from the Go module proxy) into
#   ${TETHER_CACHE:-$HOME/.cache/tether}/bin/helm
# for the chart tests (tests/integration/helm.rs) and for `helm` by hand.
#
# Skipped when that binary was built from the same tests/helm/go.mod, go.sum and
# this script (a stamp file beside it records their hash). A cold build (empty Go
# caches) downloads the modules and compiles helm and its Kubernetes client
# libraries: a few minutes on 2 cores; Go's build cache (~/.cache/go-build) makes
# a rebuild after a version bump much quicker.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/go-build-env.sh"
src="$root/tests/helm"
out="$out_dir/helm"
stamp="$out.stamp"

wanted="$(cat "$src/go.mod" "$src/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [[ -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "helm is up to date: $out ($("$out" version --short))"
    exit 0
fi

module_version() {
    awk -v module="$1" '$1 == module && $2 ~ /^v/ { print $2; exit }' "$src/go.mod"
}
helm_version="$(module_version helm.sh/helm/v3)"
client_go="$(module_version k8s.io/client-go)"
if [[ -z "$helm_version" || ! "$client_go" =~ ^v0\.([0-9]+)\. ]]; then
    echo "build-helm: $src/go.mod names no helm.sh/helm/v3 or k8s.io/client-go v0.N version" >&2
    exit 1
fi
# What helm's own Makefile sets for a release: its version, and the Kubernetes
# version of its client libraries (client-go v0.N is Kubernetes 1.N), which
# `helm lint` and `helm template` assume when no cluster is asked.
k8s_minor="${BASH_REMATCH[1]}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

start=$(date +%s)
echo "building helm $helm_version (Kubernetes 1.$k8s_minor client libraries) with $(go version | awk '{print $3}')..." >&2
(
    cd "$src"
    # As for the control plane: -trimpath keeps Go's build cache valid wherever the
    # checkout lives, -buildvcs=false keeps the repository's commits out of it.
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out.new" helm.sh/helm/v3/cmd/helm
)
mv "$out.new" "$out"
echo "$wanted" >"$stamp"
echo "helm built in $(( $(date +%s) - start ))s: $out ($("$out" version --short))"
