#!/usr/bin/env bash
# Puts data from Cloud Storage on every worker: a local copy, or a read-only gcsfuse mount.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
usage: tpu_scripts/data.sh --name NAME --zone ZONE --from gs://BUCKET/PATH --to DIR [--mount]

On every worker (--worker=all; of every slice with --num-slices), makes gs://BUCKET/PATH
available as the folder DIR:
  default   copy it (gcloud storage rsync --recursive): fastest reads, needs local disk
  --mount   mount it read-only with gcsfuse (installed if missing): no copy, slower reads

Use it for the optiml data folder (launch.sh --data-dir DIR sets \$OPTIML_DATA_DIR) and for the
prepared token cache (bind its folder with --gin.KEY=VALUE at launch). Checkpoints and run
outputs need no copy: give gs:// paths as gin bindings, e.g. --gin.MODEL_DIR="'gs://b/runs/x'".

  --from gs://...   the Cloud Storage folder
  --to DIR          the folder on each worker (relative to its home unless absolute)
  --mount           mount instead of copying

$COMMON_HELP

Example:
  tpu_scripts/data.sh --name optiml-30b --zone us-central2-b \\
      --from gs://my-bucket/optiml/token-cache --to optiml-cache
EOF
}

FROM=""
TO=""
MOUNT=0

# This script's flags (common.sh's parse_args handles the shared ones): SHIFT = words used.
script_flag() {
  case "$1" in
    --from) FROM="${2:?--from needs a value}" && SHIFT=2 ;;
    --to) TO="${2:?--to needs a value}" && SHIFT=2 ;;
    --mount) MOUNT=1 && SHIFT=1 ;;
    *) SHIFT=0 ;;
  esac
}
parse_args "$@"

require_tpu
[[ "$FROM" =~ ^gs://[^/]+ ]] || die "--from must be a Cloud Storage path gs://BUCKET[/PATH], got '$FROM'"
[[ -n "$TO" ]] || die "--to DIR is required"

if ((MOUNT)); then
  path="${FROM#gs://}"
  bucket="${path%%/*}"
  only_dir=""
  if [[ "$path" == */* && -n "${path#*/}" ]]; then
    only_dir="--only-dir $(quote "${path#*/}") "
  fi
  install="if ! command -v gcsfuse >/dev/null; then"
  install+=" echo 'deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-'\$(lsb_release -c -s)' main'"
  install+=" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null"
  install+=" && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null"
  install+=" && sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcsfuse; fi"
  mount="mkdir -p $(quote "$TO") && gcsfuse -o ro --implicit-dirs ${only_dir}$(quote "$bucket") $(quote "$TO")"
  on_workers all "$install && $mount"
else
  on_workers all "mkdir -p $(quote "$TO") && gcloud storage rsync --recursive $(quote "$FROM") $(quote "$TO")"
fi
