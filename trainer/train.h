// The training loop, as a list of steps (DESIGN.md, Trainer):
//   for each optimiser step:
//     zero the gradients
//     for each of `accumulate` micro-batches: forward + backward, gradients scaled by
//       1 / (target tokens in the whole step), so accumulation equals one big batch
//     clip the global gradient norm (optional); skip the step if it is not finite
//     Adam with the Noam learning rate
//     log: progress line on the terminal, a record in RUN_DIR/metrics.jsonl
//     every --save-every steps, at the end, and when SIGTERM/SIGINT asks to stop: a checkpoint
// Resuming restores the weights, the Adam moments, the step (which fixes the learning rate and
// the dropout seeds, both pure functions of seed and step) and the data position, so a resumed
// run computes bit for bit what the uninterrupted run would have (on CPU).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/core/arena.h"
#include "kernels/core/buffer.h"
#include "kernels/core/context.h"
#include "model/transformer.h"
#include "trainer/checkpoint.h"
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
};

std::unique_ptr<BatchSource> make_synthetic_source(const TrainOptions& o);
// The train split of a prepared dataset (shuffled, token-budget batches) and its valid split
// (one pass in order, at most eval_batches batches) for evaluation. Sets o.model.vocab_size from
// the dataset's manifest.
std::unique_ptr<BatchSource> make_dataset_source(TrainOptions& o);

struct StepReport {
  int64_t step = 0;
  double loss = 0, nll = 0;   // per target token
  double lr = 0, grad_norm = 0;
  int64_t tokens = 0;         // source + target tokens (non-pad) in the step
  bool skipped = false;       // non-finite gradient: no update
};

struct EvalReport {
  double loss = 0, nll = 0, perplexity = 0, accuracy = 0;
  int64_t tokens = 0;
};

class Trainer {
 public:
  Trainer(const TrainOptions& options, std::unique_ptr<BatchSource> source);
  StepReport step();            // one optimiser step
  EvalReport evaluate();        // on the held-out set, no dropout
  // The whole run with progress and metrics; returns the final evaluation.
  EvalReport run();

  // The state a checkpoint records, and a checkpoint of it in options.out (returns its directory).
  TrainingState state() const;
  std::string save();
  // Continues from a checkpoint: weights, Adam moments, step, data position. Refuses a checkpoint
  // of another model (naming the tensor and both shapes, or the differing field) or seed.
  TrainingState resume(const std::string& checkpoint_dir);

  Transformer& model() { return model_; }
  int64_t steps_done() const { return step_; }
  const std::vector<StepReport>& history() const { return history_; }
  const Tensor& adam_m() const { return adam_m_.tensor(); }
  const Tensor& adam_v() const { return adam_v_.tensor(); }
  BatchSource& source() { return *source_; }

 private:
  TrainOptions opt_;
  std::unique_ptr<BatchSource> source_;
  Context ctx_;
  Arena arena_;
  Transformer model_;
  Buffer adam_m_, adam_v_;  // Adam moments, flat like the parameters
  int64_t step_ = 0;
  int64_t skipped_ = 0;      // steps skipped for a non-finite gradient, over the whole run
  int64_t saved_step_ = -1;  // the step of the newest checkpoint in options.out (-1: none) …
  std::string saved_dir_;    // … and its directory
  std::vector<StepReport> history_;
};

// What `--resume` and `--overwrite` decide for RUN_DIR (options.out), checked before anything
// changes: the checkpoint to continue from ("" for a fresh start) and what --overwrite discards
// once the trainer has started successfully. Errors name the directory and the way out.
struct ResumePlan {
  std::string run_dir;
  std::string from;
  std::vector<std::string> discard;  // paths under RUN_DIR
};
ResumePlan plan_resume(const TrainOptions& options);
// Deletes plan.discard and, if `latest` named a discarded checkpoint, points it at the newest one
// left (or removes it when none is).
void discard_for_resume(const ResumePlan& plan);

// `tfm train`: parses options, builds the data source and trainer, runs. Returns the exit code.
int train_main(int argc, char** argv);

}  // namespace tfm
