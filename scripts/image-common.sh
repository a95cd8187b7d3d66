# Shared by build-image.sh and test-image.sh (sourced, not run).
# shellcheck shell=bash

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${TETHER_CACHE:-$HOME/.cache/tether}"
image_name="localhost/tether"

log() { printf '%s: %s\n' "$script_name" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$script_name" "$*" >&2; exit 1; }

# The value of `key = "..."` in [workspace.package] of the root Cargo.toml.
workspace_field() {
    awk -v key="$1" '
        /^\[/ { in_section = ($0 == "[workspace.package]") }
        in_section && $1 == key && $2 == "=" { gsub(/"/, "", $3); print $3; exit }
    ' "$repo_root/Cargo.toml"
}

version="$(workspace_field version)"
[[ -n "$version" ]] || die "no version in [workspace.package] of $repo_root/Cargo.toml"
image_ref="$image_name:$version"
archive="$cache_dir/image/tether-$version.oci.tar"

# Debian packages the image build needs: as root (how this machine runs) a missing one
# is installed on first use; anyone else is told to install it.
# require_package PACKAGE FILE-OR-COMMAND-IT-PROVIDES
require_package() {
    if [[ "$2" == /* ]]; then [[ -e "$2" ]] && return; else command -v "$2" >/dev/null 2>&1 && return; fi
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "$2 not found; installing it: apt-get install $1"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null; }; then
            die "apt-get install $1 failed; install $1 and run this again"
        fi
    else
        die "$2 not found: install $1 (Debian/Ubuntu: sudo apt-get install $1; Fedora: sudo dnf install $1), or build with Docker/Podman from the Dockerfile"
    fi
}

# The CA certificates the image carries: Mozilla's set as Debian's ca-certificates
# package ships it (what distroless carries), not this machine's bundle, which may
# hold local additions (a proxy's CA) that have no place in an image.
mozilla_ca_dir=/usr/share/ca-certificates/mozilla
mozilla_ca_bundle() {
    local certs=("$mozilla_ca_dir"/*.crt)
    [[ -e "${certs[0]}" ]] || die "no certificates in $mozilla_ca_dir: install ca-certificates"
    awk 1 "${certs[@]}" # one after the other, each ending in a newline
}
