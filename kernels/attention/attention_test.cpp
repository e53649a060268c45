// Tests of the attention CPU twin: forward against the definition written out in double
// (explicit scores, masks, softmax, dropout, per head), finite-difference gradients of q, k, v
// (fused QKV buffer and separate tensors, dropout off and on), float against double, thread-count
// independence, the columns backward must and must not write, argument checks, and head blocks
// (tensor parallelism) drawing the dropout mask of those heads in the unsharded call.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/attention/attention.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

// One attention problem: sizes, masks, dropout, and whether q, k, v are one fused buffer.
struct Problem {
  int64_t B = 1, Tq = 1, Tk = 1, H = 1, dk = 4;
  bool causal = false;
  bool fused = false;  // self-attention through [B, T, 3·D], columns 0, D, 2·D
  float dropout = 0.0f;
  std::vector<int32_t> lengths;  // [B]
  int64_t D() const { return H * dk; }
};

std::string describe(const Problem& p) {
  std::string s = cat("B=", p.B, " Tq=", p.Tq, " Tk=", p.Tk, " H=", p.H, " dk=", p.dk,
                      p.causal ? " causal" : "", p.fused ? " fused" : " separate",
                      " dropout=", p.dropout, " lengths=");
  for (int32_t l : p.lengths) s += cat(l, " ");
  return s;
}

// The inputs of a problem in element type T. Separate tensors get extra columns around the
// heads (q at column 3 of D + 5, k at 1 of D + 1, v at 0 of D + 2), so the column offsets and
// "other columns untouched" are exercised; the fused buffer is exactly [B, T, 3·D].
template <class T>
struct Inputs {
  AttentionArgs args;
  Buffer qkv, q_buf, k_buf, v_buf, lengths;
  Tensor q, k, v;

  Inputs(const Problem& p, uint64_t seed) : lengths(DType::i32, {p.B}) {
    args.heads = p.H;
    args.head_dim = p.dk;
    args.causal = p.causal;
    args.dropout = DropoutSpec{p.dropout, 1234 + seed, 1000 * seed + 7};
    const int64_t D = p.D();
    if (p.fused) {
      qkv = testing::random_buffer<T>({p.B, p.Tq, 3 * D}, seed, -2.0, 2.0);
      q = k = v = qkv.tensor();
      args.q_col = 0, args.k_col = D, args.v_col = 2 * D;
    } else {
      q_buf = testing::random_buffer<T>({p.B, p.Tq, D + 5}, seed, -2.0, 2.0);
      k_buf = testing::random_buffer<T>({p.B, p.Tk, D + 1}, seed + 1, -2.0, 2.0);
      v_buf = testing::random_buffer<T>({p.B, p.Tk, D + 2}, seed + 2, -2.0, 2.0);
      q = q_buf, k = k_buf, v = v_buf;
      args.q_col = 3, args.k_col = 1, args.v_col = 0;
    }
    std::copy(p.lengths.begin(), p.lengths.end(), lengths.as<int32_t>());
  }
};

template <class T>
double at(const Tensor& t, int64_t b, int64_t i, int64_t col) {
  return double(t.as<T>()[(b * t.dim(1) + i) * t.dim(2) + col]);
}

