#!/usr/bin/env bash
# Sets up a fresh machine, builds everything (CUDA sources included when the toolkit is there)
# and runs the CPU test suite: unit tests, finite-difference gradient checks, multi-rank tests
# under mpirun, and end-to-end runs. GPU tests (label gpu) skip with a message without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/build.sh
# mpirun as root (CI containers) needs these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# ctest runs one test per core; single-threaded tests keep OpenMP and OpenBLAS threads from
# oversubscribing the cores (results do not depend on the thread count).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
ctest --test-dir build --output-on-failure --timeout 900 -j"$(nproc)" "$@"
