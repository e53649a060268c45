// CUDA twin of multi-head attention; contract in attention.h, design notes in attention_cuda.h.
//
// Two families of kernels, both flash-style (a block owns a tile of rows and loops over tiles of
// the other side, online softmax in fp32, nothing Tq × Tk in device memory):
//   * tensor-core kernels (bf16, f16): 4 warps, each owning 16 rows of the block's tile; tiles are
//     staged in shared memory and fed to mma.sync.m16n8k16 (fp32 accumulators) through ldmatrix.
//     Templated on DP, the head dim padded to 32, 64 or 128 with zero columns.
//   * SIMT kernels (f32, and bf16/f16 on request): 8 warps, one row per warp, one key (or query)
//     per lane, fp32 FMA.
// Backward is three launches: rowdot (D_i = dO_i · O_i), dkdv (per key tile, loop over query
// tiles), dq (per query tile, loop over key tiles). Scores live in the base-2 domain in the
// tensor-core kernels (x = s·log2(e)/√d, exp2), lse is stored in the natural domain as the CPU
// twin stores it.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and t = lane % 4; every 32-bit register holds two 16-bit elements, the lower
// column (or row, for B) in the low half:
//   A 16×16 (row): a[0] = (g, 2t..2t+1)  a[1] = (g+8, 2t..)  a[2] = (g, 2t+8..)  a[3] = (g+8, 2t+8..)
//   B 16×8 (col):  b[0] = (k 2t..2t+1, n g)  b[1] = (k 2t+8..2t+9, n g)
//   C 16×8 (f32):  c[0], c[1] = (g, 2t), (g, 2t+1);  c[2], c[3] = (g+8, 2t), (g+8, 2t+1)
// So the C fragments of two adjacent 8-column tiles are, packed in pairs, the A fragment of one
// 16-wide k-chunk: P and dS go from one GEMM's accumulators to the next GEMM's A operand
// without shared memory.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernels/attention/attention_cuda.h"
#include "kernels/core/cuda_common.cuh"

namespace tfm::cuda {

namespace {

AttentionPath g_path = AttentionPath::automatic;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kMaxHeadDim = 128;

// ----------------------------------------------------------------------------------------------
// Geometry of one call, passed by value to every kernel.
struct Geo {
  int B = 0, H = 0, Tq = 0, Tk = 0, dk = 0;
  int64_t wq = 0, wk = 0, wv = 0;     // row widths (elements) of q, k, v
  int64_t wo = 0;                     // of out and dout (= H·dk)
  int64_t wdq = 0, wdk = 0, wdv = 0;  // of dq, dk, dv
  int64_t q_col = 0, k_col = 0, v_col = 0;
  bool causal = false;
  bool vec = false;         // every tile row may be moved with 16-byte accesses
  float scale = 0;          // 1/√dk
  float scale_log2 = 0;     // log2(e)/√dk
  bool dropout = false;
  DropoutSpec drop;         // seed, offset and (tensor parallelism) the column block of the heads
  uint32_t threshold = 0;   // keep iff bits >= threshold (dropout_threshold)
  float keep_scale = 1;     // 1/(1 − p)
};

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// ----------------------------------------------------------------------------------------------
// 16-bit packing and dropout.

// Two floats as one register of two 16-bit elements, lo in the low half.
template <class T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Word w of a Philox block, with constant indices only (a run-time index into the array would
// put it in local memory).
__device__ __forceinline__ uint32_t philox_word(const Philox4& r, uint32_t w) {
  return w == 0 ? r.x[0] : (w == 1 ? r.x[1] : (w == 2 ? r.x[2] : r.x[3]));
}

// Dropout multiplier of probability element e (local index ((b·H + h)·Tq + i)·Tk + j, mapped by
// dropout_element(): offset, and the heads' column block under tensor parallelism): 1/(1 − p)
// when kept, else 0. The same mask as dropout_keep() and the CPU twin.
__device__ __forceinline__ float drop_mult(const Geo& g, uint64_t e) {
  const uint64_t x = dropout_element(g.drop, e);
  return philox_word(philox4x32_10(g.drop.seed, x >> 2), uint32_t(x & 3)) >= g.threshold
             ? g.keep_scale
             : 0.f;
}

// Multipliers of elements e and e + 1: one Philox call when they share a counter. Each element
// is mapped on its own: e + 1 may start the next row (odd Tk, past the last key) and so, under
// a column block, lie far from e in the logical tensor.
__device__ __forceinline__ void drop_mult2(const Geo& g, uint64_t e, float& m0, float& m1) {
  const uint64_t x0 = dropout_element(g.drop, e);
  const uint64_t x1 = g.drop.block == 0 ? x0 + 1 : dropout_element(g.drop, e + 1);
  const Philox4 r = philox4x32_10(g.drop.seed, x0 >> 2);
  m0 = philox_word(r, uint32_t(x0 & 3)) >= g.threshold ? g.keep_scale : 0.f;
  const uint32_t bits1 = (x1 >> 2) == (x0 >> 2) ? philox_word(r, uint32_t(x1 & 3))
                                                : philox_word(philox4x32_10(g.drop.seed, x1 >> 2),
                                                              uint32_t(x1 & 3));
  m1 = bits1 >= g.threshold ? g.keep_scale : 0.f;
}

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// ----------------------------------------------------------------------------------------------
// D_i = Σ_d dO[b, i, h·dk + d] · O[b, i, h·dk + d] → dsum[(b·H + h)·Tq + i]. One warp per
// (b, i, h); out and dout are [B, Tq, H·dk].
template <class T>
__global__ void rowdot_kernel(const T* __restrict__ out, const T* __restrict__ dout,
                              float* __restrict__ dsum, Geo g) {
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= int64_t(g.B) * g.Tq * g.H) return;  // whole warps leave together
  const int h = int(w % g.H);
  const int64_t bi = w / g.H;  // b·Tq + i
  const int64_t b = bi / g.Tq, i = bi % g.Tq;
  const T* o = out + bi * g.wo + int64_t(h) * g.dk;
  const T* d = dout + bi * g.wo + int64_t(h) * g.dk;
  float acc = 0.f;
  for (int c = lane; c < g.dk; c += 32) acc += to_float(o[c]) * to_float(d[c]);
  acc = warp_sum(acc);
  if (lane == 0) dsum[(b * g.H + h) * g.Tq + i] = acc;
}

// ==============================================================================================
// Tensor-core kernels (T = __nv_bfloat16 or __half).

constexpr int kThreads = 128;  // 4 warps × 16 rows
constexpr int kPad = 8;        // elements added to every shared-memory row: 16 bytes, so the 8
                               // row addresses of an ldmatrix fall in distinct bank groups

// Copies rows [row0, row0 + ROWS) × columns [0, DP) of a row-major matrix (row stride `width`
// elements, `src` at the head's first column) into a shared tile with row stride DP + kPad.
// Rows at or past rows_valid and columns at or past dk are zero. vec: 16-byte global loads
// (caller guarantees dk % 8 == 0 and 16-byte aligned rows), else 2-byte loads.
template <int ROWS, int DP, class T>
__device__ __forceinline__ void load_tile(T* tile, const T* src, int64_t width, int row0,
                                          int rows_valid, int dk, bool vec) {
  constexpr int kChunks = DP / 8, LD = DP + kPad;
  const uint16_t* s16 = reinterpret_cast<const uint16_t*>(src);
  for (int c = threadIdx.x; c < ROWS * kChunks; c += kThreads) {
    const int r = c / kChunks, d0 = (c % kChunks) * 8, row = row0 + r;
    uint4 val = make_uint4(0u, 0u, 0u, 0u);
    if (row < rows_valid && d0 < dk) {
      const uint16_t* p = s16 + int64_t(row) * width + d0;
      if (vec) {
        val = *reinterpret_cast<const uint4*>(p);
      } else {
        uint32_t w[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const uint32_t lo = d0 + 2 * e < dk ? p[2 * e] : 0u;
          const uint32_t hi = d0 + 2 * e + 1 < dk ? p[2 * e + 1] : 0u;
          w[e] = lo | (hi << 16);
        }
        val = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
    *reinterpret_cast<uint4*>(tile + r * LD + d0) = val;
  }
}

// The reverse: rows [row0, row0 + ROWS) of the shared tile to global rows < rows_valid,
// columns < dk; nothing else is written.
template <int ROWS, int DP, class T>
__device__ __forceinline__ void store_tile(T* dst, int64_t width, const T* tile, int row0,
                                           int rows_valid, int dk, bool vec) {
  constexpr int kChunks = DP / 8, LD = DP + kPad;
  uint16_t* d16 = reinterpret_cast<uint16_t*>(dst);
  const uint16_t* t16 = reinterpret_cast<const uint16_t*>(tile);
  for (int c = threadIdx.x; c < ROWS * kChunks; c += kThreads) {
    const int r = c / kChunks, d0 = (c % kChunks) * 8, row = row0 + r;
    if (row >= rows_valid || d0 >= dk) continue;
    uint16_t* p = d16 + int64_t(row) * width + d0;
    const uint16_t* s = t16 + r * LD + d0;
    if (vec) {
      *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(s);
    } else {
      for (int e = 0; e < 8 && d0 + e < dk; ++e) p[e] = s[e];
    }
  }
}

#if TFM_CUDA_EMULATION
// The CPU engine's warp-collective equivalents of the two instructions below.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  tfm_emu::ldmatrix_x4(r, p, false);
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
  tfm_emu::ldmatrix_x4(r, p, true);
}
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  tfm_emu::mma_m16n8k16(c, a, b0, b1, std::is_same_v<T, __nv_bfloat16>);
}
#else
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");
}

// c += a · b for one 16×8 tile, fp32 accumulators.
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4],
                                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4],
                                                 uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#endif

