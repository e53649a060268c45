// TrainOptions: everything `tfm train` can be told, from a config file (--config, INI-style
// `key = value` with the command-line names) and the command line (which wins). Every option has
// a default and help text; bad values are rejected naming the option.
#pragma once
#include <cstdint>
#include <string>

#include "model/config.h"
#include "trainer/schedule.h"
#include "trainer/synthetic.h"

namespace tfm {

struct TrainOptions {
  // What to train.
  std::string preset = "tiny";
  ModelConfig model;            // the preset with any overrides applied (vocab from the data)
  std::string data_dir;         // a `tfm prepare` output, or empty with --synthetic
  std::string synthetic;        // copy | reverse | sort, or empty with --data
  SyntheticTask task;

  // How.
  std::string out;              // run directory
  int64_t steps = 1000;
  int64_t batch_tokens = 4096;  // per micro-batch, source + target tokens including padding
  int64_t accumulate = 1;       // micro-batches per optimiser step
  LrSchedule lr;
  double adam_beta1 = 0.9, adam_beta2 = 0.98, adam_eps = 1e-9, weight_decay = 0.0;
  double clip_norm = 0.0;       // 0: no clipping
  uint64_t seed = 1;
  std::string device = "auto";  // auto | cpu | cuda (resolve_device_and_precision picks)
  std::string precision = "auto";  // auto | fp32 | bf16 | fp16 (auto: bf16 on cuda, fp32 on cpu)
  int threads = 0;              // 0: all cores

  // Parallelism (under mpirun/srun; comm/grid.h). The world is DP × TP with DP = world / TP;
  // batch_tokens and accumulate are per DP rank, so the global batch is DP times larger.
  int tp = 1;                   // tensor-parallel degree
  int zero = 0;                 // 1: ZeRO stage 1 (Adam state sharded over the DP group)
  double bucket_mb = 25;        // gradient all-reduce bucket size
  bool overlap_reduce = true;   // start a bucket's all-reduce during backward (false: after it)
  double comm_timeout = 0;      // seconds before a stuck collective ends the job
                                // (0: $TFM_COMM_TIMEOUT, else 300)

  // Reporting.
  int64_t log_every = 10;
  int64_t eval_every = 0;       // 0: only at the end
  int64_t eval_batches = 8;     // held-out batches per evaluation (synthetic task)
  int64_t eval_bleu_sentences = 200;  // --data: valid sentences decoded for BLEU per evaluation
                                      // (0: no BLEU)
  int eval_beam = 4;            // beam size of that decoding (1: greedy)

  // Checkpoints (trainer/checkpoint.h) in RUN_DIR/checkpoints/.
  int64_t save_every = 1000;    // steps between checkpoints (0: only at the end); one is always
                                // written at the end and when SIGTERM/SIGINT stops the run
  int keep = 5;                 // newest checkpoints kept
  std::string resume = "auto";  // auto: continue from RUN_DIR's latest checkpoint if any;
                                // none: start fresh; or a checkpoint (or run) directory
  bool overwrite = false;       // let --resume none (or an older --resume PATH) discard RUN_DIR's
                                // existing (newer) checkpoints

  // The effective configuration, one `key = value` per line. --resume and --overwrite are left
  // out: they say how this invocation starts, not what the run is.
  std::string resolved() const;
};

// Replaces "auto" in options.device (cuda when this build has CUDA and a GPU is visible, else
// cpu) and options.precision (bf16 on cuda, fp32 on cpu); refuses --device cuda without a GPU
// and reduced precision on the CPU, naming the option.
void resolve_device_and_precision(TrainOptions& options);

// Parses `tfm train …` (argv[0] is "train"). Returns false when help was printed (exit 0).
// Throws tfm::Error naming the option on any bad input.
bool parse_train_options(int argc, char** argv, TrainOptions& out);

}  // namespace tfm
