#!/usr/bin/env bash
# Configures and builds tfm into build/ (CUDA twins too when the toolkit is present).
#   BUILD_DIR=build-x bash launch/build.sh [ninja targets…]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
if [[ ! -f "$build_dir/build.ninja" ]]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
ninja -C "$build_dir" "$@"
