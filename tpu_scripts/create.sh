#!/usr/bin/env bash
# Creates a TPU VM (or a queued resource that becomes one) for optiml.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: tpu_scripts/create.sh --name NAME --zone ZONE --accelerator-type TYPE [options]

Creates a TPU VM slice, directly (gcloud compute tpus tpu-vm create) or through the queue
(gcloud compute tpus queued-resources create --node-id=NAME), then waits until it is ready.
With --num-slices N (N > 1): N slices joined over the data-centre network (multislice), always
a queued resource NAME (--node-count=N --node-prefix=NAME): TPU VMs NAME-0 .. NAME-(N-1).

  --accelerator-type TYPE   e.g. v4-32, v4-128, v5p-128, v5litepod-64, v6e-64
  --runtime-version V       TPU software version; default from the TPU generation:
                            v2/v3/v4 tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite,
                            v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e
  --spot                    a Spot TPU (cheaper, can be preempted)
  --queued                  request it as a queued resource (id = NAME unless --queued-id)
  --queued-id ID            the queued resource's id
  --valid-until DURATION    queued only: give up after DURATION, e.g. 6h
  --no-wait                 return once the request is accepted

$COMMON_HELP

Examples:
  tpu_scripts/create.sh --name optiml-30b --zone us-central2-b --accelerator-type v4-128 --queued
  tpu_scripts/create.sh --name optiml-30b --zone us-central2-b --accelerator-type v4-128 \\
      --num-slices 2 --spot
EOF
}

ACCELERATOR=""
RUNTIME=""
SPOT=0
QUEUED=0
QUEUED_ID=""
VALID_UNTIL=""
WAIT=1

# This script's flags (common.sh's parse_args handles the shared ones): SHIFT = words used.
script_flag() {
  case "$1" in
    --accelerator-type) ACCELERATOR="${2:?--accelerator-type needs a value}" && SHIFT=2 ;;
    --runtime-version) RUNTIME="${2:?--runtime-version needs a value}" && SHIFT=2 ;;
    --spot) SPOT=1 && SHIFT=1 ;;
    --queued) QUEUED=1 && SHIFT=1 ;;
    --queued-id) QUEUED=1 QUEUED_ID="${2:?--queued-id needs a value}" && SHIFT=2 ;;
    --valid-until) VALID_UNTIL="${2:?--valid-until needs a value}" && SHIFT=2 ;;
    --no-wait) WAIT=0 && SHIFT=1 ;;
    *) SHIFT=0 ;;
  esac
}
parse_args "$@"

require_tpu
[[ -n "$ACCELERATOR" ]] || die "--accelerator-type is required, e.g. v4-32"
if [[ -z "$RUNTIME" ]]; then
  case "$ACCELERATOR" in
    v2-* | v3-* | v4-*) RUNTIME="tpu-ubuntu2204-base" ;;
    v5litepod-* | v5e-*) RUNTIME="v2-alpha-tpuv5-lite" ;;
    v5p-*) RUNTIME="v2-alpha-tpuv5" ;;
    v6e-*) RUNTIME="v2-alpha-tpuv6e" ;;
    *) die "no default runtime version for accelerator '$ACCELERATOR': pass --runtime-version" ;;
  esac
fi
if ((NUM_SLICES > 1)); then
  QUEUED=1 # multislice exists only as a queued resource
fi
[[ -z "$VALID_UNTIL" || $QUEUED == 1 ]] || die "--valid-until only applies with --queued"
location_flags

if ((QUEUED)); then
  QUEUED_ID="${QUEUED_ID:-$TPU_NAME}"
  nodes=("--node-id=$TPU_NAME")
  if ((NUM_SLICES > 1)); then
    nodes=("--node-count=$NUM_SLICES" "--node-prefix=$TPU_NAME")
  fi
  cmd=(gcloud compute tpus queued-resources create "$QUEUED_ID" "${nodes[@]}"
    "${LOCATION[@]}" "--accelerator-type=$ACCELERATOR" "--runtime-version=$RUNTIME")
  if ((SPOT)); then cmd+=(--spot); fi
  if [[ -n "$VALID_UNTIL" ]]; then cmd+=("--valid-until-duration=$VALID_UNTIL"); fi
  run "${cmd[@]}"
  if ((WAIT)); then
    describe=(gcloud compute tpus queued-resources describe "$QUEUED_ID" "${LOCATION[@]}"
      "--format=value(state.state)")
    if ((DRY_RUN)); then
      run "${describe[@]}" # polled every 60 s until ACTIVE
    else
      while true; do
        state="$("${describe[@]}")"
        echo "queued resource $QUEUED_ID: $state" >&2
        case "$state" in
          ACTIVE) break ;;
          FAILED | SUSPENDED) die "queued resource $QUEUED_ID is $state" ;;
        esac
        sleep 60
      done
    fi
  fi
else
  cmd=(gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION[@]}"
    "--accelerator-type=$ACCELERATOR" "--version=$RUNTIME")
  if ((SPOT)); then cmd+=(--spot); fi
  if ((!WAIT)); then cmd+=(--async); fi
  run "${cmd[@]}"
fi
