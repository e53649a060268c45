#include "trainer/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace tfm {

namespace {

// Row b of a padded [B, T] id matrix, its first `len` ids.
std::vector<int32_t> row_ids(const std::vector<int32_t>& ids, int64_t width, int64_t b, int64_t len) {
  auto first = ids.begin() + b * width;
  return std::vector<int32_t>(first, first + len);
}

}  // namespace

double EvalResult::loss_per_token() const {
  return loss.tokens ? loss.loss_sum / double(loss.tokens) : 0.0;
}
double EvalResult::nll() const { return loss.tokens ? loss.nll_sum / double(loss.tokens) : 0.0; }
double EvalResult::perplexity() const { return std::exp(nll()); }
double EvalResult::accuracy() const {
  return loss.tokens ? double(loss.correct) / double(loss.tokens) : 0.0;
}
bleu::BleuScore EvalResult::bleu(const bleu::BleuOptions& options) const {
  return bleu::compute_bleu(bleu_stats, options);
}

EvalResult evaluate_split(Transformer& model, const Context& ctx, Arena& arena,
                          DatasetReader& reader, const EvalOptions& o) {
  if (o.bleu) o.decode.validate();
  TFM_CHECK(o.max_sentences >= 0, "--max-sentences must be ≥ 0, got ", o.max_sentences);
  TFM_CHECK(o.decode_sentences >= 1, "eval: decode_sentences must be ≥ 1, got ",
            o.decode_sentences);
  TFM_CHECK(reader.manifest().vocab_size == model.config().vocab_size, "eval: the dataset's ",
            "vocabulary has ", reader.manifest().vocab_size, " ids but the model's has ",
            model.config().vocab_size);
  const auto start = std::chrono::steady_clock::now();
  const Tokenizer& tokenizer = reader.tokenizer();

  EvalResult r;
  struct Row {
    int64_t example;
    std::string hyp, ref;
  };
  std::vector<Row> rows;
  Batch batch;
  BatchInfo info;
  while (reader.next(batch, &info)) {
    // This batch's pairs (ids without BOS/EOS), limited to examples below max_sentences.
    std::vector<std::vector<int32_t>> sources, targets;
    std::vector<int64_t> examples;
    for (int64_t b = 0; b < batch.size; ++b) {
      const int64_t example = info.examples[size_t(b)];
      if (o.max_sentences > 0 && example >= o.max_sentences) continue;
      sources.push_back(row_ids(batch.src, batch.src_len, b, batch.src_lengths[size_t(b)] - 1));
      targets.push_back(row_ids(batch.tgt_out, batch.tgt_len, b, batch.tgt_lengths[size_t(b)] - 1));
      examples.push_back(example);
    }
    // Example indices grow in file order: once a batch starts past the limit, so do the rest.
    if (examples.empty()) break;
    const Batch kept = int64_t(examples.size()) == batch.size ? batch : make_batch(sources, targets);
    r.loss += model.evaluate(ctx, arena, kept);
    r.sentences += int64_t(examples.size());

    std::vector<std::string> hyps(examples.size());
    if (o.bleu) {
      // Decode in chunks of similar source lengths: less padding, fewer idle rows.
      std::vector<size_t> order(examples.size());
      std::iota(order.begin(), order.end(), size_t(0));
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return sources[a].size() < sources[b].size();
      });
      for (size_t c = 0; c < order.size(); c += size_t(o.decode_sentences)) {
        const size_t end = std::min(order.size(), c + size_t(o.decode_sentences));
        std::vector<std::vector<int32_t>> chunk;
        for (size_t i = c; i < end; ++i) chunk.push_back(sources[order[i]]);
        auto nbest = decode_batch(model, ctx, arena, chunk, o.decode);
        for (size_t i = c; i < end; ++i) {
          const auto& list = nbest[i - c];
          hyps[order[i]] = list.empty() ? std::string() : tokenizer.decode(list.front().tokens);
        }
      }
    }
    for (size_t i = 0; i < examples.size(); ++i)
      rows.push_back({examples[i], std::move(hyps[i]), tokenizer.decode(targets[i])});
  }

  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.example < b.example; });
  for (Row& row : rows) {
    if (o.bleu) {
      const std::vector<std::string> refs = {row.ref};
      r.bleu_stats += bleu::segment_stats(row.hyp, refs, o.bleu_options);
    }
    r.examples.push_back(row.example);
    r.hypotheses.push_back(std::move(row.hyp));
    r.references.push_back(std::move(row.ref));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace tfm
