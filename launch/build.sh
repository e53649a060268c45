#!/usr/bin/env bash
# Configures and builds tfm into build/ (CUDA twins too when the toolkit is present).
#   BUILD_DIR=build-x [TFM_CMAKE_ARGS="-DOPTION=..."] bash launch/build.sh [ninja targets…]
# (TFM_CMAKE_ARGS applies when the folder is first configured.)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
if [[ ! -f "$build_dir/build.ninja" ]]; then
  # shellcheck disable=SC2086  # TFM_CMAKE_ARGS is a list of words
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${TFM_CMAKE_ARGS:-} >/dev/null
fi
ninja -C "$build_dir" "$@"
