// CUDA emulation (see kernels/core/cuda_emu/README.md): cub::DeviceRadixSort::SortPairs, the
// overload with separate input and output arrays, run on the CPU, synchronously.
//
// Semantics as documented for CUB (https://nvidia.github.io/cccl/cub/api/structcub_1_1DeviceRadixSort.html):
//   * d_temp_storage == nullptr: only writes the required temp_storage_bytes, sorts nothing;
//   * otherwise a stable ascending sort of the (key, value) pairs by the key bits
//     [begin_bit, end_bit), keys_out / values_out receiving the sorted pairs, inputs unchanged;
//   * keys are compared as CUB's radix sort orders them: unsigned integers as they are, signed
//     integers with the sign bit flipped, floating point with the sign bit flipped for positive
//     values and every bit flipped for negative ones (so -0.0 sorts before +0.0); the bit range
//     applies to these transformed bits.
// The temporary storage is required to be as large as the size query said, and is overwritten
// (with a fill pattern), as the real sort overwrites it.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

#include <cuda_runtime.h>

namespace cub {

namespace emu_detail {

template <class K>
inline uint64_t radix_bits(K key) {
  static_assert(std::is_arithmetic_v<K> && !std::is_same_v<K, bool>,
                "cub::DeviceRadixSort emulation: keys must be integers or floating point");
  constexpr int kBits = int(sizeof(K)) * 8;
  using U = std::conditional_t<sizeof(K) == 1, uint8_t,
            std::conditional_t<sizeof(K) == 2, uint16_t,
            std::conditional_t<sizeof(K) == 4, uint32_t, uint64_t>>>;
  U u;
  std::memcpy(&u, &key, sizeof(K));
  constexpr U kSign = U(U(1) << (kBits - 1));
  if constexpr (std::is_floating_point_v<K>) {
    u = (u & kSign) ? U(~u) : U(u ^ kSign);
  } else if constexpr (std::is_signed_v<K>) {
    u = U(u ^ kSign);
  }
  return uint64_t(u);
}

inline size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

}  // namespace emu_detail

struct DeviceRadixSort {
  template <class KeyT, class ValueT, class NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out,
                               const ValueT* d_values_in, ValueT* d_values_out,
                               NumItemsT num_items, int begin_bit = 0,
                               int end_bit = int(sizeof(KeyT) * 8), cudaStream_t stream = 0) {
    (void)stream;
    static_assert(std::is_integral_v<NumItemsT>, "num_items must be an integer");
    if (num_items < 0) return cudaErrorInvalidValue;
    const size_t n = size_t(num_items);
    // What the real sort would keep there: a second copy of keys and values, and some slack.
    const size_t need = 256 + emu_detail::round_up(n * sizeof(KeyT), 256) +
                        emu_detail::round_up(n * sizeof(ValueT), 256);
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = need;
      return cudaSuccess;
    }
    if (temp_storage_bytes < need) return cudaErrorInvalidValue;
    constexpr int kKeyBits = int(sizeof(KeyT) * 8);
    if (begin_bit < 0 || end_bit > kKeyBits || begin_bit > end_bit) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    if (!d_keys_in || !d_keys_out || !d_values_in || !d_values_out) return cudaErrorInvalidValue;

    std::vector<KeyT> keys(d_keys_in, d_keys_in + n);
    std::vector<ValueT> values(d_values_in, d_values_in + n);
    std::memset(d_temp_storage, 0xA5, need);  // the real sort uses (and clobbers) it

    const int width = end_bit - begin_bit;
    const uint64_t mask = width >= 64 ? ~uint64_t(0) : ((uint64_t(1) << width) - 1);
    std::vector<uint64_t> digit(n);
    for (size_t i = 0; i < n; ++i)
      digit[i] = width == 0 ? 0 : (emu_detail::radix_bits(keys[i]) >> begin_bit) & mask;
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return digit[a] < digit[b]; });
    for (size_t i = 0; i < n; ++i) {
      d_keys_out[i] = keys[order[i]];
      d_values_out[i] = values[order[i]];
    }
    return cudaSuccess;
  }
};

}  // namespace cub
