#!/usr/bin/env bash
# Installs what tfm needs to build and test, skipping what is already there.
# Idempotent: a second run installs nothing and takes a second.
#   bash launch/setup.sh            build + test dependencies
#   TFM_SETUP_BENCH=1 bash launch/setup.sh   also the PyTorch peer for bench/
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  libboost-program-options-dev
  libsentencepiece-dev sentencepiece
  libopenblas-dev
  libgtest-dev
  python3-h5py python3-numpy
)
if [[ "${TFM_SETUP_BENCH:-0}" == "1" ]]; then
  packages+=(python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all packages present"
fi

if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: CUDA toolkit found at /usr/local/cuda ($(/usr/local/cuda/bin/nvcc --version | tail -1))"
else
  echo "setup: no CUDA toolkit; building the CPU path only"
fi
