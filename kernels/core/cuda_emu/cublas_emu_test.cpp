// Tests of the CPU emulation of cuBLASLt / cuBLAS (cublas_emu.cpp) and of
// cub::DeviceRadixSort::SortPairs (include/cub/device/device_radix_sort.cuh) on small problems,
// against naive loops written here, so that the semantics the emulated GPU code relies on are
// pinned down. References (NVIDIA cuBLAS user guide, https://docs.nvidia.com/cuda/cublas/):
//   [Lt]      #cublasltmatmul                      D = alpha·op(A)·op(B) + beta·C, column-major,
//                                                  in-place rules, beta = 0 does not read C
//   [Layout]  #cublasltmatrixlayoutattribute-t     ld ≥ rows for CUBLASLT_ORDER_COL, batch count
//            (cublasLtMatrixLayoutAttribute_t)     and strided batch offset (elements)
//   [Desc]    #cublasltmatmuldescattributes-t      TRANSA/TRANSB, EPILOGUE, BIAS_POINTER,
//                                                  BIAS_DATA_TYPE (default: D's type)
//   [Epi]     #cublasltepilogue-t                  BIAS: length rows(D), broadcast over columns,
//                                                  added before the activation; RELU: max(x, 0);
//                                                  BGRADA: length rows(D), BGRADB: length
//                                                  columns(D), "reduction over the GEMM's k"
//   [Pref]    #cublasltmatmulpreferenceattributes-t  MIN_ALIGNMENT_*_BYTES, default 256
//   [Gemm]    #cublas-t-gemm, #cublasgemmex        classic GEMM, lda ≥ max(1, rows), beta = 0
// and CUB: https://nvidia.github.io/cccl/cub/api/structcub_1_1DeviceRadixSort.html (SortPairs:
// stable, ascending, key bits [begin_bit, end_bit), size query with d_temp_storage = nullptr).
#include <gtest/gtest.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cub/device/device_radix_sort.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace {

// ---- host matrices of a cuBLAS data type ------------------------------------------------------

size_t esize(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

double get(cudaDataType t, const void* p, int64_t i) {
  if (t == CUDA_R_32F) return static_cast<const float*>(p)[i];
  if (t == CUDA_R_16BF) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return __half2float(static_cast<const __half*>(p)[i]);
}
// Stores v rounded to float, then (nearest even) to t.
void put(cudaDataType t, void* p, int64_t i, double v) {
  float f = float(v);
  if (t == CUDA_R_32F) static_cast<float*>(p)[i] = f;
  else if (t == CUDA_R_16BF) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(f);
  else static_cast<__half*>(p)[i] = __float2half_rn(f);
}

// A column-major matrix rows×cols with leading dimension ld (the storage holds ld·cols elements,
// plus `offset` elements before the matrix), filled with deterministic values.
struct Mat {
  cudaDataType t;
  int64_t rows, cols, ld, offset;
  std::vector<unsigned char> bytes;
  Mat(cudaDataType type, int64_t r, int64_t c, int64_t l, int seed, int64_t off = 0)
      : t(type), rows(r), cols(c), ld(l), offset(off),
        bytes(size_t((off + l * (c > 0 ? c : 1)) * int64_t(esize(type))) + 64) {
    for (int64_t i = 0; i < off + l * c; ++i)
      put(t, raw(), i, double(((i * 7 + seed * 13) % 17) - 8) / 4.0 + double(seed) / 64.0);
  }
  void* raw() { return bytes.data(); }
  void* data() { return bytes.data() + offset * int64_t(esize(t)); }
  double at(int64_t r, int64_t c) { return get(t, data(), r + c * ld); }
  void set(int64_t r, int64_t c, double v) { put(t, data(), r + c * ld, v); }
};

// op(X)[r, c] with X stored column-major.
double op_at(Mat& x, bool trans, int64_t r, int64_t c) { return trans ? x.at(c, r) : x.at(r, c); }

// ---- one cuBLASLt matmul, set up as gemm_cuda.cu sets it up -----------------------------------

struct LtCase {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cudaDataType ab = CUDA_R_32F, cd = CUDA_R_32F;
  float alpha = 1.0f, beta = 0.0f;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int32_t bias_type = -1;  // -1: leave CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE unset
  // MIN_ALIGNMENT preferences: -1 each pointer's own alignment (as gemm_cuda.cu tells the
  // heuristic), 0 the default (256 bytes), otherwise this many bytes for all four.
  int align = -1;
};

uint32_t alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a >>= 1;
  return a;
}

