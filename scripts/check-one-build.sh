#!/usr/bin/env bash
# Checks that `cargo build` (what `make crds` builds), `cargo build --workspace` (what
# `make dev` builds: tether and the testkit's tether-data-plane) and `cargo test
# --workspace` (what `make test` builds) give every dependency the same features, so
# that they share one build of it. A crate that gets more features in one of them is
# compiled twice, and so is every crate above it: `make dev` after `make test` would
# recompile the AWS SDK and kube for minutes. Prints the crates that differ; the fix is
# usually a line in the root Cargo.toml that asks for the same features in both.
set -euo pipefail
cd "$(dirname "$0")/.."

# One line per crate and feature set: "name vX.Y.Z [feature,…]".
features() {
  cargo tree --locked --prefix none --format '{p} [{f}]' "$@" | sed 's/ (\*)$//' | sort -u
}
test=$(features --workspace --edges normal,build,dev)
for selection in "--package tether" "--workspace"; do
  # shellcheck disable=SC2086 # two words
  build=$(features $selection --edges normal,build)
  # The test build has crates of its own (the testkit, aws-smithy-mocks): compare only
  # the crates both have.
  shared_test=$(awk -F ' \\[' 'NR == FNR { crate[$1] = 1; next } $1 in crate' \
    <(echo "$build") <(echo "$test"))
  if ! differences=$(diff <(echo "$build") <(echo "$shared_test")); then
    echo "cargo build $selection and cargo test --workspace give these crates different features" >&2
    echo "(< cargo build, > cargo test), so each has two builds of them:" >&2
    echo "$differences" | grep '^[<>]' >&2
    echo "Ask for the same features in both (see the comment in the root Cargo.toml)." >&2
    exit 1
  fi
  echo "cargo build $selection and cargo test share one build of all $(echo "$build" | wc -l) crates"
done
