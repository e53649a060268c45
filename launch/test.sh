#!/usr/bin/env bash
# Sets up a fresh machine, builds everything (CUDA sources included when the toolkit is there)
# and runs the CPU test suite: unit tests, finite-difference gradient checks, multi-rank tests
# under mpirun, and end-to-end runs. GPU tests (label gpu) skip with a message without a GPU.
# Then, where no GPU is visible, the GPU suite runs once more on the CPU CUDA emulator
# (kernels/core/cuda_emu/README.md, build-emu/): every CUDA twin's code against its CPU twin and
# the GPU trainer against the CPU one. TFM_EMULATED_GPU_TESTS=0 leaves that out.
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

if [[ ${TFM_EMULATED_GPU_TESTS:-1} != 0 ]] && ! nvidia-smi -L >/dev/null 2>&1; then
  BUILD_DIR=build-emu TFM_CMAKE_ARGS=-DTFM_CUDA_EMULATION=ON bash launch/build.sh \
    tfm_cuda_emu_tests tfm_kernel_gpu_tests tfm_trainer_gpu_tests
  ctest --test-dir build-emu --output-on-failure --timeout 900 -j"$(nproc)" -L 'gpu|emu' -E '^comm_'
fi
