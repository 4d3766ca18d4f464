#!/usr/bin/env bash
# Installs optiml with its pinned versions on every worker of a TPU VM slice.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<EOF
usage: tpu_scripts/setup.sh --name NAME --zone ZONE (--git-url URL [--ref REF] | --wheel FILE)

On every worker (--worker=all; of every slice with --num-slices): Python 3.11 (deadsnakes if
missing), a venv in ~/$REMOTE_VENV, the exact versions of requirements.lock plus jax[tpu] of the
pinned jax version (libtpu), then optiml itself without dependencies; finally prints each
worker's JAX devices.

  --git-url URL     clone optiml from URL on each worker and install it ...
  --ref REF         ... at this commit/tag/branch (default: your local HEAD commit); the
                    ref's own requirements.lock is used
  --wheel FILE      or install this wheel (python -m build --wheel), copied to each worker
                    together with --lock
  --lock FILE       the lock file for --wheel (default: $REPO_ROOT/requirements.lock)
  --jax-version V   jax[tpu] version (default: jax's pin in the lock file, e.g. 0.10.2)
  --python X.Y      Python version (default 3.11)

$COMMON_HELP

Example:
  tpu_scripts/setup.sh --name optiml-30b --zone us-central2-b \\
      --git-url https://github.com/ORG/optiml.git --ref v0.1.0
EOF
}

GIT_URL=""
REF=""
WHEEL=""
LOCK="$REPO_ROOT/requirements.lock"
JAX_VERSION=""
PYTHON_VERSION="3.11"

# This script's flags (common.sh's parse_args handles the shared ones): SHIFT = words used.
script_flag() {
  case "$1" in
    --git-url) GIT_URL="${2:?--git-url needs a value}" && SHIFT=2 ;;
    --ref) REF="${2:?--ref needs a value}" && SHIFT=2 ;;
    --wheel) WHEEL="${2:?--wheel needs a value}" && SHIFT=2 ;;
    --lock) LOCK="${2:?--lock needs a value}" && SHIFT=2 ;;
    --jax-version) JAX_VERSION="${2:?--jax-version needs a value}" && SHIFT=2 ;;
    --python) PYTHON_VERSION="${2:?--python needs a value}" && SHIFT=2 ;;
    *) SHIFT=0 ;;
  esac
}
parse_args "$@"

require_tpu
[[ -n "$GIT_URL" || -n "$WHEEL" ]] || die "pass --git-url URL [--ref REF] or --wheel FILE"
[[ -z "$GIT_URL" || -z "$WHEEL" ]] || die "--git-url and --wheel exclude each other"
[[ -f "$LOCK" ]] || die "lock file $LOCK not found"
if [[ -z "$JAX_VERSION" ]]; then
  JAX_VERSION="$(sed -n 's/^jax==//p' "$LOCK")"
  [[ -n "$JAX_VERSION" ]] || die "no 'jax==' pin in $LOCK: pass --jax-version"
fi
PY="python$PYTHON_VERSION"
PIP="$REMOTE_VENV/bin/pip"

# 1. Python (TPU VM images ship Ubuntu 22.04's Python 3.10).
python_step="if ! command -v $PY >/dev/null; then sudo apt-get update -qq"
python_step+=" && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq software-properties-common"
python_step+=" && sudo add-apt-repository -y ppa:deadsnakes/ppa"
python_step+=" && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PY $PY-venv; fi"
steps=("$python_step")

# 2. The source of optiml and the lock it pins.
if [[ -n "$GIT_URL" ]]; then
  if [[ -z "$REF" ]]; then
    REF="$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null)" ||
      die "no --ref given and $REPO_ROOT is not a git checkout"
  fi
  steps+=("rm -rf optiml-src" "git clone --quiet $(quote "$GIT_URL") optiml-src"
    "git -C optiml-src checkout --quiet $(quote "$REF")")
  remote_lock="optiml-src/requirements.lock"
  package="./optiml-src"
else
  [[ "$WHEEL" == *.whl && -f "$WHEEL" ]] || die "wheel '$WHEEL' is not an existing .whl file"
  on_workers all "mkdir -p optiml-install"
  copy_to_workers optiml-install/ "$WHEEL" "$LOCK"
  remote_lock="optiml-install/$(basename "$LOCK")"
  package="optiml-install/$(basename "$WHEEL")"
fi

# 3. The venv: the lock's exact versions + jax[tpu] (adds libtpu), then optiml without deps.
steps+=("rm -rf $REMOTE_VENV" "$PY -m venv $REMOTE_VENV" "$PIP install --quiet --upgrade pip"
  "$PIP install --quiet -r $(quote "$remote_lock") $(quote "jax[tpu]==$JAX_VERSION")"
  "$PIP install --quiet --no-deps $(quote "$package")")

# 4. Check: every worker sees its TPU chips and the whole slice.
check='import jax, optiml; print(jax.process_index(), jax.local_device_count(), jax.device_count())'
steps+=("$REMOTE_VENV/bin/python -c $(quote "$check")")

remote="${steps[0]}"
for step in "${steps[@]:1}"; do
  remote+=" && $step"
done
on_workers all "$remote"
