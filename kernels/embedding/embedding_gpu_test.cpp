// GPU tests of the embedding's CUDA twin (kernels/embedding/embedding_cuda.h) against the CPU twin
// in f32 on the same rounded inputs: odd shapes, position offsets, more sequences than one block
// takes, fp32 master tables with 16-bit activations, tokens repeated often enough that one
// token's run spans several warps' slices (and a batch that is all one token), deterministic
// backward, bad ids reported like the CPU twin, and vocabulary shards (tensor parallelism).
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "kernels/core/gpu_testing.h"
#include "kernels/embedding/embedding.h"
#include "tests/testing/testing.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/embedding/embedding_cuda.h"
#endif

namespace tfm {
namespace {

using namespace gpu_testing;  // GpuEnv, to_device, to_host, rounded, ...

#ifdef TFM_HAVE_CUDA

Buffer random_tokens(int64_t batch, int64_t length, int64_t vocab, uint64_t seed) {
  Buffer t(DType::i32, {batch, length});
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, vocab - 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.as<int32_t>()[i] = int32_t(dist(rng));
  return t;
}

struct Shape {
  int64_t batch, length, vocab, width;
};

struct Types {
  DType table, rows;  // table/dtable, out/dout
};
const Types kTypes[] = {{DType::f32, DType::f32}, {DType::bf16, DType::bf16},
                        {DType::f16, DType::f16}, {DType::f32, DType::bf16},
                        {DType::f32, DType::f16}};

TEST(EmbeddingGpu, ForwardMatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  const Shape shapes[] = {{1, 1, 1, 1}, {3, 5, 11, 13}, {20, 7, 50, 64}, {2, 3, 100, 512}};
  for (const Types& ty : kTypes)
    for (const Shape& s : shapes)
      for (int64_t offset : {0, 37}) {
        SCOPED_TRACE(cat("table ", dtype_name(ty.table), " out ", dtype_name(ty.rows), " B=",
                         s.batch, " T=", s.length, " V=", s.vocab, " D=", s.width, " offset=",
                         offset));
        double scale = std::sqrt(double(s.width));
        Buffer tokens = random_tokens(s.batch, s.length, s.vocab, 1);
        Buffer table = testing::random_buffer<float>({s.vocab, s.width}, 2);
        Buffer d_tokens = to_device(tokens), d_table = to_device(table, ty.table);
        Buffer d_out(ty.rows, {s.batch, s.length, s.width}, Device::cuda);
        gpu_testing::poison_device(d_out);
        if (ty.table == ty.rows)
          embedding_forward(env.ctx, d_tokens, d_table, scale, d_out, offset);
        else
          cuda::embedding_forward(env.ctx, d_tokens, d_table, scale, d_out, offset);
        Buffer want(DType::f32, {s.batch, s.length, s.width});
        embedding_forward(testing::cpu_context(), tokens, rounded(table, ty.table), scale, want,
                          offset);
        EXPECT_LE(scaled_error(to_host(d_out), want), gpu_testing::tolerance(ty.rows));
      }
}

TEST(EmbeddingGpu, BackwardMatchesCpuTwinAndIsDeterministic) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  // vocab 5 over 200 tokens: runs of ~40 cross the 32-element slices; vocab 1: one run of 300.
  const Shape shapes[] = {{1, 1, 1, 1}, {10, 20, 5, 33}, {15, 20, 1, 64}, {8, 50, 1000, 40}};
  for (const Types& ty : kTypes)
    for (const Shape& s : shapes) {
      SCOPED_TRACE(cat("dtable ", dtype_name(ty.table), " dout ", dtype_name(ty.rows), " B=",
                       s.batch, " T=", s.length, " V=", s.vocab, " D=", s.width));
      double scale = 0.5 * std::sqrt(double(s.width));
      Buffer tokens = random_tokens(s.batch, s.length, s.vocab, 3);
      Buffer dout = testing::random_buffer<float>({s.batch, s.length, s.width}, 4);
      Buffer dtable0 = testing::random_buffer<float>({s.vocab, s.width}, 5);
      Buffer d_tokens = to_device(tokens), d_dout = to_device(dout, ty.rows);
      Buffer runs[2];
      for (Buffer& run : runs) {
        Buffer d_dtable = to_device(dtable0, ty.table);
        if (ty.table == ty.rows)
          embedding_backward(env.ctx, d_tokens, d_dout, scale, d_dtable);
        else
          cuda::embedding_backward(env.ctx, d_tokens, d_dout, scale, d_dtable);
        run = to_host(d_dtable);
      }
      Buffer want = rounded(dtable0, ty.table);
      embedding_backward(testing::cpu_context(), tokens, rounded(dout, ty.rows), scale, want);
      double tol = ty.table == DType::f32 ? 1e-5 : gpu_testing::tolerance(ty.table);
      EXPECT_LE(scaled_error(runs[0], want), tol);
      EXPECT_EQ(testing::max_abs_error(runs[0], runs[1]), 0.0) << "not deterministic";
    }
}

// Vocabulary shards (tensor parallelism): each shard's forward (PE on shard 0 only) and backward
// (only its ids, into local rows; runs of other shards' ids skipped) match the CPU twin; a bad id
// names vocab_total.
TEST(EmbeddingGpu, VocabShardsMatchCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  const Shape shapes[] = {{3, 5, 11, 13}, {10, 20, 5, 33}, {8, 50, 1000, 40}};
  for (const Types& ty : kTypes)
    for (const Shape& s : shapes)
      for (int64_t P : {2, 3}) {
        const int64_t chunk = (s.vocab + P - 1) / P;
        Buffer tokens = random_tokens(s.batch, s.length, s.vocab, 11);
        Buffer table = testing::random_buffer<float>({s.vocab, s.width}, 12);
        Buffer dout = testing::random_buffer<float>({s.batch, s.length, s.width}, 13);
        Buffer d_tokens = to_device(tokens), d_dout = to_device(dout, ty.rows);
        const double scale = std::sqrt(double(s.width));
        for (int64_t p = 0; p < P; ++p) {
          const int64_t r0 = std::min(s.vocab, p * chunk), n = std::min(s.vocab, r0 + chunk) - r0;
          if (n == 0) continue;
          SCOPED_TRACE(cat("table ", dtype_name(ty.table), " rows ", dtype_name(ty.rows), " B=",
                           s.batch, " T=", s.length, " V=", s.vocab, " D=", s.width, " shard ",
                           p, " of ", P));
          EmbeddingShard shard{r0, s.vocab, p == 0};
          Buffer part(DType::f32, {n, s.width});
          std::copy_n(table.as<float>() + r0 * s.width, n * s.width, part.as<float>());
          Buffer d_part = to_device(part, ty.table);
          Buffer d_out(ty.rows, {s.batch, s.length, s.width}, Device::cuda);
          gpu_testing::poison_device(d_out);
          cuda::embedding_forward(env.ctx, d_tokens, d_part, scale, d_out, 3, shard);
          Buffer want(DType::f32, {s.batch, s.length, s.width});
          embedding_forward(testing::cpu_context(), tokens, rounded(part, ty.table), scale, want,
                            3, shard);
          EXPECT_LE(scaled_error(to_host(d_out), want), gpu_testing::tolerance(ty.rows));

          Buffer dtable0 = testing::random_buffer<float>({n, s.width}, 14);
          Buffer d_dtable = to_device(dtable0, ty.table);
          cuda::embedding_backward(env.ctx, d_tokens, d_dout, scale, d_dtable, shard);
          Buffer dwant = rounded(dtable0, ty.table);
          embedding_backward(testing::cpu_context(), tokens, rounded(dout, ty.rows), scale, dwant,
                             shard);
          double tol = ty.table == DType::f32 ? 1e-5 : gpu_testing::tolerance(ty.table);
          EXPECT_LE(scaled_error(to_host(d_dtable), dwant), tol);
        }
      }
  // An id past vocab_total is named with vocab_total.
  Buffer tokens = random_tokens(2, 4, 8, 15);
  tokens.as<int32_t>()[1 * 4 + 2] = 16;
  Buffer d_tokens = to_device(tokens);
  Buffer d_table = to_device(testing::random_buffer<float>({8, 8}, 16), DType::bf16);
  Buffer d_out(DType::bf16, {2, 4, 8}, Device::cuda);
  const std::string want = "token id 16 at position [1, 2] is outside the vocabulary of size 16";
  try {
    embedding_forward(env.ctx, d_tokens, d_table, 1.0, d_out, 0, EmbeddingShard{8, 16, false});
    ADD_FAILURE() << "forward accepted id 16";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
  try {
    embedding_backward(env.ctx, d_tokens, d_out, 1.0, d_table, EmbeddingShard{8, 16, false});
    ADD_FAILURE() << "backward accepted id 16";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

TEST(EmbeddingGpu, BadTokenIdsThrowNamingIdAndPosition) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  const int64_t batch = 2, length = 4, vocab = 11, width = 8;
  Buffer table = testing::random_buffer<float>({vocab, width}, 6);
  Buffer d_table = to_device(table, DType::bf16);
  Buffer d_out(DType::bf16, {batch, length, width}, Device::cuda);
  for (int32_t bad : {11, -1}) {
    Buffer tokens = random_tokens(batch, length, vocab, 7);
    tokens.as<int32_t>()[1 * length + 2] = bad;
    Buffer d_tokens = to_device(tokens);
    std::string want = cat("token id ", bad, " at position [1, 2]");
    try {
      embedding_forward(env.ctx, d_tokens, d_table, 1.0, d_out);
      ADD_FAILURE() << "forward accepted id " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
    try {
      embedding_backward(env.ctx, d_tokens, d_out, 1.0, d_table);
      ADD_FAILURE() << "backward accepted id " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}

#else

TFM_GPU_SUITE_SKIPPED_WITHOUT_CUDA(EmbeddingGpu);

#endif

}  // namespace
}  // namespace tfm