// A fragment: rows [r0, r0 + 16) × columns [c0, c0 + 16) of a row-major tile (stride LD).
// ldmatrix matrices: 0 = rows 0-7 cols 0-7, 1 = rows 8-15 cols 0-7, 2 = rows 0-7 cols 8-15,
// 3 = rows 8-15 cols 8-15, i.e. a[0..3]; lane l gives the address of row l % 8 of matrix l / 8.
template <int LD, class T>
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const T* tile, int r0, int c0,
                                       int lane) {
  ldsm_x4(a, tile + (r0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + c0 + (lane >> 4) * 8);
}

// B fragments of two 8-column tiles n ∈ [n0, n0 + 16), k ∈ [k0, k0 + 16), from a tile stored
// [n][k] (row n holds B's column n: K for S = Q·Kᵀ). b[0], b[1]: columns n0..n0+7;
// b[2], b[3]: n0+8..n0+15. Matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
// (n 8-15, k 8-15).
template <int LD, class T>
__device__ __forceinline__ void frag_b_nk(uint32_t (&b)[4], const T* tile, int n0, int k0,
                                          int lane) {
  ldsm_x4(b, tile + (n0 + (lane & 7) + (lane >> 4) * 8) * LD + k0 + ((lane >> 3) & 1) * 8);
}

// The same from a tile stored [k][n] (row k holds B's row k: V for O = P·V), transposed by
// ldmatrix.trans. Matrices: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
template <int LD, class T>
__device__ __forceinline__ void frag_b_kn(uint32_t (&b)[4], const T* tile, int k0, int n0,
                                          int lane) {
  ldsm_x4_trans(b, tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + n0 + (lane >> 4) * 8);
}

// The A fragment of k-chunk kc from accumulator tiles acc[2·kc], acc[2·kc + 1] (see the header).
template <class T, int N>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&acc)[N][4], int kc) {
  a[0] = pack2<T>(acc[2 * kc][0], acc[2 * kc][1]);
  a[1] = pack2<T>(acc[2 * kc][2], acc[2 * kc][3]);
  a[2] = pack2<T>(acc[2 * kc + 1][0], acc[2 * kc + 1][1]);
  a[3] = pack2<T>(acc[2 * kc + 1][2], acc[2 * kc + 1][3]);
}

// Writes a warp's 16 × DP accumulator block (times `scale0` for row g, `scale1` for row g + 8)
// into rows [r0, r0 + 16) of a shared tile.
template <int LD, class T, int N>
__device__ __forceinline__ void acc_to_tile(T* tile, const float (&acc)[N][4], int r0, int lane,
                                            float scale0, float scale1) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const int col = n * 8 + 2 * t;
    *reinterpret_cast<uint32_t*>(tile + (r0 + g) * LD + col) =
        pack2<T>(acc[n][0] * scale0, acc[n][1] * scale0);
    *reinterpret_cast<uint32_t*>(tile + (r0 + g + 8) * LD + col) =
        pack2<T>(acc[n][2] * scale1, acc[n][3] * scale1);
  }
}

// Tile sizes per pass; DP = 128 halves the inner tile to stay within registers.
template <int DP> struct Tiles {
  static constexpr int LD = DP + kPad;
  static constexpr int kFwdQ = 64, kFwdK = 64;
  static constexpr int kDqQ = 64, kDqK = DP == 128 ? 32 : 64;
  static constexpr int kKvK = 64, kKvQ = DP == 128 ? 32 : 64;
  static constexpr size_t fwd_smem(size_t elt) { return size_t(kFwdQ + 2 * kFwdK) * LD * elt; }
  static constexpr size_t dq_smem(size_t elt) { return size_t(2 * kDqQ + 2 * kDqK) * LD * elt; }
  static constexpr size_t kv_smem(size_t elt) {
    return size_t(2 * kKvK + 2 * kKvQ) * LD * elt + 2 * kKvQ * sizeof(float);
  }
};

