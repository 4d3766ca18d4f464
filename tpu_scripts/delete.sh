#!/usr/bin/env bash
# Deletes the TPU VM (or the queued resource and its TPU VM).
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: tpu_scripts/delete.sh --name NAME --zone ZONE [--queued [--queued-id ID]]

Deletes the TPU VM NAME (gcloud compute tpus tpu-vm delete), or with --queued the queued
resource (id NAME unless --queued-id) together with its TPU VM (--force); with --num-slices N
(N > 1) the multislice queued resource NAME with all N slices. Everything on the workers' disks
is lost; outputs written to gs:// paths stay.

  --queued        the TPU was created with create.sh --queued
  --queued-id ID  the queued resource's id
  --no-wait       return once the deletion has started

$COMMON_HELP
EOF
}

QUEUED=0
QUEUED_ID=""
WAIT=1

# This script's flags (common.sh's parse_args handles the shared ones): SHIFT = words used.
script_flag() {
  case "$1" in
    --queued) QUEUED=1 && SHIFT=1 ;;
    --queued-id) QUEUED=1 QUEUED_ID="${2:?--queued-id needs a value}" && SHIFT=2 ;;
    --no-wait) WAIT=0 && SHIFT=1 ;;
    *) SHIFT=0 ;;
  esac
}
parse_args "$@"

require_tpu
location_flags
if ((QUEUED || NUM_SLICES > 1)); then
  cmd=(gcloud compute tpus queued-resources delete "${QUEUED_ID:-$TPU_NAME}" "${LOCATION[@]}"
    --force --quiet)
else
  cmd=(gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION[@]}" --quiet)
fi
if ((!WAIT)); then cmd+=(--async); fi
run "${cmd[@]}"
