// GPU tests of the attention CUDA twin against the CPU twin (run in f64 on the inputs rounded
// to the GPU's dtype): forward (out, lse) and backward (dq, dk, dv) over odd shapes, causal and
// padding masks, dropout, the fused QKV buffer and separate tensors (16-byte aligned layouts
// and odd ones that force the element-wise path), head dims 32/64/128 and padded ones (7, 40,
// 96); f32, bf16 and f16, and bf16 also through the SIMT kernels. Outputs are poisoned (NaN)
// first; gradient columns outside the heads hold canary values that must survive. Dropout
// masks are compared exactly through a V of one-hot rows (out = P' itself), also for a head
// block of a larger call (tensor parallelism). Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/core/gpu_testing.h"
#include "tests/testing/testing.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/attention/attention_cuda.h"
#endif

namespace tfm {
namespace {

namespace gt = gpu_testing;

// Where q, k, v sit: one [B, T, 3D] buffer; separate tensors whose widths and column offsets
// are multiples of 8 (16-byte path); separate tensors with odd widths and offsets.
enum class Layout { fused, aligned, odd };

struct Case {
  int64_t B = 1, Tq = 1, Tk = 1, H = 1, dk = 32;
  bool causal = false;
  Layout layout = Layout::aligned;
  float dropout = 0.0f;
  std::vector<int32_t> lengths;  // [B]
  int64_t D() const { return H * dk; }
};

std::string describe(const Case& c) {
  const char* layouts[] = {"fused", "aligned", "odd"};
  std::string s = cat("B=", c.B, " Tq=", c.Tq, " Tk=", c.Tk, " H=", c.H, " dk=", c.dk,
                      c.causal ? " causal" : "", " ", layouts[int(c.layout)],
                      " dropout=", c.dropout, " lengths=");
  for (int32_t l : c.lengths) s += cat(l, " ");
  return s;
}

struct Placement {
  int64_t width, col;
};

// Widths and head-block offsets of q, k, v (and of dq, dk, dv, which share them).
void place(const Case& c, Placement& q, Placement& k, Placement& v) {
  const int64_t D = c.D();
  switch (c.layout) {
    case Layout::fused: q = {3 * D, 0}, k = {3 * D, D}, v = {3 * D, 2 * D}; return;
    case Layout::aligned: q = {D + 8, 8}, k = {D, 0}, v = {D + 16, 16}; return;
    case Layout::odd: q = {D + 5, 3}, k = {D + 1, 1}, v = {D + 2, 0}; return;
  }
}

// Host f32 random buffer [B, T, W].
Buffer random3(int64_t B, int64_t T, int64_t W, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  return testing::random_buffer<float>({B, T, W}, seed, lo, hi);
}

// Host f32 [B, T, W]: NaN in the head columns [col, col + D) (to be written by the op), seeded
// canary values elsewhere (to be left alone).
Buffer poisoned_with_canary(int64_t B, int64_t T, int64_t W, int64_t col, int64_t D,
                            uint64_t seed) {
  Buffer buf = random3(B, T, W, seed, 3.0, 4.0);
  float* p = buf.as<float>();
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t c = col; c < col + D; ++c) p[r * W + c] = std::nanf("");
  return buf;
}

// max |a − e| / max(max |e|, floor) over the columns [col, col + D) of two [B, T, W] f64
// tensors; a NaN anywhere is an infinite error. A norm-wise measure: bf16 and f16 round P and
// dS before the second product, so small elements carry errors relative to the large ones.
double block_error(const Tensor& a, const Tensor& e, int64_t col, int64_t D, double floor = 1e-3) {
  const int64_t W = e.dim(-1), rows = e.numel() / W;
  const double* pa = a.as<double>();
  const double* pe = e.as<double>();
  double worst = 0, scale = floor;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = col; c < col + D; ++c) scale = std::max(scale, std::abs(pe[r * W + c]));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = col; c < col + D; ++c) {
      const double err = std::abs(pa[r * W + c] - pe[r * W + c]);
      if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
    }
  return worst / scale;
}

// The largest |e| in columns [col, col + D).
double max_abs(const Tensor& e, int64_t col, int64_t D) {
  const int64_t W = e.dim(-1), rows = e.numel() / W;
  const double* pe = e.as<double>();
  double m = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = col; c < col + D; ++c) m = std::max(m, std::abs(pe[r * W + c]));
  return m;
}

