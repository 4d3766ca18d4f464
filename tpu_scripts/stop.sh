#!/usr/bin/env bash
# Stops a run on every worker (the process whose id launch.sh recorded).
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: tpu_scripts/stop.sh --name NAME --zone ZONE --run RUN [--kill]

On every worker (--worker=all; of every slice with --num-slices), sends SIGTERM to the process
recorded in ~/$REMOTE_RUNS/RUN.pid by launch.sh (SIGKILL with --kill) and removes the pid file.
An optiml training run saves a checkpoint at the step boundary after SIGTERM and exits (the
same launch resumes it). The TPU VM keeps running: delete it with delete.sh.

  --run RUN   the run's name, as given to launch.sh
  --kill      SIGKILL instead of SIGTERM

$COMMON_HELP
EOF
}

RUN_NAME=""
SIGNAL="TERM"

# This script's flags (common.sh's parse_args handles the shared ones): SHIFT = words used.
script_flag() {
  case "$1" in
    --run) RUN_NAME="${2:?--run needs a value}" && SHIFT=2 ;;
    --kill) SIGNAL="KILL" && SHIFT=1 ;;
    *) SHIFT=0 ;;
  esac
}
parse_args "$@"

require_tpu
[[ -n "$RUN_NAME" ]] || die "--run RUN is required"
check_run_name "$RUN_NAME"

pid="$REMOTE_RUNS/$RUN_NAME.pid"
remote="if [ -f $pid ]; then kill -$SIGNAL \"\$(cat $pid)\" 2>/dev/null"
remote+=" && echo \"stopped $RUN_NAME on \$(hostname)\" || echo \"$RUN_NAME was not running on \$(hostname)\""
remote+="; rm -f $pid; else echo \"no run $RUN_NAME on \$(hostname)\"; fi"
on_workers all "$remote"
