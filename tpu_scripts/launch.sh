#!/usr/bin/env bash
# Starts one gin-configured optiml run on every worker of a TPU VM slice (or of all slices).
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: tpu_scripts/launch.sh --name NAME --zone ZONE --run RUN --gin_file FILE [--gin_file ...]
           [--gin.KEY=VALUE ...] [--data-dir DIR] [--env KEY=VALUE ...]

Runs, on every worker at the same time (--worker=all), in the background:
  OPTIML_DATA_DIR=DIR ~/$REMOTE_VENV/bin/python -m optiml.main --gin_file=... --gin.KEY=VALUE ...
with its output in ~/$REMOTE_RUNS/RUN.log and its pid in ~/$REMOTE_RUNS/RUN.pid on each worker.
Every worker runs the same program with the same flags. The run joins one multi-host JAX job:
launch.sh adds the bindings
  --gin.trainer.train.distributed=@partitioning.DistributedConfig()
  --gin.partitioning.DistributedConfig.auto=True
so that the trainer calls jax.distributed.initialize() without arguments, which on a TPU VM
finds the coordinator, process count and process id from the TPU metadata by itself. (The gin
files must register the trainer and partitioning modules, as gin/runs/*.gin do; pass --no-distributed
for a RUN other than trainer.train, or to leave the gin files in charge.)
With --num-slices N (N > 1) it starts the run on every worker of every slice NAME-0 ..
NAME-(N-1), each with the environment that joins the slices over the data-centre network:
  MEGASCALE_COORDINATOR_ADDRESS=IP:PORT  worker 0 of NAME-0 (from tpu-vm describe, or --coordinator)
  MEGASCALE_NUM_SLICES=N  MEGASCALE_SLICE_ID=0..N-1  MEGASCALE_PORT=PORT
(JAX numbers the processes slice by slice from these; the mesh puts the slices on dcn_data).

  --run RUN           a name for the run (log and pid file names); refuses to start a second
                      run with the same name while the first is alive
  --gin_file FILE     gin file(s), passed through (relative to optiml's gin/ folder or absolute)
  --gin.KEY=VALUE     gin bindings, passed through; Cloud Storage paths work for outputs, e.g.
                      --gin.MODEL_DIR="'gs://my-bucket/runs/opt-iml-30b'"
  --gin_search_paths DIRS   passed through
  --data-dir DIR      \$OPTIML_DATA_DIR on the workers (default: optiml-data, see data.sh)
  --env KEY=VALUE     extra environment variables for the run (repeatable)
  --module MODULE     python -m MODULE (default optiml.main)
  --no-distributed    do not add the two jax.distributed bindings above
  --coordinator IP    multislice: the internal IP of worker 0 of NAME-0 (default: looked up
                      with gcloud compute tpus tpu-vm describe; --dry-run needs it given)
  --megascale-port P  multislice: the port of the slices' DCN runtime (default $MEGASCALE_PORT)

$COMMON_HELP

Example:
  tpu_scripts/launch.sh --name optiml-30b --zone us-central2-b --run opt-iml-30b \\
      --gin_file=experiments/opt_iml_30b.gin --gin.MODEL_DIR="'gs://my-bucket/runs/opt-iml-30b'"
EOF
}

RUN_NAME=""
DATA_DIR="optiml-data"
MODULE="optiml.main"
GIN_FILES=()
GIN_BINDINGS=()
ENV_ARGS=()
DISTRIBUTED=1
COORDINATOR=""
MEGASCALE_PORT=8081

# This script's flags (common.sh's parse_args handles the shared ones): SHIFT = words used.
script_flag() {
  case "$1" in
    --run) RUN_NAME="${2:?--run needs a value}" && SHIFT=2 ;;
    --data-dir) DATA_DIR="${2:?--data-dir needs a value}" && SHIFT=2 ;;
    --module) MODULE="${2:?--module needs a value}" && SHIFT=2 ;;
    --no-distributed) DISTRIBUTED=0 && SHIFT=1 ;;
    --coordinator) COORDINATOR="${2:?--coordinator needs a value}" && SHIFT=2 ;;
    --megascale-port) MEGASCALE_PORT="${2:?--megascale-port needs a value}" && SHIFT=2 ;;
    --env)
      [[ "${2:-}" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env needs KEY=VALUE, got '${2:-}'"
      ENV_ARGS+=("$2") && SHIFT=2
      ;;
    --gin_file | --gin_search_paths) GIN_FILES+=("$1=${2:?$1 needs a value}") && SHIFT=2 ;;
    --gin_file=* | --gin_search_paths=*) GIN_FILES+=("$1") && SHIFT=1 ;;
    --gin.*=*) GIN_BINDINGS+=("$1") && SHIFT=1 ;;
    *) SHIFT=0 ;;
  esac
}
parse_args "$@"

require_tpu
[[ -n "$RUN_NAME" ]] || die "--run RUN is required (it names the log and pid files)"
check_run_name "$RUN_NAME"
[[ " ${GIN_FILES[*]-} " == *" --gin_file="* ]] || die "at least one --gin_file is required"

if ((DISTRIBUTED)); then # before the user's bindings, so that those win
  GIN_BINDINGS=("--gin.trainer.train.distributed=@partitioning.DistributedConfig()"
    "--gin.partitioning.DistributedConfig.auto=True" "${GIN_BINDINGS[@]+"${GIN_BINDINGS[@]}"}")
fi
[[ "$MEGASCALE_PORT" =~ ^[0-9]+$ ]] || die "--megascale-port must be a number"
if ((NUM_SLICES > 1)) && [[ -z "$COORDINATOR" ]]; then
  location_flags
  describe=(gcloud compute tpus tpu-vm describe "${NODES[0]}" "${LOCATION[@]}"
    "--format=value(networkEndpoints[0].ipAddress)")
  ((!DRY_RUN)) ||
    die "--dry-run with --num-slices needs --coordinator IP, see: $(quote_cmd "${describe[@]}")"
  COORDINATOR="$(run "${describe[@]}")"
  [[ -n "$COORDINATOR" ]] || die "no IP address for worker 0 of ${NODES[0]}"
fi

log="$REMOTE_RUNS/$RUN_NAME.log"
pid="$REMOTE_RUNS/$RUN_NAME.pid"
for slice in "${!NODES[@]}"; do
  megascale=()
  if ((NUM_SLICES > 1)); then
    megascale=("MEGASCALE_COORDINATOR_ADDRESS=$COORDINATOR:$MEGASCALE_PORT"
      "MEGASCALE_NUM_SLICES=$NUM_SLICES" "MEGASCALE_SLICE_ID=$slice"
      "MEGASCALE_PORT=$MEGASCALE_PORT")
  fi
  program=(env "OPTIML_DATA_DIR=$DATA_DIR" "${megascale[@]+"${megascale[@]}"}"
    "${ENV_ARGS[@]+"${ENV_ARGS[@]}"}" "$REMOTE_VENV/bin/python" -m "$MODULE" "${GIN_FILES[@]}"
    "${GIN_BINDINGS[@]+"${GIN_BINDINGS[@]}"}")
  remote="mkdir -p $REMOTE_RUNS"
  remote+="; if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then"
  remote+=" echo \"run $RUN_NAME is already running on \$(hostname)\" >&2; exit 1; fi"
  remote+="; nohup $(quote_cmd "${program[@]}") > $log 2>&1 < /dev/null & echo \$! > $pid"
  remote+="; echo \"started $RUN_NAME on \$(hostname): pid \$(cat $pid), log ~/$log\""
  on_node "${NODES[$slice]}" all "$remote"
done