// Columns outside [col, col + D) of `a` equal `canary` exactly (both f64 after the same rounding).
// With several head blocks in one buffer, `blocks` lists their offsets.
bool outside_untouched(const Tensor& a, const Tensor& canary, std::vector<int64_t> blocks,
                       int64_t D) {
  const int64_t W = a.dim(-1), rows = a.numel() / W;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < W; ++c) {
      bool inside = false;
      for (int64_t col : blocks) inside = inside || (c >= col && c < col + D);
      if (!inside && a.as<double>()[r * W + c] != canary.as<double>()[r * W + c]) return false;
    }
  return true;
}

// Selects the SIMT kernels for 16-bit dtypes for the lifetime of the object.
struct PathGuard {
  explicit PathGuard(bool simt) {
#ifdef TFM_HAVE_CUDA
    cuda::set_attention_path(simt ? cuda::AttentionPath::simt : cuda::AttentionPath::automatic);
#else
    (void)simt;
#endif
  }
  ~PathGuard() {
#ifdef TFM_HAVE_CUDA
    cuda::set_attention_path(cuda::AttentionPath::automatic);
#endif
  }
};

// The inputs of one case on the host (f32) and what the GPU and the CPU twin see of them.
struct Problem {
  Case c;
  AttentionArgs args;
  Placement pq{}, pk{}, pv{};
  Buffer qkv, q, k, v;  // host f32 (qkv when fused, else q, k, v)
  Buffer dout, lengths;

  Problem(const Case& c_, uint64_t seed) : c(c_), lengths(DType::i32, {c_.B}) {
    if (c.lengths.empty()) c.lengths.assign(size_t(c.B), int32_t(c.Tk));
    place(c, pq, pk, pv);
    args.heads = c.H;
    args.head_dim = c.dk;
    args.q_col = pq.col, args.k_col = pk.col, args.v_col = pv.col;
    args.causal = c.causal;
    args.dropout = DropoutSpec{c.dropout, 77 + seed, 1000 * seed + 3};
    if (c.layout == Layout::fused) {
      qkv = random3(c.B, c.Tq, pq.width, seed);
    } else {
      q = random3(c.B, c.Tq, pq.width, seed);
      k = random3(c.B, c.Tk, pk.width, seed + 1);
      v = random3(c.B, c.Tk, pv.width, seed + 2);
    }
    dout = random3(c.B, c.Tq, c.D(), seed + 3, -1.0, 1.0);
    std::copy(c.lengths.begin(), c.lengths.end(), lengths.as<int32_t>());
  }
  bool fused() const { return c.layout == Layout::fused; }
};

