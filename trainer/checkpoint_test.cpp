// Checkpoints: files round-trip every tensor and the state; a resumed run equals the
// uninterrupted one bit for bit (synthetic and dataset sources, gradient accumulation, epoch
// boundaries of the reader); corruption, other models, a broken `latest` and unsafe --resume
// choices are refused with messages naming what and where.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "data/id_dataset.h"
#include "data/reader.h"
#include "data/test_helpers.h"
#include "trainer/average.h"
#include "trainer/checkpoint.h"
#include "trainer/signals.h"
#include "trainer/train.h"

namespace tfm {
namespace {

namespace fs = std::filesystem;

// A fresh directory, removed at scope exit.
using Scratch = testing_data::TempDir;

// A tiny model on one thread (the test machines are small and shared); `extra` adds or replaces
// options.
TrainOptions tiny_options(std::vector<std::string> extra) {
  std::vector<std::string> base = {"--out", "unset", "--d-model", "32", "--d-ff", "64",
                                   "--heads", "2", "--layers", "1", "--batch-tokens", "256",
                                   "--eval-batches", "1", "--warmup", "10", "--dropout", "0.1",
                                   "--threads", "1"};
  std::vector<std::string> args = {"train"};
  for (size_t i = 0; i < base.size(); i += 2)
    if (std::find(extra.begin(), extra.end(), base[i]) == extra.end()) args.insert(args.end(), {base[i], base[i + 1]});
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  TrainOptions o;
  EXPECT_TRUE(parse_train_options(int(argv.size()), argv.data(), o));
  return o;
}

TrainOptions synthetic_options(std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), {"--synthetic", "copy"});
  return tiny_options(extra);
}

std::unique_ptr<BatchSource> source_for(TrainOptions& o) {
  return o.synthetic.empty() ? make_dataset_source(o) : make_synthetic_source(o);
}

std::vector<float> copy_of(const Tensor& t) {
  const float* p = t.as<float>();
  return std::vector<float>(p, p + t.numel());
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A small prepared dataset (ids straight to shards): 40 training pairs of 1–6 ids, so that a
// 64-token budget gives about ten batches per epoch.
std::string small_dataset() {
  static Scratch dir("dataset");
  static bool written = [] {
    auto example = [](int64_t i, std::vector<int32_t>& s, std::vector<int32_t>& t) {
      s.clear();
      t.clear();
      int64_t n = 1 + (i * 7) % 6;
      for (int64_t k = 0; k < n; ++k) s.push_back(int32_t(4 + (i * 3 + k * 5) % 60));
      t.assign(s.rbegin(), s.rend());
    };
    write_id_dataset(dir.str(), testing_data::small_tokenizer(),
                     {{"train", 40, 2, example},
                      {"valid", 6, 1, [&](int64_t i, auto& s, auto& t) { example(i + 100, s, t); }}});
    return true;
  }();
  (void)written;
  return dir.str();
}

TrainOptions dataset_options(std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), {"--data", small_dataset(), "--batch-tokens", "64"});
  return tiny_options(extra);
}

ReaderPosition reader_position(Trainer& t) { return ReaderPosition::from_string(t.source().position()); }

struct Resumed {
  ReaderPosition at_save, at_end;  // dataset sources only
};

