// CUDA emulation (see kernels/core/cuda_emu/README.md): cuBLASLt's matmul and classic cuBLAS's
// cublasGemmEx on the CPU, for the subset of both that tfm uses (cublasLt.h lists it). "Device"
// pointers are host pointers; every call runs synchronously on the calling thread.
//
// Semantics follow NVIDIA's documentation (cuBLAS library user guide, docs.nvidia.com/cuda/cublas,
// sections "cublasLtMatmul()", "cublasLtMatmulDescAttributes_t", "cublasLtMatrixLayoutAttribute_t",
// "cublasLtEpilogue_t", "cublasLtMatmulPreferenceAttributes_t", "cublas<t>gemm()", "cublasGemmEx()";
// the same text is in the comments of the real cublasLt.h / cublas_api.h):
//   * D = epilogue(alpha·op(A)·op(B) + beta·C), all matrices column-major (CUBLASLT_ORDER_COL):
//     element (r, c) of a matrix with leading dimension ld lives at r + c·ld. The layout
//     describes the matrix as stored; op() (TRANSA / TRANSB) is applied on top: with OP_T, A is
//     stored k×m and op(A) = Aᵀ is m×k. m = rows of D, n = columns of D, k the inner dimension.
//   * The leading dimension must be ≥ the rows ("must be large enough so that matrix memory
//     locations are not overlapping, e.g. greater or equal to CUBLASLT_MATRIX_LAYOUT_ROWS in case
//     of CUBLASLT_ORDER_COL") → CUBLAS_STATUS_INVALID_VALUE otherwise.
//   * In place (C == D) requires Cdesc to describe D's layout; out of place, C and D must agree in
//     type, rows, columns and batch count (their ld may differ).
//   * beta == 0: C is not read ("if beta == 0, C does not have to be a valid input").
//   * CUBLASLT_EPILOGUE_BIAS: a bias vector of length rows(D), packed, broadcast to all columns
//     and added before the final post-processing: D[r, c] = act(alpha·(AB)[r, c] + beta·C[r, c]
//     + bias[r]). Bias type: CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, default (-1) D's type; "bias
//     vector elements are the same type as the elements of output matrix (Dtype)" except for IMMA
//     and FP8 kernels (cublasLt.h), so any other bias type is CUBLAS_STATUS_NOT_SUPPORTED here
//     (an f32 bias on a bf16/f16 D included: gemm_cuda.cu then runs its stand-in kernel).
//   * CUBLASLT_EPILOGUE_RELU(_BIAS): x := max(x, 0), after the bias. The GPU's max returns the
//     non-NaN operand, so NaN becomes 0 (gemm_cuda.h documents that the fused ReLU may do this).
//   * CUBLASLT_EPILOGUE_BGRADA: D as for DEFAULT, and the bias gradient "based on the input matrix
//     A": length rows(D) = m, "the reduction happens over the GEMM's k dimension":
//     bias[i] = Σ_k op(A)[i, k]. CUBLASLT_EPILOGUE_BGRADB: length columns(D) = n,
//     bias[j] = Σ_k op(B)[k, j]. Written (not accumulated) to CUBLASLT_MATMUL_DESC_BIAS_POINTER,
//     in the bias type (default: the output type). Not scaled by alpha.
//   * Strided batches: CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT (all four layouts equal) and
//     CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (elements); the bias advances by
//     CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE (default 0: the same bias for every batch).
//   * cublasLtMatmulAlgoGetHeuristic: one result, state CUBLAS_STATUS_SUCCESS, workspace 0, for
//     every configuration the emulation implements; CUBLAS_STATUS_NOT_SUPPORTED (0 results)
//     otherwise. The returned algorithm remembers the data types, epilogue and the minimum
//     alignments it was chosen for (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, default 256, and
//     the bias pointer's own alignment, which "routines that don't dereference this pointer, like
//     cublasLtMatmulAlgoGetHeuristic(), depend on"); cublasLtMatmul refuses it
//     (CUBLAS_STATUS_NOT_SUPPORTED) for other types / epilogue or less-aligned pointers, the way
//     the kernel the real heuristic picked could not run them.
//   * Arithmetic: inputs converted exactly to double, products summed in double in k order, then
//     alpha, beta·C and the bias applied in double, the ReLU, and one rounding: to float (the
//     scale type), then to D's type (round to nearest even). Nothing is rounded to TF32.
// Anything else (other compute/scale types, pointer modes, orders, epilogues, attributes) answers
// CUBLAS_STATUS_NOT_SUPPORTED instead of computing something else.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include <cblas.h>
#include <climits>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

namespace {

// ---- element types -----------------------------------------------------------------------------

bool emulated_type(int32_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; }

size_t type_size(int32_t t) { return t == CUDA_R_32F ? 4 : 2; }

inline double load(int32_t t, const void* base, int64_t idx) {
  switch (t) {
    case CUDA_R_32F: return static_cast<const float*>(base)[idx];
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[idx]);
    default: return __half2float(static_cast<const __half*>(base)[idx]);
  }
}

