// CUDA twins of the element-wise ops (kernels/elementwise/elementwise_cuda.h has the contract).
// The maps run one grid-stride loop over 16-byte packs when every pointer is 16-byte aligned,
// then a scalar loop over whatever is left (all of it when unaligned); values are computed in
// fp32 and rounded once to the storage type.
#include "kernels/core/cuda_common.cuh"
#include "kernels/elementwise/elementwise_cuda.h"

namespace tfm::cuda {

namespace {

constexpr int kThreads = 256;

void expect_same(const Context& ctx, const Tensor& a, const Tensor& b, const char* op) {
  TFM_CHECK(a.defined() && b.defined(), op, ": tensors must be defined");
  expect_device(ctx, a, op, "first argument");
  expect_device(ctx, b, op, "second argument");
  expect_same_dtype(a, b, op, "second argument");
  TFM_CHECK(a.numel() == b.numel(), op, ": ", a.shape_str(), " vs ", b.shape_str());
}

struct AddOp {
  __device__ float operator()(float x, float y) const { return x + y; }
};
struct ScaleOp {
  float factor;
  __device__ float operator()(float x) const { return x * factor; }
};

// out[i] = op(a[i], b[i]); out may alias a or b (each element is read before it is written, by
// the same thread).
template <class T, class Op>
__global__ void map2_kernel(const T* a, const T* b, T* out, int64_t n, bool vec, Op op) {
  int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t start = 0;
  if (vec) {
    int64_t packs = n / kPack<T>;
    for (int64_t p = tid; p < packs; p += stride) {
      Pack<T> va = load_pack(a + p * kPack<T>), vb = load_pack(b + p * kPack<T>), vo;
#pragma unroll
      for (int e = 0; e < kPack<T>; ++e)
        vo.v[e] = from_float<T>(op(to_float(va.v[e]), to_float(vb.v[e])));
      store_pack(out + p * kPack<T>, vo);
    }
    start = packs * kPack<T>;
  }
  for (int64_t i = start + tid; i < n; i += stride)
    out[i] = from_float<T>(op(to_float(a[i]), to_float(b[i])));
}

// x[i] = op(x[i]).
template <class T, class Op>
__global__ void map1_kernel(T* x, int64_t n, bool vec, Op op) {
  int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t start = 0;
  if (vec) {
    int64_t packs = n / kPack<T>;
    for (int64_t p = tid; p < packs; p += stride) {
      Pack<T> v = load_pack(x + p * kPack<T>);
#pragma unroll
      for (int e = 0; e < kPack<T>; ++e) v.v[e] = from_float<T>(op(to_float(v.v[e])));
      store_pack(x + p * kPack<T>, v);
    }
    start = packs * kPack<T>;
  }
  for (int64_t i = start + tid; i < n; i += stride) x[i] = from_float<T>(op(to_float(x[i])));
}

// Σ x² over chunk blockIdx.x of kChunk elements, in double, into partial[blockIdx.x].
constexpr int64_t kChunk = 1 << 14;

template <class T>
__global__ void sum_squares_chunk_kernel(const T* x, int64_t n, double* partial) {
  __shared__ double shared[32];
  int64_t begin = int64_t(blockIdx.x) * kChunk;
  int64_t end = begin + kChunk < n ? begin + kChunk : n;
  double s = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    double v = double(to_float(x[i]));
    s += v * v;
  }
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// total[0] = Σ partial, by one block in a fixed order.
__global__ void sum_partials_kernel(const double* partial, int64_t count, double* total) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) total[0] = s;
}

}  // namespace

void add(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  expect_same(ctx, a, b, "add");
  expect_same(ctx, a, out, "add");
  int64_t n = a.numel();
  if (n == 0) return;
  dispatch_gpu_float(a.dtype, "add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bool vec = aligned16(a.data) && aligned16(b.data) && aligned16(out.data);
    unsigned grid = grid_for(vec ? (n + kPack<T> - 1) / kPack<T> : n, kThreads);
    launch_kernel(map2_kernel<T, AddOp>, grid, kThreads, 0, stream_of(ctx),
                  static_cast<const T*>(a.data), static_cast<const T*>(b.data),
                  static_cast<T*>(out.data), n, vec, AddOp{});
  });
  check_launch("add");
}