// Forward and backward of one problem in dtype dt on the GPU against the CPU twin in f64.
void check_problem(const Problem& pr, DType dt, bool simt) {
  SCOPED_TRACE(cat(describe(pr.c), " dtype=", dtype_name(dt), simt ? " simt" : ""));
  PathGuard path(simt);
  const Case& c = pr.c;
  const int64_t D = c.D();
  gt::GpuEnv env;
  Context cpu = testing::cpu_context();

  // Inputs: device copies in dt, and the same rounded values in f64 for the CPU twin.
  Buffer d_qkv, d_q, d_k, d_v, r_qkv, r_q, r_k, r_v;
  Tensor dq_in, dk_in, dv_in, rq_in, rk_in, rv_in;
  if (pr.fused()) {
    d_qkv = gt::to_device(pr.qkv, dt);
    r_qkv = gt::rounded(pr.qkv, dt, DType::f64);
    dq_in = dk_in = dv_in = d_qkv;
    rq_in = rk_in = rv_in = r_qkv;
  } else {
    d_q = gt::to_device(pr.q, dt), d_k = gt::to_device(pr.k, dt), d_v = gt::to_device(pr.v, dt);
    r_q = gt::rounded(pr.q, dt, DType::f64), r_k = gt::rounded(pr.k, dt, DType::f64);
    r_v = gt::rounded(pr.v, dt, DType::f64);
    dq_in = d_q, dk_in = d_k, dv_in = d_v;
    rq_in = r_q, rk_in = r_k, rv_in = r_v;
  }
  Buffer d_len = gt::to_device(pr.lengths);
  Buffer d_dout = gt::to_device(pr.dout, dt);
  Buffer r_dout = gt::rounded(pr.dout, dt, DType::f64);

  // Forward.
  Buffer d_out(dt, {c.B, c.Tq, D}, Device::cuda), d_lse(DType::f32, {c.B, c.H, c.Tq}, Device::cuda);
  gt::poison_device(d_out);
  gt::poison_device(d_lse);
  attention_forward(env.ctx, pr.args, dq_in, dk_in, dv_in, d_len, d_out, d_lse);
  Buffer want_out(DType::f64, {c.B, c.Tq, D}), want_lse(DType::f64, {c.B, c.H, c.Tq});
  attention_forward(cpu, pr.args, rq_in, rk_in, rv_in, pr.lengths, want_out, want_lse);
  Buffer got_out = gt::to_host(d_out, DType::f64), got_lse = gt::to_host(d_lse, DType::f64);
  const double tol = gt::tolerance(dt);
  EXPECT_LE(block_error(got_out, want_out, 0, D), tol) << "out";
  // lse comes from fp32 sums of exact products of the rounded inputs in every dtype.
  EXPECT_LE(block_error(got_lse, want_lse, 0, c.Tq, 1.0), dt == DType::f32 ? 1e-5 : 1e-4)
      << "lse";

  // Backward, from the GPU's own out and lse (as the model runs it); the CPU twin recomputes.
  // Gradient buffers have the inputs' layouts: NaN in the head blocks, canaries elsewhere.
  std::vector<Buffer> canary_host;  // dq, dk, dv (or dqkv)
  std::vector<Buffer> d_grad;
  if (pr.fused()) {
    canary_host.push_back(poisoned_with_canary(c.B, c.Tq, 3 * D, 0, 3 * D, 11));
  } else {
    canary_host.push_back(poisoned_with_canary(c.B, c.Tq, pr.pq.width, pr.pq.col, D, 11));
    canary_host.push_back(poisoned_with_canary(c.B, c.Tk, pr.pk.width, pr.pk.col, D, 12));
    canary_host.push_back(poisoned_with_canary(c.B, c.Tk, pr.pv.width, pr.pv.col, D, 13));
  }
  for (const Buffer& h : canary_host) d_grad.push_back(gt::to_device(h, dt));
  const Tensor& g_q = d_grad[0];
  const Tensor& g_k = pr.fused() ? d_grad[0] : d_grad[1];
  const Tensor& g_v = pr.fused() ? d_grad[0] : d_grad[2];
  attention_backward(env.ctx, pr.args, dq_in, dk_in, dv_in, d_len, d_out, d_lse, d_dout, g_q, g_k,
                     g_v);

  std::vector<Buffer> want;  // f64, zeros outside the heads (not compared there)
  for (const Buffer& h : canary_host) want.push_back(gt::buffer_like(h, DType::f64, Device::cpu));
  const Tensor& w_q = want[0];
  const Tensor& w_k = pr.fused() ? want[0] : want[1];
  const Tensor& w_v = pr.fused() ? want[0] : want[2];
  attention_backward(cpu, pr.args, rq_in, rk_in, rv_in, pr.lengths, want_out, want_lse, r_dout,
                     w_q, w_k, w_v);

  // 16-bit: P and dS are rounded to the storage type before their products (as FlashAttention
  // does), and D = dO·O uses the rounded out, so gradients get twice the forward tolerance.
  // dq and dk are sums of dS = P∘(dP − D), differences of O(|dO|·|V|) numbers that cancel
  // exactly in some cases (one key: P = 1, dS = 0), leaving only the rounding of O and of the
  // fp32 dot products. Their errors are measured against the scale of those terms, for which
  // dv = Pᵀ·dO's scale (~|dO|) stands, not against their own (possibly zero) size.
  const double gtol = 2 * tol;
  const char* names[] = {"dq", "dk", "dv"};
  const Placement places[] = {pr.pq, pr.pk, pr.pv};
  const double floor =
      std::max(1e-3, max_abs(want.back(), pr.fused() ? 2 * D : places[2].col, D));
  for (size_t t = 0; t < canary_host.size(); ++t) {
    Buffer got = gt::to_host(d_grad[t], DType::f64);
    Buffer canary = gt::rounded(canary_host[t], dt, DType::f64);
    if (pr.fused()) {
      for (int g = 0; g < 3; ++g)
        EXPECT_LE(block_error(got, want[t], g * D, D, floor), gtol) << names[g] << " (fused)";
    } else {
      EXPECT_LE(block_error(got, want[t], places[t].col, D, floor), gtol) << names[t];
      EXPECT_TRUE(outside_untouched(got, canary, {places[t].col}, D))
          << names[t] << ": columns outside the heads were written";
    }
  }
}

