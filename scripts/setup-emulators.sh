#!/usr/bin/env bash
# Create or refresh the Python virtualenvs that hold the AWS emulators used by
# tether's tests (no Docker involved):
#
#   $TETHER_CACHE/venv-moto        moto server          (python3)
#   $TETHER_CACHE/venv-localstack  LocalStack community (python >= 3.13)
#
# TETHER_CACHE defaults to $HOME/.cache/tether.
#
# Usage: scripts/setup-emulators.sh [moto|localstack]   (default: both)
#
# Idempotent: each venv stores a hash of its requirements file (plus the
# interpreter version); when it matches, pip is not run at all. When the
# requirements change, the venv is rebuilt from scratch.
#
# Interpreter for venv-localstack, first that works and is >= 3.13:
#   $LOCALSTACK_PYTHON, $PYTHON313, $PYTHON312 (kept for compatibility; it must
#   still point at 3.13+), python3.13 / python3.14 on PATH,
#   $(pyenv root)/versions/3.13*/bin/python3, .../3.14*/bin/python3.
# (localstack-core 2026.3.0 imports warnings.deprecated, which is 3.13+ only.)
# Interpreter for venv-moto: $MOTO_PYTHON or python3 (>= 3.9).
set -euo pipefail

script_start=$(date +%s)
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
req_dir="$repo_root/tests/emulators"
cache_dir="${TETHER_CACHE:-$HOME/.cache/tether}"

log() { printf 'setup-emulators: %s\n' "$*" >&2; }
die() { printf 'setup-emulators: ERROR: %s\n' "$*" >&2; exit 1; }

what="${1:-all}"
case "$what" in
  all | moto | localstack) ;;
  -h | --help)
    sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument '$what' (expected: moto, localstack or nothing for both)" ;;
esac
[ "$#" -le 1 ] || die "too many arguments (expected at most one: moto or localstack)"

# Prints the interpreter's "major.minor" if it runs and is >= the given
# minimum, else fails.
py_version_at_least() { # $1 = interpreter, $2 = minimum minor of 3.x
  "$1" -c "import sys; assert sys.version_info >= (3, $2); print('%d.%d' % sys.version_info[:2])" 2>/dev/null
}

find_localstack_python() {
  local cand var
  for var in LOCALSTACK_PYTHON PYTHON313 PYTHON312; do
    cand="${!var:-}"
    [ -n "$cand" ] || continue
    if py_version_at_least "$cand" 13 >/dev/null; then
      echo "$cand"
      return 0
    fi
    log "ignoring \$$var=$cand: not a runnable Python >= 3.13"
  done
  for cand in python3.13 python3.14; do
    # pyenv shims exist on PATH even when that version is not selected, so
    # actually run the candidate instead of trusting `command -v`.
    if command -v "$cand" >/dev/null 2>&1 && py_version_at_least "$cand" 13 >/dev/null; then
      command -v "$cand"
      return 0
    fi
  done
  local pyenv_root=""
  if command -v pyenv >/dev/null 2>&1; then
    pyenv_root=$(pyenv root 2>/dev/null || true)
  fi
  [ -n "$pyenv_root" ] || pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  for cand in "$pyenv_root"/versions/3.13*/bin/python3 "$pyenv_root"/versions/3.14*/bin/python3; do
    if [ -x "$cand" ] && py_version_at_least "$cand" 13 >/dev/null; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

find_moto_python() {
  local cand="${MOTO_PYTHON:-python3}"
  py_version_at_least "$cand" 9 >/dev/null || die "moto needs Python >= 3.9; '$cand' is missing or too old (set MOTO_PYTHON)"
  command -v "$cand" || echo "$cand"
}

# setup_venv NAME PYTHON REQUIREMENTS SMOKE_TEST_PYTHON_CODE
setup_venv() {
  local name="$1" python="$2" req="$3" smoke="$4"
  local venv="$cache_dir/$name" stamp want have start pyver
  local t0
  t0=$(date +%s)
  [ -f "$req" ] || die "missing requirements file $req"
  pyver=$("$python" -c 'import sys; print(sys.version.split()[0])')
  want="$( (cat "$req"; echo "python=$pyver") | sha256sum | cut -d' ' -f1)"
  stamp="$venv/.tether-requirements.sha256"
  have=""
  [ -f "$stamp" ] && have=$(cat "$stamp")

  # Fast path: only check that the venv's interpreter still runs (a removed
  # pyenv version breaks it); the full smoke import ran when it was built.
  if [ "$have" = "$want" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$name: up to date ($venv, Python $pyver), nothing to do ($(($(date +%s) - t0))s)"
    return 0
  fi

  if [ -e "$venv" ]; then
    log "$name: requirements or interpreter changed (or venv broken): rebuilding $venv"
    rm -rf "$venv"
  else
    log "$name: creating $venv with $python (Python $pyver)"
  fi
  "$python" -m venv "$venv"
  log "$name: pip install -r ${req#"$repo_root"/} ..."
  # The file pins every package, so --no-deps is safe and skips resolution;
  # `pip check` below catches a missing or conflicting pin.
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-input --no-deps -r "$req"; then
    rm -rf "$venv"
    die "$name: pip install failed (see above); removed the partial venv"
  fi
  if ! "$venv/bin/python" -m pip check --disable-pip-version-check >&2; then
    rm -rf "$venv"
    die "$name: 'pip check' failed: ${req#"$repo_root"/} is missing a pin or has conflicting pins"
  fi
  if ! "$venv/bin/python" -c "$smoke"; then
    rm -rf "$venv"
    die "$name: smoke import failed after install"
  fi
  echo "$want" >"$stamp"
  log "$name: installed $(grep -c '==' "$req") pinned packages in $(($(date +%s) - t0))s"
}

mkdir -p "$cache_dir"
# Serialise concurrent runs (e.g. parallel test jobs) on the same cache dir.
exec 9>"$cache_dir/.setup-emulators.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

if [ "$what" = all ] || [ "$what" = moto ]; then
  moto_python=$(find_moto_python)
  setup_venv venv-moto "$moto_python" "$req_dir/moto-requirements.txt" \
    'import moto, moto.server, moto.ec2, moto.rds, moto.sts, moto.secretsmanager, moto.iam, flask'
  log "venv-moto: start with: $cache_dir/venv-moto/bin/moto_server -H 127.0.0.1 -p PORT"
fi

if [ "$what" = all ] || [ "$what" = localstack ]; then
  if ! ls_python=$(find_localstack_python); then
    die "LocalStack needs Python >= 3.13 and none was found.
  Tried: \$LOCALSTACK_PYTHON, \$PYTHON313, \$PYTHON312, python3.13/python3.14 on PATH,
         \$(pyenv root)/versions/3.13*/bin/python3 and 3.14*.
  Get one with e.g. 'pyenv install 3.13' (Debian 12 has no python3.13 package),
  or point LOCALSTACK_PYTHON at an existing python3.13 binary."
  fi
  setup_venv venv-localstack "$ls_python" "$req_dir/localstack-requirements.txt" \
    'import localstack.aws.components, localstack.runtime.main, moto.ec2, hypercorn'
  log "venv-localstack: start with: $cache_dir/venv-localstack/bin/python -m localstack.runtime.main (env vars: tests/emulators/README.md)"
fi

log "done in $(($(date +%s) - script_start))s"