// One rounding to the scale type (float), then to the storage type (nearest even).
inline void store(int32_t t, void* base, int64_t idx, double v) {
  float f = static_cast<float>(v);
  switch (t) {
    case CUDA_R_32F: static_cast<float*>(base)[idx] = f; break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(base)[idx] = __float2bfloat16_rn(f); break;
    default: static_cast<__half*>(base)[idx] = __float2half_rn(f); break;
  }
}

// ---- the GEMM itself ---------------------------------------------------------------------------

struct Operand {
  int32_t type = CUDA_R_32F;
  const void* ptr = nullptr;
  int64_t ld = 0;
  bool trans = false;
};

enum class Act { none, relu };

struct Job {
  int64_t m = 0, n = 0, k = 0;
  double alpha = 1, beta = 0;
  Operand a, b;                 // op(A) is m×k, op(B) k×n
  int32_t c_type = CUDA_R_32F;  // C and D share the type
  const void* c = nullptr;
  int64_t ldc = 0;
  void* d = nullptr;
  int64_t ldd = 0;
  const void* bias = nullptr;  // [m], added to every column
  int32_t bias_type = CUDA_R_32F;
  Act act = Act::none;
  void* bgrad_a = nullptr;  // [m] = Σ_k op(A)[i, k]
  void* bgrad_b = nullptr;  // [n] = Σ_k op(B)[k, j]
  int32_t bgrad_type = CUDA_R_32F;
};

// op(X)[r, c] for an operand stored column-major: X[r + c·ld], or X[c + r·ld] when transposed.
inline int64_t op_index(const Operand& x, int64_t r, int64_t c) {
  return x.trans ? c + r * x.ld : r + c * x.ld;
}

void run(const Job& j) {
  const int64_t m = j.m, n = j.n, k = j.k;
  // op(A) packed row by row ([m][k]), op(B) row by row ([k][n]), both exact in double.
  std::vector<double> pa(static_cast<size_t>(m * k)), pb(static_cast<size_t>(k * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t kk = 0; kk < k; ++kk) pa[size_t(i * k + kk)] = load(j.a.type, j.a.ptr, op_index(j.a, i, kk));
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t c = 0; c < n; ++c) pb[size_t(kk * n + c)] = load(j.b.type, j.b.ptr, op_index(j.b, kk, c));

  // Bias gradients first, from the inputs (before D is written, in case D aliases an input).
  if (j.bgrad_a)
    for (int64_t i = 0; i < m; ++i) {
      double s = 0;
      for (int64_t kk = 0; kk < k; ++kk) s += pa[size_t(i * k + kk)];
      store(j.bgrad_type, j.bgrad_a, i, s);
    }
  if (j.bgrad_b) {
    std::vector<double> s(static_cast<size_t>(n), 0.0);
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t c = 0; c < n; ++c) s[size_t(c)] += pb[size_t(kk * n + c)];
    for (int64_t c = 0; c < n; ++c) store(j.bgrad_type, j.bgrad_b, c, s[size_t(c)]);
  }

  // The product in double through OpenBLAS (the model's GEMMs would take minutes per step as
  // plain loops); exact inputs, so only double rounding separates it from the exact product.
  std::vector<double> prod(static_cast<size_t>(m * n), 0.0);
  if (m > 0 && n > 0 && k > 0)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(k), 1.0, pa.data(),
                int(k), pb.data(), int(n), 0.0, prod.data(), int(n));
  for (int64_t i = 0; i < m; ++i) {
    const double* row = prod.data() + i * n;
    const double bias = j.bias ? load(j.bias_type, j.bias, i) : 0.0;
    for (int64_t c = 0; c < n; ++c) {
      double v = j.alpha * row[c];
      if (j.beta != 0) v += j.beta * load(j.c_type, j.c, i + c * j.ldc);
      v += bias;
      if (j.act == Act::relu && !(v > 0)) v = 0;  // max(v, 0); NaN → 0 as the GPU's max
      store(j.c_type, j.d, i + c * j.ldd, v);
    }
  }
}

bool aligned(const void* p, uint64_t bytes) {
  return bytes <= 1 || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

uint32_t alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a >>= 1;
  return a;
}

// ---- cuBLASLt descriptors (stored inside the caller's semi-opaque blocks) ----------------------

constexpr uint32_t kHandleMagic = 0x4c74480du, kDescMagic = 0x4c74440du,
                   kLayoutMagic = 0x4c744c0du, kPrefMagic = 0x4c74500du,
                   kAlgoMagic = 0x4c74410du;

struct DescData {
  uint32_t magic;
  int32_t compute;
  int32_t scale;
  int32_t pointer_mode;
  int32_t transa, transb, transc;
  int32_t fill;
  uint32_t epilogue;
  int32_t bias_type;  // -1: the default
  const void* bias;
  int64_t bias_batch_stride;
};
static_assert(sizeof(DescData) <= sizeof(cublasLtMatmulDescOpaque_t));