// The definition, in double: out [B, Tq, D] and lse [B, H, Tq].
template <class T>
void naive_attention(const Problem& p, const AttentionArgs& a, const Tensor& q, const Tensor& k,
                     const Tensor& v, Buffer& out, Buffer& lse) {
  const int64_t D = p.D();
  out = Buffer(DType::f64, {p.B, p.Tq, D});
  lse = Buffer(DType::f64, {p.B, p.H, p.Tq});
  const double scale = 1.0 / std::sqrt(double(p.dk));
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> score(size_t(p.Tk)), prob(size_t(p.Tk));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.Tq; ++i) {
        for (int64_t j = 0; j < p.Tk; ++j) {
          bool visible = j < p.lengths[size_t(b)] && (!p.causal || j <= i);
          double s = 0;
          for (int64_t c = 0; c < p.dk; ++c)
            s += at<T>(q, b, i, a.q_col + h * p.dk + c) * at<T>(k, b, j, a.k_col + h * p.dk + c);
          score[size_t(j)] = visible ? s * scale : -inf;
        }
        double mx = -inf, sum = 0;
        for (double s : score) mx = std::max(mx, s);
        for (double s : score) sum += std::exp(s - mx);
        double row_lse = mx + std::log(sum);
        lse.as<double>()[(b * p.H + h) * p.Tq + i] = row_lse;
        for (int64_t j = 0; j < p.Tk; ++j) {
          double pr = std::exp(score[size_t(j)] - row_lse);
          if (a.dropout.active()) {
            uint64_t e = uint64_t(((b * p.H + h) * p.Tq + i) * p.Tk + j);
            pr = dropout_keep(a.dropout, e) ? pr / (1.0 - double(a.dropout.p)) : 0.0;
          }
          prob[size_t(j)] = pr;
        }
        for (int64_t c = 0; c < p.dk; ++c) {
          double o = 0;
          for (int64_t j = 0; j < p.Tk; ++j)
            o += prob[size_t(j)] * at<T>(v, b, j, a.v_col + h * p.dk + c);
          out.as<double>()[(b * p.Tq + i) * D + h * p.dk + c] = o;
        }
      }
}

// The forward sweep of the brief: odd shapes, causal where Tq == Tk, varied key lengths,
// dropout on every other case, separate tensors and the fused buffer.
std::vector<Problem> forward_sweep() {
  std::vector<Problem> cases;
  std::mt19937 rng(5);
  const int64_t sizes[] = {1, 5, 17, 33};
  for (int64_t B : {1, 3})
    for (int64_t Tq : sizes)
      for (int64_t Tk : sizes)
        for (int64_t H : {1, 3})
          for (int64_t dk : {4, 7})
            for (int fused = 0; fused < 2; ++fused)
              for (int causal = 0; causal < 2; ++causal) {
                if ((fused || causal) && Tq != Tk) continue;
                Problem p{B, Tq, Tk, H, dk, bool(causal), bool(fused), 0.0f, {}};
                p.dropout = cases.size() % 2 ? 0.25f : 0.0f;
                for (int64_t b = 0; b < B; ++b)
                  p.lengths.push_back(int32_t(1 + rng() % uint32_t(Tk)));
                if (cases.size() % 3 == 0) p.lengths[0] = int32_t(Tk);  // some unpadded rows
                cases.push_back(p);
              }
  return cases;
}

template <class T>
void check_forward_sweep(double tolerance) {
  // Outputs and lse are O(1) and lse may cross zero: relative error above 1, absolute below.
  const double floor = 1.0;
  Context ctx = testing::cpu_context();
  DType acc = dtype_of<T>();
  uint64_t seed = 1;
  for (const Problem& p : forward_sweep()) {
    Inputs<T> in(p, seed++);
    Buffer out(dtype_of<T>(), {p.B, p.Tq, p.D()}), lse(acc, {p.B, p.H, p.Tq});
    testing::poison(out);
    testing::poison(lse);
    attention_forward(ctx, in.args, in.q, in.k, in.v, in.lengths, out, lse);
    Buffer want_out, want_lse;
    naive_attention<T>(p, in.args, in.q, in.k, in.v, want_out, want_lse);
    ASSERT_LE(testing::max_rel_error(out, want_out, floor), tolerance) << describe(p);
    ASSERT_LE(testing::max_rel_error(lse, want_lse, floor), tolerance) << describe(p);
  }
}

TEST(Attention, ForwardMatchesTheDefinitionInDouble) { check_forward_sweep<double>(1e-12); }
TEST(Attention, ForwardMatchesTheDefinitionInFloat) { check_forward_sweep<float>(1e-5); }