// Forward: block (query tile, head, batch); warp w owns query rows q0 + 16w .. q0 + 16w + 15.
template <class T, int DP>
__global__ void __launch_bounds__(kThreads)
    fwd_mma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
            const int32_t* __restrict__ lengths, T* __restrict__ out, float* __restrict__ lse,
            Geo g) {
  using Tl = Tiles<DP>;
  constexpr int BQ = Tl::kFwdQ, BK = Tl::kFwdK, LD = Tl::LD;
  constexpr int KD = DP / 16;  // k-chunks over the head dim
  constexpr int NS = BK / 8;   // score tiles (8 keys each)
  constexpr int NO = DP / 8;   // output tiles (8 columns each)
  TFM_DYNAMIC_SMEM(smem);
  T* sQ = reinterpret_cast<T*>(smem);  // [BQ][LD], reused for the output tile
  T* sK = sQ + BQ * LD;                // [BK][LD]
  T* sV = sK + BK * LD;                // [BK][LD]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  // Causal rows near the end see the most keys: start those first.
  const int qt = g.causal ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z;
  const int q0 = qt * BQ;
  const int L = min(max(lengths[b], 1), g.Tk);
  const int64_t bh = int64_t(b) * g.H + h;
  const T* qh = q + int64_t(b) * g.Tq * g.wq + g.q_col + int64_t(h) * g.dk;
  const T* kh = k + int64_t(b) * g.Tk * g.wk + g.k_col + int64_t(h) * g.dk;
  const T* vh = v + int64_t(b) * g.Tk * g.wv + g.v_col + int64_t(h) * g.dk;
  T* oh = out + int64_t(b) * g.Tq * g.wo + int64_t(h) * g.dk;

  load_tile<BQ, DP>(sQ, qh, g.wq, q0, g.Tq, g.dk, g.vec);
  __syncthreads();
  uint32_t qa[KD][4];
#pragma unroll
  for (int kd = 0; kd < KD; ++kd) frag_a<LD>(qa[kd], sQ, warp * 16, kd * 16, lane);

  const int row0 = q0 + warp * 16 + gq, row1 = row0 + 8;  // this thread's two rows
  float o[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};  // running max (base 2) of rows row0, row1
  float l[2] = {0.f, 0.f};              // running Σ 2^(x − m) over this thread's columns

  const int key_end = g.causal ? min(L, min(q0 + BQ, g.Tq)) : L;
  for (int k0 = 0; k0 < key_end; k0 += BK) {
    __syncthreads();  // the previous K, V tiles are consumed
    load_tile<BK, DP>(sK, kh, g.wk, k0, L, g.dk, g.vec);
    load_tile<BK, DP>(sV, vh, g.wv, k0, L, g.dk, g.vec);
    __syncthreads();

    float s[NS][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
      for (int np = 0; np < NS / 2; ++np) {
        uint32_t bf[4];
        frag_b_nk<LD>(bf, sK, np * 16, kd * 16, lane);
        mma16816<T>(s[2 * np], qa[kd], bf[0], bf[1]);
        mma16816<T>(s[2 * np + 1], qa[kd], bf[2], bf[3]);
      }
    }

    // Scale to base 2, mask, and the tile's row maxima (a row's columns sit on the 4 lanes
    // of a quad).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NS; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = (e >> 1) ? row1 : row0;
        const int j = k0 + n * 8 + 2 * tq + (e & 1);
        const bool ok = j < L && (!g.causal || j <= i);
        s[n][e] = ok ? s[n][e] * g.scale_log2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
      }
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m[r], mx[r]);
      base[r] = m_new == -INFINITY ? 0.f : m_new;  // a row with nothing visible yet stays 0
      const float alpha = exp2f(m[r] - base[r]);   // 0 while m was −∞
      m[r] = m_new;
      l[r] *= alpha;
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }
#pragma unroll
    for (int n = 0; n < NS; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[n][e] - base[e >> 1]);  // masked: 2^−∞ = 0
        l[e >> 1] += p;                                  // the softmax sum ignores dropout
        s[n][e] = p;
      }
    }
    if (g.dropout) {
#pragma unroll
      for (int n = 0; n < NS; ++n) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int i = r ? row1 : row0;
          const int j = k0 + n * 8 + 2 * tq;
          float m0, m1;
          drop_mult2(g, (uint64_t(bh) * g.Tq + i) * g.Tk + j, m0, m1);
          s[n][2 * r] *= m0;
          s[n][2 * r + 1] *= m1;
        }
      }
    }

    // O += P·V: P from the score accumulators, V through ldmatrix.trans.
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
      uint32_t pa[4];
      acc_to_a<T>(pa, s, kc);
#pragma unroll
      for (int np = 0; np < NO / 2; ++np) {
        uint32_t bf[4];
        frag_b_kn<LD>(bf, sV, kc * 16, np * 16, lane);
        mma16816<T>(o[2 * np], pa, bf[0], bf[1]);
        mma16816<T>(o[2 * np + 1], pa, bf[2], bf[3]);
      }
    }
  }

  // Full row sums, lse, and the normalised output through shared memory.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  if (tq == 0) {
    if (row0 < g.Tq) lse[bh * g.Tq + row0] = (m[0] + log2f(l[0])) * kLn2;
    if (row1 < g.Tq) lse[bh * g.Tq + row1] = (m[1] + log2f(l[1])) * kLn2;
  }
  // Every real row sees key 0, so l > 0; the guard only keeps padding rows finite.
  const float inv0 = l[0] > 0.f ? 1.f / l[0] : 0.f, inv1 = l[1] > 0.f ? 1.f / l[1] : 0.f;
  __syncwarp();  // this warp's rows of sQ were read only by this warp (its Q fragments)
  acc_to_tile<LD, T>(sQ, o, warp * 16, lane, inv0, inv1);
  __syncthreads();
  store_tile<BQ, DP>(oh, g.wo, sQ, q0, g.Tq, g.dk, g.vec);
}

