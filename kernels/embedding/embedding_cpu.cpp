// CPU twin of the scaled token embedding plus sinusoidal positions (kernels/embedding/embedding.h)
// and its dispatchers.
//   forward:  out[b, t, :] = table[tokens[b, t], :] · scale + PE(position_offset + t)
//   backward: dtable[tokens[b, t], :] += scale · dout[b, t, :]
// Sharded (EmbeddingShard): the table holds rows [vocab_offset, vocab_offset + V_local); other
// ids read a zero row in forward and are skipped in backward; ids are checked against vocab_total.
// tokens [B, T] i32, table/dtable [V, D], out/dout [B, T, D], same floating dtype.
// Token ids are validated on the calling thread before any parallel loop (an exception must not
// leave an OpenMP region). Backward is deterministic: threads own blocks of embedding columns
// and walk the tokens in order, so a token repeated in the batch is summed in the same order
// whatever the thread count.
#include <algorithm>
#include <cmath>

#include "kernels/core/parallel.h"
#include "kernels/embedding/embedding.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/embedding/embedding_cuda.h"
#endif

namespace tfm {

double sinusoidal_position(int64_t pos, int64_t i, int64_t d_model) {
  TFM_CHECK(d_model > 0 && i >= 0 && i < d_model, "sinusoidal_position: index ", i,
            " out of range for d_model ", d_model);
  // Columns 2k and 2k+1 share the frequency 1 / 10000^(2k / D); the angle is formed in double
  // because pos reaches thousands and float would lose the low digits of pos · frequency.
  double exponent = double(i - (i & 1)) / double(d_model);
  double angle = double(pos) / std::pow(10000.0, exponent);
  return (i & 1) ? std::cos(angle) : std::sin(angle);
}

namespace {

struct EmbeddingDims {
  int64_t batch = 0, length = 0, vocab = 0, width = 0;  // vocab: the table's (local) rows
};

// The id range of the call: [0, vocab_total), with this table's rows at vocab_offset.
int64_t resolve_shard(const EmbeddingShard& shard, int64_t rows, const char* op) {
  const int64_t total = shard.vocab_total ? shard.vocab_total : rows;
  TFM_CHECK(shard.vocab_offset >= 0 && shard.vocab_offset + rows <= total, op,
            ": the table's rows [", shard.vocab_offset, ", ", shard.vocab_offset + rows,
            ") do not fit in the vocabulary of size ", total);
  return total;
}

// tokens [B, T] i32; table [V, D]; rows [B, T, D] (out or dout) with table's dtype.
EmbeddingDims check_embedding(const Context& ctx, const Tensor& tokens, const Tensor& table,
                              const Tensor& rows, const char* op, const char* table_arg,
                              const char* rows_arg) {
  TFM_CHECK(tokens.defined() && table.defined() && rows.defined(), op,
            ": tokens, ", table_arg, " and ", rows_arg, " must be defined");
  expect_device(ctx, tokens, op, "tokens");
  expect_device(ctx, table, op, table_arg);
  expect_device(ctx, rows, op, rows_arg);
  expect_dtype(tokens, DType::i32, op, "tokens");
  expect_param_dtype(ctx.device, rows.dtype, table, op, table_arg);
  TFM_CHECK(tokens.rank == 2, op, ": tokens must be [B, T], got ", tokens.shape_str());
  TFM_CHECK(table.rank == 2, op, ": ", table_arg, " must be [V, D], got ", table.shape_str());
  EmbeddingDims d{tokens.dim(0), tokens.dim(1), table.dim(0), table.dim(1)};
  expect_shape(rows, {d.batch, d.length, d.width}, op, rows_arg);
  return d;
}

// Every id in [0, V); the first bad one is reported with its position. Host memory only.
void check_token_ids(const Tensor& tokens, int64_t vocab, const char* op) {
  const int32_t* ids = tokens.as<int32_t>();
  int64_t length = tokens.dim(1);
  for (int64_t n = 0; n < tokens.numel(); ++n)
    TFM_CHECK(ids[n] >= 0 && ids[n] < vocab, op, ": token id ", ids[n], " at position [",
              n / length, ", ", n % length, "] is outside the vocabulary of size ", vocab);
}

template <class T>
void embedding_forward_cpu(const EmbeddingDims& d, const int32_t* tokens, const T* table,
                           double scale, T* out, int64_t position_offset,
                           const EmbeddingShard& shard) {
  // One thread per position t: PE(t, j) is computed once and added to that position in every
  // sequence of the batch. The sum is formed in double and rounded once.
  parallel_for(d.length, [&](int64_t t) {
    for (int64_t j = 0; j < d.width; ++j) {
      double pe = shard.add_positions ? sinusoidal_position(position_offset + t, j, d.width) : 0.0;
      for (int64_t b = 0; b < d.batch; ++b) {
        int64_t row = b * d.length + t;
        const int64_t local = int64_t(tokens[row]) - shard.vocab_offset;
        // Another shard's id: a zero row, so the sum over shards counts the row once. The
        // owned case keeps the unsharded expression exactly (the same rounding, FMA or not).
        out[row * d.width + j] = local >= 0 && local < d.vocab
                                     ? T(double(table[local * d.width + j]) * scale + pe)
                                     : T(pe);
      }
    }
  });
}

template <class T>
void embedding_backward_cpu(const EmbeddingDims& d, const int32_t* tokens, const T* dout,
                            double scale, T* dtable, int64_t vocab_offset) {
  constexpr int64_t kBlock = 16;
  int64_t blocks = (d.width + kBlock - 1) / kBlock;
  const T s = T(scale);
  parallel_for(blocks, [&](int64_t blk) {
    int64_t j0 = blk * kBlock, j1 = std::min(d.width, j0 + kBlock);
    for (int64_t row = 0; row < d.batch * d.length; ++row) {
      const int64_t local = int64_t(tokens[row]) - vocab_offset;
      if (local < 0 || local >= d.vocab) continue;  // another shard's row
      T* dst = dtable + local * d.width;
      const T* src = dout + row * d.width;
      for (int64_t j = j0; j < j1; ++j) dst[j] += s * src[j];
    }
  });
}

}  // namespace

void embedding_forward(const Context& ctx, const Tensor& tokens, const Tensor& table,
                       double scale, const Tensor& out, int64_t position_offset,
                       const EmbeddingShard& shard) {
  const char* op = "embedding_forward";
  EmbeddingDims d = check_embedding(ctx, tokens, table, out, op, "table", "out");
  TFM_CHECK(position_offset >= 0, op, ": position_offset ", position_offset, " is negative");
  const int64_t vocab_total = resolve_shard(shard, d.vocab, op);
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::embedding_forward(ctx, tokens, table, scale, out, position_offset, shard);
#else
    no_cuda_twin(op);
#endif
  }
  check_token_ids(tokens, vocab_total, op);
  dispatch_cpu_float(table.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    embedding_forward_cpu<T>(d, tokens.as<int32_t>(), table.as<T>(), scale, out.as<T>(),
                             position_offset, shard);
  });
}

void embedding_backward(const Context& ctx, const Tensor& tokens, const Tensor& dout,
                        double scale, const Tensor& dtable, const EmbeddingShard& shard) {
  const char* op = "embedding_backward";
  EmbeddingDims d = check_embedding(ctx, tokens, dtable, dout, op, "dtable", "dout");
  const int64_t vocab_total = resolve_shard(shard, d.vocab, op);
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::embedding_backward(ctx, tokens, dout, scale, dtable, shard);
#else
    no_cuda_twin(op);
#endif
  }
  check_token_ids(tokens, vocab_total, op);
  dispatch_cpu_float(dtable.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    embedding_backward_cpu<T>(d, tokens.as<int32_t>(), dout.as<T>(), scale, dtable.as<T>(),
                              shard.vocab_offset);
  });
}

}  // namespace tfm