TEST(Attention, DropoutDropsAboutTheRateOfProbabilities) {
  // With every value 1 and one head, out = Σ_j p'_ij; p'_ij = keep/(1 − p)/Tk, so the mean of out
  // over many rows is ≈ 1 and the fraction of rows' kept keys is ≈ 1 − p.
  Context ctx = testing::cpu_context();
  Problem p{4, 64, 64, 1, 1, false, false, 0.0f, {}};
  p.dropout = 0.3f;
  p.lengths.assign(4, 64);
  Inputs<double> in(p, 3);
  std::fill_n(in.k_buf.as<double>(), in.k_buf.numel(), 0.0);  // uniform attention
  std::fill_n(in.v_buf.as<double>(), in.v_buf.numel(), 1.0);
  Buffer out(DType::f64, {4, 64, 1}), lse(DType::f64, {4, 1, 64});
  attention_forward(ctx, in.args, in.q, in.k, in.v, in.lengths, out, lse);
  double kept = 0;
  for (int64_t i = 0; i < out.numel(); ++i) kept += out.as<double>()[i] * (1.0 - 0.3) * 64;
  double kept_fraction = kept / double(out.numel() * 64);
  EXPECT_NEAR(kept_fraction, 0.7, 0.02);
}

// Σ w · out for a fixed random w: a loss whose gradient with respect to out is w.
double linear_functional(const Tensor& out, const Tensor& w) {
  double s = 0;
  for (int64_t i = 0; i < out.numel(); ++i) s += out.as<double>()[i] * w.as<double>()[i];
  return s;
}

void check_gradients(const Problem& p, uint64_t seed) {
  Context ctx = testing::cpu_context();
  Inputs<double> in(p, seed);
  Buffer out(DType::f64, {p.B, p.Tq, p.D()}), lse(DType::f64, {p.B, p.H, p.Tq});
  Buffer w = testing::random_buffer<double>({p.B, p.Tq, p.D()}, seed + 100);
  auto loss = [&] {
    attention_forward(ctx, in.args, in.q, in.k, in.v, in.lengths, out, lse);
    return linear_functional(out, w);
  };
  loss();
  // Gradients start at zero: columns outside the heads are never written, and the numeric
  // gradient there is zero too, so whole buffers compare.
  Buffer dq_buf(DType::f64, {in.q.dim(0), in.q.dim(1), in.q.dim(2)});
  Buffer dk_buf(DType::f64, {in.k.dim(0), in.k.dim(1), in.k.dim(2)});
  Buffer dv_buf(DType::f64, {in.v.dim(0), in.v.dim(1), in.v.dim(2)});
  Tensor dq = dq_buf, dk = p.fused ? dq : dk_buf.tensor(), dv = p.fused ? dq : dv_buf.tensor();
  attention_backward(ctx, in.args, in.q, in.k, in.v, in.lengths, out, lse, w, dq, dk, dv);

  // Step 1e-5: the loss sums hundreds of O(1) terms, so with the default 1e-6 rounding in the
  // loss (~1e-14) divided by h already reaches ~1e-6 of a gradient; at 1e-5 truncation (∝ h²)
  // and rounding both stay near 1e-7 (measured on the 3×17×17 case: 2e-7; at 1e-6: 2e-6).
  const double h = 1e-5, tolerance = 1e-6, floor = 1e-3;
  auto numeric = [&](const Tensor& x) { return testing::numeric_gradient(x, loss, h); };
  if (p.fused) {
    EXPECT_LE(testing::gradient_error(dq, numeric(in.qkv), floor), tolerance)
        << "d qkv, " << describe(p);
  } else {
    EXPECT_LE(testing::gradient_error(dq, numeric(in.q), floor), tolerance) << "dq, " << describe(p);
    EXPECT_LE(testing::gradient_error(dk, numeric(in.k), floor), tolerance) << "dk, " << describe(p);
    EXPECT_LE(testing::gradient_error(dv, numeric(in.v), floor), tolerance) << "dv, " << describe(p);
  }
}

