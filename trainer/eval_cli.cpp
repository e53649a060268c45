// `tfm eval` (trainer/evaluate.h): a checkpoint on one split of a prepared dataset. Kept apart
// from evaluate.cpp so the library function does not pull checkpoint loading into the trainer.
#include <omp.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "trainer/evaluate.h"
#include "trainer/translate.h"

extern "C" void openblas_set_num_threads(int);

namespace tfm {

namespace po = boost::program_options;

int eval_main(int argc, char** argv) {
  EvalOptions o;
  std::string checkpoint, data, split = "valid", output;
  int64_t batch_tokens = 4096;
  int threads = 0;
  po::options_description desc(
      "tfm eval: loss, NLL, perplexity and BLEU of a checkpoint on a dataset split\nOptions");
  desc.add_options()
      ("help,h", "show this help")
      ("checkpoint", po::value(&checkpoint)->value_name("PATH"),
       "checkpoint directory, or a run directory (its latest checkpoint) (required)")
      ("data", po::value(&data)->value_name("DIR"), "dataset written by `tfm prepare` (required)")
      ("split", po::value(&split)->default_value(split), "valid | test (or train)")
      ("beam", po::value(&o.decode.beam)->default_value(o.decode.beam), "beam size (1: greedy)")
      ("alpha", po::value(&o.decode.alpha)->default_value(o.decode.alpha, "0.6"),
       "length penalty exponent: score = log P / ((5 + |Y|) / 6)^alpha")
      ("max-extra-len", po::value(&o.decode.max_extra_len)->default_value(o.decode.max_extra_len),
       "a translation has at most source length + this many tokens")
      ("max-sentences", po::value(&o.max_sentences)->default_value(o.max_sentences),
       "evaluate the first N sentences of the split only (0: all)")
      ("no-bleu", po::bool_switch(), "teacher-forced loss only, no decoding")
      ("batch-tokens", po::value(&batch_tokens)->default_value(batch_tokens),
       "token budget of the loss batches (source + target, padding included)")
      ("batch-sentences", po::value(&o.decode_sentences)->default_value(o.decode_sentences),
       "sentences decoded together (each with --beam rows)")
      ("output", po::value(&output)->value_name("FILE"),
       "write the detokenised translations here, one per line in split order")
      ("threads", po::value(&threads)->default_value(threads), "CPU threads (0: all cores)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << "Usage: tfm eval --checkpoint PATH --data DIR [options]\n\n" << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    fail(cat(e.what(), " (see tfm eval --help)"));
  }
  o.bleu = !vm["no-bleu"].as<bool>();
  o.decode.validate();
  TFM_CHECK(!data.empty(), "--data DIR is required (a dataset written by tfm prepare)");
  TFM_CHECK(batch_tokens >= 1, "--batch-tokens must be ≥ 1, got ", batch_tokens);
  TFM_CHECK(o.decode_sentences >= 1, "--batch-sentences must be ≥ 1, got ", o.decode_sentences);
  TFM_CHECK(o.max_sentences >= 0, "--max-sentences must be ≥ 0, got ", o.max_sentences);
  TFM_CHECK(threads >= 0, "--threads must be ≥ 0, got ", threads);
  TFM_CHECK(o.bleu || output.empty(), "--output needs translations; drop --no-bleu");
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }

  DecodingModel m = load_decoding_model(checkpoint, "--checkpoint");
  ReaderOptions ro;
  ro.split = split;
  ro.batch_tokens = batch_tokens;
  ro.shuffle = false;
  DatasetReader reader(data, ro);
  if (m.tokenizer)
    TFM_CHECK(m.tokenizer->sha256() == reader.manifest().tokenizer_sha256, "--data ", data,
              ": its tokenizer (SHA-256 ", reader.manifest().tokenizer_sha256,
              ") is not the one checkpoint ", m.checkpoint, " was trained with (",
              m.tokenizer->sha256(), ")");

  Context ctx;
  Arena arena;
  const EvalResult r = evaluate_split(*m.model, ctx, arena, reader, o);
  TFM_CHECK(r.sentences > 0, "--data ", data, ": split ", split, " has no sentences to evaluate");
  char line[160];
  std::cout << "tfm eval: " << m.checkpoint << " (step " << m.state.step << ") on " << data
            << " split " << split << ": " << r.sentences << " sentences, " << r.loss.tokens
            << " target tokens, " << r.seconds << " s\n";
  std::snprintf(line, sizeof line, "loss %.4f | nll %.4f | ppl %.4f | token accuracy %.4f",
                r.loss_per_token(), r.nll(), r.perplexity(), r.accuracy());
  std::cout << line << "\n";
  if (o.bleu) {
    std::cout << r.bleu(o.bleu_options).format(2, bleu::signature(o.bleu_options, 1)) << "\n";
    std::cout << "decoding: beam " << o.decode.beam << ", alpha " << o.decode.alpha
              << ", max length source + " << o.decode.max_extra_len << "\n";
  }
  if (!output.empty()) {
    std::ofstream out(output);
    TFM_CHECK(out.good(), "--output ", output, ": cannot create");
    for (const std::string& h : r.hypotheses) out << h << "\n";
    TFM_CHECK(out.good(), "--output ", output, ": write error");
  }
  return 0;
}

}  // namespace tfm