// `total` steps in one trainer versus `split` steps, a checkpoint, and the rest in a fresh trainer
// resumed from it: the losses, weights, Adam moments and data position agree bit for bit.
Resumed expect_exact_resume(TrainOptions o, int total, int split) {
  Scratch straight_dir("straight"), resumed_dir("resumed");
  Resumed out;
  o.out = straight_dir.str();
  Trainer straight(o, source_for(o));
  std::vector<double> want;
  for (int i = 0; i < total; ++i) want.push_back(straight.step().loss);

  o.out = resumed_dir.str();
  std::vector<double> got;
  {
    Trainer first(o, source_for(o));
    for (int i = 0; i < split; ++i) got.push_back(first.step().loss);
    first.save();
    if (o.synthetic.empty()) out.at_save = reader_position(first);
  }
  Trainer second(o, source_for(o));
  TrainingState s = second.resume(latest_checkpoint(o.out));
  EXPECT_EQ(s.step, split);
  EXPECT_EQ(second.steps_done(), split);
  for (int i = split; i < total; ++i) got.push_back(second.step().loss);

  for (int i = 0; i < total; ++i) EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << "loss of step " << i + 1;
  EXPECT_TRUE(same_bits(copy_of(second.model().params().values()), copy_of(straight.model().params().values())))
      << "weights differ";
  EXPECT_TRUE(same_bits(copy_of(second.adam_m()), copy_of(straight.adam_m()))) << "Adam m differs";
  EXPECT_TRUE(same_bits(copy_of(second.adam_v()), copy_of(straight.adam_v()))) << "Adam v differs";
  EXPECT_EQ(second.source().position(), straight.source().position());
  EXPECT_EQ(second.state().step, int64_t(total));
  if (o.synthetic.empty()) out.at_end = reader_position(second);
  return out;
}