TEST(Attention, GradientsOfFusedQkvMatchFiniteDifferences) {
  uint64_t seed = 10;
  for (bool causal : {false, true})
    for (float dropout : {0.0f, 0.3f}) {
      check_gradients(Problem{2, 5, 5, 2, 3, causal, true, dropout, {5, 3}}, seed++);
      check_gradients(Problem{1, 1, 1, 3, 4, causal, true, dropout, {1}}, seed++);
    }
  // One larger case with everything on (each of its 1836 inputs costs two forward passes).
  check_gradients(Problem{3, 17, 17, 3, 4, true, true, 0.3f, {17, 1, 9}}, seed++);
}

TEST(Attention, GradientsOfSeparateQKVMatchFiniteDifferences) {
  uint64_t seed = 40;
  for (float dropout : {0.0f, 0.3f}) {
    check_gradients(Problem{2, 4, 6, 3, 2, false, false, dropout, {6, 2}}, seed++);
    check_gradients(Problem{3, 5, 17, 2, 7, false, false, dropout, {17, 4, 1}}, seed++);
    check_gradients(Problem{1, 17, 5, 1, 4, false, false, dropout, {5}}, seed++);
    check_gradients(Problem{2, 7, 7, 2, 3, true, false, dropout, {7, 5}}, seed++);
  }
}

// Runs forward and backward; returns out, lse and the gradient buffers (poisoned first).
template <class T>
struct Results {
  Buffer out, lse, dq, dk, dv;
};

template <class T>
Results<T> run_both(const Problem& p, Inputs<T>& in, const Buffer& dout,
                    Arena* workspace = nullptr) {
  Context ctx = testing::cpu_context();
  ctx.workspace = workspace;
  Results<T> r;
  r.out = Buffer(dtype_of<T>(), {p.B, p.Tq, p.D()});
  r.lse = Buffer(dtype_of<T>(), {p.B, p.H, p.Tq});
  r.dq = Buffer(dtype_of<T>(), {in.q.dim(0), in.q.dim(1), in.q.dim(2)});
  r.dk = Buffer(dtype_of<T>(), {in.k.dim(0), in.k.dim(1), in.k.dim(2)});
  r.dv = Buffer(dtype_of<T>(), {in.v.dim(0), in.v.dim(1), in.v.dim(2)});
  for (const Buffer* b : {&r.out, &r.lse, &r.dq, &r.dk, &r.dv}) testing::poison(*b);
  Tensor dk = p.fused ? r.dq.tensor() : r.dk.tensor(), dv = p.fused ? r.dq.tensor() : r.dv.tensor();
  attention_forward(ctx, in.args, in.q, in.k, in.v, in.lengths, r.out, r.lse);
  attention_backward(ctx, in.args, in.q, in.k, in.v, in.lengths, r.out, r.lse, dout, r.dq, dk, dv);
  return r;
}

// Columns [c0, c0 + w) of a [B, T, W] buffer as a new [B, T, w] buffer.
template <class T>
Buffer columns(const Tensor& x, int64_t c0, int64_t w) {
  const int64_t rows = x.dim(0) * x.dim(1), W = x.dim(2);
  Buffer out(x.dtype, {x.dim(0), x.dim(1), w});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < w; ++c) out.as<T>()[r * w + c] = x.as<T>()[r * W + c0 + c];
  return out;
}

