// CUDA twin of the scaled token embedding plus sinusoidal positions
// (kernels/embedding/embedding_cuda.h has the contract and the scheme), vocabulary-parallel
// shards included.
#include <cub/device/device_radix_sort.cuh>

#include <climits>

#include "kernels/core/cuda_common.cuh"
#include "kernels/embedding/embedding_cuda.h"

namespace tfm::cuda {

namespace {

constexpr unsigned long long kNoBadRow = ~0ull;

// PE(pos, j) exactly as sinusoidal_position() on the host: columns 2i and 2i+1 share the
// frequency 1 / 10000^(2i / D); the angle in double because pos · frequency needs the digits.
__device__ __forceinline__ double sinusoid(int64_t pos, int64_t j, int64_t width) {
  double exponent = double(j - (j & 1)) / double(width);
  double angle = double(pos) / pow(10000.0, exponent);
  return (j & 1) ? cos(angle) : sin(angle);
}

constexpr int kBatchPerBlock = 8;
constexpr int kForwardThreads = 128;

// grid.x over positions t, grid.y over groups of kBatchPerBlock sequences; threads over columns.
// A row whose id is outside [0, V) is filled with NaN and its index recorded in *bad (the lowest
// such row wins, so the report names the first bad position in row-major order).
// Sharded: vocab is vocab_total; the table holds rows [vocab_offset, vocab_offset + rows); an id
// outside them reads a zero row (PE only, or 0 without add_positions), as the CPU twin.
template <class W, class O>
__global__ void embedding_forward_kernel(const int32_t* tokens, const W* table, double scale,
                                         O* out, int64_t batch, int64_t length, int64_t vocab,
                                         int64_t width, int64_t position_offset,
                                         unsigned long long* bad, int64_t vocab_offset,
                                         int64_t rows, bool add_positions) {
  __shared__ int32_t ids[kBatchPerBlock];
  for (int64_t t = blockIdx.x; t < length; t += gridDim.x) {
    for (int64_t b0 = int64_t(blockIdx.y) * kBatchPerBlock; b0 < batch;
         b0 += int64_t(gridDim.y) * kBatchPerBlock) {
      int nb = int(batch - b0 < kBatchPerBlock ? batch - b0 : kBatchPerBlock);
      __syncthreads();  // ids of the previous round are no longer read
      if (threadIdx.x < nb) {
        int64_t row = (b0 + threadIdx.x) * length + t;
        int32_t id = tokens[row];
        ids[threadIdx.x] = id;
        if (id < 0 || id >= vocab) atomicMin(bad, (unsigned long long)row);
      }
      __syncthreads();
      for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
        double pe = add_positions ? sinusoid(position_offset + t, j, width) : 0.0;
        for (int i = 0; i < nb; ++i) {
          int32_t id = ids[i];
          int64_t row = (b0 + i) * length + t;
          float v;
          const int64_t local = int64_t(id) - vocab_offset;
          if (id < 0 || id >= vocab) {
            v = __int_as_float(0x7fc00000);  // NaN: the call throws anyway
          } else if (local >= 0 && local < rows) {
            v = float(double(to_float(table[local * width + j])) * scale + pe);
          } else {
            v = float(pe);  // another shard's id
          }
          out[row * width + j] = from_float<O>(v);
        }
      }
    }
  }
}

// Backward step 1: positions[i] = i, and every id checked against V (vocab_total). Sharded
// (keys != nullptr): keys[i] = the local row id − vocab_offset, or rows for another shard's id
// (sorted last, skipped by step 3).
__global__ void iota_check_kernel(const int32_t* tokens, int64_t n, int64_t vocab,
                                  int32_t* positions, unsigned long long* bad, uint32_t* keys,
                                  int64_t vocab_offset, int64_t rows) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    positions[i] = int32_t(i);
    int32_t id = tokens[i];
    if (id < 0 || id >= vocab) atomicMin(bad, (unsigned long long)i);
    if (keys) {
      const int64_t local = int64_t(id) - vocab_offset;
      keys[i] = local >= 0 && local < rows ? uint32_t(local) : uint32_t(rows);
    }
  }
}

// Backward step 3, after the stable sort by token: warp w owns the runs of equal tokens that
// start in sorted elements [w·kRun, (w+1)·kRun) and the 32 columns of blockIdx.y; it sums each
// such run over its full length (past the end of its slice if need be) in position order and
// updates dtable once per column. A run is owned by exactly one warp, so there are no races.
constexpr int kRun = 32;
constexpr int kBackwardThreads = 128;

