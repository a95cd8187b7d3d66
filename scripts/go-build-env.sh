# Sourced by the scripts that build a Go program into the tether cache
# (build-control-plane.sh, build-helm.sh): sets `root` (the checkout) and `out_dir`
# (${TETHER_CACHE:-$HOME/.cache/tether}/bin, created), and stops with a message when
# Go is not installed.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${TETHER_CACHE:-$HOME/.cache/tether}/bin"

if ! command -v go >/dev/null 2>&1; then
    echo "$(basename "$0" .sh): 'go' not found on PATH; install Go 1.24 or newer (https://go.dev/doc/install, or apt-get install golang-go if recent enough)" >&2
    exit 1
fi
mkdir -p "$out_dir"
