// CUDA twin of the GEMM through cuBLASLt (kernels/gemm/gemm_cuda.h explains the row-major to
// column-major mapping, the dtypes and the epilogues). Also the small kernels that stand in for
// an epilogue cuBLASLt cannot fuse (bias + ReLU, bias gradients), and deterministic column sums.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <climits>
#include <map>
#include <mutex>

#include "kernels/core/cuda_common.cuh"
#include "kernels/gemm/gemm_cuda.h"

namespace tfm::cuda {

namespace {

// cuBLASLt's recommended workspace on Hopper; plenty for Ampere.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

void check_lt(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(cat("gemm (cuBLASLt): ", what, " failed with ", cublasLtGetStatusName(s), " (",
             cublasLtGetStatusString(s), ")"));
}

cudaDataType_t lt_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: fail(cat("gemm (CUDA): unsupported dtype ", dtype_name(t)));
  }
}

// ---- per-device handle, per-stream workspace, algorithm cache --------------------------------

std::mutex& lt_mutex() {
  static std::mutex m;
  return m;
}

// Handles and workspaces live until the process ends (destroying them from a static destructor
// would race the CUDA runtime's own teardown).
cublasLtHandle_t handle_for(int device) {
  static std::map<int, cublasLtHandle_t> handles;
  std::lock_guard<std::mutex> lock(lt_mutex());
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cublasLtHandle_t h = nullptr;
  check_lt(cublasLtCreate(&h), "cublasLtCreate");
  handles.emplace(device, h);
  return h;
}

void* workspace_for(int device, cudaStream_t stream) {
  static std::map<std::pair<int, cudaStream_t>, void*> spaces;
  std::lock_guard<std::mutex> lock(lt_mutex());
  auto key = std::make_pair(device, stream);
  auto it = spaces.find(key);
  if (it != spaces.end()) return it->second;
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, kWorkspaceBytes);
  if (err != cudaSuccess)
    fail(cat("gemm (cuBLASLt): cudaMalloc of the ", kWorkspaceBytes >> 20,
             " MiB workspace failed: ", cudaGetErrorString(err)));
  spaces.emplace(key, p);
  return p;
}

// Largest power of two (≤ 256) dividing the address: cuBLASLt's heuristic assumes 256-byte
// aligned operands unless told otherwise, and a head's columns inside [B·T, H·d] are not.
uint32_t alignment(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && (v % a) != 0) a >>= 1;
  return a;
}

