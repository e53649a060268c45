// Training-step throughput of the Transformer: on the CPU (issue 2; the figures bench/RESULTS.md
// records) and on one GPU (issue 6). The peer is bench/torch_peer.py (the same model in PyTorch);
// bench/run_cpu_bench.sh runs both on the CPU, interleaved, and prints the comparison table;
// launch/gpu_verify.sh (stage "bench") does the same on a GPU machine.
//
// One step = zero the gradients, Transformer::forward_backward on one batch, Adam step — what
// trainer/train.cpp does minus logging (no gradient clipping, in either program). The batch is
// `--batch` sentence pairs of random ids in [4, V) with fixed lengths: every source is
// `--src-len` tokens including its EOS, every decoder input `--tgt-len` tokens including BOS, so
// there is no padding and padded and real token counts coincide.
//
// --device cuda (issue 6) runs the step as the Trainer does on the GPU: f32 master weights and
// gradients on the device with a --precision (bf16 default, f16, or f32) working copy that the
// layers read and Adam writes in its update pass; one device Arena is both the model's activation
// arena and ctx.workspace. f16 uses a fixed loss scale (--loss-scale, default 1024): the loss is
// scaled, the gradients unscaled (one scale_inplace pass) before Adam; there is no overflow check
// and no dynamic scale (the point is throughput). Each step is bracketed by device_synchronize(),
// so the wall time is the GPU's.
//
//   tokens/s  = (source tokens + target tokens) per step / median step time
//               (non-pad tokens of both sides, as the trainer's tokens_per_s counts them)
//   FLOPs/step (model FLOPs: matrix products only, forward ×3 for forward + backward)
//     = 6 · [ Ns·Le·(4d² + 2d·dff)            encoder: Q,K,V,out projections; FFN
//           + Nt·Ld·(4d² + 2d² + 2d·dff)       decoder: self Q,K,V,out; cross Q,out; FFN
//           + Ns·Ld·2d²                        decoder: cross K,V of the encoder output
//           + Nt·V·d ]                         output projection over target tokens
//     + 12·d·B · [ Le·Ts² + Ld·(Tt² + Tt·Ts) ]  attention QKᵀ and P·V, forward + backward,
//                                              the full T×T (the causal half is not discounted)
//   with Ns = B·Ts, Nt = B·Tt, Le/Ld encoder/decoder layers. Embedding lookups, layer norm,
//   softmax, dropout and Adam are not counted. The first bracket is 6 × (matmul parameters
//   each token passes through) × tokens; the same formula on both devices and in the peer.
//   sgemm peak (CPU): the best of several C = A·B at --sgemm-size (square, f32) through the same
//   OpenBLAS and thread count, timed in this process before the model is built.
//   MFU (GPU) = model FLOPs/s ÷ peak: against --peak-tflops (the GPU's dense bf16 peak as its
//   maker states it, e.g. 989 for an H100/H200 SXM) and/or against the peak --measure-peak
//   measures here: C [n,n] = A·Bᵀ in bf16 (fp32 accumulate) through our gemm op (cuBLASLt), n =
//   --peak-size, median of groups of 10 back-to-back GEMMs — the method of bench/gpu_peaks.cu.
//   Memory (GPU): parameter buffers (f32 masters, f32 gradients, the working copy, Adam's m and
//   v) + the arena's high-water mark; device_used = cudaMemGetInfo's total − free after the run
//   (everything on the device: CUDA context, cuBLASLt workspaces, other processes).
//
// Usage: tfm_train_bench [--device cpu|cuda] [--precision fp32|bf16|fp16] [--preset tiny|base|big]
//          [--vocab 8000] [--batch 32] [--src-len 32] [--tgt-len 32] [--warmup 3] [--steps 10]
//          [--threads 0] [--blas-threads N] [--dropout P] [--sgemm-size 2048]
//          [--no-sgemm | --sgemm-only] [--peak-tflops X] [--measure-peak] [--peak-size 8192]
//          [--loss-scale 1024] [--seed 1]
// The last line is machine-readable: "RESULT ours preset=… tokens_per_s=… …" (--sgemm-only:
// "RESULT sgemm sgemm_peak=… threads=…"). cpu_ms is the process CPU time per step (all threads):
// beside step_ms it shows how much of the step the threads spent busy, spinning included. On the
// GPU the line adds peak_tflops, measured_peak_tflops, mfu, mfu_measured (nan when that peak is
// unknown), mem_mib, arena_mib, params_mib and device_used_mib.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cblas.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "data/batch.h"
#include "kernels/core/buffer.h"
#include "kernels/core/device.h"
#include "kernels/gemm/gemm.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/optimizer/optimizer.h"
#include "model/config.h"
#include "model/transformer.h"