struct Lt {
  cublasLtHandle_t h = nullptr;
  Lt() { EXPECT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS); }
  ~Lt() { cublasLtDestroy(h); }

  // D (= C, in place) = epilogue(alpha·op(A)·op(B) + beta·C).
  cublasStatus_t matmul(const LtCase& c, Mat& a, Mat& b, Mat& d, int* algos = nullptr,
                        size_t* workspace = nullptr) {
    cublasLtMatmulDescOpaque_t op{};
    cublasLtMatrixLayoutOpaque_t la{}, lb{}, ld{};
    cublasStatus_t st;
    if ((st = cublasLtMatmulDescInit(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F))) return st;
    if ((st = cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_TRANSA, &c.ta, sizeof c.ta)))
      return st;
    if ((st = cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_TRANSB, &c.tb, sizeof c.tb)))
      return st;
    if ((st = cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_EPILOGUE, &c.epilogue,
                                             sizeof c.epilogue)))
      return st;
    if (c.bias &&
        (st = cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &c.bias,
                                             sizeof c.bias)))
      return st;
    if (c.bias_type != -1 &&
        (st = cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                             &c.bias_type, sizeof c.bias_type)))
      return st;
    if ((st = cublasLtMatrixLayoutInit(&la, a.t, uint64_t(a.rows), uint64_t(a.cols), a.ld)))
      return st;
    if ((st = cublasLtMatrixLayoutInit(&lb, b.t, uint64_t(b.rows), uint64_t(b.cols), b.ld)))
      return st;
    if ((st = cublasLtMatrixLayoutInit(&ld, d.t, uint64_t(d.rows), uint64_t(d.cols), d.ld)))
      return st;
    cublasLtMatmulPreferenceOpaque_t pref{};
    if ((st = cublasLtMatmulPreferenceInit(&pref))) return st;
    size_t ws = size_t(32) << 20;
    if ((st = cublasLtMatmulPreferenceSetAttribute(&pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                   &ws, sizeof ws)))
      return st;
    if (c.align != 0) {
      const void* ptrs[] = {a.data(), b.data(), d.data(), d.data()};
      const cublasLtMatmulPreferenceAttributes_t attrs[] = {
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
      for (int i = 0; i < 4; ++i) {
        uint32_t v = c.align < 0 ? alignment_of(ptrs[i]) : uint32_t(c.align);
        if ((st = cublasLtMatmulPreferenceSetAttribute(&pref, attrs[i], &v, sizeof v))) return st;
      }
    }
    cublasLtMatmulHeuristicResult_t result{};
    int returned = -1;
    st = cublasLtMatmulAlgoGetHeuristic(h, &op, &la, &lb, &ld, &ld, &pref, 1, &result, &returned);
    if (algos) *algos = returned;
    if (st) return st;
    if (returned != 1 || result.state != CUBLAS_STATUS_SUCCESS) return CUBLAS_STATUS_INTERNAL_ERROR;
    if (workspace) *workspace = result.workspaceSize;
    return cublasLtMatmul(h, &op, &c.alpha, a.data(), &la, b.data(), &lb, &c.beta, d.data(), &ld,
                          d.data(), &ld, &result.algo, nullptr, 0, nullptr);
  }
};

// The reference: op(A) m×k · op(B) k×n summed in double in k order, alpha and beta·C and the bias
// in double, the ReLU, then one rounding (float, then D's type). C is read only when beta ≠ 0.
Mat reference(const LtCase& c, Mat& a, Mat& b, Mat d, const void* bias, cudaDataType bias_t,
              bool relu) {
  const bool ta = c.ta == CUBLAS_OP_T, tb = c.tb == CUBLAS_OP_T;
  const int64_t k = ta ? a.rows : a.cols;
  for (int64_t i = 0; i < d.rows; ++i)
    for (int64_t j = 0; j < d.cols; ++j) {
      double s = 0;
      for (int64_t kk = 0; kk < k; ++kk) s += op_at(a, ta, i, kk) * op_at(b, tb, kk, j);
      double v = double(c.alpha) * s;
      if (c.beta != 0) v += double(c.beta) * d.at(i, j);
      if (bias) v += get(bias_t, bias, i);
      if (relu && !(v > 0)) v = 0;
      d.set(i, j, v);
    }
  return d;
}

void expect_same(Mat& got, Mat& want) {
  ASSERT_EQ(got.bytes.size(), want.bytes.size());
  for (int64_t j = 0; j < got.cols; ++j)
    for (int64_t i = 0; i < got.ld; ++i) {  // the rows past `rows` (padding) must be untouched
      double g = got.at(i, j), w = want.at(i, j);
      if (std::isnan(w)) EXPECT_TRUE(std::isnan(g)) << i << "," << j;
      else EXPECT_EQ(g, w) << "element (" << i << ", " << j << ")";
    }
}

struct Types {
  cudaDataType ab, cd;
};
const Types kTypes[] = {{CUDA_R_32F, CUDA_R_32F},
                        {CUDA_R_16BF, CUDA_R_16BF},
                        {CUDA_R_16F, CUDA_R_16F},
                        {CUDA_R_16BF, CUDA_R_32F},
                        {CUDA_R_16F, CUDA_R_32F}};

// [Lt] [Layout] [Desc]: column-major, op(A) with A stored k×m when transposed, padded lds.
TEST(CublasLtEmu, MatchesNaiveLoopsForEveryTransposeAndType) {
  Lt lt;
  const int64_t m = 3, n = 4, k = 5;
  for (const Types& t : kTypes)
    for (int tr = 0; tr < 4; ++tr) {
      LtCase c;
      c.ta = (tr & 1) ? CUBLAS_OP_T : CUBLAS_OP_N;
      c.tb = (tr & 2) ? CUBLAS_OP_T : CUBLAS_OP_N;
      c.ab = t.ab;
      c.cd = t.cd;
      c.alpha = 0.75f;
      c.beta = 0.5f;
      SCOPED_TRACE(testing::Message() << "types " << t.ab << "/" << t.cd << " tr " << tr);
      // A stored m×k (N) or k×m (T); B stored k×n (N) or n×k (T); leading dimensions padded.
      const int64_t ar = c.ta == CUBLAS_OP_T ? k : m, ac = c.ta == CUBLAS_OP_T ? m : k;
      const int64_t br = c.tb == CUBLAS_OP_T ? n : k, bc = c.tb == CUBLAS_OP_T ? k : n;
      Mat a(t.ab, ar, ac, ar + 2, 1), b(t.ab, br, bc, br + 1, 2), d(t.cd, m, n, m + 3, 3);
      Mat want = reference(c, a, b, d, nullptr, t.cd, false);
      ASSERT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
      expect_same(d, want);
    }
}