const DType kDtypes[] = {DType::f32, DType::bf16, DType::f16};

// Every dtype, plus bf16 through the SIMT kernels.
void check_all_paths(const Case& c, uint64_t seed) {
  Problem pr(c, seed);
  for (DType dt : kDtypes) check_problem(pr, dt, false);
  check_problem(pr, DType::bf16, true);
}

std::vector<int32_t> varied_lengths(int64_t B, int64_t Tk, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> l;
  for (int64_t b = 0; b < B; ++b) l.push_back(int32_t(1 + rng() % uint32_t(Tk)));
  l[0] = int32_t(Tk);                 // one unpadded entry
  if (B > 2) l[B - 1] = 1;            // and one that sees key 0 only
  return l;
}

TEST(AttentionGpu, ShapeSweepNonCausal) {
  TFM_SKIP_WITHOUT_GPU();
  const int64_t sizes[] = {1, 5, 17, 64, 129};
  uint64_t seed = 1;
  for (int64_t Tq : sizes)
    for (int64_t Tk : sizes) {
      Case c;
      c.B = 3, c.Tq = Tq, c.Tk = Tk, c.H = 3, c.dk = 64;
      c.layout = seed % 2 ? Layout::aligned : Layout::odd;
      c.lengths = varied_lengths(c.B, Tk, uint32_t(seed));
      check_all_paths(c, seed++);
    }
}

TEST(AttentionGpu, CausalSelfAttentionFusedQkv) {
  TFM_SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  for (int64_t T : {1, 5, 17, 64, 129})
    for (float p : {0.0f, 0.1f}) {
      Case c;
      c.B = 3, c.Tq = c.Tk = T, c.H = 3, c.dk = 32, c.causal = true, c.layout = Layout::fused;
      c.dropout = p;
      c.lengths = varied_lengths(c.B, T, uint32_t(seed));
      check_all_paths(c, seed++);
    }
}

TEST(AttentionGpu, HeadDims) {
  TFM_SKIP_WITHOUT_GPU();
  // 32, 64, 128 fill their tiles; 7, 40, 96 are padded with zero columns (7 and 40 with odd
  // layouts take the element-wise loads; 40 and 96 with aligned layouts the 16-byte ones).
  uint64_t seed = 200;
  for (int64_t dk : {32, 64, 128, 7, 40, 96})
    for (int causal = 0; causal < 2; ++causal) {
      Case c;
      c.B = 1, c.Tq = c.Tk = 129, c.H = dk == 128 ? 3 : 8, c.dk = dk, c.causal = causal;
      c.layout = dk == 7 ? Layout::odd : (causal ? Layout::fused : Layout::aligned);
      c.dropout = causal ? 0.1f : 0.0f;
      c.lengths = {int32_t(causal ? 129 : 100)};
      check_all_paths(c, seed++);
    }
}

TEST(AttentionGpu, CrossAttentionWithDropoutAndPadding) {
  TFM_SKIP_WITHOUT_GPU();
  uint64_t seed = 300;
  for (int64_t dk : {64, 128}) {
    Case c;
    c.B = 3, c.Tq = 17, c.Tk = 129, c.H = 8, c.dk = dk, c.dropout = 0.1f;
    c.lengths = {129, 65, 33};
    c.layout = Layout::aligned;
    check_all_paths(c, seed++);
    c.Tq = 129, c.Tk = 17, c.lengths = {17, 9, 1}, c.layout = Layout::odd;
    check_all_paths(c, seed++);
  }
}

