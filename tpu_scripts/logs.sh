#!/usr/bin/env bash
# Shows (or follows) a run's log on one worker or on all of them.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: tpu_scripts/logs.sh --name NAME --zone ZONE --run RUN [--worker W] [--slice S]
           [--lines N] [--follow]

Prints the last lines of ~/$REMOTE_RUNS/RUN.log (written by launch.sh) on worker W.

  --run RUN      the run's name, as given to launch.sh
  --worker W     a worker index, or "all" (default 0: process 0 logs the training metrics)
  --slice S      with --num-slices: a slice index, or "all" (default 0, where process 0 runs)
  --lines N      how many lines (default 100)
  --follow       keep following the log (tail -F) until interrupted

$COMMON_HELP
EOF
}

RUN_NAME=""
WORKER=0
SLICE=0
LINES=100
FOLLOW=0

# This script's flags (common.sh's parse_args handles the shared ones): SHIFT = words used.
script_flag() {
  case "$1" in
    --run) RUN_NAME="${2:?--run needs a value}" && SHIFT=2 ;;
    --worker) WORKER="${2:?--worker needs a value}" && SHIFT=2 ;;
    --slice) SLICE="${2:?--slice needs a value}" && SHIFT=2 ;;
    --lines) LINES="${2:?--lines needs a value}" && SHIFT=2 ;;
    --follow) FOLLOW=1 && SHIFT=1 ;;
    *) SHIFT=0 ;;
  esac
}
parse_args "$@"

require_tpu
[[ -n "$RUN_NAME" ]] || die "--run RUN is required"
check_run_name "$RUN_NAME"
[[ "$WORKER" == all || "$WORKER" =~ ^[0-9]+$ ]] || die "--worker must be an index or 'all'"
[[ "$SLICE" == all || ("$SLICE" =~ ^[0-9]+$ && SLICE -lt NUM_SLICES) ]] ||
  die "--slice must be 'all' or an index below --num-slices $NUM_SLICES, got '$SLICE'"
[[ "$LINES" =~ ^[0-9]+$ ]] || die "--lines must be a number"

tail_cmd="tail -n $LINES"
if ((FOLLOW)); then
  tail_cmd="tail -F -n $LINES"
fi
if [[ "$SLICE" == all ]]; then
  on_workers "$WORKER" "$tail_cmd $REMOTE_RUNS/$RUN_NAME.log"
else
  on_node "${NODES[$SLICE]}" "$WORKER" "$tail_cmd $REMOTE_RUNS/$RUN_NAME.log"
fi