// [Lt]: "if beta == 0, C does not have to be a valid input" — NaN in C must not leak.
TEST(CublasLtEmu, BetaZeroDoesNotReadC) {
  Lt lt;
  LtCase c;
  Mat a(CUDA_R_32F, 3, 5, 3, 1), b(CUDA_R_32F, 5, 4, 5, 2), d(CUDA_R_32F, 3, 4, 3, 3);
  for (int64_t i = 0; i < 12; ++i) put(CUDA_R_32F, d.data(), i, std::nan(""));
  ASSERT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
  for (int64_t i = 0; i < 12; ++i) EXPECT_FALSE(std::isnan(get(CUDA_R_32F, d.data(), i)));
}

// [Layout]: ld must be ≥ rows for CUBLASLT_ORDER_COL; the shapes of op(A), op(B), D must agree.
TEST(CublasLtEmu, RejectsSmallLeadingDimensionsAndMismatchedShapes) {
  Lt lt;
  LtCase c;
  {
    Mat a(CUDA_R_32F, 3, 5, 2, 1), b(CUDA_R_32F, 5, 4, 5, 2), d(CUDA_R_32F, 3, 4, 3, 3);
    EXPECT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_INVALID_VALUE);  // lda 2 < 3 rows
  }
  {
    Mat a(CUDA_R_32F, 3, 5, 3, 1), b(CUDA_R_32F, 5, 4, 5, 2), d(CUDA_R_32F, 3, 4, 2, 3);
    EXPECT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_INVALID_VALUE);  // ldd 2 < 3 rows
  }
  {
    Mat a(CUDA_R_32F, 3, 5, 3, 1), b(CUDA_R_32F, 6, 4, 6, 2), d(CUDA_R_32F, 3, 4, 3, 3);
    EXPECT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_INVALID_VALUE);  // k 5 vs 6
  }
  {
    c.ta = CUBLAS_OP_T;  // op(A) = Aᵀ is 5×3, D has 3 rows
    Mat a(CUDA_R_32F, 3, 5, 3, 1), b(CUDA_R_32F, 5, 4, 5, 2), d(CUDA_R_32F, 3, 4, 3, 3);
    EXPECT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_INVALID_VALUE);
  }
}

// [Epi] BIAS: length rows(D), broadcast to every column, added before the final post-processing.
// [Desc] BIAS_DATA_TYPE: "bias vector elements are the same type as the elements of output
// matrix (Dtype)" (exceptions: IMMA and FP8 kernels); set explicitly to D's type it is accepted,
// any other type (an f32 bias on a 16-bit D) has no algorithm.
TEST(CublasLtEmu, BiasIsPerRowOfDAndAddedBeforeRelu) {
  Lt lt;
  for (const Types& t : kTypes)
    for (bool explicit_type : {false, true})
      for (uint32_t epi : {uint32_t(CUBLASLT_EPILOGUE_BIAS), uint32_t(CUBLASLT_EPILOGUE_RELU_BIAS)}) {
        const cudaDataType bt = t.cd;
        SCOPED_TRACE(testing::Message() << t.ab << "/" << t.cd << " explicit bias type "
                                        << explicit_type << " epi " << epi);
        Mat a(t.ab, 5, 3, 6, 1), b(t.ab, 4, 5, 4, 2), d(t.cd, 3, 4, 3, 3);  // Aᵀ·Bᵀ
        // Bias values large enough to flip signs, so ReLU-after-bias differs from before.
        Mat bias(bt, 3, 1, 3, 0);
        bias.set(0, 0, 40.0);
        bias.set(1, 0, -40.0);
        bias.set(2, 0, 0.5);
        LtCase c;
        c.ta = CUBLAS_OP_T;
        c.tb = CUBLAS_OP_T;
        c.ab = t.ab;
        c.cd = t.cd;
        c.beta = 1.0f;
        c.epilogue = epi;
        c.bias = bias.data();
        c.bias_type = explicit_type ? int32_t(bt) : -1;
        Mat want = reference(c, a, b, d, bias.data(), bt, epi == CUBLASLT_EPILOGUE_RELU_BIAS);
        ASSERT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
        expect_same(d, want);
        if (t.cd != CUDA_R_32F) {  // an f32 bias on a 16-bit D: not in the documented set
          Mat bias32(CUDA_R_32F, 3, 1, 3, 0);
          c.bias = bias32.data();
          c.bias_type = CUDA_R_32F;
          int algos = -1;
          EXPECT_EQ(lt.matmul(c, a, b, d, &algos), CUBLAS_STATUS_NOT_SUPPORTED);
          EXPECT_EQ(algos, 0);
        }
      }
}