struct Algo {
  bool found = false;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

using CacheKey = std::array<int64_t, 18>;

std::map<CacheKey, Algo>& algo_cache() {
  static std::map<CacheKey, Algo> cache;
  return cache;
}

// ---- descriptors -----------------------------------------------------------------------------

GemmShape resolved(GemmShape s) {
  int64_t a_cols = s.trans_a ? s.m : s.k, b_cols = s.trans_b ? s.k : s.n;
  if (!s.lda) s.lda = a_cols;
  if (!s.ldb) s.ldb = b_cols;
  if (!s.ldc) s.ldc = s.n;
  TFM_CHECK(s.m >= 0 && s.n >= 0 && s.k >= 0, "gemm: negative size m=", s.m, " n=", s.n, " k=",
            s.k);
  TFM_CHECK(s.lda >= a_cols && s.ldb >= b_cols && s.ldc >= s.n,
            "gemm: leading dimension too small (lda=", s.lda, " ldb=", s.ldb, " ldc=", s.ldc,
            " for m=", s.m, " n=", s.n, " k=", s.k, ")");
  return s;
}

cublasLtEpilogue_t lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::none: return CUBLASLT_EPILOGUE_DEFAULT;
    case Epilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::relu_bias: return CUBLASLT_EPILOGUE_RELU_BIAS;
    case Epilogue::relu: return CUBLASLT_EPILOGUE_RELU;
    case Epilogue::bgrad_a: return CUBLASLT_EPILOGUE_BGRADB;  // our A is cuBLASLt's B
    case Epilogue::bgrad_b: return CUBLASLT_EPILOGUE_BGRADA;  // our B is cuBLASLt's A
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

bool has_bias_input(Epilogue e) { return e == Epilogue::bias || e == Epilogue::relu_bias; }
bool has_bias_grad(Epilogue e) { return e == Epilogue::bgrad_a || e == Epilogue::bgrad_b; }

// Everything one cublasLtMatmul call needs, in cuBLASLt's column-major terms:
//   D [n, m] (ld ldc) = op'(A' = our B) [n, k] · op'(B' = our A) [k, m].
struct LtCall {
  cublasLtMatmulDescOpaque_t op{};
  cublasLtMatrixLayoutOpaque_t a_layout{}, b_layout{}, c_layout{};
};

// Fills `call`; returns false when cuBLASLt refuses an attribute (an epilogue it does not know
// for these types), which the caller treats like "no algorithm".
bool describe(LtCall& call, const GemmShape& s, DType ab, DType cd, const void* c_ptr,
              const GemmEpilogue& ep) {
  (void)c_ptr;
  check_lt(cublasLtMatmulDescInit(&call.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescInit");
  cublasOperation_t ta = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A is our B
  cublasOperation_t tb = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's B is our A
  check_lt(cublasLtMatmulDescSetAttribute(&call.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
           "set TRANSA");
  check_lt(cublasLtMatmulDescSetAttribute(&call.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
           "set TRANSB");
  cublasLtEpilogue_t epi = lt_epilogue(ep.kind);
  if (cublasLtMatmulDescSetAttribute(&call.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) !=
      CUBLAS_STATUS_SUCCESS)
    return false;
  if (has_bias_input(ep.kind)) {
    const void* bias = ep.bias;
    if (cublasLtMatmulDescSetAttribute(&call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                       sizeof bias) != CUBLAS_STATUS_SUCCESS)
      return false;
    if (ep.bias_dtype != cd) {
      int32_t bt = int32_t(lt_type(ep.bias_dtype));
      if (cublasLtMatmulDescSetAttribute(&call.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                         sizeof bt) != CUBLAS_STATUS_SUCCESS)
        return false;
    }
  } else if (has_bias_grad(ep.kind)) {
    void* grad = ep.bias_grad;
    if (cublasLtMatmulDescSetAttribute(&call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &grad,
                                       sizeof grad) != CUBLAS_STATUS_SUCCESS)
      return false;
  }
  // A' = our B: stored [k, n] row-major (col-major [n, k]) or, transposed, [n, k] ([k, n]).
  check_lt(cublasLtMatrixLayoutInit(&call.a_layout, lt_type(ab), uint64_t(s.trans_b ? s.k : s.n),
                                    uint64_t(s.trans_b ? s.n : s.k), s.ldb),
           "layout of B");
  // B' = our A: stored [m, k] row-major (col-major [k, m]) or, transposed, [k, m] ([m, k]).
  check_lt(cublasLtMatrixLayoutInit(&call.b_layout, lt_type(ab), uint64_t(s.trans_a ? s.m : s.k),
                                    uint64_t(s.trans_a ? s.k : s.m), s.lda),
           "layout of A");
  check_lt(cublasLtMatrixLayoutInit(&call.c_layout, lt_type(cd), uint64_t(s.n), uint64_t(s.m),
                                    s.ldc),
           "layout of C");
  return true;
}

CacheKey key_of(int device, const GemmShape& s, DType ab, DType cd, const void* a, const void* b,
                const void* c, const GemmEpilogue& ep) {
  const void* bias_ptr = has_bias_input(ep.kind) ? ep.bias
                         : has_bias_grad(ep.kind) ? static_cast<const void*>(ep.bias_grad)
                                                  : nullptr;
  return CacheKey{device, s.trans_a, s.trans_b, s.m, s.n, s.k, s.lda, s.ldb, s.ldc, int64_t(ab),
                  int64_t(cd), int64_t(ep.kind),
                  has_bias_input(ep.kind) ? int64_t(ep.bias_dtype) : -1, alignment(a),
                  alignment(b), alignment(c), bias_ptr ? alignment(bias_ptr) : 0, 0};
}

// The cached algorithm for this call, asking the heuristic on a miss.
Algo find_algo(cublasLtHandle_t handle, int device, LtCall& call, const GemmShape& s, DType ab,
               DType cd, const void* a, const void* b, const void* c, const GemmEpilogue& ep) {
  CacheKey key = key_of(device, s, ab, cd, a, b, c, ep);
  {
    std::lock_guard<std::mutex> lock(lt_mutex());
    auto it = algo_cache().find(key);
    if (it != algo_cache().end()) return it->second;
  }
  Algo found;
  cublasLtMatmulPreferenceOpaque_t pref{};
  check_lt(cublasLtMatmulPreferenceInit(&pref), "MatmulPreferenceInit");
  size_t ws = kWorkspaceBytes;
  check_lt(cublasLtMatmulPreferenceSetAttribute(&pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &ws, sizeof ws),
           "set MAX_WORKSPACE_BYTES");
  // cuBLASLt's A is our B, its B our A; C and D are both our C.
  uint32_t align_a = alignment(b), align_b = alignment(a), align_c = alignment(c);
  check_lt(cublasLtMatmulPreferenceSetAttribute(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &align_a, sizeof align_a),
           "set MIN_ALIGNMENT_A");
  check_lt(cublasLtMatmulPreferenceSetAttribute(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &align_b, sizeof align_b),
           "set MIN_ALIGNMENT_B");
  check_lt(cublasLtMatmulPreferenceSetAttribute(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &align_c, sizeof align_c),
           "set MIN_ALIGNMENT_C");
  check_lt(cublasLtMatmulPreferenceSetAttribute(&pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &align_c, sizeof align_c),
           "set MIN_ALIGNMENT_D");
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      handle, &call.op, &call.a_layout, &call.b_layout, &call.c_layout, &call.c_layout, &pref, 1,
      &result, &returned);
  if (st == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS &&
      result.workspaceSize <= kWorkspaceBytes) {
    found.found = true;
    found.algo = result.algo;
    found.workspace = result.workspaceSize;
  }
  std::lock_guard<std::mutex> lock(lt_mutex());
  algo_cache()[key] = found;
  return found;
}

// Runs the GEMM through cuBLASLt with the epilogue fused, or returns false (launching nothing)
// when there is no algorithm for it. With execute = false it only answers the question.
bool try_lt(const Context& ctx, const GemmShape& s, DType ab, DType cd, float alpha,
            const void* a, const void* b, float beta, void* c, const GemmEpilogue& ep,
            bool execute) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  cublasLtHandle_t handle = handle_for(device);
  LtCall call;
  if (!describe(call, s, ab, cd, c, ep)) return false;
  Algo algo = find_algo(handle, device, call, s, ab, cd, a, b, c, ep);
  if (!algo.found || !execute) return algo.found;
  cudaStream_t stream = stream_of(ctx);
  void* ws = algo.workspace ? workspace_for(device, stream) : nullptr;
  check_lt(cublasLtMatmul(handle, &call.op, &alpha, b, &call.a_layout, a, &call.b_layout, &beta,
                          c, &call.c_layout, c, &call.c_layout, &algo.algo, ws, algo.workspace,
                          stream),
           "cublasLtMatmul");
  return true;
}

// The classic cuBLAS GEMM (cublasGemmEx), for the rare plain GEMM cuBLASLt has no algorithm for
// (operands aligned to less than cuBLASLt's kernels accept). Same column-major mapping, fp32
// compute; one handle per device, its stream set under the lock for each call.
bool classic_gemm(const Context& ctx, const GemmShape& s, DType ab, DType cd, float alpha,
                  const void* a, const void* b, float beta, void* c) {
  for (int64_t v : {s.m, s.n, s.k, s.lda, s.ldb, s.ldc})
    if (v > INT_MAX) return false;
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  static std::map<int, cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(lt_mutex());
  cublasHandle_t& h = handles[device];
  if (!h && cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    h = nullptr;
    return false;
  }
  if (cublasSetStream(h, stream_of(ctx)) != CUBLAS_STATUS_SUCCESS) return false;
  cublasOperation_t ta = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t tb = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasStatus_t st = cublasGemmEx(h, ta, tb, int(s.n), int(s.m), int(s.k), &alpha, b, lt_type(ab),
                                   int(s.ldb), a, lt_type(ab), int(s.lda), &beta, c, lt_type(cd),
                                   int(s.ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return st == CUBLAS_STATUS_SUCCESS;
}

// ---- stand-in kernels for epilogues ----------------------------------------------------------

// c[i, j] = act(c_scale · c[i, j] + bias[j]) over C [m, n] with row stride ldc; c_scale = 0
// ignores what C held (NaN included). ReLU written as "< 0 → 0" so NaN passes, as on the CPU.
template <class C, class B>
__global__ void bias_act_kernel(C* c, int64_t m, int64_t n, int64_t ldc, float c_scale,
                                const B* bias, bool relu) {
  int64_t total = m * n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = idx / n, j = idx - i * n;
    C* p = c + i * ldc + j;
    float v = c_scale == 0.0f ? 0.0f : c_scale * to_float(*p);
    if (bias) v += to_float(bias[j]);
    if (relu && v < 0.0f) v = 0.0f;
    *p = from_float<C>(v);
  }
}

void bias_act(const Context& ctx, DType cd, void* c, int64_t m, int64_t n, int64_t ldc,
              float c_scale, const void* bias, DType bias_dtype, bool relu) {
  if (m == 0 || n == 0) return;
  constexpr int kThreads = 256;
  unsigned grid = grid_for(m * n, kThreads);
  dispatch_gpu_float(cd, "gemm epilogue", [&](auto ct) {
    using C = typename decltype(ct)::type;
    auto launch = [&](auto bt) {
      using B = typename decltype(bt)::type;
      launch_kernel(bias_act_kernel<C, B>, grid, kThreads, 0, stream_of(ctx), static_cast<C*>(c), m,
                    n, ldc, c_scale, static_cast<const B*>(bias), relu);
    };
    if (bias) dispatch_gpu_float(bias_dtype, "gemm epilogue bias", launch);
    else launch(Tag<C>{});
  });
  check_launch("gemm epilogue (bias/relu)");
}

// out[i] = Σ_k x[i·ld + k] over rows of X [rows, cols]: one warp per row, lanes stride the row,
// the butterfly sum fixes the order.
template <class X, class O>
__global__ void row_sums_kernel(const X* x, int64_t rows, int64_t cols, int64_t ld, O* out) {
  int lane = threadIdx.x & 31;
  int64_t warps_per_grid = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += warps_per_grid) {
    const X* row = x + r * ld;
    float s = 0.0f;
    for (int64_t k = lane; k < cols; k += 32) s += to_float(row[k]);
    s = warp_sum(s);
    if (lane == 0) out[r] = from_float<O>(s);
  }
}

void row_sums(const Context& ctx, DType x_dtype, const void* x, int64_t rows, int64_t cols,
              int64_t ld, DType out_dtype, void* out) {
  if (rows == 0) return;
  constexpr int kThreads = 256;
  unsigned grid = grid_for(rows * 32, kThreads);
  dispatch_gpu_float(x_dtype, "row_sums", [&](auto xt) {
    using X = typename decltype(xt)::type;
    dispatch_gpu_float(out_dtype, "row_sums", [&](auto ot) {
      using O = typename decltype(ot)::type;
      launch_kernel(row_sums_kernel<X, O>, grid, kThreads, 0, stream_of(ctx),
                    static_cast<const X*>(x), rows, cols, ld, static_cast<O*>(out));
    });
  });
  check_launch("row_sums");
}

// Column sums, pass 1: block (32, 8) sums rows [chunk·kRowsPerChunk, +kRowsPerChunk) of 32
// columns; threadIdx.y strides the rows, then the 8 partial sums are added in order. With one
// chunk the result goes straight to `out` (+= when accumulate); otherwise to partial[chunk][j].
constexpr int64_t kRowsPerChunk = 512;
constexpr int kColTile = 32, kRowLanes = 8;

template <class X, class O>
__global__ void column_sums_kernel(const X* x, int64_t rows, int64_t cols, int64_t ld,
                                   float* partial, O* out, bool accumulate) {
  __shared__ float sums[kRowLanes][kColTile];
  int64_t j = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  int64_t r0 = int64_t(blockIdx.y) * kRowsPerChunk;
  int64_t r1 = r0 + kRowsPerChunk < rows ? r0 + kRowsPerChunk : rows;
  float s = 0.0f;
  if (j < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) s += to_float(x[r * ld + j]);
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float t = 0.0f;
#pragma unroll
    for (int y = 0; y < kRowLanes; ++y) t += sums[y][threadIdx.x];
    if (partial) {
      partial[int64_t(blockIdx.y) * cols + j] = t;
    } else {
      out[j] = from_float<O>(accumulate ? to_float(out[j]) + t : t);
    }
  }
}

// Pass 2: out[j] (+)= Σ_chunk partial[chunk][j], chunks in order.
template <class O>
__global__ void column_sums_finish_kernel(const float* partial, int64_t chunks, int64_t cols,
                                          O* out, bool accumulate) {
  int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float t = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) t += partial[c * cols + j];
  out[j] = from_float<O>(accumulate ? to_float(out[j]) + t : t);
}

}  // namespace