TEST(AttentionGpu, LongSequencesSpanManyTiles) {
  TFM_SKIP_WITHOUT_GPU();
  // 300 is past several 64-row and 32-row tiles, with ragged last tiles on both sides.
  Case c;
  c.B = 2, c.Tq = c.Tk = 300, c.H = 2, c.dk = 128, c.causal = true, c.layout = Layout::fused;
  c.dropout = 0.1f;
  c.lengths = {300, 201};
  check_all_paths(c, 400);
  c.dk = 64, c.causal = false, c.layout = Layout::aligned, c.dropout = 0.0f;
  check_all_paths(c, 401);
}

// Makes V's row j of every head the unit vector e_j (separate q, k, v; Tk ≤ head_dim), so that
// out[i, h·dk + j] = P'_ij: the probabilities after masks and dropout, zeros where dropped.
void make_v_one_hot(Problem& pr) {
  const Case& c = pr.c;
  float* v = pr.v.as<float>();
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.Tk; ++j)
      for (int64_t h = 0; h < c.H; ++h)
        for (int64_t d = 0; d < c.dk; ++d)
          v[(b * c.Tk + j) * pr.pv.width + pr.pv.col + h * c.dk + d] = d == j ? 1.f : 0.f;
}

// Forward only, of a problem with separate q, k, v: on the GPU in dtype dt (output poisoned
// first) and by the CPU twin in f64 on the same rounded inputs. Returns {GPU out, CPU out}, both
// host f64 [B, Tq, D].
std::pair<Buffer, Buffer> forward_gpu_and_cpu(const Problem& pr, DType dt) {
  const Case& c = pr.c;
  gt::GpuEnv env;
  Buffer d_q = gt::to_device(pr.q, dt), d_k = gt::to_device(pr.k, dt);
  Buffer d_v = gt::to_device(pr.v, dt), d_len = gt::to_device(pr.lengths);
  Buffer d_out(dt, {c.B, c.Tq, c.D()}, Device::cuda);
  Buffer d_lse(DType::f32, {c.B, c.H, c.Tq}, Device::cuda);
  gt::poison_device(d_out);
  attention_forward(env.ctx, pr.args, d_q, d_k, d_v, d_len, d_out, d_lse);
  Buffer r_q = gt::rounded(pr.q, dt, DType::f64), r_k = gt::rounded(pr.k, dt, DType::f64);
  Buffer r_v = gt::rounded(pr.v, dt, DType::f64);
  Buffer want(DType::f64, {c.B, c.Tq, c.D()}), want_lse(DType::f64, {c.B, c.H, c.Tq});
  attention_forward(testing::cpu_context(), pr.args, r_q, r_k, r_v, pr.lengths, want, want_lse);
  return {gt::to_host(d_out, DType::f64), std::move(want)};
}

// With V's row j of every head the unit vector e_j (Tk ≤ head_dim), out[i, h·dk + j] = P'_ij,
// so the GPU's dropout mask (and causal and padding masks) can be compared exactly: zeros in
// the same places as the CPU twin's.
TEST(AttentionGpu, DropoutMaskEqualsTheCpuTwins) {
  TFM_SKIP_WITHOUT_GPU();
  for (int causal = 0; causal < 2; ++causal)
    for (DType dt : kDtypes)
      for (int simt = 0; simt < (dt == DType::bf16 ? 2 : 1); ++simt) {
        Case c;
        c.B = 2, c.Tq = c.Tk = 17, c.H = 3, c.dk = 32, c.causal = causal, c.dropout = 0.5f;
        c.layout = Layout::aligned;
        c.lengths = {17, 12};
        Problem pr(c, 500 + causal);
        make_v_one_hot(pr);
        SCOPED_TRACE(cat(describe(c), " dtype=", dtype_name(dt), simt ? " simt" : ""));
        PathGuard path(simt);
        auto [got, want] = forward_gpu_and_cpu(pr, dt);
        int64_t zeros = 0;
        for (int64_t i = 0; i < want.numel(); ++i) zeros += want.as<double>()[i] == 0.0;
        EXPECT_EQ(gt::zero_pattern_mismatches(got, want), 0)
            << "of " << want.numel() << " probabilities";
        EXPECT_GT(zeros, want.numel() / 4);  // the mask did drop (p = 0.5)
        EXPECT_LE(block_error(got, want, 0, c.D()), gt::tolerance(dt));
      }
}

