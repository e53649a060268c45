// Evaluation of a model on one split of a prepared dataset (DESIGN.md, Trainer):
//   - teacher-forced loss, NLL and perplexity (Transformer::evaluate: no dropout, the model's
//     label smoothing for `loss`, ε = 0 for NLL), token accuracy;
//   - BLEU as sacreBLEU computes it (trainer/bleu.h: 13a, corpus-level, exp smoothing) of the
//     detokenised greedy or beam-search output against the detokenised references (the split's
//     target ids decoded with the dataset's tokenizer).
// The split is read in file order (DatasetReader with shuffle = false); hypotheses come back in
// split order. Under data parallelism each rank passes a reader for its (rank, world): `loss` and
// `bleu_stats` are sums, so the caller all-reduces them (LossStats fields, BleuStats::to_array)
// and forms the scores from the totals with the accessors below.
//
// `tfm eval --checkpoint P --data DIR [--split valid|test] [--beam 4] [--alpha 0.6]
//           [--max-sentences N] [--batch-tokens N] [--output FILE] [--threads N]`
// loads the checkpoint (a checkpoint directory, or a run directory: its `latest`), checks that
// the dataset's tokenizer is the one the model was trained with, and prints
//   tfm eval: <checkpoint> (step S) on DIR split test: N sentences, T target tokens
//   loss 2.3456 | nll 2.1234 | ppl 8.3601 | token accuracy 0.5123
//   BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 12.34 45.6/18.2/… (BP = …)
// --output writes the detokenised hypotheses, one line per sentence in split order (for
// `tfm score` or sacrebleu). Exit status: 0 done, 2 bad input (the message names it).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/reader.h"
#include "kernels/core/arena.h"
#include "kernels/core/context.h"
#include "model/transformer.h"
#include "trainer/bleu.h"
#include "trainer/decode.h"

namespace tfm {

struct EvalOptions {
  DecodeOptions decode;            // beam 4, α 0.6 (beam 1: greedy)
  bool bleu = true;                // false: the teacher-forced numbers only (no decoding)
  int64_t max_sentences = 0;       // only examples with index < this (0: the whole split)
  int64_t decode_sentences = 32;   // sentences decoded together (each with `beam` rows)
  bleu::BleuOptions bleu_options;  // sacreBLEU's defaults
};

struct EvalResult {
  LossStats loss;              // sums over this reader's part of the split
  bleu::BleuStats bleu_stats;  // sums of the sentences' BLEU statistics
  int64_t sentences = 0;
  // Detokenised, in split order (this reader's sentences), and their example indices.
  std::vector<std::string> hypotheses, references;
  std::vector<int64_t> examples;
  double seconds = 0;

  double loss_per_token() const;  // label-smoothed, per non-pad target token
  double nll() const;             // per target token
  double perplexity() const;      // exp(nll)
  double accuracy() const;        // argmax == gold, per target token
  bleu::BleuScore bleu(const bleu::BleuOptions& options = {}) const;
};

// One pass over the reader (constructed with shuffle = false; consumed here). The reader's
// tokenizer detokenises hypotheses and references. Throws tfm::Error on a model/dataset mismatch
// (vocabulary sizes differ).
EvalResult evaluate_split(Transformer& model, const Context& ctx, Arena& arena,
                          DatasetReader& reader, const EvalOptions& options);

// `tfm eval` (argv[0] is "eval"); defined in trainer/eval_cli.cpp.
int eval_main(int argc, char** argv);

}  // namespace tfm