struct LayoutData {
  uint32_t magic;
  int32_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t order;
  int32_t batch_count;
  int64_t batch_stride;
};
static_assert(sizeof(LayoutData) <= sizeof(cublasLtMatrixLayoutOpaque_t));

struct PrefData {
  uint32_t magic;
  uint32_t search_mode;
  uint64_t max_workspace;
  uint32_t align_a, align_b, align_c, align_d;
  uint32_t reduction_mask;
  float max_waves;
  uint64_t impl_mask;
};
static_assert(sizeof(PrefData) <= sizeof(cublasLtMatmulPreferenceOpaque_t));

struct AlgoData {
  uint32_t magic;
  int32_t a_type, c_type, bias_type;
  uint32_t epilogue;
  uint32_t align_a, align_b, align_c, align_d, align_bias;
};
static_assert(sizeof(AlgoData) <= sizeof(cublasLtMatmulAlgo_t));

template <class T, class Opaque>
bool read_block(const Opaque* o, uint32_t magic, T* out) {
  if (!o) return false;
  std::memcpy(out, o, sizeof(T));
  return out->magic == magic;
}
template <class T, class Opaque>
void write_block(Opaque* o, const T& v) {
  std::memcpy(o, &v, sizeof(T));
}

struct LtContext {
  uint32_t magic = kHandleMagic;
};

// Live handles stay reachable from a global that is never destroyed: callers keep handles until
// the process ends (gemm_cuda.cu does, by design), and a leak checker running after static
// destructors would otherwise report them.
template <class T>
std::vector<T*>& live_handles() {
  static auto* handles = new std::vector<T*>;
  return *handles;
}
std::mutex& handles_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
template <class T>
T* new_handle() {
  T* h = new (std::nothrow) T;
  if (h) {
    std::lock_guard<std::mutex> lock(handles_mutex());
    live_handles<T>().push_back(h);
  }
  return h;
}
template <class T>
void delete_handle(T* h) {
  {
    std::lock_guard<std::mutex> lock(handles_mutex());
    auto& v = live_handles<T>();
    v.erase(std::remove(v.begin(), v.end(), h), v.end());
  }
  h->magic = 0;
  delete h;
}

// A handle cublasLtCreate / cublasCreate returned and nobody destroyed (checked against the
// registry, so a destroyed or made-up handle is refused without being dereferenced).
template <class T>
T* live(const void* h) {
  if (!h) return nullptr;
  std::lock_guard<std::mutex> lock(handles_mutex());
  for (T* p : live_handles<T>())
    if (p == h) return p;
  return nullptr;
}

bool valid_handle(cublasLtHandle_t h) { return live<LtContext>(h) != nullptr; }

// Reads a fixed-size attribute value: the size must match exactly (as the real library checks).
template <class T>
bool get_value(const void* buf, size_t size, T* out) {
  if (!buf || size != sizeof(T)) return false;
  std::memcpy(out, buf, sizeof(T));
  return true;
}

