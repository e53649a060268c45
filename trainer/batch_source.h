// Where training batches come from: the synthetic tasks (trainer/synthetic.h) or a prepared
// dataset's train split (data/reader.h), one interface, each resumable from a position saved in
// checkpoints and shared out over the data-parallel ranks.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "trainer/train_options.h"

namespace tfm {

// Where batches come from: the synthetic tasks now, the HDF5 reader through the same interface.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
  virtual std::vector<Batch> held_out() = 0;  // a fixed evaluation set
  // Where the next batch comes from, as saved in checkpoints (TrainingState::data_position), and
  // the way back there: restore(position()) on a fresh source of the same data yields exactly the
  // batches this one would yield next. Sources that cannot resume return "".
  virtual std::string position() const { return ""; }
  virtual void restore(const std::string& position);
  // The SentencePiece model of the data, copied into checkpoints ("" for synthetic tasks).
  virtual std::string tokenizer_path() const { return ""; }
  // The prepared dataset and the split translated for BLEU ("" for synthetic tasks or when the
  // dataset has no valid split).
  virtual std::string dataset_dir() const { return ""; }
  virtual std::string bleu_split() const { return ""; }
};

// Data-parallel rank `dp_rank` of `dp_size` takes global batches dp_rank, dp_rank + dp_size, …
// of the same sequence one process would see (so its position is global and a run can resume at
// another DP size).
std::unique_ptr<BatchSource> make_synthetic_source(const TrainOptions& o, int dp_rank = 0,
                                                   int dp_size = 1);
// The train split of a prepared dataset (shuffled, token-budget batches) and its valid split
// (one pass in order, at most eval_batches batches) for evaluation. Sets o.model.vocab_size from
// the dataset's manifest.
std::unique_ptr<BatchSource> make_dataset_source(TrainOptions& o, int dp_rank = 0, int dp_size = 1);

}  // namespace tfm
