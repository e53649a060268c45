#include "trainer/batch_source.h"

#include <cstdio>
#include <filesystem>

#include "data/reader.h"
#include "kernels/core/check.h"
#include "trainer/synthetic.h"

namespace tfm {

namespace {

class SyntheticSource : public BatchSource {
 public:
  SyntheticSource(SyntheticTask task, int64_t batch_tokens, int64_t eval_batches, int rank, int world)
      : task_(task), batch_tokens_(batch_tokens), eval_batches_(eval_batches), rank_(rank), world_(world) {}
  // Every next() consumes `world` global batches; this rank trains on the rank-th of them.
  Batch next() override {
    Batch b = task_.batch(next_ + uint64_t(rank_), batch_tokens_);
    next_ += uint64_t(world_);
    return b;
  }
  std::vector<Batch> held_out() override {
    // A different seed stream from training, so evaluation measures generalisation.
    SyntheticTask held = task_;
    held.seed = mix64(task_.seed ^ 0x5EED0FE7A1ull);
    std::vector<Batch> out;
    for (int64_t k = 0; k < eval_batches_; ++k) out.push_back(held.batch(uint64_t(k), batch_tokens_));
    return out;
  }
  // The global batch count: the same on every rank, and meaningful at any world size.
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
  int rank_, world_;
  uint64_t next_ = 0;  // global batches consumed
};

class DatasetSource : public BatchSource {
 public:
  DatasetSource(const std::string& dir, int64_t batch_tokens, uint64_t seed, int64_t eval_batches,
                int rank, int world)
      : dir_(dir), batch_tokens_(batch_tokens), seed_(seed), eval_batches_(eval_batches),
        rank_(rank), world_(world), train_(std::make_unique<DatasetReader>(dir, train_options(true))) {}
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
  std::string dataset_dir() const override { return dir_; }
  std::string bleu_split() const override { return has_split("valid") ? "valid" : ""; }
  int64_t vocab_size() const { return train_->manifest().vocab_size; }

 private:
  ReaderOptions train_options(bool verify) const {
    ReaderOptions o;
    o.split = "train";
    o.batch_tokens = batch_tokens_;
    o.seed = seed_;
    o.verify = verify;
    o.rank = rank_;
    o.world = world_;
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
  int rank_, world_;
  std::unique_ptr<DatasetReader> train_;
  std::vector<Batch> held_out_;
};

}  // namespace

void BatchSource::restore(const std::string& position) {
  TFM_CHECK(position.empty(), "this batch source cannot resume from data position '", position, "'");
}

std::unique_ptr<BatchSource> make_dataset_source(TrainOptions& o, int dp_rank, int dp_size) {
  auto source = std::make_unique<DatasetSource>(o.data_dir, o.batch_tokens, o.seed, o.eval_batches,
                                                dp_rank, dp_size);
  o.model.vocab_size = source->vocab_size();
  o.model.validate();
  return source;
}

std::unique_ptr<BatchSource> make_synthetic_source(const TrainOptions& o, int dp_rank, int dp_size) {
  return std::make_unique<SyntheticSource>(o.task, o.batch_tokens, o.eval_batches, dp_rank, dp_size);
}

}  // namespace tfm