// Tensor parallelism: a rank holding heads [h0, h0 + Hl) of p.H (q, k, v holding just those
// heads' columns) with the spec dropout_column_block(spec, Hl·Tq·Tk, H·Tq·Tk, h0·Tq·Tk) computes
// exactly those heads of the unsharded call: out, lse, dq, dk, dv. Dropout is on, so a mask
// drawn at the wrong elements would show; the unmapped spec is checked to differ.
template <class T>
void check_head_block(const Problem& p, int64_t h0, int64_t Hl, uint64_t seed, double tol) {
  SCOPED_TRACE(cat(describe(p), " heads [", h0, ", ", h0 + Hl, ")"));
  Inputs<T> full(p, seed);
  Buffer dout = testing::random_buffer<T>({p.B, p.Tq, p.D()}, seed + 50);
  Results<T> want = run_both(p, full, dout);

  const int64_t dk = p.dk, Dl = Hl * dk, hq = p.Tq * p.Tk;
  Problem pl = p;
  pl.H = Hl;
  pl.fused = false;
  Buffer q = columns<T>(full.q, full.args.q_col + h0 * dk, Dl);
  Buffer k = columns<T>(full.k, full.args.k_col + h0 * dk, Dl);
  Buffer v = columns<T>(full.v, full.args.v_col + h0 * dk, Dl);
  Buffer doutl = columns<T>(dout, h0 * dk, Dl);
  AttentionArgs args = full.args;
  args.heads = Hl;
  args.q_col = args.k_col = args.v_col = 0;
  args.dropout = dropout_column_block(full.args.dropout, Hl * hq, p.H * hq, h0 * hq);

  Context ctx = testing::cpu_context();
  Buffer out(dtype_of<T>(), {p.B, p.Tq, Dl}), lse(dtype_of<T>(), {p.B, Hl, p.Tq});
  Buffer dq(dtype_of<T>(), {p.B, p.Tq, Dl}), dkb(dtype_of<T>(), {p.B, p.Tk, Dl});
  Buffer dv(dtype_of<T>(), {p.B, p.Tk, Dl});
  for (const Buffer* b : {&out, &lse, &dq, &dkb, &dv}) testing::poison(*b);
  attention_forward(ctx, args, q, k, v, full.lengths, out, lse);
  attention_backward(ctx, args, q, k, v, full.lengths, out, lse, doutl, dq, dkb, dv);

  auto expect_columns_equal = [&](const Buffer& got, const Tensor& whole, int64_t col,
                                  const char* name) {
    Buffer w = columns<T>(whole, col, Dl);
    EXPECT_LE(testing::max_rel_error(got, w, 1.0), tol) << name;
  };
  expect_columns_equal(out, want.out, h0 * dk, "out");
  const Tensor& wdq = want.dq;
  const Tensor& wdk = p.fused ? want.dq.tensor() : want.dk.tensor();
  const Tensor& wdv = p.fused ? want.dq.tensor() : want.dv.tensor();
  expect_columns_equal(dq, wdq, full.args.q_col + h0 * dk, "dq");
  expect_columns_equal(dkb, wdk, full.args.k_col + h0 * dk, "dk");
  expect_columns_equal(dv, wdv, full.args.v_col + h0 * dk, "dv");
  double lse_err = 0;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < Hl; ++h)
      for (int64_t i = 0; i < p.Tq; ++i)
        lse_err = std::max(lse_err, std::abs(double(lse.as<T>()[(b * Hl + h) * p.Tq + i]) -
                                             double(want.lse.template as<T>()[(b * p.H + h0 + h) * p.Tq + i])));
  EXPECT_LE(lse_err, tol) << "lse";

  // The premise: without the block mapping a shard not starting at head 0 draws another mask.
  if (h0 > 0 && Hl < p.H) {
    AttentionArgs unmapped = args;
    unmapped.dropout = full.args.dropout;
    Buffer out2(dtype_of<T>(), {p.B, p.Tq, Dl}), lse2(dtype_of<T>(), {p.B, Hl, p.Tq});
    attention_forward(ctx, unmapped, q, k, v, full.lengths, out2, lse2);
    EXPECT_GT(testing::max_rel_error(out2, out, 1.0), 1e-3) << "unmapped spec drew the same mask";
  }
}

TEST(Attention, HeadBlockWithDropoutEqualsThoseHeadsOfTheFullCall) {
  uint64_t seed = 70;
  // Self-attention (fused, causal and not, padding) and cross-attention with padding; odd Tk so
  // rows cut Philox groups; every split of 5 heads over 2 and 3 ranks (uneven blocks too).
  const Problem cases[] = {Problem{2, 7, 7, 5, 3, true, true, 0.3f, {7, 4}},
                           Problem{2, 7, 7, 5, 3, false, true, 0.3f, {5, 7}},
                           Problem{3, 5, 9, 5, 4, false, false, 0.5f, {9, 2, 6}}};
  for (const Problem& p : cases)
    for (auto [h0, Hl] : {std::pair<int64_t, int64_t>{0, 3}, {3, 2}, {0, 2}, {2, 2}, {4, 1},
                          {1, 4}, {0, 5}}) {
      check_head_block<double>(p, h0, Hl, seed, 1e-12);
      check_head_block<float>(p, h0, Hl, seed, 1e-5);
      ++seed;
    }
}

