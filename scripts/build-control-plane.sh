#!/usr/bin/env bash
# Builds tests/control-plane (a real kube-apiserver + etcd + the garbage-collector
# and namespace controllers in one process, no containers) into
#   ${TETHER_CACHE:-$HOME/.cache/tether}/bin/tether-control-plane
#
# A cold build (empty Go caches) downloads the Go modules and compiles
# Kubernetes: 11-17 minutes on 2 cores. With warm caches go build is
# incremental and takes seconds; it is always run, so edits are picked up.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/go-build-env.sh"
src="$root/tests/control-plane"
out="$out_dir/tether-control-plane"

# Report the pinned Kubernetes release as the server version (what
# `kubectl version` and /version show), as a release build of it would.
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$src/go.mod")"
ldflags="-s -w"
if [[ "$k8s_version" =~ ^v([0-9]+)\.([0-9]+)\. ]]; then
    pkg=k8s.io/component-base/version
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=${BASH_REMATCH[1]} -X $pkg.gitMinor=${BASH_REMATCH[2]}"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
fi

start=$(date +%s)
echo "building tether-control-plane (Kubernetes ${k8s_version:-unknown}) with $(go version | awk '{print $3}')..." >&2
(
    cd "$src"
    # -trimpath keeps the build cache valid wherever the checkout lives;
    # -buildvcs=false keeps unrelated commits from forcing a relink.
    # Building straight onto the previous binary lets go build skip the
    # link step (the slow part of a warm build) when nothing changed.
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out" .
)
echo "control plane built in $(( $(date +%s) - start ))s: $out"