TEST(Checkpoint, RoundTripsEveryTensorAndTheState) {
  Scratch run("roundtrip");
  TrainOptions o = synthetic_options({"--seed", "18446744073709551557"});  // a uint64 past int64
  o.out = run.str();
  Trainer t(o, source_for(o));
  for (int i = 0; i < 3; ++i) t.step();
  std::string dir = t.save();
  EXPECT_EQ(dir, run / "checkpoints/step-0000003");
  EXPECT_EQ(latest_checkpoint(run.str()), dir);
  for (const char* f : {"model.h5", "optimizer.h5", "state.json", "config", "manifest.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;

  Transformer fresh(o.model);
  fresh.params().allocate(DType::f32);
  Buffer m(DType::f32, {fresh.params().total_numel()}), v(DType::f32, {fresh.params().total_numel()});
  TrainingState s = load_checkpoint(dir, fresh.params(), &m.tensor(), &v.tensor());
  EXPECT_TRUE(same_bits(copy_of(fresh.params().values()), copy_of(t.model().params().values())));
  EXPECT_TRUE(same_bits(copy_of(m.tensor()), copy_of(t.adam_m())));
  EXPECT_TRUE(same_bits(copy_of(v.tensor()), copy_of(t.adam_v())));
  EXPECT_EQ(s.step, 3);
  EXPECT_EQ(s.seed, 18446744073709551557ull);
  EXPECT_EQ(s.data_position, "synthetic=3");
  EXPECT_EQ(s.config, o.resolved());
  EXPECT_EQ(s.model.d_model, 32);
  EXPECT_EQ(s.model.dropout, o.model.dropout);  // doubles round-trip exactly
  EXPECT_EQ(s.model.layer_norm_eps, o.model.layer_norm_eps);
  EXPECT_EQ(s.tokenizer_file, "");
  EXPECT_EQ(model_structure_difference(s.model, o.model), "");
}

TEST(ExactResume, SyntheticSourceWithDropout) {
  expect_exact_resume(synthetic_options(), 6, 3);
}

TEST(ExactResume, DatasetSource) {
  Resumed r = expect_exact_resume(dataset_options(), 6, 3);
  EXPECT_EQ(r.at_save.epoch, 0);
  EXPECT_EQ(r.at_save.batch, 3);
}

// accumulate 3 and an odd number of steps: the checkpoint falls in the middle of the reader's
// first epoch and the resumed run crosses into the second.
TEST(ExactResume, DatasetSourceWithAccumulationAcrossAnEpochBoundary) {
  Resumed r = expect_exact_resume(dataset_options({"--accumulate", "3"}), 5, 2);
  std::cout << "saved at " << r.at_save.to_string() << ", ended at " << r.at_end.to_string() << "\n";
  EXPECT_EQ(r.at_save.epoch, 0);
  EXPECT_GT(r.at_save.batch, 0);
  EXPECT_GE(r.at_end.epoch, 1) << "the resumed steps should cross an epoch boundary";
}

// The checkpoint itself is taken after the epoch boundary: the position names epoch 1.
TEST(ExactResume, DatasetSourceSavedInTheSecondEpoch) {
  Resumed r = expect_exact_resume(dataset_options({"--accumulate", "2"}), 8, 5);
  std::cout << "saved at " << r.at_save.to_string() << ", ended at " << r.at_end.to_string() << "\n";
  EXPECT_EQ(r.at_save.epoch, 1);
  EXPECT_GT(r.at_save.batch, 0);
}

// The checkpoint falls exactly on the end of an epoch (the dataset gives 7 batches per epoch).
TEST(ExactResume, DatasetSourceSavedExactlyAtAnEpochEnd) {
  Resumed r = expect_exact_resume(dataset_options(), 10, 7);
  EXPECT_EQ(r.at_save.epoch, 1);
  EXPECT_EQ(r.at_save.batch, 0);
}

TEST(Checkpoint, DatasetCheckpointCarriesTheTokenizer) {
  Scratch run("tokenizer");
  TrainOptions o = dataset_options();
  o.out = run.str();
  Trainer t(o, source_for(o));
  t.step();
  std::string dir = t.save();
  TrainingState s = read_checkpoint_state(dir);
  EXPECT_EQ(s.tokenizer_file, "spm.model");
  EXPECT_EQ(Tokenizer::load(dir + "/spm.model").sha256(), testing_data::small_tokenizer().sha256());
}

TEST(Checkpoint, CorruptedByteIsRefusedNamingTheFile) {
  Scratch run("corrupt");
  TrainOptions o = synthetic_options();
  o.out = run.str();
  Trainer t(o, source_for(o));
  t.step();
  std::string dir = t.save();
  const std::string model = dir + "/model.h5";
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(std::streamoff(fs::file_size(model) / 2));
    char c;
    f.read(&c, 1);
    c = char(c ^ 0x01);
    f.seekp(std::streamoff(fs::file_size(model) / 2));
    f.write(&c, 1);
  }
  Trainer other(o, source_for(o));
  std::string e = error_of([&] { other.resume(dir); });
  EXPECT_TRUE(contains(e, model) && contains(e, "SHA-256")) << e;
  e = error_of([&] { verify_checkpoint(dir); });
  EXPECT_TRUE(contains(e, "model.h5")) << e;
}

TEST(Checkpoint, OtherModelIsRefusedNamingTheTensorAndShapes) {
  Scratch run("mismatch");
  TrainOptions o = synthetic_options();
  o.out = run.str();
  Trainer t(o, source_for(o));
  std::string dir = t.save();

  TrainOptions bigger_vocab = synthetic_options({"--vocab-size", "40"});
  Trainer a(bigger_vocab, source_for(bigger_vocab));
  std::string e = error_of([&] { a.resume(dir); });
  EXPECT_TRUE(contains(e, "embed.weight") && contains(e, "[32, 32]") && contains(e, "[40, 32]")) << e;

  TrainOptions unshared = synthetic_options({"--share-embeddings", "none"});
  Trainer b(unshared, source_for(unshared));
  e = error_of([&] { b.resume(dir); });
  EXPECT_TRUE(contains(e, "embed.weight") && contains(e, "does not have")) << e;

  // Same shapes, different function: the differing field is named.
  TrainOptions heads = synthetic_options({"--heads", "4"});
  Trainer c(heads, source_for(heads));
  e = error_of([&] { c.resume(dir); });
  EXPECT_TRUE(contains(e, "heads 2 vs 4")) << e;

  TrainOptions seed = synthetic_options({"--seed", "9"});
  Trainer d(seed, source_for(seed));
  e = error_of([&] { d.resume(dir); });
  EXPECT_TRUE(contains(e, "--seed 9") && contains(e, "--seed 1")) << e;

  // A synthetic checkpoint cannot continue on a dataset.
  TrainOptions data = dataset_options();
  Trainer f(data, source_for(data));
  Scratch run64("mismatch64");
  TrainOptions s64 = synthetic_options({"--vocab-size", "64"});
  s64.out = run64.str();
  Trainer g(s64, source_for(s64));
  e = error_of([&] { f.resume(g.save()); });
  EXPECT_TRUE(contains(e, "synthetic")) << e;
}

TEST(Checkpoint, BrokenLatestPointerIsAClearError) {
  Scratch run("latest");
  EXPECT_EQ(latest_checkpoint(run.str()), "");  // a fresh run
  TrainOptions o = synthetic_options();
  o.out = run.str();
  Trainer t(o, source_for(o));
  t.step();
  std::string first = t.save();
  t.step();
  std::string second = t.save();
  EXPECT_EQ(latest_checkpoint(run.str()), second);

  fs::remove_all(second);  // latest names a deleted directory
  std::string e = error_of([&] { latest_checkpoint(run.str()); });
  EXPECT_TRUE(contains(e, "latest") && contains(e, "step-0000002") && contains(e, "does not exist")) << e;

  fs::remove(run / "checkpoints/latest");  // checkpoints without a pointer
  e = error_of([&] { latest_checkpoint(run.str()); });
  EXPECT_TRUE(contains(e, "no " + (run / "checkpoints/latest")) && contains(e, "step-0000001")) << e;

  e = error_of([&] { read_checkpoint_state(run / "nowhere"); });
  EXPECT_TRUE(contains(e, "nowhere") && contains(e, "does not exist")) << e;
}

TEST(Checkpoint, KeepsTheNewestAndCleansUpAfterDeadWriters) {
  Scratch run("keep");
  TrainOptions o = synthetic_options();
  o.out = run.str();
  Trainer t(o, source_for(o));
  // A dead writer's leftovers (no such pid) go; a live process's temporary stays.
  fs::create_directories(run / "checkpoints/step-0000001.tmp-999999999");
  const std::string live = run / cat("checkpoints/step-0000001.tmp-", ::getppid());
  fs::create_directories(live);
  for (int i = 0; i < 5; ++i) {
    t.step();
    CheckpointWrite w{&t.model().params(), t.adam_m(), t.adam_v(), t.state(), ""};
    save_checkpoint(run.str(), w, 2);
  }
  auto left = list_checkpoints(run.str());
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].first, 4);
  EXPECT_EQ(left[1].first, 5);
  EXPECT_FALSE(fs::exists(run / "checkpoints/step-0000001.tmp-999999999"));
  EXPECT_TRUE(fs::exists(live));

  // Saving a step that exists replaces it whole.
  Trainer u(o, source_for(o));
  for (int i = 0; i < 7; ++i) u.step();
  TrainingState s = u.state();
  s.step = 5;
  CheckpointWrite w{&u.model().params(), u.adam_m(), u.adam_v(), s, ""};
  save_checkpoint(run.str(), w, 2);
  Transformer fresh(o.model);
  fresh.params().allocate(DType::f32);
  load_checkpoint(run / "checkpoints/step-0000005", fresh.params());
  EXPECT_TRUE(same_bits(copy_of(fresh.params().values()), copy_of(u.model().params().values())));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(run / "checkpoints")) entries += e.path() != live;
  EXPECT_EQ(entries, 3);  // step-0000004, step-0000005, latest
}

