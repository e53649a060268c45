#include "trainer/train_options.h"

#include "kernels/core/device.h"

#include <boost/program_options.hpp>
#include <fstream>
#include <iostream>

#include "kernels/core/check.h"

namespace po = boost::program_options;

namespace tfm {

namespace {

po::options_description describe(TrainOptions& o) {
  po::options_description what("What to train");
  what.add_options()
      ("preset", po::value(&o.preset)->default_value(o.preset), "model size: tiny | base | big")
      ("data", po::value(&o.data_dir), "dataset directory written by `tfm prepare`")
      ("synthetic", po::value(&o.synthetic),
       "train on a generated task instead of --data: copy | reverse | sort")
      ("vocab-size", po::value<int64_t>(), "synthetic task vocabulary (default: 32)")
      ("min-len", po::value(&o.task.min_len)->default_value(o.task.min_len),
       "synthetic task: shortest sequence")
      ("max-len", po::value(&o.task.max_len)->default_value(o.task.max_len),
       "synthetic task: longest sequence")
      ("d-model", po::value<int64_t>(), "model width (default: the preset's)")
      ("d-ff", po::value<int64_t>(), "feed-forward width (default: the preset's)")
      ("heads", po::value<int64_t>(), "attention heads (default: the preset's)")
      ("layers", po::value<int64_t>(), "encoder and decoder layers (default: the preset's)")
      ("encoder-layers", po::value<int64_t>(), "encoder layers (default: the preset's)")
      ("decoder-layers", po::value<int64_t>(), "decoder layers (default: the preset's)")
      ("dropout", po::value<double>(), "residual and embedding dropout (default: the preset's, 0.1)")
      ("attention-dropout", po::value<double>(), "dropout on attention probabilities (default: 0)")
      ("relu-dropout", po::value<double>(), "dropout after the FFN's ReLU (default: 0)")
      ("label-smoothing", po::value<double>(), "label smoothing epsilon (default: 0.1)")
      ("norm", po::value<std::string>(), "post (the paper) | pre (default: post)")
      ("share-embeddings", po::value<std::string>(),
       "all (source, target, output) | tgt (target and output) | none (default: all)");

  po::options_description how("How to train");
  how.add_options()
      ("out", po::value(&o.out), "run directory (metrics.jsonl, config, checkpoints)")
      ("steps", po::value(&o.steps)->default_value(o.steps), "optimiser steps")
      ("batch-tokens", po::value(&o.batch_tokens)->default_value(o.batch_tokens),
       "tokens per micro-batch, source + target, padding included")
      ("accumulate", po::value(&o.accumulate)->default_value(o.accumulate),
       "micro-batches per optimiser step (gradient accumulation)")
      ("lr", po::value(&o.lr.factor)->default_value(o.lr.factor),
       "learning-rate factor: the Noam schedule's multiplier, or the rate itself with "
       "--lr-schedule constant")
      ("lr-schedule", po::value(&o.lr.kind)->default_value(o.lr.kind), "noam | constant")
      ("warmup", po::value(&o.lr.warmup)->default_value(o.lr.warmup), "Noam warm-up steps")
      ("adam-beta1", po::value(&o.adam_beta1)->default_value(o.adam_beta1), "Adam beta1")
      ("adam-beta2", po::value(&o.adam_beta2)->default_value(o.adam_beta2), "Adam beta2")
      ("adam-eps", po::value(&o.adam_eps)->default_value(o.adam_eps), "Adam epsilon")
      ("weight-decay", po::value(&o.weight_decay)->default_value(o.weight_decay),
       "decoupled weight decay")
      ("clip-norm", po::value(&o.clip_norm)->default_value(o.clip_norm),
       "clip the global gradient norm to this (0: off)")
      ("seed", po::value(&o.seed)->default_value(o.seed), "seed for weights, data order and dropout")
      ("device", po::value(&o.device)->default_value(o.device), "auto | cpu | cuda")
      ("precision", po::value(&o.precision)->default_value(o.precision),
       "auto | fp32 | bf16 | fp16 | fp64 (auto: bf16 on the GPU, fp32 on the CPU; fp64: CPU "
       "only, for exact comparisons)")
      ("threads", po::value(&o.threads)->default_value(o.threads), "CPU threads (0: all cores)");

  po::options_description parallel("Parallelism (under mpirun or srun; --batch-tokens and "
                                   "--accumulate are per data-parallel rank)");
  parallel.add_options()
      ("tp", po::value(&o.tp)->default_value(o.tp),
       "tensor-parallel degree: heads, d_ff and the vocabulary are split over this many adjacent "
       "ranks; data parallelism over the rest (DP = world size / TP)")
      ("zero", po::value(&o.zero)->default_value(o.zero),
       "1: ZeRO stage 1 — each data-parallel rank keeps and updates 1/DP of the Adam state "
       "(reduce-scatter the gradients, all-gather the weights); 0: off")
      ("bucket-mb", po::value(&o.bucket_mb)->default_value(o.bucket_mb),
       "gradient all-reduce bucket size in MiB (a bucket is reduced as soon as backward has "
       "produced it, while backward goes on)")
      ("overlap-grad-reduce", po::value(&o.overlap_reduce)->default_value(o.overlap_reduce),
       "1: reduce gradient buckets while backward runs; 0: only after it (for comparison)")
      ("comm-timeout", po::value(&o.comm_timeout)->default_value(o.comm_timeout),
       "seconds a collective may wait for a peer before the job ends naming it (0: "
       "$TFM_COMM_TIMEOUT, else 300)");

  po::options_description report("Reporting");
  report.add_options()
      ("log-every", po::value(&o.log_every)->default_value(o.log_every),
       "steps between progress lines and metrics.jsonl records")
      ("eval-every", po::value(&o.eval_every)->default_value(o.eval_every),
       "steps between evaluations on held-out data (0: at the end only)")
      ("eval-batches", po::value(&o.eval_batches)->default_value(o.eval_batches),
       "batches per evaluation: the valid split's first N (--data) or N generated ones")
      ("eval-bleu-sentences", po::value(&o.eval_bleu_sentences)->default_value(o.eval_bleu_sentences),
       "--data: the valid split's first N sentences are translated for BLEU at each evaluation "
       "(0: no BLEU)")
      ("eval-beam", po::value(&o.eval_beam)->default_value(o.eval_beam),
       "beam size for that translation (1: greedy)");

  po::options_description ckpt("Checkpoints");
  ckpt.add_options()
      ("save-every", po::value(&o.save_every)->default_value(o.save_every),
       "steps between checkpoints in RUN_DIR/checkpoints (0: only at the end; one is always "
       "written at the end and on SIGTERM/SIGINT)")
      ("keep", po::value(&o.keep)->default_value(o.keep), "newest checkpoints to keep")
      ("resume", po::value(&o.resume)->default_value(o.resume),
       "auto (continue from RUN_DIR's latest checkpoint if there is one) | none (start fresh; "
       "refused when RUN_DIR has checkpoints, unless --overwrite) | PATH (a checkpoint directory, "
       "or a run directory's latest)")
      ("overwrite", po::bool_switch(&o.overwrite),
       "with --resume none: discard RUN_DIR's checkpoints and metrics and start over; with an "
       "older --resume PATH: discard RUN_DIR's newer checkpoints");

  po::options_description all;
  all.add(what).add(how).add(parallel).add(report).add(ckpt);
  return all;
}

template <class T>
void override_if(const po::variables_map& vm, const char* name, T& field) {
  if (vm.count(name)) field = vm[name].as<T>();
}

}  // namespace

bool parse_train_options(int argc, char** argv, TrainOptions& o) {
  po::options_description options = describe(o);
  po::options_description general("General");
  std::string config_file;
  general.add_options()("help,h", "show this help")(
      "config", po::value(&config_file), "read options from this file (`name = value` lines); "
                                         "the command line wins");
  po::options_description cli;
  cli.add(general).add(options);

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, cli), vm);
    if (vm.count("help")) {
      std::cout << "Usage: tfm train (--data DIR | --synthetic TASK) --out RUN_DIR [options]\n\n"
                << cli << "\n";
      return false;
    }
    if (vm.count("config")) {
      std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      TFM_CHECK(in.good(), "--config: cannot read ", path);
      po::store(po::parse_config_file(in, options), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    fail(cat("tfm train: ", e.what(), " (see tfm train --help)"));
  }

  o.model = preset(o.preset);
  override_if(vm, "d-model", o.model.d_model);
  override_if(vm, "d-ff", o.model.d_ff);
  override_if(vm, "heads", o.model.heads);
  if (vm.count("layers")) o.model.encoder_layers = o.model.decoder_layers = vm["layers"].as<int64_t>();
  override_if(vm, "encoder-layers", o.model.encoder_layers);
  override_if(vm, "decoder-layers", o.model.decoder_layers);
  override_if(vm, "dropout", o.model.dropout);
  override_if(vm, "attention-dropout", o.model.attention_dropout);
  override_if(vm, "relu-dropout", o.model.relu_dropout);
  override_if(vm, "label-smoothing", o.model.label_smoothing);
  if (vm.count("norm")) o.model.norm = parse_norm_placement(vm["norm"].as<std::string>());
  if (vm.count("share-embeddings"))
    o.model.sharing = parse_embedding_sharing(vm["share-embeddings"].as<std::string>());
  override_if(vm, "vocab-size", o.task.vocab_size);
  o.lr.d_model = o.model.d_model;
  o.task.kind = o.synthetic;
  o.task.seed = o.seed;

  TFM_CHECK(!o.out.empty(), "--out: a run directory is required");
  TFM_CHECK(o.data_dir.empty() != o.synthetic.empty(),
            "give exactly one of --data DIR and --synthetic TASK");
  TFM_CHECK(o.steps > 0, "--steps: must be positive, got ", o.steps);
  TFM_CHECK(o.batch_tokens > 0, "--batch-tokens: must be positive, got ", o.batch_tokens);
  TFM_CHECK(o.accumulate > 0, "--accumulate: must be positive, got ", o.accumulate);
  TFM_CHECK(o.log_every > 0, "--log-every: must be positive, got ", o.log_every);
  TFM_CHECK(o.eval_every >= 0, "--eval-every: must be ≥ 0, got ", o.eval_every);
  TFM_CHECK(o.eval_batches > 0, "--eval-batches: must be positive, got ", o.eval_batches);
  TFM_CHECK(o.save_every >= 0, "--save-every: must be ≥ 0, got ", o.save_every);
  TFM_CHECK(o.keep >= 1, "--keep: must be at least 1, got ", o.keep);
  TFM_CHECK(!o.resume.empty(), "--resume: expected auto, none or a checkpoint directory");
  TFM_CHECK(o.clip_norm >= 0, "--clip-norm: must be ≥ 0, got ", o.clip_norm);
  TFM_CHECK(o.threads >= 0, "--threads: must be ≥ 0, got ", o.threads);
  TFM_CHECK(o.tp >= 1, "--tp: must be at least 1, got ", o.tp);
  TFM_CHECK(o.zero == 0 || o.zero == 1, "--zero: expected 0 or 1, got ", o.zero);
  TFM_CHECK(o.bucket_mb > 0, "--bucket-mb: must be positive, got ", o.bucket_mb);
  TFM_CHECK(o.comm_timeout >= 0, "--comm-timeout: must be ≥ 0, got ", o.comm_timeout);
  TFM_CHECK(o.eval_bleu_sentences >= 0, "--eval-bleu-sentences: must be ≥ 0, got ", o.eval_bleu_sentences);
  TFM_CHECK(o.eval_beam >= 1, "--eval-beam: must be at least 1, got ", o.eval_beam);
  TFM_CHECK(o.adam_beta1 >= 0 && o.adam_beta1 < 1, "--adam-beta1: must be in [0, 1)");
  TFM_CHECK(o.adam_beta2 >= 0 && o.adam_beta2 < 1, "--adam-beta2: must be in [0, 1)");
  TFM_CHECK(o.adam_eps > 0, "--adam-eps: must be positive");
  TFM_CHECK(o.device == "auto" || o.device == "cpu" || o.device == "cuda",
            "--device: expected auto, cpu or cuda, got '", o.device, "'");
  TFM_CHECK(o.precision == "auto" || o.precision == "fp32" || o.precision == "bf16" ||
                o.precision == "fp16" || o.precision == "fp64",
            "--precision: expected auto, fp32, bf16, fp16 or fp64, got '", o.precision, "'");
  o.lr.validate();
  if (!o.synthetic.empty()) {
    o.task.validate();
    o.model.vocab_size = o.task.vocab_size;
    o.model.validate();
  }
  return true;
}

