#include "trainer/translate.h"

#include <omp.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

#include "kernels/core/arena.h"
#include "kernels/core/context.h"

extern "C" void openblas_set_num_threads(int);

namespace tfm {

namespace fs = std::filesystem;
namespace po = boost::program_options;

DecodingModel load_decoding_model(const std::string& path, const std::string& option) {
  std::error_code ec;
  TFM_CHECK(!path.empty(), option, " PATH is required (a checkpoint or run directory)");
  TFM_CHECK(fs::exists(path, ec), option, " ", path, ": no such checkpoint or run directory");
  DecodingModel m;
  m.checkpoint = path;
  if (fs::is_directory(fs::path(path) / "checkpoints", ec)) {  // a run directory
    m.checkpoint = latest_checkpoint(path);
    TFM_CHECK(!m.checkpoint.empty(), option, " ", path, ": the run has no checkpoint yet");
  }
  m.state = read_checkpoint_state(m.checkpoint);
  m.model = std::make_unique<Transformer>(m.state.model);
  m.model->params().allocate(DType::f32);
  load_checkpoint(m.checkpoint, m.model->params());
  if (!m.state.tokenizer_file.empty()) {
    m.tokenizer = Tokenizer::load((fs::path(m.checkpoint) / m.state.tokenizer_file).string());
    TFM_CHECK(m.tokenizer->vocab_size() == m.state.model.vocab_size, "checkpoint ", m.checkpoint,
              ": its tokenizer ", m.state.tokenizer_file, " has ", m.tokenizer->vocab_size(),
              " pieces but the model's vocabulary has ", m.state.model.vocab_size);
  }
  return m;
}

int64_t translate_stream(Transformer& model, const Tokenizer& tokenizer, std::istream& in,
                         std::ostream& out, const TranslateOptions& o) {
  o.decode.validate();
  TFM_CHECK(o.batch_sentences >= 1, "--batch-sentences must be ≥ 1, got ", o.batch_sentences);
  std::vector<std::vector<int32_t>> sources;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    sources.push_back(tokenizer.encode(line));  // blank text encodes to no ids
  }
  const int64_t n = int64_t(sources.size());
  std::vector<std::vector<Hypothesis>> results(static_cast<size_t>(n));

  // Non-empty lines, shortest first, decoded in batches; results land at their input index.
  std::vector<size_t> order;
  for (size_t i = 0; i < sources.size(); ++i)
    if (!sources[i].empty()) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sources[a].size() < sources[b].size(); });
  Context ctx;
  Arena arena;
  for (size_t c = 0; c < order.size(); c += size_t(o.batch_sentences)) {
    const size_t end = std::min(order.size(), c + size_t(o.batch_sentences));
    std::vector<std::vector<int32_t>> batch;
    for (size_t i = c; i < end; ++i) batch.push_back(sources[order[i]]);
    auto nbest = decode_batch(model, ctx, arena, batch, o.decode);
    for (size_t i = c; i < end; ++i) results[order[i]] = std::move(nbest[i - c]);
  }

  for (int64_t i = 0; i < n; ++i) {
    const auto& list = results[size_t(i)];
    if (o.decode.n_best == 1) {
      out << (list.empty() ? std::string() : tokenizer.decode(list.front().tokens)) << "\n";
      continue;
    }
    if (list.empty()) out << i << " |||  ||| 0\n";
    for (const Hypothesis& h : list) {
      char score[32];
      std::snprintf(score, sizeof score, "%.6f", h.score);
      out << i << " ||| " << tokenizer.decode(h.tokens) << " ||| " << score << "\n";
    }
  }
  out.flush();
  return n;
}

int translate_main(int argc, char** argv) {
  TranslateOptions o;
  std::string checkpoint, input, output;
  int threads = 0;
  po::options_description desc(
      "tfm translate: text in, text out, with batched beam search\nOptions");
  desc.add_options()
      ("help,h", "show this help")
      ("checkpoint", po::value(&checkpoint)->value_name("PATH"),
       "checkpoint directory, or a run directory (its latest checkpoint) (required)")
      ("input", po::value(&input)->value_name("FILE"),
       "source sentences, one per line (default: stdin)")
      ("output", po::value(&output)->value_name("FILE"), "translations (default: stdout)")
      ("beam", po::value(&o.decode.beam)->default_value(o.decode.beam), "beam size (1: greedy)")
      ("alpha", po::value(&o.decode.alpha)->default_value(o.decode.alpha, "0.6"),
       "length penalty exponent: score = log P / ((5 + |Y|) / 6)^alpha")
      ("n-best", po::value(&o.decode.n_best)->default_value(o.decode.n_best),
       "hypotheses per sentence (> 1: \"i ||| translation ||| score\" lines)")
      ("max-extra-len", po::value(&o.decode.max_extra_len)->default_value(o.decode.max_extra_len),
       "a translation has at most source length + this many tokens")
      ("batch-sentences", po::value(&o.batch_sentences)->default_value(o.batch_sentences),
       "sentences decoded together (each with --beam rows)")
      ("threads", po::value(&threads)->default_value(threads), "CPU threads (0: all cores)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << "Usage: tfm translate --checkpoint PATH [options] < input > output\n\n"
                << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    fail(cat(e.what(), " (see tfm translate --help)"));
  }
  o.decode.validate();
  TFM_CHECK(o.batch_sentences >= 1, "--batch-sentences must be ≥ 1, got ", o.batch_sentences);
  TFM_CHECK(threads >= 0, "--threads must be ≥ 0, got ", threads);
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }

  DecodingModel m = load_decoding_model(checkpoint, "--checkpoint");
  TFM_CHECK(m.tokenizer.has_value(), "--checkpoint ", m.checkpoint, ": the model was trained on ",
            "a synthetic task and has no tokenizer, so it cannot translate text");
  std::ifstream in_file;
  if (!input.empty()) {
    in_file.open(input);
    TFM_CHECK(in_file.good(), "--input ", input, ": cannot open");
  }
  std::ofstream out_file;
  if (!output.empty()) {
    out_file.open(output);
    TFM_CHECK(out_file.good(), "--output ", output, ": cannot create");
  }
  std::istream& in = input.empty() ? std::cin : in_file;
  std::ostream& out = output.empty() ? std::cout : out_file;
  translate_stream(*m.model, *m.tokenizer, in, out, o);
  TFM_CHECK(!in.bad(), "--input ", input.empty() ? "stdin" : input, ": read error");
  TFM_CHECK(out.good(), "--output ", output.empty() ? "stdout" : output, ": write error");
  return 0;
}

}  // namespace tfm
