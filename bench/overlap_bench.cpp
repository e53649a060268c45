// How much of the data-parallel gradient all-reduce backward hides (issue 5).
//
//   mpirun -np 2 build/bench/tfm_overlap_bench [--preset tiny] [--vocab N] [--batch-tokens N]
//                                              [--steps N] [--bucket-mb X] [--threads N]
//
// Trains the model of `tfm train --synthetic reverse` with the real Trainer (DP = world size),
// alternating steps with --overlap-grad-reduce on (buckets reduced while backward runs:
// comm/gradient_reducer.h) and off (every bucket started after backward). Per step it records
//   waited    the seconds the trainer waited for gradient buckets after backward (finish())
//   alone     the seconds the same buckets take with the ranks in step and nothing else running
//             (a second reducer over a scratch buffer of the same layout)
// and prints hidden = 1 − waited(on) / waited(off), the fraction of the wait that overlapping
// removed, with step times and throughput both ways. Rank 0's means, after two warm-up steps.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "comm/grid.h"
#include "comm/world.h"
#include "kernels/core/buffer.h"
#include "kernels/elementwise/elementwise.h"
#include "trainer/train.h"

namespace {

const char* arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  tfm::comm::World world(&argc, &argv);
  tfm::TrainOptions o;
  o.preset = arg(argc, argv, "--preset", "tiny");
  o.model = tfm::preset(o.preset);
  o.task.kind = "reverse";
  o.task.vocab_size = std::atoll(arg(argc, argv, "--vocab", "8000"));
  // Every sentence the same length, so both ranks do the same work per step: waiting after
  // backward then measures communication, not one rank's longer batch.
  o.task.min_len = o.task.max_len = 32;
  o.model.vocab_size = o.task.vocab_size;
  o.synthetic = "reverse";
  o.batch_tokens = std::atoll(arg(argc, argv, "--batch-tokens", "4096"));
  o.bucket_mb = std::atof(arg(argc, argv, "--bucket-mb", "4"));
  o.threads = std::atoi(arg(argc, argv, "--threads", "1"));
  o.steps = std::atoll(arg(argc, argv, "--steps", "6"));
  o.lr.d_model = o.model.d_model;
  o.out = "/dev/null";
  tfm::comm::ParallelOptions po;
  tfm::comm::ParallelContext par(world, po);
  if (par.dp_size() < 2) {
    std::fprintf(stderr, "tfm_overlap_bench: run it under mpirun with at least 2 ranks\n");
    return 2;
  }
  tfm::Trainer trainer(o, tfm::make_synthetic_source(o, par.dp_rank(), par.dp_size()), &par);
  const tfm::comm::GradientReducer& live = *trainer.reducer();
  // The same bucket layout over a scratch buffer: every bucket started at finish(), so its
  // exposed time is the whole all-reduce time of a step, with the ranks in step (barrier).
  tfm::ParameterStore& params = trainer.model().params();
  tfm::Buffer scratch(tfm::DType::f32, {params.flat_numel()});
  std::vector<tfm::comm::ParamRange> ranges;
  for (const tfm::ParamInfo& p : params.params()) ranges.push_back({p.offset, p.numel});
  tfm::comm::GradientReducer alone(par.dp(), scratch.tensor(), ranges,
                                   int64_t(o.bucket_mb * 1024 * 1024),
                                   tfm::comm::GradientReducer::Mode::all_reduce);
  // Steps alternate overlap on / off, so both see the same machine; the first two warm up.
  struct Totals { double exposed = 0, step = 0, tokens = 0; int n = 0; } on, off;
  double alone_s = 0;
  int alone_n = 0;
  for (int64_t s = 0; s < 2 * o.steps + 2; ++s) {
    const bool overlap = s % 2 == 0;
    trainer.set_overlap_reduce(overlap);
    par.dp().barrier();
    const auto t0 = std::chrono::steady_clock::now();
    tfm::StepReport r = trainer.step();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tfm::copy(tfm::Context{}, params.grads(), scratch.tensor());
    par.dp().barrier();
    alone.begin_step();
    alone.finish();
    if (s < 2) continue;
    Totals& t = overlap ? on : off;
    t.exposed += live.last_exposed_seconds();
    t.step += dt;
    t.tokens += double(r.tokens);
    ++t.n;
    alone_s += alone.last_exposed_seconds();
    ++alone_n;
  }
  if (par.world_rank() == 0) {
    std::printf("tfm_overlap_bench: DP %d, %s (%lld parameters, vocab %lld), %lld tokens per rank "
                "per step, %d buckets of %.1f MiB, %lld MiB of f32 gradients, %d thread(s)/rank, "
                "%d steps each way\n",
                par.dp_size(), o.preset.c_str(), (long long)params.total_numel(),
                (long long)o.model.vocab_size, (long long)o.batch_tokens, live.num_buckets(),
                o.bucket_mb, (long long)(live.bytes_per_step() >> 20), o.threads, on.n);
    std::printf("%-34s %12s %12s\n", "mean per step, ms", "overlap on", "overlap off");
    std::printf("%-34s %12.1f %12.1f\n", "step (fwd + bwd + reduce + Adam)", 1e3 * on.step / on.n,
                1e3 * off.step / off.n);
    std::printf("%-34s %12.1f %12.1f\n", "waited for gradients after bwd", 1e3 * on.exposed / on.n,
                1e3 * off.exposed / off.n);
    std::printf("%-34s %12.1f\n", "all-reduce alone (ranks in step)", 1e3 * alone_s / alone_n);
    const double hidden = off.exposed > 0 ? 1.0 - on.exposed / off.exposed : 0.0;
    std::printf("hidden behind backward: %.0f%% of the gradient all-reduce wait "
                "(1 - waited on / waited off); throughput %.0f vs %.0f tokens/s over %d ranks\n",
                100.0 * hidden, on.tokens / on.step, off.tokens / off.step, par.dp_size());
  }
  return 0;
}
