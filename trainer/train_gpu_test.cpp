// End to end on the GPU (DESIGN.md, Verification): the same small model trained from the same
// seed on the same batches by the CPU twin (fp32) and on the GPU, step by step:
//   fp32 on the GPU   the loss of each of the first 30 steps within 1e-3 relative of the CPU's,
//                     later ones within 2 % (summation order and cuBLASLt's kernels differ,
//                     nothing else should; the difference grows chaotically with the rate)
//   bf16, fp16        within mixed-precision tolerance for 200 steps (5 % of the loss), and
//                     learning as much (final loss within 5 %); fp16 with dynamic loss scaling
//                     and no step skipped after the first few
// Skips without a GPU; compiled in CI.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "data/test_helpers.h"
#include "kernels/core/gpu_testing.h"
#include "trainer/checkpoint.h"
#include "trainer/train.h"

namespace tfm {
namespace {

using testing_data::TempDir;

// On the CPU CUDA emulator (gpu_testing::kEmulatedGpu) batches are a quarter and runs shorter:
// the emulator checks that the GPU path computes what the CPU does, not numerics at scale.
const char* kBatchTokens = gpu_testing::kEmulatedGpu ? "512" : "2048";

// Options of a run in `out` (a fresh temporary folder per run: ctest runs tests in parallel).
TrainOptions options(const std::string& device, const std::string& precision,
                     const std::string& out, const char* dropout = "0") {
  std::vector<std::string> args{"train", "--synthetic", "reverse", "--vocab-size", "64",
                                "--d-model", "128", "--d-ff", "512", "--heads", "4",
                                "--layers", "2", "--batch-tokens", kBatchTokens, "--warmup", "100",
                                "--lr", "0.5", "--dropout", dropout, "--seed", "3", "--out", out,
                                "--device", device, "--precision", precision};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  TrainOptions o;
  EXPECT_TRUE(parse_train_options(int(argv.size()), argv.data(), o));
  return o;
}

std::vector<double> losses(const std::string& device, const std::string& precision, int steps,
                           int* skipped = nullptr) {
  TempDir run("gpu-e2e");
  TrainOptions o = options(device, precision, run.str());
  Trainer t(o, make_synthetic_source(o));
  std::vector<double> out;
  for (int s = 0; s < steps; ++s) {
    StepReport r = t.step();
    out.push_back(r.loss);
    if (skipped && r.skipped && s >= 10) ++*skipped;
  }
  return out;
}

TEST(TrainGpu, Fp32TracksTheCpuStepForStep) {
  TFM_SKIP_WITHOUT_GPU();
  // fp32 runs that differ only in summation order drift apart chaotically once the learning
  // rate has grown (on the emulator: within 1e-3 for 44 steps, 0.5 % apart by step 50), so the
  // first 30 steps are held to 1e-3 and the rest to 2 %.
  const int steps = gpu_testing::kEmulatedGpu ? 12 : 50;
  std::vector<double> cpu = losses("cpu", "fp32", steps), gpu = losses("cuda", "fp32", steps);
  for (int s = 0; s < steps; ++s)
    EXPECT_NEAR(gpu[size_t(s)], cpu[size_t(s)], (s < 30 ? 1e-3 : 2e-2) * cpu[size_t(s)])
        << "step " << s + 1;
}

TEST(TrainGpu, MixedPrecisionTracksTheCpu) {
  TFM_SKIP_WITHOUT_GPU();
  const int steps = gpu_testing::kEmulatedGpu ? 30 : 200;
  std::vector<double> cpu = losses("cpu", "fp32", steps);
  for (const char* precision : {"bf16", "fp16"}) {
    int skipped = 0;
    std::vector<double> gpu = losses("cuda", precision, steps, &skipped);
    for (int s = 0; s < steps; ++s)
      EXPECT_NEAR(gpu[size_t(s)], cpu[size_t(s)], 0.05 * cpu[size_t(s)])
          << precision << ", step " << s + 1;
    // 200 steps halve the loss; the emulator's 30 (still warming up) only lower it.
    EXPECT_LT(gpu.back(), (gpu_testing::kEmulatedGpu ? 0.95 : 0.5) * gpu.front())
        << precision << ": it should learn";
    EXPECT_NEAR(gpu.back(), cpu.back(), 0.05 * cpu.back()) << precision;
    EXPECT_EQ(skipped, 0) << precision << ": steps skipped for overflow after the first ten";
    std::printf("%s: loss %.4f → %.4f (CPU fp32 %.4f → %.4f)\n", precision, gpu.front(),
                gpu.back(), cpu.front(), cpu.back());
  }
}

// A GPU run stopped after 3 steps and resumed from its checkpoint continues exactly as the
// uninterrupted run (bit for bit: the kernels are deterministic), with dropout on, in bf16 and
// in fp16 (whose loss scale the checkpoint carries).
TEST(TrainGpu, ResumesFromACheckpointExactly) {
  TFM_SKIP_WITHOUT_GPU();
  for (const char* precision : {"bf16", "fp16"}) {
    SCOPED_TRACE(precision);
    TempDir straight_dir("gpu-straight"), resumed_dir("gpu-resumed");
    TrainOptions o = options("cuda", precision, straight_dir.str(), "0.1");
    Trainer straight(o, make_synthetic_source(o));
    std::vector<double> want;
    for (int i = 0; i < 6; ++i) want.push_back(straight.step().loss);

    o.out = resumed_dir.str();
    std::vector<double> got;
    {
      Trainer first(o, make_synthetic_source(o));
      for (int i = 0; i < 3; ++i) got.push_back(first.step().loss);
      first.save();
    }
    Trainer second(o, make_synthetic_source(o));
    EXPECT_EQ(second.resume(latest_checkpoint(o.out)).step, 3);
    for (int i = 3; i < 6; ++i) got.push_back(second.step().loss);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << "step " << i + 1;
  }
}

}  // namespace
}  // namespace tfm