// dQ: block (query tile, head, batch); warp w owns 16 query rows; loops over key tiles.
//   S = Q·Kᵀ, P = 2^(S·c − lse·log2 e), dP = (dO·Vᵀ)∘mult, dS = P∘(dP − D), dQ = dS·K/√d.
template <class T, int DP>
__global__ void __launch_bounds__(kThreads)
    dq_mma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
           const int32_t* __restrict__ lengths, const T* __restrict__ dout,
           const float* __restrict__ lse, const float* __restrict__ dsum, T* __restrict__ dq,
           Geo g) {
  using Tl = Tiles<DP>;
  constexpr int BQ = Tl::kDqQ, BK = Tl::kDqK, LD = Tl::LD;
  constexpr int KD = DP / 16, NS = BK / 8, NO = DP / 8;
  TFM_DYNAMIC_SMEM(smem);
  T* sQ = reinterpret_cast<T*>(smem);  // [BQ][LD], reused for the dQ tile
  T* sdO = sQ + BQ * LD;               // [BQ][LD]
  T* sK = sdO + BQ * LD;               // [BK][LD]
  T* sV = sK + BK * LD;                // [BK][LD]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int qt = g.causal ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z;
  const int q0 = qt * BQ;
  const int L = min(max(lengths[b], 1), g.Tk);
  const int64_t bh = int64_t(b) * g.H + h;
  const T* qh = q + int64_t(b) * g.Tq * g.wq + g.q_col + int64_t(h) * g.dk;
  const T* kh = k + int64_t(b) * g.Tk * g.wk + g.k_col + int64_t(h) * g.dk;
  const T* vh = v + int64_t(b) * g.Tk * g.wv + g.v_col + int64_t(h) * g.dk;
  const T* doh = dout + int64_t(b) * g.Tq * g.wo + int64_t(h) * g.dk;
  T* dqh = dq + int64_t(b) * g.Tq * g.wdq + g.q_col + int64_t(h) * g.dk;

  load_tile<BQ, DP>(sQ, qh, g.wq, q0, g.Tq, g.dk, g.vec);
  load_tile<BQ, DP>(sdO, doh, g.wo, q0, g.Tq, g.dk, g.vec);

  const int row0 = q0 + warp * 16 + gq, row1 = row0 + 8;
  const float lse0 = row0 < g.Tq ? lse[bh * g.Tq + row0] * kLog2e : 0.f;
  const float lse1 = row1 < g.Tq ? lse[bh * g.Tq + row1] * kLog2e : 0.f;
  const float D0 = row0 < g.Tq ? dsum[bh * g.Tq + row0] : 0.f;
  const float D1 = row1 < g.Tq ? dsum[bh * g.Tq + row1] : 0.f;
  float acc[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

  const int key_end = g.causal ? min(L, min(q0 + BQ, g.Tq)) : L;
  for (int k0 = 0; k0 < key_end; k0 += BK) {
    __syncthreads();  // previous K, V consumed (first pass: nothing to wait for)
    load_tile<BK, DP>(sK, kh, g.wk, k0, L, g.dk, g.vec);
    load_tile<BK, DP>(sV, vh, g.wv, k0, L, g.dk, g.vec);
    __syncthreads();  // also publishes sQ, sdO on the first pass

    float s[NS][4], dp[NS][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
      dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.f;
    }
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) {
      uint32_t qa[4], da[4];
      frag_a<LD>(qa, sQ, warp * 16, kd * 16, lane);
      frag_a<LD>(da, sdO, warp * 16, kd * 16, lane);
#pragma unroll
      for (int np = 0; np < NS / 2; ++np) {
        uint32_t bk[4], bv[4];
        frag_b_nk<LD>(bk, sK, np * 16, kd * 16, lane);
        frag_b_nk<LD>(bv, sV, np * 16, kd * 16, lane);
        mma16816<T>(s[2 * np], qa, bk[0], bk[1]);
        mma16816<T>(s[2 * np + 1], qa, bk[2], bk[3]);
        mma16816<T>(dp[2 * np], da, bv[0], bv[1]);
        mma16816<T>(dp[2 * np + 1], da, bv[2], bv[3]);
      }
    }
    if (g.dropout) {
#pragma unroll
      for (int n = 0; n < NS; ++n) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int i = r ? row1 : row0;
          const int j = k0 + n * 8 + 2 * tq;
          float m0, m1;
          drop_mult2(g, (uint64_t(bh) * g.Tq + i) * g.Tk + j, m0, m1);
          dp[n][2 * r] *= m0;
          dp[n][2 * r + 1] *= m1;
        }
      }
    }
#pragma unroll
    for (int n = 0; n < NS; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = (e >> 1) ? row1 : row0;
        const int j = k0 + n * 8 + 2 * tq + (e & 1);
        const bool ok = i < g.Tq && j < L && (!g.causal || j <= i);
        const float p = ok ? exp2f(s[n][e] * g.scale_log2 - ((e >> 1) ? lse1 : lse0)) : 0.f;
        s[n][e] = p * (dp[n][e] - ((e >> 1) ? D1 : D0));  // dS (the 1/√d comes at the end)
      }
    }
    // dQ += dS·K: K is [key][d] = B's [k][n], so ldmatrix.trans.
#pragma unroll
    for (int kc = 0; kc < BK / 16; ++kc) {
      uint32_t a[4];
      acc_to_a<T>(a, s, kc);
#pragma unroll
      for (int np = 0; np < NO / 2; ++np) {
        uint32_t bf[4];
        frag_b_kn<LD>(bf, sK, kc * 16, np * 16, lane);
        mma16816<T>(acc[2 * np], a, bf[0], bf[1]);
        mma16816<T>(acc[2 * np + 1], a, bf[2], bf[3]);
      }
    }
  }

  __syncwarp();  // this warp's rows of sQ were read only by this warp
  acc_to_tile<LD, T>(sQ, acc, warp * 16, lane, g.scale, g.scale);
  __syncthreads();
  store_tile<BQ, DP>(dqh, g.wdq, sQ, q0, g.Tq, g.dk, g.vec);
}