const char* epilogue_name(Epilogue e) {
  switch (e) {
    case Epilogue::none: return "none";
    case Epilogue::bias: return "bias";
    case Epilogue::relu_bias: return "relu_bias";
    case Epilogue::relu: return "relu";
    case Epilogue::bgrad_a: return "bgrad_a";
    case Epilogue::bgrad_b: return "bgrad_b";
  }
  return "?";
}

void column_sums(const Context& ctx, DType x_dtype, const void* x, int64_t rows, int64_t cols,
                 int64_t ld, DType out_dtype, void* out, bool accumulate) {
  TFM_CHECK(rows >= 0 && cols >= 0 && ld >= cols, "column_sums: bad shape rows=", rows,
            " cols=", cols, " ld=", ld);
  if (cols == 0) return;
  if (rows == 0) {
    if (!accumulate) check_cuda(cudaMemsetAsync(out, 0, size_t(cols) * dtype_size(out_dtype),
                                                stream_of(ctx)),
                                "column_sums: cudaMemsetAsync");
    return;
  }
  int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  TFM_CHECK(chunks <= 65535, "column_sums: ", rows, " rows is more than this kernel handles (",
            65535 * kRowsPerChunk, ")");
  float* partial = nullptr;
  if (chunks > 1)
    partial = static_cast<float*>(scratch(ctx, size_t(chunks * cols) * sizeof(float), "column_sums"));
  dim3 grid(unsigned((cols + kColTile - 1) / kColTile), unsigned(chunks));
  dim3 block(kColTile, kRowLanes);
  TFM_CHECK(grid.x <= 0x7FFFFFFFu, "column_sums: too many columns");
  dispatch_gpu_float(x_dtype, "column_sums", [&](auto xt) {
    using X = typename decltype(xt)::type;
    dispatch_gpu_float(out_dtype, "column_sums", [&](auto ot) {
      using O = typename decltype(ot)::type;
      launch_kernel(column_sums_kernel<X, O>, grid, block, 0, stream_of(ctx),
                    static_cast<const X*>(x), rows, cols, ld, partial, static_cast<O*>(out),
                    accumulate);
      check_launch("column_sums");
      if (partial) {
        constexpr int kThreads = 256;
        unsigned g2 = unsigned((cols + kThreads - 1) / kThreads);
        launch_kernel(column_sums_finish_kernel<O>, g2, kThreads, 0, stream_of(ctx), partial,
                      chunks, cols, static_cast<O*>(out), accumulate);
        check_launch("column_sums (finish)");
      }
    });
  });
}