template <class T>
cublasStatus_t put_value(const T& v, void* buf, size_t size, size_t* written) {
  if (size == 0) {
    if (!written) return CUBLAS_STATUS_INVALID_VALUE;
    *written = sizeof(T);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (!buf || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(buf, &v, sizeof(T));
  if (written) *written = sizeof(T);
  return CUBLAS_STATUS_SUCCESS;
}

bool emulated_epilogue(uint32_t e) {
  switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT:
    case CUBLASLT_EPILOGUE_RELU:
    case CUBLASLT_EPILOGUE_BIAS:
    case CUBLASLT_EPILOGUE_RELU_BIAS:
    case CUBLASLT_EPILOGUE_BGRADA:
    case CUBLASLT_EPILOGUE_BGRADB: return true;
    default: return false;
  }
}
bool epilogue_reads_bias(uint32_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS;
}
bool epilogue_writes_bias(uint32_t e) {
  return e == CUBLASLT_EPILOGUE_BGRADA || e == CUBLASLT_EPILOGUE_BGRADB;
}

bool emulated_compute(int32_t compute, int32_t scale) {
  return (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC) &&
         scale == CUDA_R_32F;
}

// A/B types and the C/D type the emulation computes: 16-bit inputs to their own type or f32,
// f32 inputs to f32 (cuBLASLt's table of supported types for CUBLAS_COMPUTE_32F).
bool emulated_types(int32_t ab, int32_t cd) {
  if (!emulated_type(ab)) return false;
  return cd == ab || (cd == CUDA_R_32F && ab != CUDA_R_32F);
}

// The problem a descriptor set describes, checked as cublasLtMatmul / the heuristic check it.
struct Problem {
  DescData desc;
  LayoutData a, b, c, d;
  int64_t m = 0, n = 0, k = 0;
  int32_t bias_type = CUDA_R_32F;  // resolved (-1 → D's type)
};

bool valid_ld(const LayoutData& l) { return l.ld >= 0 && uint64_t(l.ld) >= l.rows; }

cublasStatus_t describe_problem(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t adesc,
                                cublasLtMatrixLayout_t bdesc, cublasLtMatrixLayout_t cdesc,
                                cublasLtMatrixLayout_t ddesc, Problem* p) {
  if (!read_block(op, kDescMagic, &p->desc) || !read_block(adesc, kLayoutMagic, &p->a) ||
      !read_block(bdesc, kLayoutMagic, &p->b) || !read_block(ddesc, kLayoutMagic, &p->d))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (cdesc) {
    if (!read_block(cdesc, kLayoutMagic, &p->c)) return CUBLAS_STATUS_INVALID_VALUE;
  } else {
    p->c = p->d;  // "If Cdesc is omitted, this function assumes it to be equal to Ddesc"
  }
  const DescData& s = p->desc;
  if (!emulated_compute(s.compute, s.scale)) return CUBLAS_STATUS_NOT_SUPPORTED;
  for (const LayoutData* l : {&p->a, &p->b, &p->c, &p->d})
    if (l->order != CUBLASLT_ORDER_COL) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (p->a.type != p->b.type || p->c.type != p->d.type) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!emulated_types(p->a.type, p->d.type)) return CUBLAS_STATUS_NOT_SUPPORTED;
  // Shapes: op(A) m×k, op(B) k×n, C and D m×n.
  const bool ta = s.transa == CUBLAS_OP_T, tb = s.transb == CUBLAS_OP_T;
  uint64_t am = ta ? p->a.cols : p->a.rows, ak = ta ? p->a.rows : p->a.cols;
  uint64_t bk = tb ? p->b.cols : p->b.rows, bn = tb ? p->b.rows : p->b.cols;
  if (am != p->d.rows || bn != p->d.cols || ak != bk || p->c.rows != p->d.rows ||
      p->c.cols != p->d.cols)
    return CUBLAS_STATUS_INVALID_VALUE;
  for (const LayoutData* l : {&p->a, &p->b, &p->c, &p->d})
    if (l->rows > uint64_t(INT32_MAX) || l->cols > uint64_t(INT32_MAX))
      return CUBLAS_STATUS_NOT_SUPPORTED;  // "usually only values that fit int32_t"
  // Leading dimensions. C's ld = 0 (the documented row/column broadcast of an out-of-place C)
  // is not emulated.
  for (const LayoutData* l : {&p->a, &p->b, &p->d})
    if (!valid_ld(*l)) return CUBLAS_STATUS_INVALID_VALUE;
  if (p->c.ld == 0 && p->c.rows > 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!valid_ld(p->c)) return CUBLAS_STATUS_INVALID_VALUE;
  // Batches: the same count everywhere.
  for (const LayoutData* l : {&p->a, &p->b, &p->c, &p->d}) {
    if (l->batch_count < 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (l->batch_count != p->d.batch_count) return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  p->m = int64_t(p->d.rows);
  p->n = int64_t(p->d.cols);
  p->k = int64_t(ak);
  // Epilogue and bias type.
  if (epilogue_reads_bias(s.epilogue) || epilogue_writes_bias(s.epilogue)) {
    // "Bias vector elements are the same type as the elements of output matrix (Dtype)", the
    // documented exceptions being IMMA and FP8 kernels, which are not emulated.
    p->bias_type = s.bias_type == -1 ? p->d.type : s.bias_type;
    if (p->bias_type != p->d.type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (p->d.batch_count > 1 && epilogue_writes_bias(s.epilogue) && s.bias_batch_stride == 0)
      return CUBLAS_STATUS_NOT_SUPPORTED;  // every batch would write the same vector
  }
  return CUBLAS_STATUS_SUCCESS;
}

// The names of cublasStatus_t values (both libraries share them).
const char* status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* status_string(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported "
                                             "(by the CUDA emulation)";
    case CUBLAS_STATUS_LICENSE_ERROR: return "an error was detected when checking the license";
  }
  return "unknown cuBLAS status";
}

// ---- classic cuBLAS handle ---------------------------------------------------------------------

constexpr uint32_t kClassicMagic = 0x43625ad0u;

struct ClassicContext {
  uint32_t magic = kClassicMagic;
  cudaStream_t stream = nullptr;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

ClassicContext* classic(cublasHandle_t h) { return live<ClassicContext>(h); }

}  // namespace

extern "C" {

// ================================ cuBLASLt =====================================================

cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle) {
  if (!lightHandle) return CUBLAS_STATUS_INVALID_VALUE;
  auto* ctx = new_handle<LtContext>();
  if (!ctx) return CUBLAS_STATUS_ALLOC_FAILED;
  *lightHandle = reinterpret_cast<cublasLtHandle_t>(ctx);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle) {
  if (!valid_handle(lightHandle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete_handle(reinterpret_cast<LtContext*>(lightHandle));
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusName(cublasStatus_t status) { return status_name(status); }
const char* cublasLtGetStatusString(cublasStatus_t status) { return status_string(status); }
size_t cublasLtGetVersion(void) { return 120000; }

// ---- layouts ----

cublasStatus_t cublasLtMatrixLayoutInit_internal(cublasLtMatrixLayout_t matLayout, size_t size,
                                                 cudaDataType type, uint64_t rows, uint64_t cols,
                                                 int64_t ld) {
  if (!matLayout) return CUBLAS_STATUS_INVALID_VALUE;
  if (size < sizeof(LayoutData)) return CUBLAS_STATUS_ALLOC_FAILED;
  LayoutData l{};
  l.magic = kLayoutMagic;
  l.type = int32_t(type);
  l.rows = rows;
  l.cols = cols;
  l.ld = ld;
  l.order = CUBLASLT_ORDER_COL;
  l.batch_count = 1;
  l.batch_stride = 0;
  std::memset(matLayout, 0, size);
  write_block(matLayout, l);
  // Types the emulation cannot hold are refused at once (the real library would fail later).
  return emulated_type(l.type) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (!matLayout) return CUBLAS_STATUS_INVALID_VALUE;
  auto* l = new (std::nothrow) cublasLtMatrixLayoutOpaque_t{};
  if (!l) return CUBLAS_STATUS_ALLOC_FAILED;
  cublasStatus_t st = cublasLtMatrixLayoutInit_internal(l, sizeof(*l), type, rows, cols, ld);
  if (st != CUBLAS_STATUS_SUCCESS) {
    delete l;
    return st;
  }
  *matLayout = l;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  delete matLayout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t sizeInBytes) {
  LayoutData l;
  if (!read_block(matLayout, kLayoutMagic, &l)) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: {
      uint32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (!emulated_type(int32_t(v))) return CUBLAS_STATUS_NOT_SUPPORTED;
      l.type = int32_t(v);
      break;
    }
    case CUBLASLT_MATRIX_LAYOUT_ORDER: {
      int32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (v != CUBLASLT_ORDER_COL) return CUBLAS_STATUS_NOT_SUPPORTED;
      l.order = v;
      break;
    }
    case CUBLASLT_MATRIX_LAYOUT_ROWS:
      if (!get_value(buf, sizeInBytes, &l.rows)) return CUBLAS_STATUS_INVALID_VALUE;
      break;
    case CUBLASLT_MATRIX_LAYOUT_COLS:
      if (!get_value(buf, sizeInBytes, &l.cols)) return CUBLAS_STATUS_INVALID_VALUE;
      break;
    case CUBLASLT_MATRIX_LAYOUT_LD:
      if (!get_value(buf, sizeInBytes, &l.ld)) return CUBLAS_STATUS_INVALID_VALUE;
      break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
      if (!get_value(buf, sizeInBytes, &l.batch_count)) return CUBLAS_STATUS_INVALID_VALUE;
      break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      if (!get_value(buf, sizeInBytes, &l.batch_stride)) return CUBLAS_STATUS_INVALID_VALUE;
      break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;  // planar complex, batch modes
  }
  write_block(matLayout, l);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t matLayout,
                                                cublasLtMatrixLayoutAttribute_t attr, void* buf,
                                                size_t sizeInBytes, size_t* sizeWritten) {
  LayoutData l;
  if (!read_block(matLayout, kLayoutMagic, &l)) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: return put_value(uint32_t(l.type), buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATRIX_LAYOUT_ORDER: return put_value(l.order, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATRIX_LAYOUT_ROWS: return put_value(l.rows, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATRIX_LAYOUT_COLS: return put_value(l.cols, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATRIX_LAYOUT_LD: return put_value(l.ld, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
      return put_value(l.batch_count, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      return put_value(l.batch_stride, buf, sizeInBytes, sizeWritten);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

// ---- matmul descriptors ----

cublasStatus_t cublasLtMatmulDescInit_internal(cublasLtMatmulDesc_t matmulDesc, size_t size,
                                               cublasComputeType_t computeType,
                                               cudaDataType_t scaleType) {
  if (!matmulDesc) return CUBLAS_STATUS_INVALID_VALUE;
  if (size < sizeof(DescData)) return CUBLAS_STATUS_ALLOC_FAILED;
  DescData d{};
  d.magic = kDescMagic;
  d.compute = int32_t(computeType);
  d.scale = int32_t(scaleType);
  d.pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  d.transa = d.transb = d.transc = CUBLAS_OP_N;
  d.fill = CUBLAS_FILL_MODE_FULL;
  d.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  d.bias_type = -1;
  d.bias = nullptr;
  d.bias_batch_stride = 0;
  std::memset(matmulDesc, 0, size);
  write_block(matmulDesc, d);
  return emulated_compute(d.compute, d.scale) ? CUBLAS_STATUS_SUCCESS
                                              : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc,
                                        cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
  if (!matmulDesc) return CUBLAS_STATUS_INVALID_VALUE;
  auto* d = new (std::nothrow) cublasLtMatmulDescOpaque_t{};
  if (!d) return CUBLAS_STATUS_ALLOC_FAILED;
  cublasStatus_t st = cublasLtMatmulDescInit_internal(d, sizeof(*d), computeType, scaleType);
  if (st != CUBLAS_STATUS_SUCCESS) {
    delete d;
    return st;
  }
  *matmulDesc = d;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  delete matmulDesc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t sizeInBytes) {
  DescData d;
  if (!read_block(matmulDesc, kDescMagic, &d)) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE:
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: {
      int32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      (attr == CUBLASLT_MATMUL_DESC_COMPUTE_TYPE ? d.compute : d.scale) = v;
      if (!emulated_compute(d.compute, d.scale)) return CUBLAS_STATUS_NOT_SUPPORTED;
      break;
    }
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: {
      int32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (v != CUBLASLT_POINTER_MODE_HOST) return CUBLAS_STATUS_NOT_SUPPORTED;
      d.pointer_mode = v;
      break;
    }
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
      int32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return CUBLAS_STATUS_NOT_SUPPORTED;
      (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d.transa : d.transb) = v;
      break;
    }
    case CUBLASLT_MATMUL_DESC_TRANSC: {  // "currently only CUBLAS_OP_N is supported"
      int32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (v != CUBLAS_OP_N) return CUBLAS_STATUS_NOT_SUPPORTED;
      break;
    }
    case CUBLASLT_MATMUL_DESC_FILL_MODE: {
      int32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (v != CUBLAS_FILL_MODE_FULL) return CUBLAS_STATUS_NOT_SUPPORTED;
      break;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
      uint32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (!emulated_epilogue(v)) return CUBLAS_STATUS_NOT_SUPPORTED;
      d.epilogue = v;
      break;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (!get_value(buf, sizeInBytes, &d.bias)) return CUBLAS_STATUS_INVALID_VALUE;
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
      if (!get_value(buf, sizeInBytes, &d.bias_batch_stride)) return CUBLAS_STATUS_INVALID_VALUE;
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: {
      int32_t v;
      if (!get_value(buf, sizeInBytes, &v)) return CUBLAS_STATUS_INVALID_VALUE;
      if (v != -1 && !emulated_type(v)) return CUBLAS_STATUS_NOT_SUPPORTED;
      d.bias_type = v;
      break;
    }
    default: return CUBLAS_STATUS_NOT_SUPPORTED;  // aux buffers, fp8 scales, SM targets, ...
  }
  write_block(matmulDesc, d);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                              cublasLtMatmulDescAttributes_t attr, void* buf,
                                              size_t sizeInBytes, size_t* sizeWritten) {
  DescData d;
  if (!read_block(matmulDesc, kDescMagic, &d)) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return put_value(d.compute, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return put_value(d.scale, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE:
      return put_value(d.pointer_mode, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_TRANSA: return put_value(d.transa, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_TRANSB: return put_value(d.transb, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_TRANSC: return put_value(d.transc, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_FILL_MODE: return put_value(d.fill, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return put_value(d.epilogue, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return put_value(d.bias, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
      return put_value(d.bias_batch_stride, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
      return put_value(d.bias_type, buf, sizeInBytes, sizeWritten);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

// ---- preferences ----

cublasStatus_t cublasLtMatmulPreferenceInit_internal(cublasLtMatmulPreference_t pref,
                                                     size_t size) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  if (size < sizeof(PrefData)) return CUBLAS_STATUS_ALLOC_FAILED;
  PrefData p{};
  p.magic = kPrefMagic;
  p.search_mode = CUBLASLT_SEARCH_BEST_FIT;
  p.max_workspace = 0;
  p.align_a = p.align_b = p.align_c = p.align_d = 256;
  p.reduction_mask = 0x7;
  p.max_waves = 0.0f;
  p.impl_mask = ~uint64_t(0);
  std::memset(pref, 0, size);
  write_block(pref, p);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  auto* p = new (std::nothrow) cublasLtMatmulPreferenceOpaque_t{};
  if (!p) return CUBLAS_STATUS_ALLOC_FAILED;
  cublasLtMatmulPreferenceInit_internal(p, sizeof(*p));
  *pref = p;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t sizeInBytes) {
  PrefData p;
  if (!read_block(pref, kPrefMagic, &p)) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE:
      ok = get_value(buf, sizeInBytes, &p.search_mode);
      if (ok && p.search_mode != CUBLASLT_SEARCH_BEST_FIT) return CUBLAS_STATUS_NOT_SUPPORTED;
      break;
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      ok = get_value(buf, sizeInBytes, &p.max_workspace);
      break;
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
      ok = get_value(buf, sizeInBytes, &p.reduction_mask);
      break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: ok = get_value(buf, sizeInBytes, &p.align_a); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: ok = get_value(buf, sizeInBytes, &p.align_b); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: ok = get_value(buf, sizeInBytes, &p.align_c); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: ok = get_value(buf, sizeInBytes, &p.align_d); break;
    case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT: ok = get_value(buf, sizeInBytes, &p.max_waves); break;
    case CUBLASLT_MATMUL_PREF_IMPL_MASK: ok = get_value(buf, sizeInBytes, &p.impl_mask); break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (!ok) return CUBLAS_STATUS_INVALID_VALUE;
  write_block(pref, p);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceGetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    void* buf, size_t sizeInBytes,
                                                    size_t* sizeWritten) {
  PrefData p;
  if (!read_block(pref, kPrefMagic, &p)) return CUBLAS_STATUS_INVALID_VALUE;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: return put_value(p.search_mode, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      return put_value(p.max_workspace, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
      return put_value(p.reduction_mask, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return put_value(p.align_a, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return put_value(p.align_b, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return put_value(p.align_c, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return put_value(p.align_d, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT: return put_value(p.max_waves, buf, sizeInBytes, sizeWritten);
    case CUBLASLT_MATMUL_PREF_IMPL_MASK: return put_value(p.impl_mask, buf, sizeInBytes, sizeWritten);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

// ---- heuristic ----

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle,
                                              cublasLtMatmulDesc_t operationDesc,
                                              cublasLtMatrixLayout_t Adesc,
                                              cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc,
                                              cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t preference,
                                              int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int* returnAlgoCount) {
  if (!valid_handle(lightHandle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (requestedAlgoCount <= 0 || !heuristicResultsArray || !returnAlgoCount)
    return CUBLAS_STATUS_INVALID_VALUE;
  *returnAlgoCount = 0;
  PrefData pref;
  if (!read_block(preference, kPrefMagic, &pref)) return CUBLAS_STATUS_INVALID_VALUE;
  Problem p;
  cublasStatus_t st = describe_problem(operationDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  AlgoData a{};
  a.magic = kAlgoMagic;
  a.a_type = p.a.type;
  a.c_type = p.d.type;
  a.epilogue = p.desc.epilogue;
  a.bias_type = (epilogue_reads_bias(a.epilogue) || epilogue_writes_bias(a.epilogue))
                    ? p.bias_type : -1;
  a.align_a = pref.align_a;
  a.align_b = pref.align_b;
  a.align_c = pref.align_c;
  a.align_d = pref.align_d;
  a.align_bias = a.bias_type == -1 ? 1 : alignment_of(p.desc.bias);
  cublasLtMatmulHeuristicResult_t& r = heuristicResultsArray[0];
  std::memset(&r, 0, sizeof r);
  write_block(&r.algo, a);
  r.workspaceSize = 0;
  r.state = CUBLAS_STATUS_SUCCESS;
  r.wavesCount = 1.0f;
  *returnAlgoCount = 1;
  return CUBLAS_STATUS_SUCCESS;
}

// ---- matmul ----

cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
                              const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
                              const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo,
                              void* workspace, size_t workspaceSizeInBytes, cudaStream_t stream) {
  (void)workspace;
  (void)workspaceSizeInBytes;
  (void)stream;
  if (!valid_handle(lightHandle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  Problem p;
  cublasStatus_t st = describe_problem(computeDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (Cdesc && C == D) {
    // In place: "C == D and Cdesc == Ddesc".
    if (p.c.ld != p.d.ld || p.c.batch_stride != p.d.batch_stride)
      return CUBLAS_STATUS_INVALID_VALUE;
  }
  const float fa = *static_cast<const float*>(alpha), fb = *static_cast<const float*>(beta);
  const uint32_t epi = p.desc.epilogue;
  const bool uses_bias = epilogue_reads_bias(epi) || epilogue_writes_bias(epi);

  // Pointers: present where dereferenced, aligned to their element size at least.
  const bool empty_product = p.m == 0 || p.n == 0 || p.k == 0;
  if (!D && p.m > 0 && p.n > 0) return CUBLAS_STATUS_INVALID_VALUE;
  if ((!A || !B) && !empty_product) return CUBLAS_STATUS_INVALID_VALUE;
  if (!C && fb != 0.0f && p.m > 0 && p.n > 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (uses_bias && !p.desc.bias) return CUBLAS_STATUS_INVALID_VALUE;
  const size_t esz = type_size(p.a.type), csz = type_size(p.d.type);
  if (!aligned(A, esz) || !aligned(B, esz) || !aligned(C, csz) || !aligned(D, csz) ||
      (uses_bias && !aligned(p.desc.bias, type_size(p.bias_type))))
    return CUBLAS_STATUS_INVALID_VALUE;

  // The algorithm: chosen by the heuristic for this kind of problem and these alignments.
  if (algo) {
    AlgoData a;
    if (!read_block(algo, kAlgoMagic, &a)) return CUBLAS_STATUS_INVALID_VALUE;
    if (a.a_type != p.a.type || a.c_type != p.d.type || a.epilogue != epi ||
        a.bias_type != (uses_bias ? p.bias_type : -1))
      return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!aligned(A, a.align_a) || !aligned(B, a.align_b) || !aligned(C, a.align_c) ||
        !aligned(D, a.align_d) || (uses_bias && !aligned(p.desc.bias, a.align_bias)))
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }

  const int64_t batches = p.d.batch_count;
  for (int64_t bt = 0; bt < batches; ++bt) {
    Job j;
    j.m = p.m;
    j.n = p.n;
    j.k = p.k;
    j.alpha = fa;
    j.beta = fb;
    auto at = [&](const void* base, const LayoutData& l, size_t size) -> const void* {
      return base ? static_cast<const char*>(base) + bt * l.batch_stride * int64_t(size) : nullptr;
    };
    j.a = Operand{p.a.type, at(A, p.a, esz), p.a.ld, p.desc.transa == CUBLAS_OP_T};
    j.b = Operand{p.b.type, at(B, p.b, esz), p.b.ld, p.desc.transb == CUBLAS_OP_T};
    j.c_type = p.d.type;
    j.c = at(C, p.c, csz);
    j.ldc = p.c.ld;
    j.d = const_cast<void*>(at(D, p.d, csz));
    j.ldd = p.d.ld;
    const void* bias = uses_bias ? static_cast<const char*>(p.desc.bias) +
                                       bt * p.desc.bias_batch_stride *
                                           int64_t(type_size(p.bias_type))
                                 : nullptr;
    if (epilogue_reads_bias(epi)) {
      j.bias = bias;
      j.bias_type = p.bias_type;
    }
    if (epi == CUBLASLT_EPILOGUE_RELU || epi == CUBLASLT_EPILOGUE_RELU_BIAS) j.act = Act::relu;
    j.bgrad_type = p.bias_type;
    if (epi == CUBLASLT_EPILOGUE_BGRADA) j.bgrad_a = const_cast<void*>(bias);
    if (epi == CUBLASLT_EPILOGUE_BGRADB) j.bgrad_b = const_cast<void*>(bias);
    run(j);
  }
  return CUBLAS_STATUS_SUCCESS;
}

// ================================ classic cuBLAS ===============================================

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  auto* ctx = new_handle<ClassicContext>();
  if (!ctx) return CUBLAS_STATUS_ALLOC_FAILED;
  *handle = reinterpret_cast<cublasHandle_t>(ctx);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete_handle(ctx);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  ctx->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!streamId) return CUBLAS_STATUS_INVALID_VALUE;
  *streamId = ctx->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t* mode) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = ctx->pointer_mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_POINTER_MODE_HOST) return CUBLAS_STATUS_NOT_SUPPORTED;
  ctx->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = ctx->math;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_DEFAULT_MATH && mode != CUBLAS_PEDANTIC_MATH) return CUBLAS_STATUS_NOT_SUPPORTED;
  ctx->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) { return status_name(status); }
const char* cublasGetStatusString(cublasStatus_t status) { return status_string(status); }

// cublasGemmEx: C = alpha·op(A)·op(B) + beta·C, column-major; op(A) m×k, op(B) k×n, C m×n.
// Argument checks as documented for cublas<t>gemm(): m, n, k ≥ 0, lda ≥ max(1, rows of A as
// stored), ldb likewise, ldc ≥ max(1, m) → CUBLAS_STATUS_INVALID_VALUE. m = 0 or n = 0 returns
// at once; k = 0 gives C = beta·C ("if beta == 0, C does not have to be a valid input").
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  ClassicContext* ctx = classic(handle);
  if (!ctx) return CUBLAS_STATUS_NOT_INITIALIZED;
  // For real types OP_C is OP_T ("CUBLAS_OP_C: conjugate transpose").
  auto valid_op = [](cublasOperation_t t) {
    return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C;
  };
  if (!valid_op(transa) || !valid_op(transb)) return CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  const int a_rows = ta ? k : m, b_rows = tb ? n : k;
  if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (computeType != CUBLAS_COMPUTE_32F && computeType != CUBLAS_COMPUTE_32F_PEDANTIC)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (Atype != Btype || !emulated_types(Atype, Ctype)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (!C || (k > 0 && (!A || !B))) return CUBLAS_STATUS_INVALID_VALUE;
  const size_t esz = type_size(Atype), csz = type_size(Ctype);
  if (!aligned(A, esz) || !aligned(B, esz) || !aligned(C, csz)) return CUBLAS_STATUS_INVALID_VALUE;
  Job j;
  j.m = m;
  j.n = n;
  j.k = k;
  j.alpha = *static_cast<const float*>(alpha);
  j.beta = *static_cast<const float*>(beta);
  j.a = Operand{int32_t(Atype), A, lda, ta};
  j.b = Operand{int32_t(Btype), B, ldb, tb};
  j.c_type = int32_t(Ctype);
  j.c = C;
  j.ldc = ldc;
  j.d = C;
  j.ldd = ldc;
  run(j);
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