// dK, dV: block (key tile, head, batch); warp w owns 16 keys; loops over query tiles. Works on
// the transposed products so that each warp's accumulators are its own keys' rows:
//   Sᵀ = K·Qᵀ, Pᵀ, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ∘(dPᵀ∘mult − D), dV += (Pᵀ∘mult)·dO, dK += dSᵀ·Q/√d.
template <class T, int DP>
__global__ void __launch_bounds__(kThreads)
    dkdv_mma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
             const int32_t* __restrict__ lengths, const T* __restrict__ dout,
             const float* __restrict__ lse, const float* __restrict__ dsum, T* dk, T* dv,
             Geo g) {
  using Tl = Tiles<DP>;
  constexpr int BK = Tl::kKvK, BQ = Tl::kKvQ, LD = Tl::LD;
  constexpr int KD = DP / 16;
  constexpr int NS = BQ / 8;  // transposed-score tiles (8 queries each)
  constexpr int NO = DP / 8;
  TFM_DYNAMIC_SMEM(smem);
  T* sK = reinterpret_cast<T*>(smem);  // [BK][LD], reused for the dK tile
  T* sV = sK + BK * LD;                // [BK][LD], reused for the dV tile
  T* sQ = sV + BK * LD;                // [BQ][LD]
  T* sdO = sQ + BQ * LD;               // [BQ][LD]
  float* sL = reinterpret_cast<float*>(sdO + BQ * LD);  // [BQ] lse·log2 e of the tile's queries
  float* sD = sL + BQ;                                   // [BQ] D of the tile's queries

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
  const int h = blockIdx.y, b = blockIdx.z;
  const int k0 = blockIdx.x * BK;
  const int L = min(max(lengths[b], 1), g.Tk);
  const int64_t bh = int64_t(b) * g.H + h;
  const T* qh = q + int64_t(b) * g.Tq * g.wq + g.q_col + int64_t(h) * g.dk;
  const T* kh = k + int64_t(b) * g.Tk * g.wk + g.k_col + int64_t(h) * g.dk;
  const T* vh = v + int64_t(b) * g.Tk * g.wv + g.v_col + int64_t(h) * g.dk;
  const T* doh = dout + int64_t(b) * g.Tq * g.wo + int64_t(h) * g.dk;
  T* dkh = dk + int64_t(b) * g.Tk * g.wdk + g.k_col + int64_t(h) * g.dk;
  T* dvh = dv + int64_t(b) * g.Tk * g.wdv + g.v_col + int64_t(h) * g.dk;

  const int key0 = k0 + warp * 16 + gq, key1 = key0 + 8;  // this thread's two keys
  float dka[NO][4], dva[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    dka[n][0] = dka[n][1] = dka[n][2] = dka[n][3] = 0.f;
    dva[n][0] = dva[n][1] = dva[n][2] = dva[n][3] = 0.f;
  }

  if (k0 < L) {  // a tile of padding keys only has zero gradients
    load_tile<BK, DP>(sK, kh, g.wk, k0, L, g.dk, g.vec);
    load_tile<BK, DP>(sV, vh, g.wv, k0, L, g.dk, g.vec);
    // Causal: query i sees key j only if i ≥ j, so queries before k0 contribute nothing.
    const int q_begin = g.causal ? (k0 / BQ) * BQ : 0;
    for (int q0 = q_begin; q0 < g.Tq; q0 += BQ) {
      __syncthreads();  // the previous Q, dO, lse, D tiles are consumed
      load_tile<BQ, DP>(sQ, qh, g.wq, q0, g.Tq, g.dk, g.vec);
      load_tile<BQ, DP>(sdO, doh, g.wo, q0, g.Tq, g.dk, g.vec);
      for (int t = threadIdx.x; t < BQ; t += kThreads) {
        const int i = q0 + t;
        sL[t] = i < g.Tq ? lse[bh * g.Tq + i] * kLog2e : 0.f;
        sD[t] = i < g.Tq ? dsum[bh * g.Tq + i] : 0.f;
      }
      __syncthreads();  // also publishes sK, sV on the first pass

      float st[NS][4], dpt[NS][4];
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        st[n][0] = st[n][1] = st[n][2] = st[n][3] = 0.f;
        dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.f;
      }
#pragma unroll
      for (int kd = 0; kd < KD; ++kd) {
        uint32_t ka[4], va[4];
        frag_a<LD>(ka, sK, warp * 16, kd * 16, lane);
        frag_a<LD>(va, sV, warp * 16, kd * 16, lane);
#pragma unroll
        for (int np = 0; np < NS / 2; ++np) {
          uint32_t bq[4], bd[4];
          frag_b_nk<LD>(bq, sQ, np * 16, kd * 16, lane);
          frag_b_nk<LD>(bd, sdO, np * 16, kd * 16, lane);
          mma16816<T>(st[2 * np], ka, bq[0], bq[1]);
          mma16816<T>(st[2 * np + 1], ka, bq[2], bq[3]);
          mma16816<T>(dpt[2 * np], va, bd[0], bd[1]);
          mma16816<T>(dpt[2 * np + 1], va, bd[2], bd[3]);
        }
      }
      // Element (e) of tile n: key (e < 2 ? key0 : key1), query q0 + 8n + 2t + (e & 1).
#pragma unroll
      for (int n = 0; n < NS; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = (e >> 1) ? key1 : key0;
          const int tcol = n * 8 + 2 * tq + (e & 1);
          const int i = q0 + tcol;
          const bool ok = i < g.Tq && j < L && (!g.causal || j <= i);
          const float p = ok ? exp2f(st[n][e] * g.scale_log2 - sL[tcol]) : 0.f;
          const float mult =
              (g.dropout && ok) ? drop_mult(g, (uint64_t(bh) * g.Tq + i) * g.Tk + j) : 1.f;
          dpt[n][e] = p * (dpt[n][e] * mult - sD[tcol]);  // dSᵀ
          st[n][e] = p * mult;                            // P'ᵀ (after dropout)
        }
      }
      // dV += P'ᵀ·dO and dK += dSᵀ·Q; dO and Q are [query][d] = B's [k][n].
#pragma unroll
      for (int qc = 0; qc < BQ / 16; ++qc) {
        uint32_t pa[4], sa[4];
        acc_to_a<T>(pa, st, qc);
        acc_to_a<T>(sa, dpt, qc);
#pragma unroll
        for (int np = 0; np < NO / 2; ++np) {
          uint32_t bd[4], bq[4];
          frag_b_kn<LD>(bd, sdO, qc * 16, np * 16, lane);
          frag_b_kn<LD>(bq, sQ, qc * 16, np * 16, lane);
          mma16816<T>(dva[2 * np], pa, bd[0], bd[1]);
          mma16816<T>(dva[2 * np + 1], pa, bd[2], bd[3]);
          mma16816<T>(dka[2 * np], sa, bq[0], bq[1]);
          mma16816<T>(dka[2 * np + 1], sa, bq[2], bq[3]);
        }
      }
    }
  }

  // Rows of keys at or past L hold zeros (their accumulators never moved): written, as the CPU
  // twin writes them.
  __syncwarp();  // this warp's rows of sK, sV were read only by this warp
  acc_to_tile<LD, T>(sK, dka, warp * 16, lane, g.scale, g.scale);
  acc_to_tile<LD, T>(sV, dva, warp * 16, lane, 1.f, 1.f);
  __syncthreads();
  store_tile<BK, DP>(dkh, g.wdk, sK, k0, g.Tk, g.dk, g.vec);
  store_tile<BK, DP>(dvh, g.wdv, sV, k0, g.Tk, g.dk, g.vec);
}

// ==============================================================================================
// SIMT kernels (any T; f32 arithmetic). One row per warp, one key/query per lane; tiles in shared
// memory as f32 with rows padded to an odd stride, so lane-per-row reads hit distinct banks.

constexpr int kSimtRows = 8;   // warps per block, one row (query or key) each
constexpr int kSimtTile = 32;  // keys (or queries) per step, one per lane
constexpr int kSimtLD = kMaxHeadDim + 1;
constexpr int kSimtCols = kMaxHeadDim / 32;  // head-dim columns per lane: d = lane + 32c

// rows [row0, row0 + nrows) of a [T, width] matrix (head columns from src) as f32; rows at or
// past rows_valid are zero.
template <class T>
__device__ __forceinline__ void load_rows_f32(float* dst, const T* src, int64_t width, int row0,
                                              int nrows, int rows_valid, int dk) {
  for (int x = threadIdx.x; x < nrows * dk; x += blockDim.x) {
    const int r = x / dk, d = x % dk, row = row0 + r;
    dst[r * kSimtLD + d] = row < rows_valid ? to_float(src[int64_t(row) * width + d]) : 0.f;
  }
}

__device__ __forceinline__ float dot_rows(const float* a, const float* b, int dk) {
  float s = 0.f;
  for (int d = 0; d < dk; ++d) s += a[d] * b[d];
  return s;
}