// Tensor parallelism: this call holds heads [h0, h0 + H) of H_total, its dropout spec from
// dropout_column_block. The CUDA twin must map probability elements as the CPU twin does (the
// CPU twin's equality with the unsharded call is tested in attention_test.cpp): forward, backward
// and the exact mask (one-hot V as above). Odd Tk, so element pairs cross rows and Philox groups.
TEST(AttentionGpu, HeadBlockDropoutMatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  const int64_t H_total = 7;
  for (int causal = 0; causal < 2; ++causal)
    for (auto [h0, Hl] : {std::pair<int64_t, int64_t>{0, 3}, {3, 3}, {5, 2}}) {
      Case c;
      c.B = 2, c.Tq = c.Tk = 17, c.H = Hl, c.dk = 32, c.causal = causal, c.dropout = 0.5f;
      c.layout = causal ? Layout::fused : Layout::odd;
      c.lengths = {17, 12};
      Problem pr(c, 700 + uint64_t(h0) + 10 * uint64_t(causal));
      const int64_t hq = c.Tq * c.Tk;
      pr.args.dropout = dropout_column_block(pr.args.dropout, Hl * hq, H_total * hq, h0 * hq);
      SCOPED_TRACE(cat("heads [", h0, ", ", h0 + Hl, ") of ", H_total));
      for (DType dt : kDtypes) check_problem(pr, dt, false);
      check_problem(pr, DType::bf16, true);
    }
  // The exact mask through a one-hot V.
  for (DType dt : kDtypes) {
    Case c;
    c.B = 2, c.Tq = c.Tk = 17, c.H = 2, c.dk = 32, c.dropout = 0.5f, c.layout = Layout::aligned;
    c.lengths = {17, 12};
    Problem pr(c, 720);
    const int64_t hq = c.Tq * c.Tk;
    pr.args.dropout = dropout_column_block(pr.args.dropout, 2 * hq, 5 * hq, 3 * hq);
    make_v_one_hot(pr);
    SCOPED_TRACE(cat("one-hot V, dtype=", dtype_name(dt)));
    auto [got, want] = forward_gpu_and_cpu(pr, dt);
    EXPECT_EQ(gt::zero_pattern_mismatches(got, want), 0)
        << "of " << want.numel() << " probabilities";
  }
}

TEST(AttentionGpu, BackwardIsDeterministic) {
  TFM_SKIP_WITHOUT_GPU();
  Case c;
  c.B = 2, c.Tq = c.Tk = 129, c.H = 8, c.dk = 64, c.causal = true, c.layout = Layout::fused;
  c.dropout = 0.1f;
  c.lengths = {129, 77};
  Problem pr(c, 600);
  gt::GpuEnv env;
  Buffer d_qkv = gt::to_device(pr.qkv, DType::bf16), d_len = gt::to_device(pr.lengths);
  Buffer d_dout = gt::to_device(pr.dout, DType::bf16);
  Buffer d_out(DType::bf16, {c.B, c.Tq, c.D()}, Device::cuda);
  Buffer d_lse(DType::f32, {c.B, c.H, c.Tq}, Device::cuda);
  attention_forward(env.ctx, pr.args, d_qkv, d_qkv, d_qkv, d_len, d_out, d_lse);
  Buffer g1(DType::bf16, {c.B, c.Tq, 3 * c.D()}, Device::cuda);
  Buffer g2(DType::bf16, {c.B, c.Tq, 3 * c.D()}, Device::cuda);
  attention_backward(env.ctx, pr.args, d_qkv, d_qkv, d_qkv, d_len, d_out, d_lse, d_dout, g1, g1,
                     g1);
  attention_backward(env.ctx, pr.args, d_qkv, d_qkv, d_qkv, d_len, d_out, d_lse, d_dout, g2, g2,
                     g2);
  Buffer h1 = gt::to_host(g1, DType::bf16), h2 = gt::to_host(g2, DType::bf16);
  EXPECT_EQ(std::memcmp(h1.tensor().data, h2.tensor().data, h1.tensor().bytes()), 0);
}

}  // namespace
}  // namespace tfm
