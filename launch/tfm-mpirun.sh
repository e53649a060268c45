#!/usr/bin/env bash
# One node, G GPUs (or G CPU ranks): starts G processes of a tfm command under Open MPI's mpirun.
#
#   launch/tfm-mpirun.sh [-n G] [--] COMMAND [ARGS...]
#   launch/tfm-mpirun.sh -n 8 -- build/tfm train --data data/wmt --out runs/a --tp 2
#
# G defaults to the number of GPUs nvidia-smi lists (1 without a GPU). Each process learns its
# rank and its local rank from mpirun (OMPI_COMM_WORLD_*); tfm picks GPU local_rank % GPUs, and
# ranks r and r+1 are tensor-parallel neighbours (world = DP x TP, TP ranks adjacent).
#
# Environment:
#   OMP_NUM_THREADS    CPU threads per rank (default: cores / G, at least 1), so G ranks do not
#                      oversubscribe the node's cores with OpenMP threads
#   TFM_COMM_TIMEOUT   seconds any collective may wait before the job is ended (default 300)
#   TFM_MPIRUN_ARGS    extra mpirun options, e.g. "--bind-to numa --report-bindings"
#   NCCL_*, HDF5_USE_FILE_LOCKING, TFM_*   forwarded to every rank when set
set -euo pipefail

procs=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--np) procs=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "tfm-mpirun.sh: no command given (try: $0 -n 2 -- build/tfm train ...)" >&2
  exit 2
fi
if [[ -z "$procs" ]]; then
  procs=0
  if command -v nvidia-smi >/dev/null 2>&1; then
    procs=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  fi
  [[ "$procs" -gt 0 ]] || procs=1
fi

cores=$(nproc)
threads=${OMP_NUM_THREADS:-$(( cores / procs > 0 ? cores / procs : 1 ))}

args=(-np "$procs" --map-by slot --bind-to none -x "OMP_NUM_THREADS=$threads")
# More ranks than cores (a CPU test run on a small machine) needs --oversubscribe.
if (( procs > cores )); then args+=(--oversubscribe); fi
# Containers often run as root; Open MPI refuses that unless told.
if [[ $(id -u) -eq 0 ]]; then args+=(--allow-run-as-root); fi
# Forward the variables that matter to every rank (mpirun passes only what it is told to).
for name in $(compgen -e | grep -E '^(NCCL_|TFM_|HDF5_USE_FILE_LOCKING$|CUDA_VISIBLE_DEVICES$)' \
              | grep -v '^TFM_MPIRUN_ARGS$' || true); do
  args+=(-x "$name")
done
# shellcheck disable=SC2206  # word-splitting of the user's extra options is intended
extra=(${TFM_MPIRUN_ARGS:-})

echo "tfm-mpirun.sh: $procs ranks, OMP_NUM_THREADS=$threads: $*" >&2
exec mpirun "${args[@]}" "${extra[@]}" "$@"
