#include "trainer/train.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "data/files.h"
#include "data/reader.h"
#include "kernels/core/device.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/optimizer/optimizer.h"
#include "trainer/metrics.h"
#include "trainer/signals.h"

extern "C" void openblas_set_num_threads(int);

namespace tfm {

namespace {

uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class SyntheticSource : public BatchSource {
 public:
  SyntheticSource(SyntheticTask task, int64_t batch_tokens, int64_t eval_batches)
      : task_(task), batch_tokens_(batch_tokens), eval_batches_(eval_batches) {}
  Batch next() override { return task_.batch(next_++, batch_tokens_); }
  std::vector<Batch> held_out() override {
    // A different seed stream from training, so evaluation measures generalisation.
    SyntheticTask held = task_;
    held.seed = mix(task_.seed ^ 0x5EED0FE7A1ull);
    std::vector<Batch> out;
    for (int64_t k = 0; k < eval_batches_; ++k) out.push_back(held.batch(uint64_t(k), batch_tokens_));
    return out;
  }
  std::string position() const override { return cat("synthetic=", next_); }
  void restore(const std::string& position) override {
    unsigned long long k = 0;
    char tail = 0;
    TFM_CHECK(std::sscanf(position.c_str(), "synthetic=%llu%c", &k, &tail) == 1,
              "the checkpoint's data position '", position, "' is not a synthetic task's (",
              "it was trained on --data); resume it with the same --data");
    next_ = uint64_t(k);
  }

 private:
  SyntheticTask task_;
  int64_t batch_tokens_, eval_batches_;
  uint64_t next_ = 0;
};

class DatasetSource : public BatchSource {
 public:
  DatasetSource(const std::string& dir, int64_t batch_tokens, uint64_t seed, int64_t eval_batches)
      : dir_(dir), batch_tokens_(batch_tokens), seed_(seed), eval_batches_(eval_batches),
        train_(std::make_unique<DatasetReader>(dir, train_options(true))) {}
  Batch next() override {
    Batch b;
    train_->next(b);  // a shuffled stream never ends
    return b;
  }
  std::vector<Batch> held_out() override {
    if (held_out_.empty()) {
      ReaderOptions o;
      o.split = has_split("valid") ? "valid" : "train";
      o.batch_tokens = batch_tokens_;
      o.shuffle = false;
      o.verify = false;  // verified when the training reader opened the dataset
      DatasetReader valid(dir_, o);
      Batch b;
      while (int64_t(held_out_.size()) < eval_batches_ && valid.next(b)) held_out_.push_back(b);
    }
    return held_out_;
  }
  std::string position() const override { return train_->position().to_string(); }
  void restore(const std::string& position) override {
    TFM_CHECK(position.rfind("synthetic=", 0) != 0, "the checkpoint was trained on a synthetic task (",
              position, "); it cannot continue on --data ", dir_);
    TFM_CHECK(!position.empty(), "the checkpoint records no data position; it cannot continue on --data ", dir_);
    // The first reader verified the shards; the repositioned one need not hash them again.
    train_ = std::make_unique<DatasetReader>(dir_, train_options(false), ReaderPosition::from_string(position));
  }
  std::string tokenizer_path() const override {
    return (std::filesystem::path(dir_) / train_->manifest().tokenizer_file).string();
  }
  int64_t vocab_size() const { return train_->manifest().vocab_size; }