using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

uint64_t mix(uint64_t z) {  // splitmix64
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Best GFLOP/s of C = A·B, n × n × n, over a few repetitions.
double sgemm_peak(int64_t n) {
  std::vector<float> a(size_t(n * n)), b(size_t(n * n)), c(size_t(n * n));
  uint64_t s = 7;
  for (auto& x : a) x = float(int64_t((s = mix(s)) % 2001) - 1000) * 1e-3f;
  for (auto& x : b) x = float(int64_t((s = mix(s)) % 2001) - 1000) * 1e-3f;
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0f, a.data(),
                int(n), b.data(), int(n), 0.0f, c.data(), int(n));
  };
  run();  // warm-up: thread pool, page faults
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t = Clock::now();
    run();
    best = std::max(best, 2.0 * double(n) * double(n) * double(n) / since(t) * 1e-9);
  }
  return best;
}

// Dense bf16 GEMM peak in TFLOP/s through our gemm op on the GPU (tfm::gemm → the cuBLASLt CUDA
// twin, fp32 accumulate), measured as bench/gpu_peaks.cu does: C [n, n] = A [n, n] · Bᵀ (a linear
// layer's forward layout), non-zero pseudo-random inputs, warm-up, then the median over `groups`
// groups of 10 back-to-back GEMMs, each group timed between device_synchronize() calls.
double gemm_peak_tflops(int64_t n, int groups = 10) {
  tfm::Arena arena(tfm::Device::cuda);
  tfm::Context ctx;
  ctx.device = tfm::Device::cuda;
  ctx.workspace = &arena;
  const size_t elems = size_t(n) * size_t(n);
  tfm::Buffer a(tfm::DType::bf16, {n, n}, tfm::Device::cuda);
  tfm::Buffer b(tfm::DType::bf16, {n, n}, tfm::Device::cuda);
  tfm::Buffer c(tfm::DType::bf16, {n, n}, tfm::Device::cuda);
  {
    std::vector<tfm::bf16_t> host(elems);
    uint64_t s = 7;
    for (const tfm::Buffer* dst : {&a, &b, &c}) {
      for (auto& x : host) x = tfm::float_to_bf16(float(int64_t((s = mix(s)) % 2001) - 1000) * 1e-3f);
      tfm::copy_to_device(dst->tensor().data, host.data(), elems * sizeof(tfm::bf16_t));
    }
  }
  tfm::GemmShape shape;
  shape.trans_b = true;
  shape.m = shape.n = shape.k = n;
  auto run = [&] {
    tfm::gemm(ctx, tfm::DType::bf16, shape, 1.0, a.tensor().data, b.tensor().data, 0.0,
              c.tensor().data);
  };
  for (int i = 0; i < 5; ++i) run();  // warm-up: the algorithm cache, the workspace, clocks
  tfm::device_synchronize();
  constexpr int per_group = 10;
  std::vector<double> seconds;
  for (int g = 0; g < groups; ++g) {
    auto t = Clock::now();
    for (int i = 0; i < per_group; ++i) run();
    tfm::device_synchronize();
    seconds.push_back(since(t) / per_group);
  }
  return 2.0 * double(n) * double(n) * double(n) / median(seconds) * 1e-12;
}

struct Flops {
  double matmul = 0, attention = 0;
  double total() const { return matmul + attention; }
};

Flops model_flops(const tfm::ModelConfig& c, int64_t batch, int64_t ts, int64_t tt) {
  const double d = double(c.d_model), ff = double(c.d_ff), v = double(c.vocab_size);
  const double le = double(c.encoder_layers), ld = double(c.decoder_layers);
  const double ns = double(batch * ts), nt = double(batch * tt);
  Flops f;
  f.matmul = 6.0 * (ns * le * (4 * d * d + 2 * d * ff) + nt * ld * (6 * d * d + 2 * d * ff) +
                    ns * ld * 2 * d * d + nt * v * d);
  f.attention = 12.0 * d * double(batch) *
                (le * double(ts * ts) + ld * (double(tt * tt) + double(tt * ts)));
  return f;
}

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "tfm_train_bench: " << msg << "\n";
  std::exit(2);
}

}  // namespace

extern "C" void openblas_set_num_threads(int);

