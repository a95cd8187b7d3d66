#!/usr/bin/env bash
# Runs `tether run` under heaptrack in the same process (exec), so that a bench that
# measures the pid it started measures tether: point the scale bench at it with
#   TETHER_BENCH_BINARY=scripts/heaptrack-tether.sh cargo bench --locked --bench scale
# (needs `apt-get install heaptrack`). Each process started writes
# $TETHER_HEAPTRACK_DIR/tether.<pid>.zst (default /tmp/heaptrack-tether); read one with
#   heaptrack_print -f /tmp/heaptrack-tether/tether.<pid>.zst --print-leaks 1
# ("leaked" is what was live when the process ended: for the bench's first process,
# at its SIGKILL after the steady phase). The binary is $TETHER_HEAPTRACK_BINARY, by
# default the release build in $CARGO_TARGET_DIR.
set -euo pipefail
binary="${TETHER_HEAPTRACK_BINARY:-${CARGO_TARGET_DIR:-$HOME/.cache/tether/target}/release/tether}"
dir="${TETHER_HEAPTRACK_DIR:-/tmp/heaptrack-tether}"
libexec=/usr/lib/heaptrack/libexec
[[ -x "$libexec/heaptrack_interpret" ]] || { echo "heaptrack is not installed: apt-get install heaptrack" >&2; exit 1; }
mkdir -p "$dir"
pipe="$dir/fifo.$$"
mkfifo "$pipe"
"$libexec/heaptrack_interpret" < "$pipe" | zstd -q > "$dir/tether.$$.zst" &
exec env LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT="$pipe" "$binary" "$@"
