#!/usr/bin/env bash
# Builds tether's container image on this machine, without a Docker daemon and
# without pulling a base image, with buildah:
#
#   localhost/tether:<version>                        buildah's (and podman's) image store
#   $TETHER_CACHE/image/tether-<version>.oci.tar      OCI archive (podman load, skopeo copy)
#
# The image is the Dockerfile's, assembled FROM scratch: the release binary, exactly
# the shared libraries `ldd` lists plus the dynamic loader, the host's CA
# certificates (the AWS SDK and kube trust the system roots, found at
# /etc/ssl/certs/ca-certificates.crt: Mozilla's set from Debian's ca-certificates,
# not the host's bundle with its local additions), /etc/passwd and /etc/group naming the user
# nonroot (65532), /etc/nsswitch.conf, and nonroot's empty home. The binary is built
# on this host, so the libraries are the ones it was linked against.
#
# Needs buildah 1.28 or newer (Debian: apt-get install buildah), installed here on
# first use when run as root. buildah keeps images in its default storage
# (/var/lib/containers/storage for root, overlay driver); where overlay does not work,
# point CONTAINERS_STORAGE_CONF at a storage.conf that says driver = "vfs" (with a
# graphroot and runroot of its own). scripts/test-image.sh tests the result.
set -euo pipefail

script_name=build-image
# shellcheck source=scripts/image-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/image-common.sh"

started=$(date +%s)

# The Dockerfile builds with the workspace's rust-version and labels the version;
# keep it in step with Cargo.toml.
rust_version="$(workspace_field rust-version)"
grep -qx "ARG RUST_VERSION=$rust_version" "$repo_root/Dockerfile" \
    || die "Dockerfile: set 'ARG RUST_VERSION=$rust_version' (the workspace's rust-version)"
grep -qx "ARG VERSION=$version" "$repo_root/Dockerfile" \
    || die "Dockerfile: set 'ARG VERSION=$version' (the workspace's version)"

require_package buildah buildah
require_package ca-certificates "$mozilla_ca_dir"
for tool in ldd cargo strip; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH"
done

log "building tether $version (release)..."
build_started=$(date +%s)
(cd "$repo_root" && nice -n 19 cargo build --release --locked -p tether)
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
binary="$target_dir/release/tether"
[[ -x "$binary" ]] || die "cargo build did not produce $binary"
log "release build took $(( $(date +%s) - build_started ))s"

# The root filesystem, laid out in a staging directory and handed to buildah as one
# tar archive, whose entries carry the owners (root; nonroot for its home).
staging="$(mktemp -d)"
rootfs="$staging/rootfs"
container=""
cleanup() {
    rm -rf "$staging"
    if [[ -n "$container" ]]; then buildah rm "$container" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# Without its symbol table (as the Dockerfile does): 19 MB instead of 25 MB; a
# backtrace then shows addresses instead of function names.
mkdir -m 0755 "$rootfs"
strip --strip-all -o "$rootfs/tether" "$binary"
chmod 0755 "$rootfs/tether"

# Every library ldd resolves (`name => /path (address)`) and the loader (`/path
# (address)`); the vDSO comes from the kernel. Copied to the same paths, dereferenced.
ldd_out="$(ldd "$binary")" || die "ldd $binary failed: $ldd_out"
if grep -q 'not found' <<<"$ldd_out"; then
    die "ldd cannot resolve every library of $binary:"$'\n'"$ldd_out"
fi
libraries=()
while read -r first arrow path _; do
    if [[ "$arrow" == "=>" && "$path" == /* ]]; then
        libraries+=("$path")
    elif [[ "$first" == /* ]]; then
        libraries+=("$first")
    fi
done <<<"$ldd_out"
[[ ${#libraries[@]} -gt 0 ]] || die "ldd lists no libraries for $binary (a static binary needs no loader; adapt this script)"
for lib in "${libraries[@]}"; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L --preserve=mode "$lib" "$rootfs$lib"
done
log "shared libraries: ${libraries[*]}"

ca_bundle=/etc/ssl/certs/ca-certificates.crt
mkdir -p "$rootfs$(dirname "$ca_bundle")"
mozilla_ca_bundle >"$rootfs$ca_bundle"
chmod 0644 "$rootfs$ca_bundle"

# The user and group of distroless's nonroot variant, and name resolution through
# /etc/hosts before DNS (glibc's default without this file tries DNS first).
mkdir -p "$rootfs/etc"
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs"/etc/{passwd,group,nsswitch.conf}
mkdir -p -m 0755 "$rootfs/home"
mkdir -m 0700 "$rootfs/home/nonroot"
tar -cf "$staging/rootfs.tar" --numeric-owner --owner=0 --group=0 \
    --exclude=./home/nonroot -C "$rootfs" .
tar -rf "$staging/rootfs.tar" --numeric-owner --owner=65532 --group=65532 \
    --no-recursion -C "$rootfs" ./home/nonroot

revision="$(git -C "$repo_root" rev-parse HEAD 2>/dev/null || true)"
if [[ -n "$revision" ]] && [[ -n "$(git -C "$repo_root" status --porcelain 2>/dev/null)" ]]; then
    revision+="-dirty"
fi
source_url="${TETHER_IMAGE_SOURCE:-$(git -C "$repo_root" remote get-url origin 2>/dev/null || true)}"

log "assembling $image_ref from scratch..."
old_image="$(buildah images --quiet --no-trunc "$image_ref" 2>/dev/null || true)"
container="$(buildah from scratch)"
buildah add --quiet "$container" "$staging/rootfs.tar" / >/dev/null
buildah config \
    --os linux --arch "$(buildah info --format '{{.host.arch}}')" \
    --user 65532:65532 \
    --workingdir /home/nonroot \
    --env SSL_CERT_FILE="$ca_bundle" \
    --port 8080 \
    --entrypoint '["/tether"]' \
    --cmd '["run", "--admin-addr=0.0.0.0:8080"]' \
    --label org.opencontainers.image.title=tether \
    --label "org.opencontainers.image.description=$(awk -F'"' '/^description = /{print $2; exit}' "$repo_root/Cargo.toml")" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.licenses=$(workspace_field license)" \
    "$container"
image_id="$(buildah commit --quiet --format oci --rm "$container" "$image_ref")"
container=""
if [[ -n "$old_image" && "$old_image" != "$image_id" ]]; then
    buildah rmi "$old_image" >/dev/null 2>&1 || true # the build it replaces, now untagged
fi

mkdir -p "$(dirname "$archive")"
rm -f "$archive"
buildah push --quiet "$image_ref" "oci-archive:$archive:$image_ref"

log "built $image_ref (${image_id:0:12}) in $(( $(date +%s) - started ))s"
log "OCI archive: $archive ($(du -h "$archive" | cut -f1))"