TEST(Attention, RejectsAHeadBlockThatIsNotWholeRows) {
  Context ctx = testing::cpu_context();
  Problem p{1, 4, 6, 2, 3, false, false, 0.1f, {6}};
  Inputs<double> in(p, 61);
  Buffer out(DType::f64, {p.B, p.Tq, p.D()}), lse(DType::f64, {p.B, p.H, p.Tq});
  AttentionArgs a = in.args;
  a.dropout = dropout_column_block(a.dropout, 2 * 4 * 6 - 3, 3 * 4 * 6, 5);
  EXPECT_THROW(attention_forward(ctx, a, in.q, in.k, in.v, in.lengths, out, lse), Error);
}

TEST(Attention, BackwardWritesExactlyTheHeadColumns) {
  // Separate tensors with extra columns: poison stays outside the heads and is overwritten
  // inside; rows of padding keys get exact zeros.
  Problem p{3, 5, 9, 2, 3, false, false, 0.2f, {9, 4, 1}};
  Inputs<double> in(p, 7);
  Buffer dout = testing::random_buffer<double>({p.B, p.Tq, p.D()}, 8);
  Results<double> r = run_both(p, in, dout);
  auto check = [&](const Buffer& g, int64_t col, bool key_side, const char* name) {
    for (int64_t b = 0; b < g.tensor().dim(0); ++b)
      for (int64_t i = 0; i < g.tensor().dim(1); ++i)
        for (int64_t c = 0; c < g.tensor().dim(2); ++c) {
          double x = at<double>(g, b, i, c);
          bool head = c >= col && c < col + p.D();
          if (!head) {
            ASSERT_TRUE(std::isnan(x)) << name << " column " << c << " outside the heads was written";
          } else if (key_side && i >= p.lengths[size_t(b)]) {
            ASSERT_EQ(x, 0.0) << name << " row " << i << " of padding key, batch " << b;
          } else {
            ASSERT_TRUE(std::isfinite(x)) << name << " [" << b << ", " << i << ", " << c << "] not written";
          }
        }
  };
  check(r.dq, in.args.q_col, false, "dq");
  check(r.dk, in.args.k_col, true, "dk");
  check(r.dv, in.args.v_col, true, "dv");

  // Fused: every column is some head's, so a poisoned dQKV comes back entirely finite.
  Problem f{2, 6, 6, 3, 2, true, true, 0.2f, {6, 2}};
  Inputs<double> fin(f, 9);
  Buffer fdout = testing::random_buffer<double>({f.B, f.Tq, f.D()}, 10);
  Results<double> fr = run_both(f, fin, fdout);
  for (int64_t i = 0; i < fr.dq.numel(); ++i)
    ASSERT_TRUE(std::isfinite(fr.dq.as<double>()[i])) << "dqkv element " << i;
}