 private:
  ReaderOptions train_options(bool verify) const {
    ReaderOptions o;
    o.split = "train";
    o.batch_tokens = batch_tokens_;
    o.seed = seed_;
    o.verify = verify;
    return o;
  }
  bool has_split(const std::string& name) const {
    for (const auto& [split, entry] : train_->manifest().splits)
      if (split == name) return true;
    return false;
  }
  std::string dir_;
  int64_t batch_tokens_;
  uint64_t seed_;
  int64_t eval_batches_;
  std::unique_ptr<DatasetReader> train_;
  std::vector<Batch> held_out_;
};

// Holds an exclusive lock on RUN_DIR/.lock for the life of the run, so two trainers never write
// the same run directory (the lock dies with the process, even on SIGKILL).
class RunDirLock {
 public:
  explicit RunDirLock(const std::string& run_dir) {
    const std::string path = (std::filesystem::path(run_dir) / ".lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    TFM_CHECK(fd_ >= 0, "cannot open ", path, ": ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fail(cat("run directory ", run_dir, " is in use by another `tfm train` (", path, " is locked)"));
    }
  }
  ~RunDirLock() { ::close(fd_); }
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace

void BatchSource::restore(const std::string& position) {
  TFM_CHECK(position.empty(), "this batch source cannot resume from data position '", position, "'");
}

std::unique_ptr<BatchSource> make_dataset_source(TrainOptions& o) {
  auto source = std::make_unique<DatasetSource>(o.data_dir, o.batch_tokens, o.seed, o.eval_batches);
  o.model.vocab_size = source->vocab_size();
  o.model.validate();
  return source;
}

std::unique_ptr<BatchSource> make_synthetic_source(const TrainOptions& o) {
  return std::make_unique<SyntheticSource>(o.task, o.batch_tokens, o.eval_batches);
}

Trainer::Trainer(const TrainOptions& options, std::unique_ptr<BatchSource> source)
    : opt_(options), source_(std::move(source)), model_(options.model) {
  if (opt_.threads > 0) {
    omp_set_num_threads(opt_.threads);
    openblas_set_num_threads(opt_.threads);
  }
  model_.params().allocate(DType::f32);
  model_.params().initialize(opt_.seed);
  adam_m_ = Buffer(DType::f32, {model_.params().total_numel()});
  adam_v_ = Buffer(DType::f32, {model_.params().total_numel()});
}

StepReport Trainer::step() {
  ParameterStore& params = model_.params();
  fill_zero(ctx_, params.grads());
  std::vector<Batch> micro;
  int64_t tgt_tokens = 0, src_tokens = 0;
  for (int64_t i = 0; i < opt_.accumulate; ++i) {
    micro.push_back(source_->next());
    tgt_tokens += micro.back().tgt_tokens();
    src_tokens += micro.back().src_tokens();
  }
  // Every micro-batch's loss is divided by the step's token count, so the accumulated gradient
  // is that of the mean loss over the whole step.
  const double grad_scale = 1.0 / double(tgt_tokens);
  LossStats total;
  for (size_t i = 0; i < micro.size(); ++i) {
    uint64_t dropout_seed = mix(opt_.seed ^ mix(uint64_t(step_) * 1024 + i));
    total += model_.forward_backward(ctx_, arena_, micro[i], grad_scale, dropout_seed);
  }

  StepReport r;
  r.step = ++step_;
  r.loss = total.loss_sum / double(total.tokens);
  r.nll = total.nll_sum / double(total.tokens);
  r.tokens = src_tokens + tgt_tokens;
  r.lr = opt_.lr.at(r.step);
  r.grad_norm = clip_grad_norm(ctx_, params.grads(), opt_.clip_norm);
  if (!std::isfinite(r.grad_norm)) {
    r.skipped = true;  // an overflow must not reach the weights
    ++skipped_;
  } else {
    AdamHyper h;
    h.lr = r.lr;
    h.beta1 = opt_.adam_beta1;
    h.beta2 = opt_.adam_beta2;
    h.eps = opt_.adam_eps;
    h.weight_decay = opt_.weight_decay;
    h.step = r.step;
    adam_step(ctx_, h, params.values(), params.grads(), adam_m_, adam_v_);
  }
  history_.push_back(r);
  return r;
}

EvalReport Trainer::evaluate() {
  LossStats total;
  for (const Batch& b : source_->held_out()) total += model_.evaluate(ctx_, arena_, b);
  EvalReport e;
  e.tokens = total.tokens;
  e.loss = total.loss_sum / double(total.tokens);
  e.nll = total.nll_sum / double(total.tokens);
  e.perplexity = std::exp(e.nll);
  e.accuracy = double(total.correct) / double(total.tokens);
  return e;
}

TrainingState Trainer::state() const {
  TrainingState s;
  s.step = step_;
  s.seed = opt_.seed;
  s.data_position = source_->position();
  s.skipped_steps = skipped_;
  s.config = opt_.resolved();
  s.model = model_.config();
  return s;
}

std::string Trainer::save() {
  CheckpointWrite w;
  w.params = &model_.params();
  w.adam_m = adam_m_.tensor();
  w.adam_v = adam_v_.tensor();
  w.state = state();
  w.tokenizer_path = source_->tokenizer_path();
  saved_dir_ = save_checkpoint(opt_.out, w, opt_.keep);
  saved_step_ = step_;
  return saved_dir_;
}

TrainingState Trainer::resume(const std::string& checkpoint_dir) {
  // The seed fixes the data order and every dropout mask: a run continues only under its own.
  TrainingState peek = read_checkpoint_state(checkpoint_dir);
  TFM_CHECK(peek.seed == opt_.seed, "--seed ", opt_.seed, " differs from the seed ", peek.seed,
            " of checkpoint ", checkpoint_dir, "; resume with --seed ", peek.seed,
            " or start a new run (another --out, or --resume none)");
  TrainingState s = load_checkpoint(checkpoint_dir, model_.params(), &adam_m_.tensor(), &adam_v_.tensor());
  std::string diff = model_structure_difference(s.model, model_.config());
  TFM_CHECK(diff.empty(), "checkpoint ", checkpoint_dir, " holds a different model than this "
            "configuration: ", diff, " (checkpoint vs configuration)");
  source_->restore(s.data_position);
  step_ = s.step;
  skipped_ = s.skipped_steps;
  // A checkpoint of this run directory need not be written again before the next step; one of
  // another run (--resume PATH) must, or a relaunch with --resume auto would start over.
  std::error_code ec;
  const std::filesystem::path own = std::filesystem::path(opt_.out) / "checkpoints";
  if (std::filesystem::equivalent(std::filesystem::canonical(checkpoint_dir, ec).parent_path(), own, ec)) {
    saved_step_ = s.step;
    saved_dir_ = checkpoint_dir;
  }
  return s;
}

EvalReport Trainer::run() {
  namespace fs = std::filesystem;
  fs::create_directories(opt_.out);
  write_file_atomic((fs::path(opt_.out) / "config").string(), opt_.resolved());
  MetricsLogger metrics(opt_.out);
  std::cout << "tfm train: " << model_.config().summary() << "\n"
            << "  parameters " << model_.params().total_numel() << ", device cpu ("
            << omp_get_max_threads() << " threads), fp32, " << opt_.steps << " steps of "
            << opt_.accumulate << " × " << opt_.batch_tokens << " tokens\n";
  const int64_t start_step = step_;
  if (start_step >= opt_.steps) {
    std::cout << "  already at step " << start_step << " of " << opt_.steps
              << "; nothing to do (raise --steps to train further)" << std::endl;
    return EvalReport{};
  }

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto window_start = start;
  int64_t window_tokens = 0;
  EvalReport last_eval;
  while (step_ < opt_.steps && !stop_requested()) {
    StepReport r = step();
    window_tokens += r.tokens;
    bool log_now = r.step % opt_.log_every == 0 || r.step == opt_.steps || r.step == start_step + 1 ||
                   stop_requested();
    bool eval_now = r.step == opt_.steps || (opt_.eval_every > 0 && r.step % opt_.eval_every == 0);
    bool save_now = r.step == opt_.steps || (opt_.save_every > 0 && r.step % opt_.save_every == 0);
    if (log_now) {
      auto now = clock::now();
      double window_s = std::chrono::duration<double>(now - window_start).count();
      double elapsed = std::chrono::duration<double>(now - start).count();
      double tokens_per_s = window_s > 0 ? double(window_tokens) / window_s : 0.0;
      window_start = now;
      window_tokens = 0;
      std::cout << format_progress(r.step, opt_.steps, r.loss, r.lr, tokens_per_s, elapsed, start_step)
                << (r.skipped ? " | step skipped (non-finite gradient)" : "") << std::endl;
      metrics.log(r.step, {{"loss", r.loss}, {"nll", r.nll}, {"ppl", std::exp(r.nll)},
                           {"lr", r.lr}, {"grad_norm", r.grad_norm},
                           {"tokens_per_s", tokens_per_s}, {"elapsed_s", elapsed},
                           {"skipped", r.skipped ? 1.0 : 0.0}});
    }
    if (eval_now) {
      last_eval = evaluate();
      std::cout << "eval step " << r.step << " | loss " << last_eval.loss << " | nll "
                << last_eval.nll << " | ppl " << last_eval.perplexity << " | token accuracy "
                << last_eval.accuracy << std::endl;
      metrics.log(r.step, {{"eval_loss", last_eval.loss}, {"eval_nll", last_eval.nll},
                           {"eval_ppl", last_eval.perplexity},
                           {"eval_accuracy", last_eval.accuracy}});
    }
    if (save_now && !stop_requested()) {
      std::string dir = save();
      if (r.step == opt_.steps) std::cout << "checkpoint " << dir << std::endl;
    }
  }
  metrics.flush();
  if (stop_requested()) {
    std::string dir = saved_step_ == step_ ? saved_dir_ : save();
    int sig = stop_signal();
    std::cout << "tfm train: stopped" << (sig == SIGTERM ? " by SIGTERM" : sig == SIGINT ? " by SIGINT" : "")
              << " at step " << step_ << "; checkpoint " << dir
              << "; run the same command again to continue" << std::endl;
  }
  return last_eval;
}

namespace {

// "steps 6 → 8, lr 1 → 2": the `key = value` lines of two resolved configurations that differ
// (the run directory aside).
std::string changed_options(const std::string& before, const std::string& after) {
  auto parse = [](const std::string& text) {
    std::vector<std::pair<std::string, std::string>> kv;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      size_t eq = line.find(" = ");
      if (eq != std::string::npos) kv.emplace_back(line.substr(0, eq), line.substr(eq + 3));
    }
    return kv;
  };
  auto old_kv = parse(before);
  std::string out;
  for (const auto& [key, value] : parse(after)) {
    if (key == "out") continue;
    std::string was = "(unset)";
    for (const auto& [k, v] : old_kv)
      if (k == key) was = v;
    if (was != value) out += cat(out.empty() ? "" : ", ", key, " ", was, " → ", value);
  }
  return out;
}

}  // namespace

ResumePlan plan_resume(const TrainOptions& opt) {
  namespace fs = std::filesystem;
  ResumePlan plan;
  plan.run_dir = opt.out;
  const std::string run = opt.out;
  const fs::path ckdir = fs::path(run) / "checkpoints";
  std::error_code ec;
  if (opt.resume == "auto") {
    plan.from = latest_checkpoint(run);
    return plan;
  }
  if (opt.resume == "none") {
    auto existing = list_checkpoints(run);
    if (!existing.empty() || fs::exists(ckdir / "latest", ec)) {
      TFM_CHECK(opt.overwrite, "--resume none: run directory ", run, " already has checkpoints (in ",
                ckdir.string(), "); continue it with --resume auto, choose another --out, or add "
                "--overwrite to discard them");
    }
    if (opt.overwrite) {
      // Start over: the old run's checkpoints, metrics and TensorBoard events go.
      if (fs::exists(ckdir, ec)) plan.discard.push_back(ckdir.string());
      if (fs::exists(fs::path(run) / "metrics.jsonl", ec)) plan.discard.push_back((fs::path(run) / "metrics.jsonl").string());
      for (const auto& e : fs::directory_iterator(run, ec))
        if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) plan.discard.push_back(e.path().string());
    }
    return plan;
  }
  // A checkpoint directory, or a run directory whose latest checkpoint is meant.
  std::string from = opt.resume;
  if (!fs::exists(fs::path(from) / "manifest.json", ec) && fs::is_directory(fs::path(from) / "checkpoints", ec)) {
    from = latest_checkpoint(from);
    TFM_CHECK(!from.empty(), "--resume ", opt.resume, ": that run directory has no checkpoint");
  }
  TFM_CHECK(fs::exists(fs::path(from) / "manifest.json", ec), "--resume ", opt.resume,
            ": not a checkpoint directory (no manifest.json) nor a run directory with checkpoints");
  const TrainingState state = read_checkpoint_state(from);
  // Checkpoints of RUN_DIR newer than the one we continue from would be replaced as the run
  // reaches their steps: only with --overwrite.
  std::vector<std::string> newer;
  for (const auto& [step, dir] : list_checkpoints(run))
    if (step > state.step) newer.push_back(dir);
  if (!newer.empty()) {
    TFM_CHECK(opt.overwrite, "--resume ", opt.resume, ": run directory ", run, " holds ", newer.size(),
              " checkpoint(s) newer than step ", state.step, " (up to ", newer.back(), ") that continuing "
              "would replace; choose another --out, or add --overwrite to discard them");
    plan.discard = newer;
  }
  plan.from = from;
  return plan;
}

void discard_for_resume(const ResumePlan& plan) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const std::string& path : plan.discard) {
    // Renamed first, so that a deletion cut short leaves nothing that looks like a checkpoint.
    const std::string doomed = cat(path, ".deleting-", ::getpid());
    if (std::rename(path.c_str(), doomed.c_str()) != 0) fail(cat("cannot remove ", path, ": ", std::strerror(errno)));
    fs::remove_all(doomed, ec);
  }
  const fs::path latest = fs::path(plan.run_dir) / "checkpoints" / "latest";
  if (!plan.discard.empty() && fs::exists(latest, ec)) {
    std::string name = read_file(latest.string());
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (!fs::exists(latest.parent_path() / name / "manifest.json", ec)) {
      auto left = list_checkpoints(plan.run_dir);
      if (left.empty()) fs::remove(latest, ec);
      else write_file_atomic(latest.string(), fs::path(left.back().second).filename().string() + "\n");
    }
  }
}

