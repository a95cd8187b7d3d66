#!/usr/bin/env bash
# Tests the image scripts/build-image.sh built (localhost/tether:<Cargo.toml's
# version>), as `make image` does after building it:
#
# - its configuration: user 65532:65532, entrypoint /tether, command `run
#   --admin-addr=0.0.0.0:8080`, the OCI labels version and licenses;
# - its files: exactly /tether, the libraries and loader `ldd` lists for it, the CA
#   certificates (Mozilla's set from Debian's ca-certificates, not this host's bundle),
#   /etc/passwd, /etc/group, /etc/nsswitch.conf and /home/nonroot;
#   under MAX_IMAGE_MB (default 50) MB unpacked;
# - running it, with `buildah run --isolation chroot` (no container runtime needed):
#   `tether --version` prints Cargo.toml's version, `tether crds` prints the
#   CustomResourceDefinitions, and as user 65532 it cannot write to its root
#   filesystem.
set -euo pipefail

script_name=test-image
# shellcheck source=scripts/image-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/image-common.sh"

max_mb="${MAX_IMAGE_MB:-50}"
require_package buildah buildah
buildah images --quiet "$image_ref" >/dev/null 2>&1 \
    || die "no image $image_ref: build it with scripts/build-image.sh (make image)"

failures=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then
        log "ok: $1: $3"
    else
        log "FAILED: $1: expected '$2', got '$3'"
        failures=$((failures + 1))
    fi
}

# Configuration.
inspect() { buildah inspect --type image --format "$1" "$image_ref"; }
check "user" "65532:65532" "$(inspect '{{.OCIv1.Config.User}}')"
# (buildah 1.28's templates have no json function: each element quoted instead)
check "entrypoint" '"/tether"' "$(inspect '{{range .OCIv1.Config.Entrypoint}}{{printf "%q" .}}{{end}}')"
check "command" '"run" "--admin-addr=0.0.0.0:8080"' \
    "$(inspect '{{range $i, $arg := .OCIv1.Config.Cmd}}{{if $i}} {{end}}{{printf "%q" $arg}}{{end}}')"
check "label version" "$version" "$(inspect '{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}')"
check "label licenses" "Apache-2.0" "$(inspect '{{index .OCIv1.Config.Labels "org.opencontainers.image.licenses"}}')"

container="$(buildah from --quiet --pull-never "$image_ref")"
mounted=""
cleanup() {
    if [[ -n "$mounted" ]]; then buildah umount "$container" >/dev/null 2>&1 || true; fi
    buildah rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Files, read from a mount of the container made from the image (before anything
# ran in it: buildah run adds /etc/hosts and the like).
mounted="$(buildah mount "$container")"
files="$(cd "$mounted" && find . -mindepth 1 \( -type f -o -type l \) -printf '/%P\n' | sort)"
libraries="$(ldd "$mounted/tether" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')"
expected="$(printf '%s\n' /tether /etc/ssl/certs/ca-certificates.crt /etc/passwd /etc/group /etc/nsswitch.conf $libraries | sort)"
check "files" "$(tr '\n' ' ' <<<"$expected")" "$(tr '\n' ' ' <<<"$files")"
check "owner and mode of /home, /home/nonroot" "0:0 755, 65532:65532 700" \
    "$(stat -c '%u:%g %a' "$mounted/home" "$mounted/home/nonroot" | paste -sd, | sed 's/,/, /g')"
summary() { # of a CA bundle on stdin
    local pem
    pem="$(cat)"
    echo "$(grep -c 'BEGIN CERTIFICATE' <<<"$pem") certificates, sha256 $(sha256sum <<<"$pem" | cut -c1-16)"
}
check "CA bundle: Mozilla's set from Debian's ca-certificates" \
    "$(mozilla_ca_bundle | summary)" "$(summary <"$mounted/etc/ssl/certs/ca-certificates.crt")"
size_bytes="$(du -sb "$mounted" | cut -f1)"
size_mb="$(awk -v b="$size_bytes" 'BEGIN { printf "%.1f", b / 1000000 }')"
if (( size_bytes < max_mb * 1000000 )); then
    log "ok: size: $size_mb MB unpacked (bound: $max_mb MB)"
else
    check "size under $max_mb MB" "< $max_mb MB" "$size_mb MB"
fi
buildah umount "$container" >/dev/null
mounted=""

# Running it, as the image's user, with the image's environment.
run() { buildah run --isolation chroot "$container" -- "$@"; }
check "tether --version" "tether $version" "$(run /tether --version)"
crds="$(run /tether crds)"
crd_count="$(grep -c '^kind: CustomResourceDefinition$' <<<"$crds" || true)"
if [[ "$crd_count" -gt 0 ]]; then
    log "ok: tether crds: $crd_count documents of kind: CustomResourceDefinition"
else
    check "tether crds" "kind: CustomResourceDefinition" "$(head -c 300 <<<"$crds")"
fi
if written="$(run /tether crds --output-dir /written-by-tether 2>&1)"; then
    check "root filesystem not writable for the image's user" "an error" "written: $written"
else
    log "ok: as the image's user, writing to / fails: $(grep -m1 '^error:' <<<"$written")"
fi

if (( failures > 0 )); then
    die "$failures check(s) failed for $image_ref"
fi
log "all checks passed for $image_ref"
