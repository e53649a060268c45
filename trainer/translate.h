// `tfm translate`: text in, text out, with batched beam search over cached keys and values
// (trainer/decode.h).
//
//   tfm translate --checkpoint PATH [--input FILE] [--output FILE] [--beam 4] [--alpha 0.6]
//                 [--n-best 1] [--max-extra-len 50] [--batch-sentences 32] [--threads 0]
//
// PATH is a checkpoint directory (RUN/checkpoints/step-NNNNNNN) or a run directory (its `latest`
// checkpoint). The model configuration and weights come from the checkpoint, and so does the
// SentencePiece model (copied into it at training time). Input: UTF-8 text, one sentence per
// line (stdin by default; a trailing '\r' is dropped). All input is read first, encoded, sorted
// by length and decoded in batches of --batch-sentences sentences; output (stdout by default)
// follows the input order:
//   --n-best 1: one detokenised translation per input line;
//   --n-best N: N lines per input line (fewer when fewer hypotheses finished), Moses-style
//               "i ||| translation ||| score", i the 0-based input line, best first, score the
//               length-normalised log-probability log P / lp.
// An empty (or blank) input line gives an empty output line ("i |||  ||| 0" with --n-best > 1)
// and is not decoded. Exit status: 0 done, 2 bad input — a missing checkpoint, file or option
// value — with a message naming it.
#pragma once
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "data/tokenizer.h"
#include "model/transformer.h"
#include "trainer/checkpoint.h"
#include "trainer/decode.h"

namespace tfm {

// A trained model ready to decode.
struct DecodingModel {
  std::string checkpoint;              // the checkpoint directory loaded
  TrainingState state;
  std::unique_ptr<Transformer> model;  // f32 weights on the host
  std::optional<Tokenizer> tokenizer;  // none for a model trained on a synthetic task
};

// Loads a checkpoint directory or a run directory's latest checkpoint. `option` names the
// command-line option in error messages (e.g. "--checkpoint").
DecodingModel load_decoding_model(const std::string& path, const std::string& option);

struct TranslateOptions {
  DecodeOptions decode;
  int64_t batch_sentences = 32;
};

// Translates every line of `in` to `out` as described above; returns the number of lines.
int64_t translate_stream(Transformer& model, const Tokenizer& tokenizer, std::istream& in,
                         std::ostream& out, const TranslateOptions& options);

// argv[0] is "translate".
int translate_main(int argc, char** argv);

}  // namespace tfm