void resolve_device_and_precision(TrainOptions& o) {
  const bool gpu = cuda_compiled() && cuda_device_count() > 0;
  if (o.device == "auto") o.device = gpu ? "cuda" : "cpu";
  if (o.device == "cuda")
    TFM_CHECK(gpu, "--device cuda: ", cuda_compiled() ? "no GPU is visible to this process "
              "(check nvidia-smi and CUDA_VISIBLE_DEVICES)" : "this build has no CUDA (configured "
              "with -DTFM_CUDA=OFF or without nvcc)", "; use --device cpu");
  if (o.precision == "auto") o.precision = o.device == "cuda" ? "bf16" : "fp32";
  if (o.device == "cpu")
    TFM_CHECK(o.precision == "fp32" || o.precision == "fp64", "--precision ", o.precision,
              ": reduced precision needs the GPU (--device cuda); on the CPU use fp32");
  if (o.device == "cuda")
    TFM_CHECK(o.precision != "fp64", "--precision fp64 runs on the CPU only (--device cpu)");
}

std::string TrainOptions::resolved() const {
  return cat("preset = ", preset, "\n",
             data_dir.empty() ? cat("synthetic = ", synthetic, "\n") : cat("data = ", data_dir, "\n"),
             "vocab-size = ", model.vocab_size, "\n", "min-len = ", task.min_len, "\n",
             "max-len = ", task.max_len, "\n", "d-model = ", model.d_model, "\n",
             "d-ff = ", model.d_ff, "\n", "heads = ", model.heads, "\n",
             "encoder-layers = ", model.encoder_layers, "\n",
             "decoder-layers = ", model.decoder_layers, "\n", "dropout = ", model.dropout, "\n",
             "attention-dropout = ", model.attention_dropout, "\n",
             "relu-dropout = ", model.relu_dropout, "\n",
             "label-smoothing = ", model.label_smoothing, "\n", "norm = ", to_string(model.norm),
             "\n", "share-embeddings = ", to_string(model.sharing), "\n", "out = ", out, "\n",
             "steps = ", steps, "\n", "batch-tokens = ", batch_tokens, "\n",
             "accumulate = ", accumulate, "\n", "lr = ", lr.factor, "\n",
             "lr-schedule = ", lr.kind, "\n", "warmup = ", lr.warmup, "\n",
             "adam-beta1 = ", adam_beta1, "\n", "adam-beta2 = ", adam_beta2, "\n",
             "adam-eps = ", adam_eps, "\n", "weight-decay = ", weight_decay, "\n",
             "clip-norm = ", clip_norm, "\n", "seed = ", seed, "\n", "device = ", device, "\n",
             "precision = ", precision, "\n", "threads = ", threads, "\n",
             "tp = ", tp, "\n", "zero = ", zero, "\n", "bucket-mb = ", bucket_mb, "\n",
             "overlap-grad-reduce = ", overlap_reduce ? 1 : 0, "\n",
             "comm-timeout = ", comm_timeout, "\n",
             "log-every = ", log_every, "\n", "eval-every = ", eval_every, "\n",
             "eval-batches = ", eval_batches, "\n",
             "eval-bleu-sentences = ", eval_bleu_sentences, "\n", "eval-beam = ", eval_beam, "\n",
             "save-every = ", save_every, "\n",
             "keep = ", keep, "\n");
}

}  // namespace tfm