// Runs of id `skip` (another shard's ids, keyed rows) are passed over.
template <class G, class W>
__global__ void embedding_backward_kernel(const uint32_t* sorted_ids, const int32_t* sorted_pos,
                                          const G* dout, float scale, W* dtable, int64_t n,
                                          int64_t width, uint32_t skip) {
  int lane = threadIdx.x & 31;
  int64_t warp = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  int64_t j = int64_t(blockIdx.y) * 32 + lane;
  bool col = j < width;
  int64_t p = warp * kRun;
  int64_t end = p + kRun < n ? p + kRun : n;
  if (p >= n) return;
  // Skip the tail of a run that started in an earlier slice (its owner handles it).
  if (p > 0)
    while (p < end && sorted_ids[p] == sorted_ids[p - 1]) ++p;
  while (p < end) {
    uint32_t id = sorted_ids[p];
    if (id == skip) {
      while (p < n && sorted_ids[p] == id) ++p;
      continue;
    }
    W* dst = dtable + int64_t(id) * width + j;
    float acc = col ? to_float(*dst) : 0.0f;
    int64_t q = p;
    for (; q < n && sorted_ids[q] == id; ++q)
      if (col) acc += scale * to_float(dout[int64_t(sorted_pos[q]) * width + j]);
    if (col) *dst = from_float<W>(acc);
    p = q;
  }
}

struct Dims {
  int64_t batch = 0, length = 0, vocab = 0, width = 0;
};

Dims check(const Context& ctx, const Tensor& tokens, const Tensor& table, const Tensor& rows,
           const char* op, const char* table_arg, const char* rows_arg) {
  TFM_CHECK(tokens.defined() && table.defined() && rows.defined(), op, ": tokens, ", table_arg,
            " and ", rows_arg, " must be defined");
  expect_device(ctx, tokens, op, "tokens");
  expect_device(ctx, table, op, table_arg);
  expect_device(ctx, rows, op, rows_arg);
  expect_dtype(tokens, DType::i32, op, "tokens");
  TFM_CHECK(is_gpu_float(rows.dtype), op, ": the CUDA twin runs f32, bf16 or f16, got ",
            dtype_name(rows.dtype));
  TFM_CHECK(table.dtype == rows.dtype || table.dtype == DType::f32, op, ": ", table_arg, " is ",
            dtype_name(table.dtype), ", expected ", dtype_name(rows.dtype), " or f32");
  TFM_CHECK(tokens.rank == 2, op, ": tokens must be [B, T], got ", tokens.shape_str());
  TFM_CHECK(table.rank == 2, op, ": ", table_arg, " must be [V, D], got ", table.shape_str());
  Dims d{tokens.dim(0), tokens.dim(1), table.dim(0), table.dim(1)};
  expect_shape(rows, {d.batch, d.length, d.width}, op, rows_arg);
  return d;
}

// Waits for the stream and throws for the first bad id, if any, like the CPU twin's message.
void report_bad_id(const Context& ctx, const Tensor& tokens, const unsigned long long* bad,
                   int64_t vocab, const char* op) {
  cudaStream_t stream = stream_of(ctx);
  unsigned long long row = kNoBadRow;
  check_cuda(cudaMemcpyAsync(&row, bad, sizeof row, cudaMemcpyDeviceToHost, stream), op);
  check_cuda(cudaStreamSynchronize(stream), op);
  if (row == kNoBadRow) return;
  int32_t id = 0;
  check_cuda(cudaMemcpy(&id, static_cast<const int32_t*>(tokens.data) + row, sizeof id,
                        cudaMemcpyDeviceToHost),
             op);
  int64_t length = tokens.dim(1);
  fail(cat(op, ": token id ", id, " at position [", int64_t(row) / length, ", ",
           int64_t(row) % length, "] is outside the vocabulary of size ", vocab));
}

unsigned long long* new_flag(const Context& ctx, const char* op) {
  auto* bad = static_cast<unsigned long long*>(scratch(ctx, sizeof(unsigned long long), op));
  check_cuda(cudaMemsetAsync(bad, 0xFF, sizeof *bad, stream_of(ctx)), op);  // = kNoBadRow
  return bad;
}

// The id bound of a call: vocab_total, or the table's rows when 0 (checked by the dispatcher).
int64_t vocab_total(const EmbeddingShard& shard, int64_t rows, const char* op) {
  const int64_t total = shard.vocab_total ? shard.vocab_total : rows;
  TFM_CHECK(shard.vocab_offset >= 0 && shard.vocab_offset + rows <= total, op,
            ": the table's rows [", shard.vocab_offset, ", ", shard.vocab_offset + rows,
            ") do not fit in the vocabulary of size ", total);
  return total;
}

template <class F>
void dispatch_rows_table(DType rows, DType table, const char* op, F&& f) {
  dispatch_gpu_float(rows, op, [&](auto rt) {
    using R = typename decltype(rt)::type;
    if (table == DType::f32) f(rt, Tag<float>{});
    else f(rt, Tag<R>{});
  });
}

}  // namespace