template <class T>
__global__ void __launch_bounds__(kSimtRows * 32)
    fwd_simt(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
             const int32_t* __restrict__ lengths, T* __restrict__ out, float* __restrict__ lse,
             Geo g) {
  __shared__ float sq[kSimtRows][kSimtLD];
  __shared__ float sk[kSimtTile][kSimtLD];
  __shared__ float sv[kSimtTile][kSimtLD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qt = g.causal ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z;
  const int q0 = qt * kSimtRows, i = q0 + warp;
  const int L = min(max(lengths[b], 1), g.Tk);
  const int64_t bh = int64_t(b) * g.H + h;
  const T* qh = q + int64_t(b) * g.Tq * g.wq + g.q_col + int64_t(h) * g.dk;
  const T* kh = k + int64_t(b) * g.Tk * g.wk + g.k_col + int64_t(h) * g.dk;
  const T* vh = v + int64_t(b) * g.Tk * g.wv + g.v_col + int64_t(h) * g.dk;

  load_rows_f32(&sq[0][0], qh, g.wq, q0, kSimtRows, g.Tq, g.dk);
  float m = -INFINITY, l = 0.f, o[kSimtCols] = {};
  const int key_end = g.causal ? min(L, min(q0 + kSimtRows, g.Tq)) : L;
  for (int k0 = 0; k0 < key_end; k0 += kSimtTile) {
    __syncthreads();
    load_rows_f32(&sk[0][0], kh, g.wk, k0, kSimtTile, L, g.dk);
    load_rows_f32(&sv[0][0], vh, g.wv, k0, kSimtTile, L, g.dk);
    __syncthreads();
    const int j = k0 + lane;
    const bool ok = i < g.Tq && j < L && (!g.causal || j <= i);
    const float s = ok ? dot_rows(sq[warp], sk[lane], g.dk) * g.scale : -INFINITY;
    const float m_new = fmaxf(m, warp_max(s));
    const float base = m_new == -INFINITY ? 0.f : m_new;
    const float alpha = expf(m - base);
    float p = expf(s - base);
    l = l * alpha + warp_sum(p);
    m = m_new;
    if (g.dropout && ok) p *= drop_mult(g, (uint64_t(bh) * g.Tq + i) * g.Tk + j);
#pragma unroll
    for (int c = 0; c < kSimtCols; ++c) o[c] *= alpha;
    for (int jj = 0; jj < kSimtTile; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
      for (int c = 0; c < kSimtCols; ++c) {
        const int d = lane + 32 * c;
        if (d < g.dk) o[c] += pj * sv[jj][d];
      }
    }
  }
  if (i < g.Tq) {
    if (lane == 0) lse[bh * g.Tq + i] = m + logf(l);
    T* orow = out + (int64_t(b) * g.Tq + i) * g.wo + int64_t(h) * g.dk;
#pragma unroll
    for (int c = 0; c < kSimtCols; ++c) {
      const int d = lane + 32 * c;
      if (d < g.dk) orow[d] = from_float<T>(o[c] / l);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kSimtRows * 32)
    dq_simt(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
            const int32_t* __restrict__ lengths, const T* __restrict__ dout,
            const float* __restrict__ lse, const float* __restrict__ dsum, T* __restrict__ dq,
            Geo g) {
  __shared__ float sq[kSimtRows][kSimtLD];
  __shared__ float sdo[kSimtRows][kSimtLD];
  __shared__ float sk[kSimtTile][kSimtLD];
  __shared__ float sv[kSimtTile][kSimtLD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qt = g.causal ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z;
  const int q0 = qt * kSimtRows, i = q0 + warp;
  const int L = min(max(lengths[b], 1), g.Tk);
  const int64_t bh = int64_t(b) * g.H + h;
  const T* qh = q + int64_t(b) * g.Tq * g.wq + g.q_col + int64_t(h) * g.dk;
  const T* kh = k + int64_t(b) * g.Tk * g.wk + g.k_col + int64_t(h) * g.dk;
  const T* vh = v + int64_t(b) * g.Tk * g.wv + g.v_col + int64_t(h) * g.dk;
  const T* doh = dout + int64_t(b) * g.Tq * g.wo + int64_t(h) * g.dk;

  load_rows_f32(&sq[0][0], qh, g.wq, q0, kSimtRows, g.Tq, g.dk);
  load_rows_f32(&sdo[0][0], doh, g.wo, q0, kSimtRows, g.Tq, g.dk);
  const float lse_i = i < g.Tq ? lse[bh * g.Tq + i] : 0.f;
  const float D_i = i < g.Tq ? dsum[bh * g.Tq + i] : 0.f;
  float acc[kSimtCols] = {};
  const int key_end = g.causal ? min(L, min(q0 + kSimtRows, g.Tq)) : L;
  for (int k0 = 0; k0 < key_end; k0 += kSimtTile) {
    __syncthreads();
    load_rows_f32(&sk[0][0], kh, g.wk, k0, kSimtTile, L, g.dk);
    load_rows_f32(&sv[0][0], vh, g.wv, k0, kSimtTile, L, g.dk);
    __syncthreads();
    const int j = k0 + lane;
    const bool ok = i < g.Tq && j < L && (!g.causal || j <= i);
    float ds = 0.f;
    if (ok) {
      const float p = expf(dot_rows(sq[warp], sk[lane], g.dk) * g.scale - lse_i);
      float dp = dot_rows(sdo[warp], sv[lane], g.dk);
      if (g.dropout) dp *= drop_mult(g, (uint64_t(bh) * g.Tq + i) * g.Tk + j);
      ds = p * (dp - D_i);
    }
    for (int jj = 0; jj < kSimtTile; ++jj) {
      const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
      for (int c = 0; c < kSimtCols; ++c) {
        const int d = lane + 32 * c;
        if (d < g.dk) acc[c] += dsj * sk[jj][d];
      }
    }
  }
  if (i < g.Tq) {
    T* row = dq + (int64_t(b) * g.Tq + i) * g.wdq + g.q_col + int64_t(h) * g.dk;
#pragma unroll
    for (int c = 0; c < kSimtCols; ++c) {
      const int d = lane + 32 * c;
      if (d < g.dk) row[d] = from_float<T>(acc[c] * g.scale);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kSimtRows * 32)
    dkdv_simt(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
              const int32_t* __restrict__ lengths, const T* __restrict__ dout,
              const float* __restrict__ lse, const float* __restrict__ dsum, T* dk, T* dv,
              Geo g) {
  __shared__ float sk[kSimtRows][kSimtLD];
  __shared__ float sv[kSimtRows][kSimtLD];
  __shared__ float sq[kSimtTile][kSimtLD];
  __shared__ float sdo[kSimtTile][kSimtLD];
  __shared__ float sl[kSimtTile], sd[kSimtTile];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = blockIdx.y, b = blockIdx.z;
  const int k0 = blockIdx.x * kSimtRows, j = k0 + warp;
  const int L = min(max(lengths[b], 1), g.Tk);
  const int64_t bh = int64_t(b) * g.H + h;
  const T* qh = q + int64_t(b) * g.Tq * g.wq + g.q_col + int64_t(h) * g.dk;
  const T* kh = k + int64_t(b) * g.Tk * g.wk + g.k_col + int64_t(h) * g.dk;
  const T* vh = v + int64_t(b) * g.Tk * g.wv + g.v_col + int64_t(h) * g.dk;
  const T* doh = dout + int64_t(b) * g.Tq * g.wo + int64_t(h) * g.dk;

  float dka[kSimtCols] = {}, dva[kSimtCols] = {};
  if (k0 < L) {
    load_rows_f32(&sk[0][0], kh, g.wk, k0, kSimtRows, L, g.dk);
    load_rows_f32(&sv[0][0], vh, g.wv, k0, kSimtRows, L, g.dk);
    const int q_begin = g.causal ? (k0 / kSimtTile) * kSimtTile : 0;
    for (int q0 = q_begin; q0 < g.Tq; q0 += kSimtTile) {
      __syncthreads();
      load_rows_f32(&sq[0][0], qh, g.wq, q0, kSimtTile, g.Tq, g.dk);
      load_rows_f32(&sdo[0][0], doh, g.wo, q0, kSimtTile, g.Tq, g.dk);
      if (threadIdx.x < kSimtTile) {
        const int i = q0 + threadIdx.x;
        sl[threadIdx.x] = i < g.Tq ? lse[bh * g.Tq + i] : 0.f;
        sd[threadIdx.x] = i < g.Tq ? dsum[bh * g.Tq + i] : 0.f;
      }
      __syncthreads();
      const int i = q0 + lane;
      const bool ok = i < g.Tq && j < L && (!g.causal || j <= i);
      float pd = 0.f, ds = 0.f;
      if (ok) {
        const float p = expf(dot_rows(sq[lane], sk[warp], g.dk) * g.scale - sl[lane]);
        const float mult =
            g.dropout ? drop_mult(g, (uint64_t(bh) * g.Tq + i) * g.Tk + j) : 1.f;
        const float dp = dot_rows(sdo[lane], sv[warp], g.dk) * mult;
        pd = p * mult;
        ds = p * (dp - sd[lane]);
      }
      for (int ii = 0; ii < kSimtTile; ++ii) {
        const float pi = __shfl_sync(0xffffffffu, pd, ii);
        const float si = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
        for (int c = 0; c < kSimtCols; ++c) {
          const int d = lane + 32 * c;
          if (d < g.dk) {
            dva[c] += pi * sdo[ii][d];
            dka[c] += si * sq[ii][d];
          }
        }
      }
    }
  }
  if (j < g.Tk) {
    T* krow = dk + (int64_t(b) * g.Tk + j) * g.wdk + g.k_col + int64_t(h) * g.dk;
    T* vrow = dv + (int64_t(b) * g.Tk + j) * g.wdv + g.v_col + int64_t(h) * g.dk;
#pragma unroll
    for (int c = 0; c < kSimtCols; ++c) {
      const int d = lane + 32 * c;
      if (d < g.dk) {
        krow[d] = from_float<T>(dka[c] * g.scale);
        vrow[d] = from_float<T>(dva[c]);
      }
    }
  }
}

// ==============================================================================================
// Host side.

Geo make_geo(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
             const char* op) {
  constexpr int64_t kIntMax = 0x7fffffff;
  TFM_CHECK(a.head_dim <= kMaxHeadDim, op, ": the CUDA twin supports head_dim up to ",
            kMaxHeadDim, ", got ", a.head_dim);
  TFM_CHECK(q.dim(1) <= kIntMax && k.dim(1) <= kIntMax, op, ": sequence lengths ", q.dim(1),
            ", ", k.dim(1), " are too long for the CUDA twin");
  TFM_CHECK(q.dim(0) <= 65535 && a.heads <= 65535, op, ": the CUDA twin launches one block row "
            "per batch entry and head, at most 65535 each; got B = ", q.dim(0), ", H = ", a.heads);
  Geo g;
  g.B = int(q.dim(0));
  g.Tq = int(q.dim(1));
  g.Tk = int(k.dim(1));
  g.H = int(a.heads);
  g.dk = int(a.head_dim);
  g.wq = q.dim(2);
  g.wk = k.dim(2);
  g.wv = v.dim(2);
  g.wo = a.heads * a.head_dim;
  g.wdq = g.wq, g.wdk = g.wk, g.wdv = g.wv;
  g.q_col = a.q_col, g.k_col = a.k_col, g.v_col = a.v_col;
  g.causal = a.causal;
  g.scale = float(1.0 / std::sqrt(double(a.head_dim)));
  g.scale_log2 = float(1.4426950408889634 / std::sqrt(double(a.head_dim)));
  g.dropout = a.dropout.active();
  g.drop = a.dropout;
  g.threshold = dropout_threshold(a.dropout.p);
  g.keep_scale = float(1.0 / (1.0 - double(a.dropout.p)));
  return g;
}

// 16-byte accesses: every tile row starts on a 16-byte boundary and the head's columns are whole
// 8-element chunks.
bool vec_ok(const Geo& g, std::initializer_list<const Tensor*> tensors) {
  if (g.dk % 8) return false;
  for (int64_t x : {g.wq, g.wk, g.wv, g.wo, g.wdq, g.wdk, g.wdv, g.q_col, g.k_col, g.v_col})
    if (x % 8) return false;
  for (const Tensor* t : tensors)
    if (!aligned16(t->data)) return false;
  return true;
}

int padded_head_dim(int dk) { return dk <= 32 ? 32 : dk <= 64 ? 64 : 128; }

template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes, const char* op) {
  if (bytes > 48 * 1024)
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(bytes)),
               op);
}

template <class T, int DP>
void forward_mma(const Geo& g, const Tensor& q, const Tensor& k, const Tensor& v,
                 const int32_t* lengths, const Tensor& out, const Tensor& lse, cudaStream_t st) {
  using Tl = Tiles<DP>;
  const size_t smem = Tl::fwd_smem(sizeof(T));
  allow_smem(fwd_mma<T, DP>, smem, "attention_forward");
  dim3 grid(ceil_div(g.Tq, Tl::kFwdQ), g.H, g.B);
  launch_kernel(fwd_mma<T, DP>, grid, kThreads, smem, st, static_cast<const T*>(q.data),
                static_cast<const T*>(k.data), static_cast<const T*>(v.data), lengths,
                static_cast<T*>(out.data), static_cast<float*>(lse.data), g);
  check_launch("attention_forward");
}

template <class T>
void forward_typed(const Geo& g, const Tensor& q, const Tensor& k, const Tensor& v,
                   const int32_t* lengths, const Tensor& out, const Tensor& lse, cudaStream_t st,
                   bool tensor_cores) {
  if constexpr (!std::is_same_v<T, float>) {
    if (tensor_cores) {
      switch (padded_head_dim(g.dk)) {
        case 32: return forward_mma<T, 32>(g, q, k, v, lengths, out, lse, st);
        case 64: return forward_mma<T, 64>(g, q, k, v, lengths, out, lse, st);
        default: return forward_mma<T, 128>(g, q, k, v, lengths, out, lse, st);
      }
    }
  }
  dim3 grid(ceil_div(g.Tq, kSimtRows), g.H, g.B);
  launch_kernel(fwd_simt<T>, grid, kSimtRows * 32, 0, st, static_cast<const T*>(q.data),
                static_cast<const T*>(k.data), static_cast<const T*>(v.data), lengths,
                static_cast<T*>(out.data), static_cast<float*>(lse.data), g);
  check_launch("attention_forward");
}

template <class T, int DP>
void backward_mma(const Geo& g, const Tensor& q, const Tensor& k, const Tensor& v,
                  const int32_t* lengths, const Tensor& lse, const float* dsum,
                  const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                  cudaStream_t st) {
  using Tl = Tiles<DP>;
  const T* qp = static_cast<const T*>(q.data);
  const T* kp = static_cast<const T*>(k.data);
  const T* vp = static_cast<const T*>(v.data);
  const T* dop = static_cast<const T*>(dout.data);
  const float* lp = static_cast<const float*>(lse.data);

  const size_t kv_smem = Tl::kv_smem(sizeof(T));
  allow_smem(dkdv_mma<T, DP>, kv_smem, "attention_backward");
  dim3 kv_grid(ceil_div(g.Tk, Tl::kKvK), g.H, g.B);
  launch_kernel(dkdv_mma<T, DP>, kv_grid, kThreads, kv_smem, st, qp, kp, vp, lengths, dop, lp, dsum,
                static_cast<T*>(dk.data), static_cast<T*>(dv.data), g);
  check_launch("attention_backward (dK, dV)");

  const size_t dq_smem = Tl::dq_smem(sizeof(T));
  allow_smem(dq_mma<T, DP>, dq_smem, "attention_backward");
  dim3 dq_grid(ceil_div(g.Tq, Tl::kDqQ), g.H, g.B);
  launch_kernel(dq_mma<T, DP>, dq_grid, kThreads, dq_smem, st, qp, kp, vp, lengths, dop, lp, dsum,
                static_cast<T*>(dq.data), g);
  check_launch("attention_backward (dQ)");
}

template <class T>
void backward_typed(const Geo& g, const Tensor& q, const Tensor& k, const Tensor& v,
                    const int32_t* lengths, const Tensor& out, const Tensor& lse,
                    const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                    float* dsum, cudaStream_t st, bool tensor_cores) {
  const int64_t rows = int64_t(g.B) * g.Tq * g.H;  // one warp each
  const int64_t blocks = (rows * 32 + 255) / 256;
  TFM_CHECK(blocks <= 0x7fffffff, "attention_backward: too many rows (", rows, ")");
  launch_kernel(rowdot_kernel<T>, unsigned(blocks), 256, 0, st, static_cast<const T*>(out.data),
                static_cast<const T*>(dout.data), dsum, g);
  check_launch("attention_backward (D = rowsum(dO∘O))");

  if constexpr (!std::is_same_v<T, float>) {
    if (tensor_cores) {
      switch (padded_head_dim(g.dk)) {
        case 32: return backward_mma<T, 32>(g, q, k, v, lengths, lse, dsum, dout, dq, dk, dv, st);
        case 64: return backward_mma<T, 64>(g, q, k, v, lengths, lse, dsum, dout, dq, dk, dv, st);
        default:
          return backward_mma<T, 128>(g, q, k, v, lengths, lse, dsum, dout, dq, dk, dv, st);
      }
    }
  }
  const T* qp = static_cast<const T*>(q.data);
  const T* kp = static_cast<const T*>(k.data);
  const T* vp = static_cast<const T*>(v.data);
  const T* dop = static_cast<const T*>(dout.data);
  const float* lp = static_cast<const float*>(lse.data);
  dim3 kv_grid(ceil_div(g.Tk, kSimtRows), g.H, g.B);
  launch_kernel(dkdv_simt<T>, kv_grid, kSimtRows * 32, 0, st, qp, kp, vp, lengths, dop, lp, dsum,
                static_cast<T*>(dk.data), static_cast<T*>(dv.data), g);
  check_launch("attention_backward (dK, dV)");
  dim3 dq_grid(ceil_div(g.Tq, kSimtRows), g.H, g.B);
  launch_kernel(dq_simt<T>, dq_grid, kSimtRows * 32, 0, st, qp, kp, vp, lengths, dop, lp, dsum,
                static_cast<T*>(dq.data), g);
  check_launch("attention_backward (dQ)");
}

}  // namespace

void set_attention_path(AttentionPath path) { g_path = path; }
AttentionPath attention_path() { return g_path; }

// Shapes, dtypes and devices were checked by the public dispatcher (attention_cpu.cpp).
void attention_forward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                       const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                       const Tensor& out, const Tensor& lse) {
  const char* op = "attention_forward";
  Geo g = make_geo(args, q, k, v, op);
  if (g.B == 0) return;
  expect_dtype(lse, DType::f32, op, "lse");
  g.vec = vec_ok(g, {&q, &k, &v, &out});
  const int32_t* lengths = key_lengths.as<int32_t>();
  cudaStream_t st = stream_of(ctx);
  const bool tc = g_path == AttentionPath::automatic;
  switch (q.dtype) {
    case DType::bf16: return forward_typed<__nv_bfloat16>(g, q, k, v, lengths, out, lse, st, tc);
    case DType::f16: return forward_typed<__half>(g, q, k, v, lengths, out, lse, st, tc);
    case DType::f32: return forward_typed<float>(g, q, k, v, lengths, out, lse, st, false);
    default: fail(cat(op, ": the CUDA twin runs bf16, f16 or f32, got ", dtype_name(q.dtype)));
  }
}

void attention_backward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                        const Tensor& out, const Tensor& lse, const Tensor& dout,
                        const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const char* op = "attention_backward";
  Geo g = make_geo(args, q, k, v, op);
  if (g.B == 0) return;
  expect_dtype(lse, DType::f32, op, "lse");
  g.wdq = dq.dim(2), g.wdk = dk.dim(2), g.wdv = dv.dim(2);
  g.vec = vec_ok(g, {&q, &k, &v, &out, &dout, &dq, &dk, &dv});
  // D = rowsum(dO∘O), [B, H, Tq] f32, from the context's device arena.
  float* dsp = static_cast<float*>(
      scratch(ctx, size_t(g.B) * g.H * g.Tq * sizeof(float), "attention_backward"));
  const int32_t* lengths = key_lengths.as<int32_t>();
  cudaStream_t st = stream_of(ctx);
  const bool tc = g_path == AttentionPath::automatic;
  switch (q.dtype) {
    case DType::bf16:
      return backward_typed<__nv_bfloat16>(g, q, k, v, lengths, out, lse, dout, dq, dk, dv, dsp,
                                           st, tc);
    case DType::f16:
      return backward_typed<__half>(g, q, k, v, lengths, out, lse, dout, dq, dk, dv, dsp, st, tc);
    case DType::f32:
      return backward_typed<float>(g, q, k, v, lengths, out, lse, dout, dq, dk, dv, dsp, st,
                                   false);
    default: fail(cat(op, ": the CUDA twin runs bf16, f16 or f32, got ", dtype_name(q.dtype)));
  }
}

}  // namespace tfm::cuda