namespace {

void check_types(DType ab, DType cd, const GemmEpilogue& ep) {
  TFM_CHECK(ab == DType::f32 || ab == DType::bf16 || ab == DType::f16,
            "gemm (CUDA): A and B must be f32, bf16 or f16, got ", dtype_name(ab));
  TFM_CHECK(cd == ab || cd == DType::f32, "gemm (CUDA): C must be ", dtype_name(ab),
            " or f32 for ", dtype_name(ab), " inputs, got ", dtype_name(cd));
  if (has_bias_input(ep.kind)) {
    TFM_CHECK(ep.bias != nullptr, "gemm (CUDA): epilogue ", epilogue_name(ep.kind),
              " needs a bias pointer");
    TFM_CHECK(ep.bias_dtype == cd || ep.bias_dtype == DType::f32, "gemm (CUDA): bias must be ",
              dtype_name(cd), " or f32, got ", dtype_name(ep.bias_dtype));
  }
  if (has_bias_grad(ep.kind))
    TFM_CHECK(ep.bias_grad != nullptr, "gemm (CUDA): epilogue ", epilogue_name(ep.kind),
              " needs a bias_grad pointer");
}

}  // namespace

bool gemm_epilogue_fusable(const Context& ctx, const GemmShape& shape, DType ab, DType cd,
                           const void* a, const void* b, const void* c, const GemmEpilogue& ep) {
  GemmShape s = resolved(shape);
  check_types(ab, cd, ep);
  if (s.m == 0 || s.n == 0 || s.k == 0) return false;
  return try_lt(ctx, s, ab, cd, 1.0f, a, b, 0.0f, const_cast<void*>(c), ep, false);
}