TEST(Attention, FloatAgreesWithDouble) {
  for (const Problem& p : {Problem{2, 17, 17, 3, 7, true, true, 0.1f, {17, 6}},
                           Problem{3, 5, 33, 2, 4, false, false, 0.0f, {33, 1, 20}}}) {
    Inputs<double> ind(p, 21);
    Inputs<float> inf(p, 21);
    // Same values in both precisions (the double inputs rounded to float).
    auto round_trip = [](const Tensor& d, const Tensor& f) {
      for (int64_t i = 0; i < d.numel(); ++i) {
        f.as<float>()[i] = float(d.as<double>()[i]);
        d.as<double>()[i] = double(f.as<float>()[i]);
      }
    };
    if (p.fused) {
      round_trip(ind.qkv, inf.qkv);
    } else {
      round_trip(ind.q, inf.q);
      round_trip(ind.k, inf.k);
      round_trip(ind.v, inf.v);
    }
    Buffer doutd = testing::random_buffer<double>({p.B, p.Tq, p.D()}, 22);
    Buffer doutf = testing::random_buffer<float>({p.B, p.Tq, p.D()}, 22);
    round_trip(doutd, doutf);
    Results<double> rd = run_both(p, ind, doutd);
    Results<float> rf = run_both(p, inf, doutf);
    // Values are O(1): relative error above 1, absolute below (floor 1).
    EXPECT_LE(testing::max_rel_error(rf.out, rd.out, 1.0), 2e-5) << describe(p);
    EXPECT_LE(testing::max_rel_error(rf.lse, rd.lse, 1.0), 2e-5) << describe(p);
    // Gradients: the head columns (the others hold the poison in both).
    for (auto [gf, gd, col, name] :
         {std::tuple{&rf.dq, &rd.dq, inf.args.q_col, "dq"},
          std::tuple{p.fused ? &rf.dq : &rf.dk, p.fused ? &rd.dq : &rd.dk, inf.args.k_col, "dk"},
          std::tuple{p.fused ? &rf.dq : &rf.dv, p.fused ? &rd.dq : &rd.dv, inf.args.v_col, "dv"}})
      for (int64_t b = 0; b < gd->tensor().dim(0); ++b)
        for (int64_t j = 0; j < gd->tensor().dim(1); ++j)
          for (int64_t c = col; c < col + p.D(); ++c) {
            double f = at<float>(*gf, b, j, c), d = at<double>(*gd, b, j, c);
            ASSERT_NEAR(f, d, 2e-5 * std::max(1.0, std::abs(d)))
                << name << " [" << b << ", " << j << ", " << c << "] " << describe(p);
          }
  }
}

// max_rel_error treats NaN == NaN as an error; bitwise equality treats it as equal.
bool bitwise_equal(const Buffer& a, const Buffer& b) {
  return a.tensor().bytes() == b.tensor().bytes() &&
         std::memcmp(a.tensor().data, b.tensor().data, a.tensor().bytes()) == 0;
}

TEST(Attention, ResultsDoNotDependOnTheThreadCount) {
  const int saved = omp_get_max_threads();
  // Large enough that the twin forks a team (small calls run on one thread).
  for (const Problem& p : {Problem{4, 33, 33, 3, 7, true, true, 0.2f, {33, 3, 11, 30}},
                           Problem{3, 17, 65, 3, 8, false, false, 0.1f, {65, 1, 20}}}) {
    Inputs<float> in(p, 31);
    Buffer dout = testing::random_buffer<float>({p.B, p.Tq, p.D()}, 32);
    Arena arena_one(Device::cpu), arena_two(Device::cpu);
    omp_set_num_threads(1);
    Results<float> one = run_both(p, in, dout, &arena_one);
    omp_set_num_threads(2);
    Results<float> two = run_both(p, in, dout, &arena_two);
    omp_set_num_threads(saved);
    // The premise: with two threads the work really was split (one scratch slot per thread).
    EXPECT_GT(arena_two.high_water(), arena_one.high_water()) << describe(p);
    EXPECT_TRUE(bitwise_equal(one.out, two.out)) << describe(p);
    EXPECT_TRUE(bitwise_equal(one.lse, two.lse)) << describe(p);
    EXPECT_TRUE(bitwise_equal(one.dq, two.dq)) << describe(p);
    EXPECT_TRUE(bitwise_equal(one.dk, two.dk)) << describe(p);
    EXPECT_TRUE(bitwise_equal(one.dv, two.dv)) << describe(p);
  }
}

TEST(Attention, UsesTheWorkspaceArenaWhenGiven) {
  Problem p{2, 5, 7, 2, 3, false, false, 0.0f, {7, 3}};
  Inputs<double> in(p, 41);
  Arena arena(Device::cpu, 1 << 16);
  Context ctx = testing::cpu_context();
  ctx.workspace = &arena;
  Buffer out(DType::f64, {p.B, p.Tq, p.D()}), lse(DType::f64, {p.B, p.H, p.Tq});
  attention_forward(ctx, in.args, in.q, in.k, in.v, in.lengths, out, lse);
  EXPECT_GT(arena.high_water(), 0u);
  Buffer want_out, want_lse;
  naive_attention<double>(p, in.args, in.q, in.k, in.v, want_out, want_lse);
  EXPECT_LE(testing::max_rel_error(out, want_out), 1e-12);
}