void embedding_forward(const Context& ctx, const Tensor& tokens, const Tensor& table,
                       double scale, const Tensor& out, int64_t position_offset,
                       const EmbeddingShard& shard) {
  const char* op = "embedding_forward";
  Dims d = check(ctx, tokens, table, out, op, "table", "out");
  TFM_CHECK(position_offset >= 0, op, ": position_offset ", position_offset, " is negative");
  const int64_t rows = d.vocab;
  d.vocab = vocab_total(shard, rows, op);
  if (d.batch == 0 || d.length == 0 || d.width == 0) return;
  unsigned long long* bad = new_flag(ctx, op);
  int64_t groups = (d.batch + kBatchPerBlock - 1) / kBatchPerBlock;
  dim3 grid(unsigned(d.length < 0x7FFFFFFF ? d.length : 0x7FFFFFFF),
            unsigned(groups < 65535 ? groups : 65535));
  dispatch_rows_table(out.dtype, table.dtype, op, [&](auto ot, auto wt) {
    using O = typename decltype(ot)::type;
    using W = typename decltype(wt)::type;
    launch_kernel(embedding_forward_kernel<W, O>, grid, kForwardThreads, 0, stream_of(ctx),
                  static_cast<const int32_t*>(tokens.data), static_cast<const W*>(table.data),
                  scale, static_cast<O*>(out.data), d.batch, d.length, d.vocab, d.width,
                  position_offset, bad, shard.vocab_offset, rows, shard.add_positions);
  });
  check_launch(op);
  report_bad_id(ctx, tokens, bad, d.vocab, op);
}

void embedding_backward(const Context& ctx, const Tensor& tokens, const Tensor& dout,
                        double scale, const Tensor& dtable, const EmbeddingShard& shard) {
  const char* op = "embedding_backward";
  Dims d = check(ctx, tokens, dtable, dout, op, "dtable", "dout");
  const int64_t rows = d.vocab;
  d.vocab = vocab_total(shard, rows, op);
  // Unsharded calls sort the token ids themselves (as before); sharded ones sort local keys.
  const bool sharded = shard.vocab_offset != 0 || d.vocab != rows;
  int64_t n = d.batch * d.length;
  if (n == 0 || d.width == 0) return;
  TFM_CHECK(n < INT_MAX, op, ": ", n, " tokens exceed the sort's int32 range");
  cudaStream_t stream = stream_of(ctx);

  // 1. positions 0..n-1 and the id check (before the sort relies on ids < V).
  unsigned long long* bad = new_flag(ctx, op);
  auto* positions = static_cast<int32_t*>(scratch(ctx, size_t(n) * sizeof(int32_t), op));
  uint32_t* keys =
      sharded ? static_cast<uint32_t*>(scratch(ctx, size_t(n) * sizeof(uint32_t), op)) : nullptr;
  constexpr int kThreads = 256;
  launch_kernel(iota_check_kernel, grid_for(n, kThreads), kThreads, 0, stream,
                static_cast<const int32_t*>(tokens.data), n, d.vocab, positions, bad, keys,
                shard.vocab_offset, rows);
  check_launch(op);
  report_bad_id(ctx, tokens, bad, d.vocab, op);

  // 2. Stable radix sort of (id, position) by id; ids are < V, so only their low bits matter.
  // Sharded: keys are ≤ rows (rows = another shard's id).
  const int64_t key_bound = sharded ? rows + 1 : d.vocab;
  int end_bit = 1;
  while (end_bit < 32 && (int64_t(1) << end_bit) < key_bound) ++end_bit;
  auto* sorted_ids = static_cast<uint32_t*>(scratch(ctx, size_t(n) * sizeof(uint32_t), op));
  auto* sorted_pos = static_cast<int32_t*>(scratch(ctx, size_t(n) * sizeof(int32_t), op));
  const auto* ids = sharded ? keys : static_cast<const uint32_t*>(tokens.data);  // validated ≥ 0
  size_t temp_bytes = 0;
  check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, sorted_ids, positions,
                                             sorted_pos, int(n), 0, end_bit, stream),
             "embedding_backward: cub::DeviceRadixSort (size query)");
  void* temp = scratch(ctx, temp_bytes ? temp_bytes : 1, op);
  check_cuda(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, ids, sorted_ids, positions,
                                             sorted_pos, int(n), 0, end_bit, stream),
             "embedding_backward: cub::DeviceRadixSort");

  // 3. One warp per slice of kRun sorted elements and 32 columns.
  int64_t slices = (n + kRun - 1) / kRun;
  int64_t col_tiles = (d.width + 31) / 32;
  TFM_CHECK(col_tiles <= 65535, op, ": width ", d.width, " exceeds the kernel's grid");
  constexpr int kWarpsPerBlock = kBackwardThreads / 32;
  dim3 grid(unsigned((slices + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned(col_tiles));
  dispatch_rows_table(dout.dtype, dtable.dtype, op, [&](auto gt, auto wt) {
    using G = typename decltype(gt)::type;
    using W = typename decltype(wt)::type;
    launch_kernel(embedding_backward_kernel<G, W>, grid, kBackwardThreads, 0, stream, sorted_ids,
                  sorted_pos, static_cast<const G*>(dout.data), float(scale),
                  static_cast<W*>(dtable.data), n, d.width, sharded ? uint32_t(rows) : ~0u);
  });
  check_launch(op);
}

}  // namespace tfm::cuda