// The bias-gradient epilogue by hand: bias_grad[i] = Σ_k op(A)[i, k] (bgrad_a, length m) or
// bias_grad[j] = Σ_k op(B)[k, j] (bgrad_b, length n); zeros when k = 0. It does not depend on
// the other operand, so it is due even when C is empty.
void bias_grad_sums(const Context& ctx, const GemmShape& s, DType ab, DType cd, const void* a,
                    const void* b, const GemmEpilogue& ep) {
  const int64_t len = ep.kind == Epilogue::bgrad_a ? s.m : s.n;
  if (len == 0) return;
  if (s.k == 0) {
    check_cuda(cudaMemsetAsync(ep.bias_grad, 0, size_t(len) * dtype_size(cd), stream_of(ctx)),
               "gemm: cudaMemsetAsync");
  } else if (ep.kind == Epilogue::bgrad_a) {
    // A stored [k, m] (trans_a) sums columns, [m, k] sums rows.
    if (s.trans_a) column_sums(ctx, ab, a, s.k, s.m, s.lda, cd, ep.bias_grad, false);
    else row_sums(ctx, ab, a, s.m, s.k, s.lda, cd, ep.bias_grad);
  } else {
    // B stored [k, n] sums columns, [n, k] (trans_b) sums rows.
    if (s.trans_b) row_sums(ctx, ab, b, s.n, s.k, s.ldb, cd, ep.bias_grad);
    else column_sums(ctx, ab, b, s.k, s.n, s.ldb, cd, ep.bias_grad, false);
  }
}