// [Epi] RELU: x := max(x, 0); the GPU's max drops NaN, so NaN → 0.
TEST(CublasLtEmu, ReluClampsNegativesAndNaN) {
  Lt lt;
  Mat a(CUDA_R_32F, 2, 1, 2, 0), b(CUDA_R_32F, 1, 2, 1, 0), d(CUDA_R_32F, 2, 2, 2, 0);
  a.set(0, 0, 1.0);
  a.set(1, 0, std::nan(""));
  b.set(0, 0, 2.0);
  b.set(0, 1, -3.0);
  LtCase c;
  c.epilogue = CUBLASLT_EPILOGUE_RELU;
  ASSERT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(d.at(0, 0), 2.0);
  EXPECT_EQ(d.at(0, 1), 0.0);
  EXPECT_EQ(d.at(1, 0), 0.0);
  EXPECT_EQ(d.at(1, 1), 0.0);
}

// [Epi] BGRADA: bias[i] = Σ_k op(A)[i, k], length rows(D) = m. BGRADB: bias[j] = Σ_k op(B)[k, j],
// length columns(D) = n. D itself is the plain GEMM. Written in the output type.
TEST(CublasLtEmu, BiasGradientsReduceOpAAndOpBOverK) {
  Lt lt;
  const int64_t m = 3, n = 4, k = 5;
  for (const Types& t : kTypes)
    for (int tr = 0; tr < 4; ++tr)
      for (uint32_t epi : {uint32_t(CUBLASLT_EPILOGUE_BGRADA), uint32_t(CUBLASLT_EPILOGUE_BGRADB)}) {
        SCOPED_TRACE(testing::Message() << t.ab << "/" << t.cd << " tr " << tr << " epi " << epi);
        LtCase c;
        c.ta = (tr & 1) ? CUBLAS_OP_T : CUBLAS_OP_N;
        c.tb = (tr & 2) ? CUBLAS_OP_T : CUBLAS_OP_N;
        c.ab = t.ab;
        c.cd = t.cd;
        c.beta = 0.25f;
        c.epilogue = epi;
        const bool ta = c.ta == CUBLAS_OP_T, tb = c.tb == CUBLAS_OP_T;
        Mat a(t.ab, ta ? k : m, ta ? m : k, (ta ? k : m) + 1, 1);
        Mat b(t.ab, tb ? n : k, tb ? k : n, (tb ? n : k) + 2, 2);
        Mat d(t.cd, m, n, m, 3);
        const int64_t len = epi == CUBLASLT_EPILOGUE_BGRADA ? m : n;
        Mat grad(t.cd, len, 1, len, 4);
        c.bias = grad.data();
        Mat want = reference(c, a, b, d, nullptr, t.cd, false);
        ASSERT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
        expect_same(d, want);
        for (int64_t i = 0; i < len; ++i) {
          double s = 0;
          for (int64_t kk = 0; kk < k; ++kk)
            s += epi == CUBLASLT_EPILOGUE_BGRADA ? op_at(a, ta, i, kk) : op_at(b, tb, kk, i);
          Mat one(t.cd, 1, 1, 1, 0);
          one.set(0, 0, s);
          EXPECT_EQ(grad.at(i, 0), one.at(0, 0)) << "bias gradient " << i;
        }
      }
}

// Accumulation in fp32 (or better) with one rounding to bf16 at the end [Lt: "Accumulator and
// value from matrix C are typically converted to scale type before final scaling. Value is then
// converted from scale type to type of matrix D"]. 1 + 2^-8 is a tie between bf16 neighbours 1 and
// 1 + 2^-7 (rounds to even: 1); 1 + 2^-8 + 2^-16 is above the tie (rounds up). Summing in bf16
// step by step would give 1 for both.
TEST(CublasLtEmu, RoundsOnceToBf16NearestEven) {
  Lt lt;
  LtCase c;
  c.ab = c.cd = CUDA_R_16BF;
  for (int k : {2, 3}) {
    Mat a(CUDA_R_16BF, 1, k, 1, 0), b(CUDA_R_16BF, k, 1, k, 0), d(CUDA_R_16BF, 1, 1, 1, 0);
    const double terms[] = {1.0, std::ldexp(1.0, -8), std::ldexp(1.0, -16)};
    for (int i = 0; i < k; ++i) {
      a.set(0, i, 1.0);
      b.set(i, 0, terms[i]);
      ASSERT_EQ(b.at(i, 0), terms[i]);  // exact in bf16
    }
    ASSERT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(d.at(0, 0), k == 2 ? 1.0 : 1.0 + std::ldexp(1.0, -7)) << "k = " << k;
  }
  // f16 the same way: 1 + 2^-11 is the tie between 1 and 1 + 2^-10.
  c.ab = c.cd = CUDA_R_16F;
  Mat a(CUDA_R_16F, 1, 3, 1, 0), b(CUDA_R_16F, 3, 1, 3, 0), d(CUDA_R_16F, 1, 1, 1, 0);
  const double terms[] = {1.0, std::ldexp(1.0, -11), std::ldexp(1.0, -20)};
  for (int i = 0; i < 3; ++i) {
    a.set(0, i, 1.0);
    b.set(i, 0, terms[i]);
  }
  ASSERT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(d.at(0, 0), 1.0 + std::ldexp(1.0, -10));
}

