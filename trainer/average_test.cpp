// `tfm average`: the mean of k copies of a checkpoint is that checkpoint bit for bit; the mean of
// two is their correctly rounded mean, tensor by tensor; checkpoints of different models are
// refused naming both; the result loads without optimizer state and refuses to be resumed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>

#include "data/test_helpers.h"
#include "trainer/average.h"
#include "trainer/checkpoint.h"
#include "trainer/train.h"

namespace tfm {
namespace {

namespace fs = std::filesystem;

// A fresh directory, removed at scope exit.
using Scratch = testing_data::TempDir;

TrainOptions options(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> base = {"--d-model", "32", "--d-ff", "64", "--heads", "2", "--layers", "1",
                                   "--batch-tokens", "256", "--warmup", "5", "--eval-batches", "1",
                                   "--threads", "1"};
  std::vector<std::string> args = {"train", "--synthetic", "copy", "--out", out};
  for (size_t i = 0; i < base.size(); i += 2)  // `extra` replaces what it names
    if (std::find(extra.begin(), extra.end(), base[i]) == extra.end()) args.insert(args.end(), {base[i], base[i + 1]});
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  TrainOptions o;
  EXPECT_TRUE(parse_train_options(int(argv.size()), argv.data(), o));
  return o;
}

// Loads a checkpoint's weights into a fresh model of its own configuration.
std::vector<float> weights_of(const std::string& dir) {
  Transformer m(read_checkpoint_state(dir).model);
  m.params().allocate(DType::f32);
  load_checkpoint(dir, m.params());
  const float* p = m.params().values().as<float>();
  return std::vector<float>(p, p + m.params().total_numel());
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Average, CopiesOfOneCheckpointGiveItBackExactly) {
  Scratch run("copies");
  TrainOptions o = options(run.str());
  Trainer t(o, make_synthetic_source(o));
  for (int i = 0; i < 3; ++i) t.step();
  std::string dir = t.save();
  std::string copy = run / "copy";
  fs::copy(dir, copy);
  average_checkpoints({dir, copy, dir}, run / "avg");
  std::vector<float> a = weights_of(dir), b = weights_of(run / "avg");
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);

  TrainingState s = read_checkpoint_state(run / "avg");
  EXPECT_EQ(s.step, 3);
  EXPECT_EQ(s.averaged_from.size(), 3u);
  EXPECT_EQ(s.config, o.resolved());
  EXPECT_FALSE(fs::exists(run / "avg/optimizer.h5"));
  // Evaluable, not resumable.
  Trainer u(o, make_synthetic_source(o));
  std::string e = error_of([&] { u.resume(run / "avg"); });
  EXPECT_NE(e.find("no optimizer state"), std::string::npos) << e;
  // An existing output is never overwritten.
  e = error_of([&] { average_checkpoints({dir}, run / "avg"); });
  EXPECT_NE(e.find("already exists"), std::string::npos) << e;
}

TEST(Average, TwoCheckpointsGiveTheirMeanTensorByTensor) {
  Scratch run("two");
  TrainOptions o = options(run.str(), {"--save-every", "0"});
  Trainer t(o, make_synthetic_source(o));
  t.step();
  std::string first = t.save();
  for (int i = 0; i < 3; ++i) t.step();
  std::string second = t.save();
  average_checkpoints({second, first}, run / "avg");
  std::vector<float> a = weights_of(first), b = weights_of(second), m = weights_of(run / "avg");
  ASSERT_EQ(m.size(), a.size());
  size_t differing = 0;
  for (size_t k = 0; k < m.size(); ++k) {
    ASSERT_EQ(m[k], float((double(a[k]) + double(b[k])) / 2.0)) << "element " << k;
    differing += a[k] != b[k];
  }
  EXPECT_GT(differing, m.size() / 2);  // the two really differ
  EXPECT_EQ(read_checkpoint_state(run / "avg").step, 4);  // state of the newest
}

TEST(Average, DifferentModelsAreRefusedNamingBoth) {
  Scratch a_run("a"), b_run("b");
  TrainOptions a = options(a_run.str()), b = options(b_run.str(), {"--d-ff", "128"});
  Trainer ta(a, make_synthetic_source(a)), tb(b, make_synthetic_source(b));
  std::string da = ta.save(), db = tb.save();
  std::string e = error_of([&] { average_checkpoints({da, db}, a_run / "avg"); });
  EXPECT_NE(e.find(da), std::string::npos) << e;
  EXPECT_NE(e.find(db), std::string::npos) << e;
  EXPECT_NE(e.find("d_ff 64 vs 128"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(a_run / "avg"));
}

}  // namespace
}  // namespace tfm
