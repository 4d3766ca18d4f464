# shellcheck shell=bash disable=SC2034  # the variables set here are used by the scripts
# Shared helpers for optiml's TPU VM scripts (sourced, not run).
#
# Every script takes the same TPU flags (or their environment variables):
#   --name NAME        TPU VM / queued-resource node name    ($OPTIML_TPU_NAME)
#   --zone ZONE        e.g. us-central2-b                     ($OPTIML_TPU_ZONE)
#   --project PROJECT  Google Cloud project (optional)        ($OPTIML_TPU_PROJECT)
#   --num-slices N     N slices of one multislice queued resource: TPU VMs NAME-0 .. NAME-(N-1)
#                      (default 1: the one TPU VM NAME)       ($OPTIML_TPU_NUM_SLICES)
#   --dry-run          print the exact commands, one per line, and run nothing
#   --help             the script's usage
# Paths on the TPU VM are relative to the worker's home directory unless absolute.

set -euo pipefail

TPU_NAME="${OPTIML_TPU_NAME:-}"
ZONE="${OPTIML_TPU_ZONE:-}"
PROJECT="${OPTIML_TPU_PROJECT:-}"
NUM_SLICES="${OPTIML_TPU_NUM_SLICES:-1}"
DRY_RUN=0
# Where things live on every worker (relative to its home directory).
REMOTE_VENV="optiml-venv"
REMOTE_RUNS="optiml-runs"

COMMON_HELP="TPU flags (all scripts):
  --name NAME        TPU VM name (\$OPTIML_TPU_NAME)
  --zone ZONE        zone, e.g. us-central2-b (\$OPTIML_TPU_ZONE)
  --project PROJECT  Google Cloud project; default: gcloud's configured one (\$OPTIML_TPU_PROJECT)
  --num-slices N     N slices of one multislice queued resource NAME: the TPU VMs NAME-0 ..
                     NAME-(N-1) (\$OPTIML_TPU_NUM_SLICES; default 1, the TPU VM NAME)
  --dry-run          print the exact commands it would run, one per line, and run nothing
  -h, --help         this help"

die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# Quotes one word for bash: as is when safe, else in single quotes ('it'\''s').
quote() {
  local word="$1"
  if [[ "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

# Quotes a whole command line: `quote_cmd a "b c"` -> a 'b c'.
quote_cmd() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

# Runs a command, or with --dry-run prints it (exactly, re-runnable) instead.
run() {
  if ((DRY_RUN)); then
    quote_cmd "$@"
    echo
  else
    echo "+ $(quote_cmd "$@")" >&2
    "$@"
  fi
}

# Splits `--flag=value` into `--flag value` for hyphenated flags; gin flags
# (`--gin_file=...`, `--gin.KEY=VALUE`) are left whole. Result in the array ARGS.
split_args() {
  ARGS=()
  local arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^--[a-z][a-z-]*= ]]; then
      ARGS+=("${arg%%=*}" "${arg#*=}")
    else
      ARGS+=("$arg")
    fi
  done
}

# Handles one common flag at "$1" (value in "$2"); sets SHIFT to the words used, 0 if not one.
common_flag() {
  SHIFT=0
  case "$1" in
    --name | --zone | --project | --num-slices)
      [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
      case "$1" in
        --name) TPU_NAME="$2" ;;
        --zone) ZONE="$2" ;;
        --project) PROJECT="$2" ;;
        --num-slices) NUM_SLICES="$2" ;;
      esac
      SHIFT=2
      ;;
    --dry-run) DRY_RUN=1 SHIFT=1 ;;
  esac
}

# Parses a script's command line: `--flag=value` split, the common flags above, -h/--help
# (the script's `usage`), and the script's own flags through its `script_flag "$@"`, which sets
# SHIFT to the words it used (0: not its flag, an error).
parse_args() {
  split_args "$@"
  set -- "${ARGS[@]+"${ARGS[@]}"}"
  while (($#)); do
    common_flag "$@"
    if ((SHIFT == 0)); then
      case "$1" in
        -h | --help) usage && exit 0 ;;
      esac
      script_flag "$@"
    fi
    ((SHIFT)) || die "unknown argument '$1' (see --help)"
    shift "$SHIFT"
  done
}

# Checks the TPU flags and sets NODES: the TPU VMs, NAME or (multislice) NAME-0 .. NAME-(N-1),
# the node ids that `queued-resources create --node-prefix NAME --node-count N` gives.
require_tpu() {
  [[ -n "$TPU_NAME" ]] || die "no TPU name: pass --name NAME or set \$OPTIML_TPU_NAME"
  [[ -n "$ZONE" ]] || die "no zone: pass --zone ZONE or set \$OPTIML_TPU_ZONE"
  [[ "$NUM_SLICES" =~ ^[1-9][0-9]*$ ]] ||
    die "--num-slices must be a positive number, got '$NUM_SLICES'"
  NODES=("$TPU_NAME")
  if ((NUM_SLICES > 1)); then
    NODES=()
    local i
    for ((i = 0; i < NUM_SLICES; i++)); do
      NODES+=("$TPU_NAME-$i")
    done
  fi
}

# The gcloud flags every TPU command shares: --zone=... [--project=...].
location_flags() {
  LOCATION=("--zone=$ZONE")
  if [[ -n "$PROJECT" ]]; then
    LOCATION+=("--project=$PROJECT")
  fi
}

# Runs one shell command line over ssh on the given worker(s) ("all" or an index) of one node.
on_node() {
  local node="$1" worker="$2" command="$3"
  location_flags
  run gcloud compute tpus tpu-vm ssh "$node" "${LOCATION[@]}" "--worker=$worker" \
    "--command=$command"
}

# Runs one shell command line on the given worker(s) of every slice (one ssh per slice).
on_workers() {
  local node
  for node in "${NODES[@]}"; do
    on_node "$node" "$1" "$2"
  done
}

# Copies local files into a folder on every worker of every slice.
copy_to_workers() {
  local dest="$1" node
  shift
  location_flags
  for node in "${NODES[@]}"; do
    run gcloud compute tpus tpu-vm scp "$@" "$node:$dest" "${LOCATION[@]}" --worker=all
  done
}

# The run name becomes file names on the workers: keep it to safe characters.
check_run_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] ||
    die "run name '$1' must be letters, digits, '_', '.', '-' (it names the log and pid files)"
}