TEST(ResumeOptions, NoneAutoPathAndOverwrite) {
  Scratch run("plan");
  TrainOptions o = synthetic_options();
  o.out = run.str();
  EXPECT_EQ(plan_resume(o).from, "");  // auto, nothing there yet
  Trainer t(o, source_for(o));
  for (int i = 0; i < 2; ++i) {
    t.step();
    t.save();
  }
  EXPECT_EQ(plan_resume(o).from, run / "checkpoints/step-0000002");

  o.resume = "none";
  std::string e = error_of([&] { plan_resume(o); });
  EXPECT_TRUE(contains(e, run.str()) && contains(e, "--overwrite")) << e;
  EXPECT_EQ(list_checkpoints(run.str()).size(), 2u);  // nothing touched

  // An older checkpoint of the same run: the newer one would be replaced.
  o.resume = run / "checkpoints/step-0000001";
  e = error_of([&] { plan_resume(o); });
  EXPECT_TRUE(contains(e, "step-0000002") && contains(e, "--overwrite")) << e;
  o.overwrite = true;
  ResumePlan p = plan_resume(o);
  EXPECT_EQ(p.from, run / "checkpoints/step-0000001");
  discard_for_resume(p);
  EXPECT_EQ(list_checkpoints(run.str()).size(), 1u);
  EXPECT_EQ(latest_checkpoint(run.str()), run / "checkpoints/step-0000001");

  // A run directory as --resume means its latest checkpoint.
  Scratch other("plan-other");
  TrainOptions q = synthetic_options();
  q.out = other.str();
  q.resume = run.str();
  EXPECT_EQ(plan_resume(q).from, run / "checkpoints/step-0000001");
  q.resume = other / "missing";
  EXPECT_TRUE(contains(error_of([&] { plan_resume(q); }), "missing"));

  o.resume = "none";
  p = plan_resume(o);
  discard_for_resume(p);
  EXPECT_FALSE(fs::exists(run / "checkpoints"));
  EXPECT_EQ(latest_checkpoint(run.str()), "");
}

