// The training loop, as a list of steps (DESIGN.md, Trainer):
//   for each optimiser step:
//     zero the gradients
//     for each of `accumulate` micro-batches: forward + backward, gradients scaled by
//       1 / (target tokens in the whole step, over every data-parallel rank), so accumulation
//       and data parallelism both equal one big batch
//     data parallelism: gradient buckets all-reduced (or reduce-scattered, ZeRO-1) over the DP
//       group while the last micro-batch's backward is still running (comm/gradient_reducer.h)
//     clip the global gradient norm (optional); skip the step if it is not finite
//     Adam with the Noam learning rate (ZeRO-1: on this rank's share, then all-gather)
//     log: progress line on the terminal, a record in RUN_DIR/metrics.jsonl (world rank 0)
//     every --save-every steps, at the end, and when SIGTERM/SIGINT asks to stop: a checkpoint
//       of the logical tensors, gathered and written by world rank 0
// Resuming restores the weights, the Adam moments, the step (which fixes the learning rate and
// the dropout seeds, both pure functions of seed and step) and the data position, so a resumed
// run computes bit for bit what the uninterrupted run would have (on CPU) — under any DP × TP
// layout up to the order of floating-point sums.
//
// Which micro-batch a rank trains on, and its dropout masks, depend only on its global index
// g = micro · DP + dp_rank within the step: DP = k with --accumulate A sees the batches and the
// masks of one process with --accumulate k·A.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/gradient_reducer.h"
#include "comm/grid.h"
#include "kernels/core/arena.h"
#include "kernels/core/buffer.h"
#include "kernels/core/context.h"
#include "model/transformer.h"
#include "trainer/batch_source.h"
#include "trainer/checkpoint.h"
#include "trainer/train_options.h"

namespace tfm {

struct StepReport {
  int64_t step = 0;
  double loss = 0, nll = 0;   // per target token
  double lr = 0, grad_norm = 0;
  double loss_scale = 1;      // fp16: the scale this step's backward ran with
  int64_t tokens = 0;         // source + target tokens (non-pad) in the step
  bool skipped = false;       // non-finite gradient: no update
};

struct EvalReport {
  double loss = 0, nll = 0, perplexity = 0, accuracy = 0;
  int64_t tokens = 0;
  bool has_bleu = false;       // --data with a valid split and --eval-bleu-sentences > 0
  double bleu = 0;             // sacreBLEU's corpus BLEU of the translated valid sentences
  std::string bleu_signature;  // "BLEU|nrefs:1|…" line as `tfm score` prints it
  int64_t bleu_sentences = 0;
  double bleu_seconds = 0;
};

class Trainer {
 public:
  // parallel: the process grid of this job (null: a world of one). With a grid, construction and
  // every method below are collective over the world, called in the same order on every rank.
  // options.device / precision "auto" mean cpu / fp32 here; `tfm train` resolves them first
  // (resolve_device_and_precision). On cuda the grid's communicators must be NCCL's.
  Trainer(const TrainOptions& options, std::unique_ptr<BatchSource> source,
          comm::ParallelContext* parallel = nullptr);
  ~Trainer();
  StepReport step();            // one optimiser step
  EvalReport evaluate();        // on the held-out set, no dropout; BLEU when the data allows
  // The whole run with progress and metrics; returns the final evaluation.
  EvalReport run();

  // The state a checkpoint records, and a checkpoint of it in options.out (returns its directory).
  TrainingState state() const;
  std::string save();
  // Continues from a checkpoint: weights, Adam moments, step, data position. Refuses a checkpoint
  // of another model (naming the tensor and both shapes, or the differing field) or seed. Any
  // DP × TP layout can continue any checkpoint: tensors are stored whole.
  TrainingState resume(const std::string& checkpoint_dir);

  Transformer& model() { return model_; }
  int64_t steps_done() const { return step_; }
  const std::vector<StepReport>& history() const { return history_; }
  // This rank's Adam moments: the whole flat buffer, or under ZeRO-1 the concatenation of the
  // ranges it owns (owned_ranges()).
  const Tensor& adam_m() const { return adam_m_.tensor(); }
  const Tensor& adam_v() const { return adam_v_.tensor(); }
  const std::vector<comm::ElementRange>& owned_ranges() const { return owned_; }
  BatchSource& source() { return *source_; }
  // The gradient reducer of a data-parallel run (null otherwise), for its overlap statistics.
  const comm::GradientReducer* reducer() const { return reducer_.get(); }
  // --overlap-grad-reduce, switchable between steps (the overlap benchmark compares both).
  void set_overlap_reduce(bool on) { opt_.overlap_reduce = on; }
  bool is_root() const { return world_rank_ == 0; }  // prints, logs and writes checkpoints
  Device device() const { return device_; }
  DType compute_dtype() const { return compute_; }
  double loss_scale() const { return loss_scale_; }

 private:
  bool stop_now();              // collective: did any rank receive SIGTERM/SIGINT?
  // Host copies of a flat device buffer (the master weights or a moment) for files and decoding.
  Buffer on_host(const Tensor& flat) const;
  double global_grad_sum_squares();
  void ensure_logical_model();  // a TP = 1 model to gather shards into
  void gather_full_moments(Buffer& m, Buffer& v);  // ZeRO-1: every rank's share, whole
  void evaluate_bleu(EvalReport& e);

  TrainOptions opt_;
  std::unique_ptr<BatchSource> source_;
  comm::ParallelContext* par_ = nullptr;
  int world_rank_ = 0, world_size_ = 1, dp_rank_ = 0, dp_size_ = 1;
  Device device_ = Device::cpu;
  DType compute_ = DType::f32;   // activations and the working copy (bf16/f16 on the GPU)
  Arena arena_;                  // activations and op scratch of a step, on device_
  Context ctx_;
  Transformer model_;
  std::unique_ptr<comm::GradientReducer> reducer_;
  bool reducing_ = false;        // the hook forwards gradient reports only on a step's last micro-batch
  std::vector<comm::ElementRange> owned_;  // what this rank's Adam updates
  Buffer adam_m_, adam_v_;       // Adam moments of owned_, concatenated
  // fp16 dynamic loss scaling (DESIGN.md, Trainer): the loss is multiplied by loss_scale_ before
  // backward; a non-finite gradient skips the step and halves it, kGrowthInterval clean steps
  // double it. 1 and unused in fp32 and bf16.
  double loss_scale_ = 1.0;
  int64_t loss_scale_good_steps_ = 0;
  std::unique_ptr<Transformer> logical_;  // TP > 1: the whole model, for checkpoints and BLEU
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