// Expects fn to throw tfm::Error whose message contains `needle`.
template <class F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Attention, RejectsBadArguments) {
  Context ctx = testing::cpu_context();
  Problem p{2, 4, 6, 2, 3, false, false, 0.0f, {6, 2}};
  Inputs<double> in(p, 51);
  Buffer out(DType::f64, {2, 4, 6}), lse(DType::f64, {2, 2, 4});
  auto fwd = [&](const AttentionArgs& a) {
    return [&, a] { attention_forward(ctx, a, in.q, in.k, in.v, in.lengths, out, lse); };
  };
  AttentionArgs causal = in.args;
  causal.causal = true;
  expect_error(fwd(causal), "causal");
  AttentionArgs wide = in.args;
  wide.q_col = 6;  // 6 + 6 > D + 5
  expect_error(fwd(wide), "q columns");
  AttentionArgs no_heads = in.args;
  no_heads.head_dim = 0;
  expect_error(fwd(no_heads), "head_dim");
  AttentionArgs full_dropout = in.args;
  full_dropout.dropout.p = 1.0f;
  expect_error(fwd(full_dropout), "dropout");

  in.lengths.as<int32_t>()[1] = 0;
  expect_error(fwd(in.args), "key_lengths[1] = 0");
  in.lengths.as<int32_t>()[1] = 7;
  expect_error(fwd(in.args), "key_lengths[1] = 7");
  in.lengths.as<int32_t>()[1] = 2;

  Buffer bad_out(DType::f64, {2, 4, 5}), float_lse(DType::f32, {2, 2, 4});
  expect_error([&] { attention_forward(ctx, in.args, in.q, in.k, in.v, in.lengths, bad_out, lse); },
               "out has shape");
  expect_error([&] { attention_forward(ctx, in.args, in.q, in.k, in.v, in.lengths, out, float_lse); },
               "lse is f32");
  Buffer float_k(DType::f32, {2, 6, 7});
  expect_error([&] { attention_forward(ctx, in.args, in.q, float_k, in.v, in.lengths, out, lse); },
               "k is f32");
  Buffer i64_lengths(DType::i64, {2});
  expect_error([&] { attention_forward(ctx, in.args, in.q, in.k, in.v, i64_lengths, out, lse); },
               "key_lengths is i64");
  Context cuda = ctx;
  cuda.device = Device::cuda;
  expect_error([&] { attention_forward(cuda, in.args, in.q, in.k, in.v, in.lengths, out, lse); },
               "cpu but the context runs on cuda");

  // Backward: one buffer for dq and dk with overlapping column blocks cannot be written with =.
  Problem f{1, 4, 4, 2, 2, false, true, 0.0f, {4}};
  Inputs<double> fin(f, 52);
  Buffer fout(DType::f64, {1, 4, 4}), flse(DType::f64, {1, 2, 4}), dqkv(DType::f64, {1, 4, 12});
  attention_forward(ctx, fin.args, fin.q, fin.k, fin.v, fin.lengths, fout, flse);
  AttentionArgs overlapping = fin.args;
  overlapping.k_col = 2;
  expect_error([&] {
    attention_backward(ctx, overlapping, fin.q, fin.k, fin.v, fin.lengths, fout, flse, fout, dqkv,
                       dqkv, dqkv);
  }, "dq and dk");
  Buffer small_dq(DType::f64, {1, 4, 4});
  expect_error([&] {
    attention_backward(ctx, fin.args, fin.q, fin.k, fin.v, fin.lengths, fout, flse, fout, small_dq,
                       dqkv, dqkv);
  }, "dq has shape");
}

}  // namespace
}  // namespace tfm