// Asks to stop, as a signal would, while the trainer draws the n-th batch (mid-step).
class StopWhileDrawing : public BatchSource {
 public:
  StopWhileDrawing(std::unique_ptr<BatchSource> inner, int n) : inner_(std::move(inner)), n_(n) {}
  Batch next() override {
    if (++drawn_ == n_) request_stop();
    return inner_->next();
  }
  std::vector<Batch> held_out() override { return inner_->held_out(); }
  std::string position() const override { return inner_->position(); }
  void restore(const std::string& p) override { inner_->restore(p); }

 private:
  std::unique_ptr<BatchSource> inner_;
  int n_, drawn_ = 0;
};

// SIGTERM/SIGINT set the flag run() checks: it finishes the step, saves and returns; the next
// run continues from that step and ends where the uninterrupted run ends.
TEST(Preemption, StopRequestSavesAndTheNextRunContinues) {
  Scratch run("stop"), straight_dir("stop-straight");
  TrainOptions o = synthetic_options({"--steps", "4", "--save-every", "0", "--log-every", "100"});
  o.out = straight_dir.str();
  Trainer straight(o, source_for(o));
  straight.run();

  o.out = run.str();
  {
    Trainer t(o, std::make_unique<StopWhileDrawing>(source_for(o), 2));
    t.run();
    clear_stop_request();
    EXPECT_EQ(t.steps_done(), 2);
  }
  EXPECT_EQ(latest_checkpoint(run.str()), run / "checkpoints/step-0000002");
  Trainer t(o, source_for(o));
  t.resume(plan_resume(o).from);
  t.run();
  EXPECT_EQ(t.steps_done(), 4);
  EXPECT_TRUE(same_bits(copy_of(t.model().params().values()), copy_of(straight.model().params().values())));
  EXPECT_EQ(latest_checkpoint(run.str()), run / "checkpoints/step-0000004");
  // metrics.jsonl continued: steps 1–2 from the first run, 3–4 from the second.
  std::ifstream metrics(run / "metrics.jsonl");
  std::string all((std::istreambuf_iterator<char>(metrics)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(contains(all, "{\"step\": 2,") && contains(all, "{\"step\": 3,") &&
              contains(all, "{\"step\": 4,")) << all;
  // Continuing another run's checkpoint in a new directory and stopped before any step: the new
  // directory gets its own checkpoint, so a relaunch there resumes rather than starts over.
  Scratch branch("stop-branch");
  TrainOptions b = o;
  b.out = branch.str();
  b.steps = 10;
  Trainer u(b, source_for(b));
  u.resume(run / "checkpoints/step-0000004");
  request_stop();
  u.run();
  clear_stop_request();
  EXPECT_EQ(u.steps_done(), 4);
  EXPECT_EQ(latest_checkpoint(branch.str()), branch / "checkpoints/step-0000004");
}

}  // namespace
}  // namespace tfm