// [Layout] BATCH_COUNT / STRIDED_BATCH_OFFSET (elements between consecutive matrices).
TEST(CublasLtEmu, StridedBatches) {
  Lt lt;
  const int64_t m = 3, n = 2, k = 4, batches = 3;
  const int64_t sa = m * k + 5, sb = k * n + 1, sd = m * n + 2;
  Mat a(CUDA_R_32F, 1, batches * sa, 1, 1), b(CUDA_R_32F, 1, batches * sb, 1, 2);
  Mat d(CUDA_R_32F, 1, batches * sd, 1, 3);
  Mat before = d;
  cublasLtMatmulDescOpaque_t op{};
  ASSERT_EQ(cublasLtMatmulDescInit(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  cublasLtMatrixLayoutOpaque_t la{}, lb{}, ld{};
  ASSERT_EQ(cublasLtMatrixLayoutInit(&la, CUDA_R_32F, m, k, m), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutInit(&lb, CUDA_R_32F, k, n, k), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutInit(&ld, CUDA_R_32F, m, n, m), CUBLAS_STATUS_SUCCESS);
  int32_t count = int32_t(batches);
  for (auto* l : {&la, &lb, &ld})
    ASSERT_EQ(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                               sizeof count),
              CUBLAS_STATUS_SUCCESS);
  for (auto [l, s] : {std::pair{&la, sa}, std::pair{&lb, sb}, std::pair{&ld, sd}})
    ASSERT_EQ(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s,
                                               sizeof s),
              CUBLAS_STATUS_SUCCESS);
  cublasLtHandle_t h = lt.h;
  float alpha = 2.0f, beta = 1.0f;
  ASSERT_EQ(cublasLtMatmul(h, &op, &alpha, a.data(), &la, b.data(), &lb, &beta, d.data(), &ld,
                           d.data(), &ld, nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS);
  const float* A = static_cast<const float*>(a.data());
  const float* B = static_cast<const float*>(b.data());
  const float* D0 = static_cast<const float*>(before.data());
  const float* D = static_cast<const float*>(d.data());
  for (int64_t bt = 0; bt < batches; ++bt)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t kk = 0; kk < k; ++kk) s += double(A[bt * sa + i + kk * m]) * B[bt * sb + kk + j * k];
        EXPECT_EQ(D[bt * sd + i + j * m], float(2.0 * s + D0[bt * sd + i + j * m]));
      }
  // Elements between the batches are not touched.
  for (int64_t bt = 0; bt < batches; ++bt)
    for (int64_t e = m * n; e < sd; ++e) EXPECT_EQ(D[bt * sd + e], D0[bt * sd + e]);
}

// Strictness: what the emulation does not implement answers CUBLAS_STATUS_NOT_SUPPORTED; a wrong
// attribute size answers CUBLAS_STATUS_INVALID_VALUE [Desc: "sizeInBytes doesn't match size of
// internal storage for selected attribute"].
TEST(CublasLtEmu, RefusesWhatItDoesNotImplement) {
  cublasLtMatmulDescOpaque_t op{};
  EXPECT_EQ(cublasLtMatmulDescInit(&op, CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F),
            CUBLAS_STATUS_NOT_SUPPORTED);
  ASSERT_EQ(cublasLtMatmulDescInit(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  uint32_t gelu = CUBLASLT_EPILOGUE_GELU_BIAS;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_EPILOGUE, &gelu, sizeof gelu),
            CUBLAS_STATUS_NOT_SUPPORTED);
  int32_t dev = CUBLASLT_POINTER_MODE_DEVICE;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &dev, sizeof dev),
            CUBLAS_STATUS_NOT_SUPPORTED);
  void* aux = nullptr;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                           sizeof aux),
            CUBLAS_STATUS_NOT_SUPPORTED);
  uint64_t wide = CUBLAS_OP_T;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_TRANSA, &wide, sizeof wide),
            CUBLAS_STATUS_INVALID_VALUE);
  cublasLtMatrixLayoutOpaque_t l{};
  ASSERT_EQ(cublasLtMatrixLayoutInit(&l, CUDA_R_32F, 2, 2, 2), CUBLAS_STATUS_SUCCESS);
  int32_t row = CUBLASLT_ORDER_ROW;
  EXPECT_EQ(cublasLtMatrixLayoutSetAttribute(&l, CUBLASLT_MATRIX_LAYOUT_ORDER, &row, sizeof row),
            CUBLAS_STATUS_NOT_SUPPORTED);
  // f32 inputs with a bf16 output: not in cuBLASLt's type table, no algorithm.
  Lt lt;
  LtCase c;
  c.ab = CUDA_R_32F;
  c.cd = CUDA_R_16BF;
  Mat a(CUDA_R_32F, 2, 2, 2, 1), b(CUDA_R_32F, 2, 2, 2, 2), d(CUDA_R_16BF, 2, 2, 2, 3);
  int algos = -1;
  EXPECT_EQ(lt.matmul(c, a, b, d, &algos), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(algos, 0);
  // A bf16 bias for an f32 output: neither D's type nor f32.
  Mat a16(CUDA_R_16BF, 2, 2, 2, 1), b16(CUDA_R_16BF, 2, 2, 2, 2), d32(CUDA_R_32F, 2, 2, 2, 3);
  Mat bias(CUDA_R_16BF, 2, 1, 2, 4);
  c = LtCase{};
  c.ab = CUDA_R_16BF;
  c.epilogue = CUBLASLT_EPILOGUE_BIAS;
  c.bias = bias.data();
  c.bias_type = CUDA_R_16BF;
  EXPECT_EQ(lt.matmul(c, a16, b16, d32, &algos), CUBLAS_STATUS_NOT_SUPPORTED);
}