int main(int argc, char** argv) {
  std::string preset = "tiny", device_name = "cpu", precision;
  int64_t vocab = 8000, batch = 32, src_len = 32, tgt_len = 32, warmup = 3, steps = 10;
  int64_t sgemm_size = 2048, peak_size = 8192;
  int threads = 0, blas_threads = 0;  // 0: OpenMP's default; blas_threads 0: same as threads
  double dropout = -1;  // < 0: the preset's
  double peak_tflops = 0, loss_scale = 1024;  // peak 0: not stated; loss_scale: fp16 only
  bool sgemm = true, sgemm_only = false, measure_peak = false;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--preset") preset = value();
    else if (a == "--device") device_name = value();
    else if (a == "--precision") precision = value();
    else if (a == "--vocab") vocab = std::stoll(value());
    else if (a == "--batch") batch = std::stoll(value());
    else if (a == "--src-len") src_len = std::stoll(value());
    else if (a == "--tgt-len") tgt_len = std::stoll(value());
    else if (a == "--warmup") warmup = std::stoll(value());
    else if (a == "--steps") steps = std::stoll(value());
    else if (a == "--threads") threads = std::stoi(value());
    else if (a == "--blas-threads") blas_threads = std::stoi(value());
    else if (a == "--dropout") dropout = std::stod(value());
    else if (a == "--sgemm-size") sgemm_size = std::stoll(value());
    else if (a == "--no-sgemm") sgemm = false;
    else if (a == "--sgemm-only") sgemm_only = true;
    else if (a == "--peak-tflops") peak_tflops = std::stod(value());
    else if (a == "--measure-peak") measure_peak = true;
    else if (a == "--peak-size") peak_size = std::stoll(value());
    else if (a == "--loss-scale") loss_scale = std::stod(value());
    else if (a == "--seed") seed = std::stoull(value());
    else if (a == "--help" || a == "-h") {
      std::cout << "tfm_train_bench [--device cpu|cuda] [--precision fp32|bf16|fp16]"
                   " [--preset tiny|base|big] [--vocab N] [--batch B] [--src-len T]"
                   " [--tgt-len T] [--warmup N] [--steps N] [--threads N] [--blas-threads N] [--dropout P]"
                   " [--sgemm-size N] [--no-sgemm | --sgemm-only] [--peak-tflops X] [--measure-peak]"
                   " [--peak-size N] [--loss-scale S] [--seed S]\n"
                   "  --device cuda: the step on GPU 0 (default precision bf16; cpu: fp32 only).\n"
                   "  --peak-tflops X: the GPU's dense bf16 peak, for MFU; --measure-peak: also measure\n"
                   "  one with a large bf16 GEMM through our gemm op (--peak-size³).\n";
      return 0;
    } else {
      usage_error("unknown option " + a + " (try --help)");
    }
  }
  if (batch < 1 || src_len < 2 || tgt_len < 2 || steps < 1 || warmup < 0)
    usage_error("need --batch ≥ 1, --src-len ≥ 2, --tgt-len ≥ 2, --steps ≥ 1, --warmup ≥ 0");
  if (device_name != "cpu" && device_name != "cuda") usage_error("--device is cpu or cuda");
  const bool cuda = device_name == "cuda";
  if (precision.empty()) precision = cuda ? "bf16" : "fp32";
  tfm::DType compute;
  if (precision == "fp32") compute = tfm::DType::f32;
  else if (precision == "bf16") compute = tfm::DType::bf16;
  else if (precision == "fp16") compute = tfm::DType::f16;
  else usage_error("--precision is fp32, bf16 or fp16");
  if (!cuda && compute != tfm::DType::f32)
    usage_error("--precision " + precision + ": reduced precision needs the GPU (--device cuda)");
  if (!cuda && (measure_peak || peak_tflops > 0))
    usage_error("--peak-tflops and --measure-peak are for --device cuda (the CPU uses the sgemm peak)");
  if (cuda && sgemm_only) usage_error("--sgemm-only measures the CPU; drop --device cuda");
  if (peak_size < 256 || loss_scale <= 0) usage_error("need --peak-size ≥ 256 and --loss-scale > 0");
  if (compute != tfm::DType::f16) loss_scale = 1;
  if (cuda) sgemm = false;  // no CPU peak beside a GPU run
  // As the trainer does: OpenMP (our loops) and OpenBLAS (its own pthreads) get the same count,
  // unless --blas-threads says otherwise (a diagnostic for how the two pools share the cores).
  if (threads > 0) omp_set_num_threads(threads);
  threads = omp_get_max_threads();
  if (blas_threads <= 0) blas_threads = threads;
  openblas_set_num_threads(blas_threads);
  if (sgemm_only) {
    std::printf("RESULT sgemm sgemm_peak=%.2f size=%lld threads=%d\n", sgemm_peak(sgemm_size),
                (long long)sgemm_size, blas_threads);
    return 0;
  }

  try {
    const tfm::Device device = cuda ? tfm::Device::cuda : tfm::Device::cpu;
    std::string gpu_name;
    if (cuda) {
      if (!tfm::cuda_compiled())
        usage_error("--device cuda: this build has no CUDA (rebuild with the toolkit present)");
      if (tfm::cuda_device_count() == 0) usage_error("--device cuda: no GPU visible");
      tfm::cuda_set_device(0);
      gpu_name = tfm::cuda_device_name(0);
    }
    tfm::ModelConfig cfg = tfm::preset(preset);
    cfg.vocab_size = vocab;
    if (dropout >= 0) cfg.dropout = dropout;

    const double peak = sgemm ? sgemm_peak(sgemm_size) : 0.0;
    const double measured_peak = measure_peak ? gemm_peak_tflops(peak_size) : 0.0;

    // Fixed-length pairs of random ids: make_batch adds EOS to sources and BOS/EOS to targets.
    std::vector<std::vector<int32_t>> src(static_cast<size_t>(batch)), tgt(static_cast<size_t>(batch));
    uint64_t s = mix(seed);
    for (int64_t b = 0; b < batch; ++b) {
      src[size_t(b)].resize(size_t(src_len - 1));
      tgt[size_t(b)].resize(size_t(tgt_len - 1));
      for (auto& t : src[size_t(b)]) t = int32_t(4 + (s = mix(s)) % uint64_t(vocab - 4));
      for (auto& t : tgt[size_t(b)]) t = int32_t(4 + (s = mix(s)) % uint64_t(vocab - 4));
    }
    const tfm::Batch data = tfm::make_batch(src, tgt);
    const int64_t tokens = data.src_tokens() + data.tgt_tokens();

    tfm::Transformer model(cfg);
    tfm::ParameterStore& params = model.params();
    // On the GPU as the Trainer: f32 masters and gradients on the device, a `compute` working copy.
    params.allocate(tfm::DType::f32, device, 1, compute);
    params.initialize(seed);
    tfm::Arena arena(device);
    tfm::Context ctx;
    ctx.device = device;
    if (cuda) ctx.workspace = &arena;  // the GPU ops' scratch comes from the step's arena
    params.refresh_working_copy(ctx);
    tfm::Buffer adam_m(tfm::DType::f32, {params.flat_numel()}, device);
    tfm::Buffer adam_v(tfm::DType::f32, {params.flat_numel()}, device);
    fill_zero(ctx, adam_m.tensor());  // device memory does not start zeroed
    fill_zero(ctx, adam_v.tensor());
    const tfm::Tensor working =
        params.has_working_copy() ? params.working().tensor() : tfm::Tensor();
    const double params_bytes = double(params.values().bytes() + params.grads().bytes() +
                                       (working.defined() ? working.bytes() : 0) +
                                       adam_m.tensor().bytes() + adam_v.tensor().bytes());
    // fp16: the loss (so every gradient) is scaled by loss_scale, and the gradients are unscaled
    // before Adam, as the trainer does (its scale is dynamic; here it is fixed).
    const double grad_scale = loss_scale / double(data.tgt_tokens());

    const Flops flops = model_flops(cfg, data.size, data.src_len, data.tgt_len);
    std::printf("tfm_train_bench: preset %s (%s)\n", preset.c_str(), cfg.summary().c_str());
    if (cuda) {
      std::printf("  device cuda (%s), %s compute, fp32 master weights", gpu_name.c_str(),
                  precision.c_str());
      if (compute == tfm::DType::f16) std::printf(", fixed loss scale %g", loss_scale);
      std::printf("\n");
    }
    std::printf("  parameters %lld, batch %lld × (%lld + %lld) = %lld tokens/step, %d threads"
                " (OpenBLAS %d)\n",
                (long long)params.total_numel(), (long long)data.size, (long long)data.src_len,
                (long long)data.tgt_len, (long long)tokens, threads, blas_threads);
    std::printf("  model FLOPs/step %.3f G (matmul %.3f G + attention %.3f G)\n",
                flops.total() * 1e-9, flops.matmul * 1e-9, flops.attention * 1e-9);
    if (sgemm)
      std::printf("  sgemm peak %.1f GFLOP/s (%lld³, best of 5)\n", peak, (long long)sgemm_size);
    if (peak_tflops > 0) std::printf("  stated bf16 peak %.1f TFLOP/s\n", peak_tflops);
    if (measure_peak)
      std::printf("  measured bf16 GEMM peak %.1f TFLOP/s (%lld³ through tfm::gemm, median)\n",
                  measured_peak, (long long)peak_size);

    std::vector<double> times, cpu_times;
    double loss = 0;
    for (int64_t k = 0; k < warmup + steps; ++k) {
      if (cuda) tfm::device_synchronize();
      auto t = Clock::now();
      const double cpu0 = process_cpu_seconds();
      tfm::fill_zero(ctx, params.grads());
      tfm::LossStats st = model.forward_backward(ctx, arena, data, grad_scale, mix(seed ^ uint64_t(k)));
      if (loss_scale != 1) tfm::scale_inplace(ctx, params.grads(), 1.0 / loss_scale);
      tfm::AdamHyper h;
      h.lr = 1e-4;
      h.step = k + 1;
      tfm::adam_step(ctx, h, params.values(), params.grads(), adam_m, adam_v, working);
      if (cuda) tfm::device_synchronize();
      double dt = since(t), cpu = process_cpu_seconds() - cpu0;
      loss = st.loss_sum / double(st.tokens);
      if (k >= warmup) {
        times.push_back(dt);
        cpu_times.push_back(cpu);
      }
    }
    const double med = median(times), best = *std::min_element(times.begin(), times.end());
    const double tps = double(tokens) / med, gflops = flops.total() / med * 1e-9;
    const double cpu_med = median(cpu_times);
    std::printf("  step time median %.2f ms, best %.2f ms over %lld steps (%lld warm-up), CPU time"
                " %.2f ms/step; loss %.4f\n",
                med * 1e3, best * 1e3, (long long)steps, (long long)warmup, cpu_med * 1e3, loss);
    std::printf("  %.0f tokens/s, %.1f GFLOP/s", tps, gflops);
    if (sgemm) std::printf(" = %.1f%% of sgemm peak", 100.0 * gflops / peak);
    std::printf("\n");
    if (!cuda) {
      std::printf("RESULT ours preset=%s tokens_per_s=%.1f step_ms=%.3f cpu_ms=%.3f gflops=%.2f "
                  "flops_per_step=%.6e sgemm_peak=%.2f threads=%d blas_threads=%d tokens=%lld "
                  "loss=%.5f device=cpu precision=%s\n",
                  preset.c_str(), tps, med * 1e3, cpu_med * 1e3, gflops, flops.total(), peak,
                  threads, blas_threads, (long long)tokens, loss, precision.c_str());
      return 0;
    }
    const double nan = std::nan("");
    const double tflops = gflops * 1e-3;
    const double mfu = peak_tflops > 0 ? tflops / peak_tflops : nan;
    const double mfu_measured = measure_peak ? tflops / measured_peak : nan;
    const double mib = 1.0 / (1 << 20);
    const double arena_mib = double(arena.high_water()) * mib, params_mib = params_bytes * mib;
    const double used_mib = double(tfm::cuda_memory_used()) * mib;
    std::printf("  %.1f TFLOP/s", tflops);
    if (peak_tflops > 0) std::printf(", MFU %.1f%% of the stated %.1f", 100 * mfu, peak_tflops);
    if (measure_peak)
      std::printf(", %.1f%% of the measured %.1f", 100 * mfu_measured, measured_peak);
    std::printf("\n  device memory: parameters+gradients+working copy+Adam %.0f MiB, arena high-water"
                " %.0f MiB (sum %.0f MiB); device in use %.0f MiB\n",
                params_mib, arena_mib, params_mib + arena_mib, used_mib);
    std::printf("RESULT ours preset=%s tokens_per_s=%.1f step_ms=%.3f cpu_ms=%.3f gflops=%.2f "
                "flops_per_step=%.6e sgemm_peak=%.2f threads=%d blas_threads=%d tokens=%lld "
                "loss=%.5f device=cuda precision=%s peak_tflops=%.1f measured_peak_tflops=%.1f "
                "mfu=%.4f mfu_measured=%.4f mem_mib=%.0f arena_mib=%.0f params_mib=%.0f "
                "device_used_mib=%.0f\n",
                preset.c_str(), tps, med * 1e3, cpu_med * 1e3, gflops, flops.total(), peak,
                threads, blas_threads, (long long)tokens, loss, precision.c_str(),
                peak_tflops > 0 ? peak_tflops : nan, measure_peak ? measured_peak : nan, mfu,
                mfu_measured, params_mib + arena_mib, arena_mib, params_mib, used_mib);
  } catch (const std::exception& e) {
    std::cerr << "tfm_train_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