int train_main(int argc, char** argv) {
  TrainOptions opt;
  if (!parse_train_options(argc, argv, opt)) return 0;
  if (opt.device == "cuda")
    fail("--device cuda: the CUDA backend is not available yet in this build; use --device cpu");
  if (opt.precision == "bf16" || opt.precision == "fp16")
    fail(cat("--precision ", opt.precision, ": reduced precision needs the CUDA backend; on CPU "
             "use fp32"));
  std::filesystem::create_directories(opt.out);
  RunDirLock lock(opt.out);
  ResumePlan plan = plan_resume(opt);  // refuses before anything is built or changed
  std::unique_ptr<BatchSource> source =
      opt.synthetic.empty() ? make_dataset_source(opt) : make_synthetic_source(opt);
  Trainer trainer(opt, std::move(source));
  if (!plan.from.empty()) {
    TrainingState s = trainer.resume(plan.from);
    std::cout << "tfm train: resumed from " << plan.from << " (step " << s.step << ")" << std::endl;
    std::string changed = changed_options(s.config, opt.resolved());
    if (!changed.empty()) std::cout << "  options changed since that checkpoint: " << changed << std::endl;
  }
  discard_for_resume(plan);
  StopSignals signals;
  trainer.run();
  return 0;
}

}  // namespace tfm