void gemm_ex(const Context& ctx, const GemmShape& shape, DType ab, DType cd, double alpha,
             const void* a, const void* b, double beta, void* c, const GemmEpilogue& ep) {
  GemmShape s = resolved(shape);
  check_types(ab, cd, ep);
  if (s.m == 0 || s.n == 0) {  // an empty C
    if (has_bias_grad(ep.kind)) bias_grad_sums(ctx, s, ab, cd, a, b, ep);
    return;
  }
  bool relu = ep.kind == Epilogue::relu || ep.kind == Epilogue::relu_bias;
  const void* bias = has_bias_input(ep.kind) ? ep.bias : nullptr;
  if (s.k == 0) {
    // C = beta·C (0 exactly when beta = 0), then the epilogue; empty sums are zero.
    bias_act(ctx, cd, c, s.m, s.n, s.ldc, float(beta), bias, ep.bias_dtype, relu);
    if (has_bias_grad(ep.kind)) bias_grad_sums(ctx, s, ab, cd, a, b, ep);
    return;
  }
  if (ep.kind != Epilogue::none && ep.allow_fused &&
      try_lt(ctx, s, ab, cd, float(alpha), a, b, float(beta), c, ep, true))
    return;
  // The plain GEMM (cuBLASLt, else classic cuBLAS), then the epilogue by hand.
  if (!try_lt(ctx, s, ab, cd, float(alpha), a, b, float(beta), c, GemmEpilogue{}, true) &&
      !classic_gemm(ctx, s, ab, cd, float(alpha), a, b, float(beta), c))
    fail(cat("gemm (CUDA): neither cuBLASLt nor cuBLAS ran m=", s.m, " n=", s.n, " k=", s.k,
             " trans_a=", s.trans_a, " trans_b=", s.trans_b, " lda=", s.lda, " ldb=", s.ldb,
             " ldc=", s.ldc, " A/B ", dtype_name(ab), " C ", dtype_name(cd)));
  if (bias || relu) bias_act(ctx, cd, c, s.m, s.n, s.ldc, 1.0f, bias, ep.bias_dtype, relu);
  if (has_bias_grad(ep.kind)) bias_grad_sums(ctx, s, ab, cd, a, b, ep);
}

void gemm(const Context& ctx, DType dtype, const GemmShape& s, double alpha, const void* a,
          const void* b, double beta, void* c) {
  gemm_ex(ctx, s, dtype, dtype, alpha, a, b, beta, c);
}

void clear_gemm_cache() {
  std::lock_guard<std::mutex> lock(lt_mutex());
  algo_cache().clear();
}

}  // namespace tfm::cuda
