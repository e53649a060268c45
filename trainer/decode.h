// Decoding (DESIGN.md, Trainer): greedy search and batched beam search over the Transformer,
// with the paper's settings as defaults (§6.1: beam 4, length penalty α = 0.6, output length at
// most input length + 50).
//
// Scores. A hypothesis Y = y1 … yn EOS has log P(Y | X) = Σ log p(y_i | y_<i, X) over its tokens
// and the EOS, and is ranked by
//   score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6)^α   (Wu et al. 2016, GNMT),
// |Y| = n + 1 counting the EOS; α = 0 ranks by raw log-probability. pad and bos are never
// generated; a hypothesis that reaches the length limit L = |X| + max_extra_len tokens (|X|
// without EOS) is ended with a forced EOS, so every returned hypothesis ended with EOS.
//
// Beam search, for every sentence of a batch at once (rows = sentences × k, one decoder step for
// all of them). Each sentence has k slots, a slot holding a live hypothesis or one that has ended
// with EOS. At every step the candidates are the ended slots, unchanged, and every extension of
// every live slot by one token (EOS included); the k best by score — log P / lp of the candidate's
// length, so extensions of one step compare by log P and an ended hypothesis competes with its
// final score — become the new slots. A candidate ending in EOS is a finished hypothesis.
// A sentence stops when every one of its slots has ended (nothing is left to extend), or —
// early stopping, which never changes the result — as soon as its n-th best finished score can
// no longer be beaten: a live hypothesis with log-probability s ≤ 0 can at best end with
// s / lp(L + 1) (log-probabilities only fall; lp only grows with length). At the limit L live
// slots may only add EOS. Finished sentences leave the batch (their rows are dropped from the
// decoder state). The n-best list is the best n of the sentence's finished hypotheses.
// With k = 1 this is exactly greedy search. Ties go to the lower slot, then the lower token id
// (an ended slot before its extensions), so results are deterministic. Beam search is not
// guaranteed to beat greedy search, but it keeps greedy's path while that ranks in the top k.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/core/arena.h"
#include "kernels/core/context.h"
#include "model/transformer.h"

namespace tfm {

struct DecodeOptions {
  int64_t beam = 4;            // 1: greedy search
  double alpha = 0.6;          // length-penalty exponent (0: raw log-probability)
  int64_t n_best = 1;          // hypotheses returned per sentence, best first (≤ beam)
  int64_t max_extra_len = 50;  // a hypothesis has at most |source| + this many tokens (+ EOS)
  bool early_stop = true;      // stop a sentence once its n-best can no longer change
  bool use_cache = true;       // false: recompute the whole prefix every step (the reference)
  // Throws tfm::Error naming the command-line option (--beam, --alpha, --n-best, --max-extra-len).
  void validate() const;
};

struct Hypothesis {
  std::vector<int32_t> tokens;  // y1 … yn, without BOS and EOS
  double log_prob = 0;          // log P(y1 … yn EOS | source)
  double score = 0;             // log_prob / lp(n + 1)
};

// lp(length) = ((5 + length) / 6)^alpha.
double length_penalty(int64_t length, double alpha);

// The decoder seen one step at a time, for a batch of rows (hypotheses) that all advance
// together. step() feeds each row's last token and returns log p(next token) [rows, V] on the
// host (f32 or f64, valid until the next call); reorder() makes new row i continue old row
// rows[i] (beam search's gather; dropping rows of finished sentences).
class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual Tensor step(const std::vector<int32_t>& last_tokens) = 0;
  virtual void reorder(const std::vector<int64_t>& rows) = 0;
};

// A step model over `sources` (token ids without EOS, which is appended here), with
// rows_per_sentence rows per sentence (row b·rows_per_sentence + j translates sentence b) and
// room for max_steps steps. cached: the DecoderState with cached keys and values (model/
// transformer.h); otherwise the reference that re-runs encode() and decode_logits() on the
// whole prefix every step. The model, context and arena must outlive it; the arena is reset by
// every step.
std::unique_ptr<StepModel> make_step_model(Transformer& model, const Context& ctx, Arena& arena,
                                           const std::vector<std::vector<int32_t>>& sources,
                                           int64_t rows_per_sentence, int64_t max_steps,
                                           bool cached = true);

// The searches, on a step model made with 1 (greedy) or options.beam (beam) rows per sentence.
// max_tokens[b] is sentence b's length limit L (tokens before the EOS). vocab = V.
std::vector<Hypothesis> greedy_search(StepModel& model, int64_t vocab,
                                      const std::vector<int64_t>& max_tokens, double alpha);
// n-best lists, best first by score (ties: the hypothesis that finished first).
std::vector<std::vector<Hypothesis>> beam_search(StepModel& model, int64_t vocab,
                                                 const std::vector<int64_t>& max_tokens,
                                                 const DecodeOptions& options);

// Translates a batch of sources (ids without EOS): greedy when options.beam == 1, else beam
// search; one n-best list per source, in input order. Sentences of any lengths may share a batch
// (the result does not depend on what else is in it). Empty sources are allowed (EOS alone).
std::vector<std::vector<Hypothesis>> decode_batch(Transformer& model, const Context& ctx,
                                                  Arena& arena,
                                                  const std::vector<std::vector<int32_t>>& sources,
                                                  const DecodeOptions& options);

}  // namespace tfm