// [Pref] the heuristic picks for the alignments it was told (default 256 bytes); the algorithm
// it returns does not run on less-aligned pointers. Told 2 bytes, it runs on 2-byte alignment.
TEST(CublasLtEmu, AlgorithmHonoursThePromisedAlignment) {
  Lt lt;
  LtCase c;
  c.ab = c.cd = CUDA_R_16BF;
  // One element (2 bytes) past a 64-byte boundary at best: never 256-byte aligned.
  Mat a(CUDA_R_16BF, 4, 4, 4, 1, 1), b(CUDA_R_16BF, 4, 4, 4, 2, 1), d(CUDA_R_16BF, 4, 4, 4, 3, 1);
  size_t ws = 1;
  c.align = 0;
  EXPECT_EQ(lt.matmul(c, a, b, d, nullptr, &ws), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(ws, 0u);  // the heuristic itself succeeded, with no workspace
  c.align = 2;
  Mat want = reference(c, a, b, d, nullptr, CUDA_R_16BF, false);
  EXPECT_EQ(lt.matmul(c, a, b, d), CUBLAS_STATUS_SUCCESS);
  expect_same(d, want);
}

// An algorithm chosen for one epilogue / type set does not run another.
TEST(CublasLtEmu, AlgorithmIsTiedToEpilogueAndTypes) {
  Lt lt;
  Mat a(CUDA_R_32F, 2, 2, 2, 1), b(CUDA_R_32F, 2, 2, 2, 2), d(CUDA_R_32F, 2, 2, 2, 3);
  Mat bias(CUDA_R_32F, 2, 1, 2, 4);
  cublasLtMatmulDescOpaque_t plain{}, biased{};
  cublasLtMatrixLayoutOpaque_t l{};
  ASSERT_EQ(cublasLtMatmulDescInit(&plain, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulDescInit(&biased, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
  const void* bp = bias.data();
  ASSERT_EQ(cublasLtMatmulDescSetAttribute(&biased, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulDescSetAttribute(&biased, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutInit(&l, CUDA_R_32F, 2, 2, 2), CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulPreferenceOpaque_t pref{};
  ASSERT_EQ(cublasLtMatmulPreferenceInit(&pref), CUBLAS_STATUS_SUCCESS);
  uint32_t one = 1;
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    ASSERT_EQ(cublasLtMatmulPreferenceSetAttribute(&pref, attr, &one, sizeof one), CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulHeuristicResult_t r{};
  int n = 0;
  ASSERT_EQ(cublasLtMatmulAlgoGetHeuristic(lt.h, &plain, &l, &l, &l, &l, &pref, 1, &r, &n),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(n, 1);
  float alpha = 1, beta = 0;
  EXPECT_EQ(cublasLtMatmul(lt.h, &biased, &alpha, a.data(), &l, b.data(), &l, &beta, d.data(), &l,
                           d.data(), &l, &r.algo, nullptr, 0, nullptr),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasLtMatmul(lt.h, &plain, &alpha, a.data(), &l, b.data(), &l, &beta, d.data(), &l,
                           d.data(), &l, &r.algo, nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS);
  // [Lt] in place needs Cdesc == Ddesc: a C layout with another ld over the same memory is refused.
  cublasLtMatrixLayoutOpaque_t wide{};
  ASSERT_EQ(cublasLtMatrixLayoutInit(&wide, CUDA_R_32F, 2, 2, 3), CUBLAS_STATUS_SUCCESS);
  Mat big(CUDA_R_32F, 3, 2, 3, 5);
  EXPECT_EQ(cublasLtMatmul(lt.h, &plain, &alpha, a.data(), &l, b.data(), &l, &beta, big.data(), &wide,
                           big.data(), &l, nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
}

// gemm_cuda.h's mapping: row-major C [M, N] = op(A) [M, K] · op(B) [K, N] is column-major
// Cᵀ [N, M] = op(B)ᵀ · op(A)ᵀ, cuBLASLt's A = our B, its B = our A; our per-column bias [N] is its
// per-row bias; our Σ_k op(A)[i, k] (length M) is its BGRADB, our Σ_k op(B)[k, j] its BGRADA.
TEST(CublasLtEmu, RowMajorMappingUsedByGemmCuda) {
  Lt lt;
  const int64_t M = 3, N = 4, K = 5;
  for (int tr = 0; tr < 4; ++tr) {
    const bool trans_a = tr & 1, trans_b = tr & 2;
    SCOPED_TRACE(testing::Message() << "trans_a " << trans_a << " trans_b " << trans_b);
    // Our row-major A: [M, K] (or [K, M] when trans_a), row stride lda; B likewise.
    const int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K, lda = a_cols + 1;
    const int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N, ldb = b_cols + 2;
    const int64_t ldc = N + 1;
    std::vector<float> A(size_t(a_rows * lda)), B(size_t(b_rows * ldb)), C(size_t(M * ldc), 0.0f);
    for (size_t i = 0; i < A.size(); ++i) A[i] = float(int(i % 7) - 3);
    for (size_t i = 0; i < B.size(); ++i) B[i] = float(int(i % 5) - 2) * 0.5f;
    std::vector<float> bias(static_cast<size_t>(N)), grad_a(static_cast<size_t>(M), -1.0f),
        grad_b(static_cast<size_t>(N), -1.0f);
    for (int64_t j = 0; j < N; ++j) bias[size_t(j)] = float(j) - 1.5f;
    auto opA = [&](int64_t i, int64_t kk) { return trans_a ? A[size_t(kk * lda + i)] : A[size_t(i * lda + kk)]; };
    auto opB = [&](int64_t kk, int64_t j) { return trans_b ? B[size_t(j * ldb + kk)] : B[size_t(kk * ldb + j)]; };

    // Exactly what gemm_cuda.cu's describe() builds.
    auto run = [&](uint32_t epi, const void* bias_ptr) {
      cublasLtMatmulDescOpaque_t op{};
      cublasLtMatrixLayoutOpaque_t la{}, lb{}, lc{};
      EXPECT_EQ(cublasLtMatmulDescInit(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
      cublasOperation_t ta = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
      cublasOperation_t tb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
      cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
      cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
      cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
      if (bias_ptr)
        cublasLtMatmulDescSetAttribute(&op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr,
                                       sizeof bias_ptr);
      cublasLtMatrixLayoutInit(&la, CUDA_R_32F, uint64_t(trans_b ? K : N), uint64_t(trans_b ? N : K), ldb);
      cublasLtMatrixLayoutInit(&lb, CUDA_R_32F, uint64_t(trans_a ? M : K), uint64_t(trans_a ? K : M), lda);
      cublasLtMatrixLayoutInit(&lc, CUDA_R_32F, uint64_t(N), uint64_t(M), ldc);
      float alpha = 1.0f, beta = 0.0f;
      return cublasLtMatmul(lt.h, &op, &alpha, B.data(), &la, A.data(), &lb, &beta, C.data(), &lc,
                            C.data(), &lc, nullptr, nullptr, 0, nullptr);
    };
    ASSERT_EQ(run(CUBLASLT_EPILOGUE_BIAS, bias.data()), CUBLAS_STATUS_SUCCESS);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t kk = 0; kk < K; ++kk) s += double(opA(i, kk)) * opB(kk, j);
        EXPECT_EQ(C[size_t(i * ldc + j)], float(s + bias[size_t(j)])) << i << "," << j;
      }
    ASSERT_EQ(run(CUBLASLT_EPILOGUE_BGRADB, grad_a.data()), CUBLAS_STATUS_SUCCESS);  // our bgrad_a
    for (int64_t i = 0; i < M; ++i) {
      double s = 0;
      for (int64_t kk = 0; kk < K; ++kk) s += opA(i, kk);
      EXPECT_EQ(grad_a[size_t(i)], float(s)) << "bgrad_a " << i;
    }
    ASSERT_EQ(run(CUBLASLT_EPILOGUE_BGRADA, grad_b.data()), CUBLAS_STATUS_SUCCESS);  // our bgrad_b
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t kk = 0; kk < K; ++kk) s += opB(kk, j);
      EXPECT_EQ(grad_b[size_t(j)], float(s)) << "bgrad_b " << j;
    }
  }
}

// Handles: a destroyed or made-up handle is CUBLAS_STATUS_NOT_INITIALIZED.
TEST(CublasLtEmu, HandlesAreCheckedAfterDestroy) {
  cublasLtHandle_t h = nullptr;
  ASSERT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtDestroy(h), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtDestroy(h), CUBLAS_STATUS_NOT_INITIALIZED);
  cublasHandle_t c = nullptr;
  ASSERT_EQ(cublasCreate(&c), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasDestroy(c), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasSetStream(c, nullptr), CUBLAS_STATUS_NOT_INITIALIZED);
}

// ---- classic cuBLAS ---------------------------------------------------------------------------

// [Gemm]: C = alpha·op(A)·op(B) + beta·C, column-major, lda ≥ max(1, rows of A as stored).
TEST(CublasEmu, GemmExMatchesNaiveLoopsAndChecksArguments) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasSetStream(h, nullptr), CUBLAS_STATUS_SUCCESS);
  const int m = 3, n = 4, k = 5;
  for (const Types& t : kTypes)
    for (int tr = 0; tr < 4; ++tr) {
      LtCase c;
      c.ta = (tr & 1) ? CUBLAS_OP_T : CUBLAS_OP_N;
      c.tb = (tr & 2) ? CUBLAS_OP_T : CUBLAS_OP_N;
      c.alpha = -1.5f;
      c.beta = 2.0f;
      const bool ta = tr & 1, tb = tr & 2;
      Mat a(t.ab, ta ? k : m, ta ? m : k, (ta ? k : m) + 1, 1);
      Mat b(t.ab, tb ? n : k, tb ? k : n, (tb ? n : k) + 1, 2);
      Mat d(t.cd, m, n, m + 1, 3);
      Mat want = reference(c, a, b, d, nullptr, t.cd, false);
      ASSERT_EQ(cublasGemmEx(h, c.ta, c.tb, m, n, k, &c.alpha, a.data(), t.ab, int(a.ld), b.data(),
                             t.ab, int(b.ld), &c.beta, d.data(), t.cd, int(d.ld), CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT),
                CUBLAS_STATUS_SUCCESS);
      expect_same(d, want);
    }
  float one = 1, zero = 0;
  Mat a(CUDA_R_32F, 3, 5, 3, 1), b(CUDA_R_32F, 5, 4, 5, 2), d(CUDA_R_32F, 3, 4, 3, 3);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 4, 5, &one, a.data(), CUDA_R_32F, 2,
                         b.data(), CUDA_R_32F, 5, &zero, d.data(), CUDA_R_32F, 3, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 4, 5, &one, a.data(), CUDA_R_32F, 3,
                         b.data(), CUDA_R_32F, 5, &zero, d.data(), CUDA_R_32F, 2, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);  // ldc < m
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 4, 5, &one, a.data(), CUDA_R_32F, 3,
                         b.data(), CUDA_R_32F, 5, &zero, d.data(), CUDA_R_32F, 3,
                         CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
  // k = 0: C = beta·C; beta = 0 gives exact zeros whatever C held.
  for (int64_t i = 0; i < 12; ++i) put(CUDA_R_32F, d.data(), i, std::nan(""));
  ASSERT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 4, 0, &one, a.data(), CUDA_R_32F, 3,
                         b.data(), CUDA_R_32F, 1, &zero, d.data(), CUDA_R_32F, 3, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(get(CUDA_R_32F, d.data(), i), 0.0);
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
}

// ---- cub::DeviceRadixSort::SortPairs -----------------------------------------------------------

TEST(CubEmu, SortPairsIsStableAndUsesOnlyTheBitRange) {
  std::vector<uint32_t> keys = {5, 3, 5, 1, 3, 0x105, 2, 5};
  std::vector<int32_t> vals = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<uint32_t> ko(keys.size());
  std::vector<int32_t> vo(keys.size());
  size_t bytes = 0;
  ASSERT_EQ(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys.data(), ko.data(), vals.data(),
                                            vo.data(), int(keys.size())),
            cudaSuccess);
  ASSERT_GT(bytes, 0u);
  std::vector<unsigned char> temp(bytes);
  // Bits [0, 8): 0x105 sorts as 5, after the earlier 5s, before the later one (stability).
  ASSERT_EQ(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, keys.data(), ko.data(),
                                            vals.data(), vo.data(), int(keys.size()), 0, 8),
            cudaSuccess);
  EXPECT_EQ(ko, (std::vector<uint32_t>{1, 2, 3, 3, 5, 5, 0x105, 5}));
  EXPECT_EQ(vo, (std::vector<int32_t>{3, 6, 1, 4, 0, 2, 5, 7}));
  // All 32 bits: 0x105 last.
  ASSERT_EQ(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, keys.data(), ko.data(),
                                            vals.data(), vo.data(), int(keys.size())),
            cudaSuccess);
  EXPECT_EQ(ko, (std::vector<uint32_t>{1, 2, 3, 3, 5, 5, 5, 0x105}));
  EXPECT_EQ(vo, (std::vector<int32_t>{3, 6, 1, 4, 0, 2, 7, 5}));
  EXPECT_EQ(keys, (std::vector<uint32_t>{5, 3, 5, 1, 3, 0x105, 2, 5}));  // inputs unchanged
  // Temporary storage smaller than the query asked for is refused.
  size_t small = bytes - 1;
  EXPECT_NE(cub::DeviceRadixSort::SortPairs(temp.data(), small, keys.data(), ko.data(),
                                            vals.data(), vo.data(), int(keys.size())),
            cudaSuccess);
}

TEST(CubEmu, SignedAndFloatKeysSortNumerically) {
  std::vector<int32_t> ik = {3, -1, 0, -7, 2};
  std::vector<float> fk = {1.5f, -0.0f, -2.0f, 0.0f, -std::numeric_limits<float>::infinity()};
  std::vector<int> v = {0, 1, 2, 3, 4}, vo(5);
  std::vector<int32_t> iko(5);
  std::vector<float> fko(5);
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, ik.data(), iko.data(), v.data(), vo.data(), 5);
  std::vector<unsigned char> temp(bytes);
  ASSERT_EQ(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, ik.data(), iko.data(), v.data(),
                                            vo.data(), 5),
            cudaSuccess);
  EXPECT_EQ(iko, (std::vector<int32_t>{-7, -1, 0, 2, 3}));
  bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, fk.data(), fko.data(), v.data(), vo.data(), 5);
  temp.resize(bytes);
  ASSERT_EQ(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, fk.data(), fko.data(), v.data(),
                                            vo.data(), 5),
            cudaSuccess);
  EXPECT_EQ(vo, (std::vector<int>{4, 2, 1, 3, 0}));  // -inf, -2, -0, +0, 1.5
}

}  // namespace