void accumulate(const Context& ctx, const Tensor& dst, const Tensor& src) {
  cuda::add(ctx, dst, src, dst);
}

void copy(const Context& ctx, const Tensor& src, const Tensor& dst) {
  expect_same(ctx, src, dst, "copy");
  if (src.data == dst.data || src.bytes() == 0) return;
  check_cuda(cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDeviceToDevice,
                             stream_of(ctx)),
             "copy: cudaMemcpyAsync");
}

template <class S, class D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = from_float<D>(to_float(src[i]));
}

void convert(const Context& ctx, const Tensor& src, const Tensor& dst) {
  TFM_CHECK(src.defined() && dst.defined(), "convert: tensors must be defined");
  expect_device(ctx, src, "convert", "src");
  expect_device(ctx, dst, "convert", "dst");
  TFM_CHECK(src.numel() == dst.numel(), "convert: ", src.shape_str(), " vs ", dst.shape_str());
  const int64_t n = src.numel();
  if (n == 0) return;
  dispatch_gpu_float(src.dtype, "convert", [&](auto s) {
    using S = typename decltype(s)::type;
    dispatch_gpu_float(dst.dtype, "convert", [&](auto d) {
      using D = typename decltype(d)::type;
      launch_kernel(convert_kernel<S, D>, grid_for(n, kThreads), kThreads, 0, stream_of(ctx),
                    static_cast<const S*>(src.data), static_cast<D*>(dst.data), n);
    });
  });
  check_launch("convert");
}

void fill_zero(const Context& ctx, const Tensor& x) {
  expect_device(ctx, x, "fill_zero", "x");
  if (x.bytes() == 0) return;
  check_cuda(cudaMemsetAsync(x.data, 0, x.bytes(), stream_of(ctx)), "fill_zero: cudaMemsetAsync");
}

void scale_inplace(const Context& ctx, const Tensor& x, double factor) {
  expect_device(ctx, x, "scale_inplace", "x");
  int64_t n = x.numel();
  if (n == 0) return;
  dispatch_gpu_float(x.dtype, "scale_inplace", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bool vec = aligned16(x.data);
    unsigned grid = grid_for(vec ? (n + kPack<T> - 1) / kPack<T> : n, kThreads);
    launch_kernel(map1_kernel<T, ScaleOp>, grid, kThreads, 0, stream_of(ctx),
                  static_cast<T*>(x.data), n, vec, ScaleOp{float(factor)});
  });
  check_launch("scale_inplace");
}

double sum_squares(const Context& ctx, const Tensor& x) {
  expect_device(ctx, x, "sum_squares", "x");
  int64_t n = x.numel();
  if (n == 0) return 0.0;
  int64_t chunks = (n + kChunk - 1) / kChunk;
  TFM_CHECK(chunks <= 0x7FFFFFFF, "sum_squares: tensor of ", n, " elements is too large");
  double* partial =
      static_cast<double*>(scratch(ctx, size_t(chunks + 1) * sizeof(double), "sum_squares"));
  double* total = partial + chunks;
  cudaStream_t stream = stream_of(ctx);
  dispatch_gpu_float(x.dtype, "sum_squares", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_kernel(sum_squares_chunk_kernel<T>, unsigned(chunks), kThreads, 0, stream,
                  static_cast<const T*>(x.data), n, partial);
  });
  check_launch("sum_squares");
  launch_kernel(sum_partials_kernel, 1, 1024, 0, stream, partial, chunks, total);
  check_launch("sum_squares (total)");
  double result = 0.0;
  check_cuda(cudaMemcpyAsync(&result, total, sizeof result, cudaMemcpyDeviceToHost, stream),
             "sum_squares: cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(stream), "sum_squares: cudaStreamSynchronize");
  return result;
}

}  // namespace tfm::cuda
