// Checkpoints (DESIGN.md, Trainer): RUN_DIR/checkpoints/step-NNNNNNN/ holding HDF5 files of full
// logical (unsharded) tensors under their parameter names, the Adam moments, and the training
// state (step, schedule, loss scale, RNG seed, data position, the resolved configuration, the
// model configuration), with a SHA-256 per file recorded in the directory's manifest.
//
// Never half-written: a checkpoint is written into step-NNNNNNN.tmp-<pid>/, every file fsynced,
// the directory renamed to step-NNNNNNN/ and fsynced, and only then RUN_DIR/checkpoints/latest
// (a one-line text file naming the directory) replaced by rename. The oldest complete checkpoints
// beyond `keep` are deleted last. A crash at any point leaves the previous `latest` intact.
//
// Layout of one checkpoint directory (format_version 1):
//   model.h5       one f32 dataset (f64 for an fp64 run) per parameter at the root, named exactly as the parameter
//                  ("encoder.layers.0.self_attn.q_proj.weight": HDF5 allows dots in link names,
//                  so h5py's f["embed.weight"] and PyTorch's state_dict keys agree), with its
//                  logical shape ([out, in] for a linear weight). Contiguous, uncompressed: a
//                  tensor-parallel rank reads its slice as a hyperslab without reading the rest.
//                  Root attributes: format_version, step.
//   optimizer.h5   /adam_m/<name> and /adam_v/<name>, same names and shapes (absent from an
//                  averaged checkpoint, which can be evaluated but not resumed).
//   state.json     step, seed (a decimal string: it is a uint64), data position, loss-scale
//                  state, skipped steps, tokenizer file name, the ModelConfig fields.
//   config         the resolved configuration (TrainOptions::resolved()), as RUN_DIR/config.
//   spm.model      the dataset's SentencePiece model when trained on --data, so eval and translate
//                  need nothing but the checkpoint.
//   manifest.json  {"format_version": 1, "step": N, "files": {"model.h5": "<sha256>", …}}, written
//                  last inside the temporary directory; every listed file is verified on load.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/tensor.h"
#include "model/config.h"
#include "model/parameters.h"

namespace tfm {

inline constexpr int64_t kCheckpointFormatVersion = 1;

struct TrainingState {
  int64_t step = 0;               // optimiser steps completed
  uint64_t seed = 1;
  std::string data_position;      // DatasetReader position (ReaderPosition::to_string()), or
                                  // "synthetic=K" for the synthetic tasks' batch counter
  double loss_scale = 1.0;        // fp16 dynamic loss scale (1 when unused)
  int64_t loss_scale_good_steps = 0;
  int64_t skipped_steps = 0;
  std::string config;             // TrainOptions::resolved(), for the record and for eval/translate
  ModelConfig model;              // shapes and regularisation of the model it holds
  std::string tokenizer_file;     // name of the SentencePiece model copied into the checkpoint
                                  // directory ("" for synthetic tasks)
  std::vector<std::string> averaged_from;  // `tfm average`: the input checkpoints; else empty
};

struct CheckpointWrite {
  const ParameterStore* params = nullptr;  // values written under their names
  Tensor adam_m, adam_v;                   // flat, same layout as params (undefined: not saved)
  TrainingState state;
  std::string tokenizer_path;              // copied into the checkpoint when non-empty
};

// "step-0000120": the directory name of the checkpoint after `step` steps.
std::string checkpoint_name(int64_t step);

// Writes a checkpoint for state.step into run_dir/checkpoints/, moves `latest` to it, keeps the
// newest `keep` (≥ 1). Returns the checkpoint directory. Throws tfm::Error naming the file on
// any I/O failure; nothing already complete is touched in that case.
//
// A checkpoint of the same step that already exists is replaced atomically (renameat2 with
// RENAME_EXCHANGE). Pruning never deletes the checkpoint `latest` names nor any newer one, and
// removes the temporary directories of writers that died (their pid no longer runs).
// Test hook: TFM_TEST_SLOW_CHECKPOINT_MS=N sleeps N ms after each file, so a test can kill the
// process while a checkpoint is half-written.
std::string save_checkpoint(const std::string& run_dir, const CheckpointWrite& what, int keep);

// Writes a standalone checkpoint directory at `path` (e.g. `tfm average --out`): written under
// path.tmp-<pid> and renamed. Refuses a path that already exists.
void save_checkpoint_dir(const std::string& path, const CheckpointWrite& what);

// The checkpoint `latest` names in run_dir, or "" when the run has none. Throws, naming the
// directory, when `latest` names a checkpoint that is missing, or when checkpoints exist but
// `latest` does not (so a run is never silently restarted from scratch over them).
std::string latest_checkpoint(const std::string& run_dir);

// The complete checkpoints (step-NNNNNNN/ with a manifest) in run_dir, oldest first.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir);

// A checkpoint directory's manifest: file name → SHA-256. Errors name the directory.
std::vector<std::pair<std::string, std::string>> checkpoint_files(const std::string& checkpoint_dir);

// Re-hashes every file the manifest lists; throws naming the first file that is missing or whose
// SHA-256 differs.
void verify_checkpoint(const std::string& checkpoint_dir);

// Reads the training state (and model configuration) without loading tensors.
TrainingState read_checkpoint_state(const std::string& checkpoint_dir);

// Loads a checkpoint into `params` (already allocated, matching shapes) and, when given, the
// Adam moments. Verifies every file's SHA-256 first (a corrupted byte is refused, naming the
// file), and refuses a tensor whose shape differs from the model's, naming the tensor and both
// shapes, or a parameter the checkpoint lacks (or holds and the model lacks). Asking for the
// moments of a checkpoint without optimizer.h5 (an average) is an error naming it.
// A tensor-parallel store (params.tp_size() > 1) receives its parts of the logical tensors, each
// read as an HDF5 hyperslab. verify = false skips the SHA-256 pass (a data-parallel job has one
// rank verify for all).
TrainingState load_checkpoint(const std::string& checkpoint_dir, ParameterStore& params,
                              const Tensor* adam_m = nullptr, const Tensor* adam_v = nullptr,
                              bool verify = true);

// The ModelConfig fields that decide the parameters' shapes and the function they compute
// (vocab, widths, heads, layers, norm placement and epsilon, sharing): "" when a and b agree, else the first
// difference as "heads 4 vs 8" (regularisation — dropout, label smoothing — is not compared).
std::string model_structure_difference(const ModelConfig& a, const ModelConfig& b);

}  // namespace tfm
