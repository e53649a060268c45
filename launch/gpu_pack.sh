#!/usr/bin/env bash
# Builds the GPU pieces here and packs them, with the shared libraries a bare GPU machine lacks,
# into .gpu/tfm-gpu.tar.xz (ignored by git) for the device tool's `carry` (../shared/GPU.md):
#   bash launch/gpu_pack.sh                       # → .gpu/tfm-gpu.tar.xz
#   then, on the GPU machine:  bash launch/gpu_verify.sh       (carry: [".gpu"])
# Environment: BUILD_DIR (default build-gpu), TFM_CUDA_ARCHS (default 90), JOBS (default 2),
# TFM_GPU_BUNDLE_TOOL (default ../shared/tools/gpu-bundle.sh, relative to the repository root).
#
# Host code is compiled for x86-64-v3 (AVX2), not -march=native: the binaries must run on the GPU
# machine's CPU, which need not be this one. The top-level CMakeLists.txt pins the Release flags
# to -march=native, so this build uses the RelWithDebInfo configuration with its flags replaced
# (-O3, no -g).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build-gpu}
archs=${TFM_CUDA_ARCHS:-90}
jobs=${JOBS:-2}
bundle_tool=${TFM_GPU_BUNDLE_TOOL:-../shared/tools/gpu-bundle.sh}
archive=.gpu/tfm-gpu.tar.xz

[[ -x /usr/local/cuda/bin/nvcc ]] || { echo "gpu_pack: no CUDA toolkit at /usr/local/cuda" >&2; exit 1; }
[[ -f $bundle_tool ]] || { echo "gpu_pack: bundle tool $bundle_tool not found" >&2; exit 1; }

if [[ ! -f $build_dir/build.ninja ]]; then
  cmake -S . -B "$build_dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O3 -DNDEBUG -march=x86-64-v3" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O3 -DNDEBUG -march=x86-64-v3" \
    -DCMAKE_CUDA_FLAGS_RELWITHDEBINFO="-O3 -DNDEBUG" \
    -DCMAKE_CUDA_ARCHITECTURES="$archs" >/dev/null
fi

# What a GPU visit runs: the CLI, the peaks, every GPU test binary, the CPU kernel tests (a
# sanity check of the bundle itself) and the benchmarks — whichever of them this tree defines.
all_targets=$(ninja -C "$build_dir" -t targets all | cut -d: -f1 | grep -v -e / -e '^cmake_' | sort -u)
wanted=()
for t in $all_targets; do
  case $t in
    tfm | tfm_gpu_peaks | tfm_kernel_tests | tfm_train_bench | *_gpu_tests | *_gpu_bench) wanted+=("$t") ;;
  esac
done
((${#wanted[@]})) || { echo "gpu_pack: no GPU targets found in $build_dir" >&2; exit 1; }
echo "gpu_pack: building ${wanted[*]} in $build_dir (sm_$archs)"
ninja -C "$build_dir" -j"$jobs" "${wanted[@]}"

binaries=()
for t in "${wanted[@]}"; do
  f=$(find "$build_dir" -maxdepth 3 -type f -perm -u+x -name "$t" | head -n1)
  if [[ -n $f ]]; then binaries+=("$f"); else echo "gpu_pack: warning: no binary for $t" >&2; fi
done

mkdir -p .gpu
rm -f "$archive"
bash "$bundle_tool" "$archive" "${binaries[@]}"
size=$(stat -c %s "$archive")
echo "gpu_pack: $archive holds ${#binaries[@]} binaries: $(printf '%s ' "${binaries[@]##*/}")"
if ((size > 60 * 1024 * 1024)); then
  echo "gpu_pack: warning: $archive is $((size >> 20)) MiB, close to the 64 MiB carry limit" >&2
fi
echo "gpu_pack: carry [\".gpu\"] and run: bash launch/gpu_verify.sh"
