// tfm_attention_bench: forward and backward throughput of the attention CUDA twin on the paper's
// shapes, self-attention through a fused QKV buffer [B, T, 3·D] (as the model calls it), with
// B chosen so that B·T ≈ --tokens (25k, the paper's batch). Per (model, T, causal):
//   forward FLOPs  = 4·B·H·T²·d  (Q·Kᵀ and P·V), halved when causal;
//   backward FLOPs = 2.5 × forward (the conventional count: five T²·d products against two;
//                    our backward computes seven, see attention_cuda.h, so its hardware rate
//                    is higher than the figure printed).
// Each figure is the median of --repeats runs timed with CUDA events after a warm-up, inputs
// pseudo-random bf16/f16. Prints a table, then one line per row starting with RESULT for scripts.
// The peer is bench/attention_peer.py (PyTorch scaled_dot_product_attention, same shapes).
//   tfm_attention_bench [--dtype bf16|f16] [--tokens N] [--repeats R] [--dropout P]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/core/arena.h"
#include "kernels/core/buffer.h"
#include "kernels/core/device.h"

namespace {

using namespace tfm;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "tfm_attention_bench: %s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median milliseconds of `body` over `repeats` runs after `warmup` runs; `before` runs outside
// the timed region before each run (arena resets).
template <class B, class F>
double time_ms(int warmup, int repeats, B&& before, F&& body) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < warmup; ++i) {
    before();
    body();
  }
  check(cudaDeviceSynchronize(), "warm-up");
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    before();
    check(cudaEventRecord(start, nullptr), "cudaEventRecord");
    body();
    check(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return median(ms);
}

// A device buffer of pseudo-random 16-bit floats in [-1, 1).
Buffer random_device(DType dt, int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<uint16_t> host(size_t(rows * cols));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& h : host)
    h = dt == DType::bf16 ? float_to_bf16(dist(rng)).bits : float_to_f16(dist(rng)).bits;
  Buffer b(dt, {rows, cols}, Device::cuda);
  copy_to_device(b.tensor().data, host.data(), host.size() * sizeof(uint16_t));
  return b;
}

struct Model {
  const char* name;
  int64_t heads, head_dim;
};

}  // namespace

int main(int argc, char** argv) {
  DType dt = DType::bf16;
  int64_t tokens = 25000;
  int repeats = 20;
  float dropout = 0.0f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tfm_attention_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dtype") {
      const std::string v = value();
      if (v == "bf16") dt = DType::bf16;
      else if (v == "f16") dt = DType::f16;
      else { std::fprintf(stderr, "tfm_attention_bench: --dtype bf16|f16\n"); return 2; }
    } else if (a == "--tokens") {
      tokens = std::atoll(value());
    } else if (a == "--repeats") {
      repeats = std::max(1, std::atoi(value()));
    } else if (a == "--dropout") {
      dropout = float(std::atof(value()));
    } else if (a == "--help" || a == "-h") {
      std::printf("tfm_attention_bench [--dtype bf16|f16] [--tokens N] [--repeats R] "
                  "[--dropout P]\n");
      return 0;
    } else {
      std::fprintf(stderr, "tfm_attention_bench: unknown argument %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (cuda_device_count() == 0) {
    std::fprintf(stderr, "tfm_attention_bench: no GPU visible; nothing to measure\n");
    return 1;
  }
  std::printf("device: %s   dtype: %s   tokens/batch: ~%lld   dropout: %g   median of %d\n",
              cuda_device_name(0).c_str(), dtype_name(dt), (long long)tokens, dropout, repeats);
  std::printf("%-5s %5s %5s %7s | %9s %9s | %9s %9s\n", "model", "T", "B", "causal", "fwd ms",
              "fwd TF/s", "bwd ms", "bwd TF/s");

  const Model models[] = {{"base", 8, 64}, {"big", 16, 64}};
  const int64_t lengths_T[] = {32, 64, 128, 256};
  Arena arena(Device::cuda);
  Context ctx;
  ctx.device = Device::cuda;
  ctx.workspace = &arena;
  for (const Model& m : models)
    for (int64_t T : lengths_T) {
      const int64_t B = std::max<int64_t>(1, tokens / T), D = m.heads * m.head_dim;
      Buffer qkv = random_device(dt, B * T, 3 * D, 1);
      Buffer dout = random_device(dt, B * T, D, 2);
      Buffer out(dt, {B, T, D}, Device::cuda), dqkv(dt, {B, T, 3 * D}, Device::cuda);
      Buffer lse(DType::f32, {B, m.heads, T}, Device::cuda);
      Buffer lengths(DType::i32, {B}, Device::cuda);
      const std::vector<int32_t> full(static_cast<size_t>(B), static_cast<int32_t>(T));
      copy_to_device(lengths.tensor().data, full.data(), full.size() * sizeof(int32_t));
      const Tensor x = qkv.tensor().view({B, T, 3 * D}), g = dout.tensor().view({B, T, D});
      for (int causal = 0; causal < 2; ++causal) {
        AttentionArgs args;
        args.heads = m.heads;
        args.head_dim = m.head_dim;
        args.q_col = 0, args.k_col = D, args.v_col = 2 * D;
        args.causal = causal;
        args.dropout = DropoutSpec{dropout, 1234, 0};
        auto nothing = [] {};
        auto reset = [&] { arena.reset(); };
        const double fwd = time_ms(3, repeats, nothing, [&] {
          attention_forward(ctx, args, x, x, x, lengths, out, lse);
        });
        const double bwd = time_ms(3, repeats, reset, [&] {
          attention_backward(ctx, args, x, x, x, lengths, out, lse, g, dqkv, dqkv, dqkv);
        });
        const double flops = 4.0 * double(B) * double(m.heads) * double(T) * double(T) *
                             double(m.head_dim) * (causal ? 0.5 : 1.0);
        const double fwd_tf = flops / (fwd * 1e-3) / 1e12;
        const double bwd_tf = 2.5 * flops / (bwd * 1e-3) / 1e12;
        std::printf("%-5s %5lld %5lld %7s | %9.3f %9.1f | %9.3f %9.1f\n", m.name, (long long)T,
                    (long long)B, causal ? "yes" : "no", fwd, fwd_tf, bwd, bwd_tf);
        std::printf("RESULT attention model=%s T=%lld B=%lld causal=%d dtype=%s fwd_ms=%.4f "
                    "fwd_tflops=%.2f bwd_ms=%.4f bwd_tflops=%.2f\n",
                    m.name, (long long)T, (long long)B, causal, dtype_name(dt), fwd, fwd_tf, bwd,
                    bwd_tf);
      }
    }
  return 0;
}
