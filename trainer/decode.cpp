#include "trainer/decode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <queue>

#include "data/batch.h"

namespace tfm {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Sources (without EOS) as the padded [B, Ts] matrix the encoder takes: x1 … xn EOS, then pad.
struct PaddedSources {
  std::vector<int32_t> ids, lengths;
  int64_t batch = 0, len = 0;
  explicit PaddedSources(const std::vector<std::vector<int32_t>>& sources) {
    batch = int64_t(sources.size());
    for (const auto& s : sources) len = std::max<int64_t>(len, int64_t(s.size()) + 1);
    ids.assign(size_t(batch * len), kPadId);
    for (int64_t b = 0; b < batch; ++b) {
      const auto& s = sources[size_t(b)];
      std::copy(s.begin(), s.end(), ids.begin() + b * len);
      ids[size_t(b * len) + s.size()] = kEosId;
      lengths.push_back(int32_t(s.size() + 1));
    }
  }
  Tensor src() const { return host(ids, {batch, len}); }
  Tensor src_lengths() const { return host(lengths, {batch}); }
  static Tensor host(const std::vector<int32_t>& v, std::initializer_list<int64_t> dims) {
    return Tensor(const_cast<int32_t*>(v.data()), DType::i32, Device::cpu, dims);
  }
};

// The DecoderState of model/incremental.cpp.
class CachedStepModel : public StepModel {
 public:
  CachedStepModel(Transformer& model, const Context& ctx, Arena& arena,
                  const std::vector<std::vector<int32_t>>& sources, int64_t rows_per_sentence,
                  int64_t max_steps)
      : model_(model), ctx_(ctx), arena_(arena) {
    PaddedSources p(sources);
    state_ = model.start_decoding(ctx, arena, p.src(), p.src_lengths(), rows_per_sentence,
                                  max_steps);
  }
  Tensor step(const std::vector<int32_t>& last_tokens) override {
    return model_.decode_step(ctx_, arena_, state_, last_tokens);
  }
  void reorder(const std::vector<int64_t>& rows) override { state_.reorder(rows); }

 private:
  Transformer& model_;
  const Context& ctx_;
  Arena& arena_;
  DecoderState state_;
};

// The reference: every step re-encodes the sources and runs decode_logits over the whole prefix
// (BOS y1 … yt), keeping the last position's distribution. Slow (quadratic), obviously right.
class RecomputingStepModel : public StepModel {
 public:
  RecomputingStepModel(Transformer& model, const Context& ctx, Arena& arena,
                       const std::vector<std::vector<int32_t>>& sources, int64_t rows_per_sentence,
                       int64_t max_steps)
      : model_(model), ctx_(ctx), arena_(arena), sources_(sources), max_steps_(max_steps) {
    for (size_t b = 0; b < sources.size(); ++b)
      for (int64_t j = 0; j < rows_per_sentence; ++j) sentence_.push_back(int64_t(b));
    prefix_.resize(sentence_.size());
  }

  Tensor step(const std::vector<int32_t>& last_tokens) override {
    const int64_t rows = int64_t(sentence_.size());
    TFM_CHECK(int64_t(last_tokens.size()) == rows, "step: ", last_tokens.size(),
              " tokens for ", rows, " rows");
    TFM_CHECK(int64_t(prefix_[0].size()) < max_steps_, "step: more than ", max_steps_, " steps");
    std::vector<std::vector<int32_t>> row_sources;
    for (int64_t r = 0; r < rows; ++r) {
      prefix_[size_t(r)].push_back(last_tokens[size_t(r)]);
      row_sources.push_back(sources_[size_t(sentence_[size_t(r)])]);
    }
    const int64_t t = int64_t(prefix_[0].size()), v = model_.config().vocab_size;
    PaddedSources p(row_sources);
    std::vector<int32_t> tgt_in, tgt_lengths(static_cast<size_t>(rows), int32_t(t));
    for (const auto& pre : prefix_) tgt_in.insert(tgt_in.end(), pre.begin(), pre.end());

    arena_.reset();
    Step s{ctx_, arena_, /*training=*/false, 0};
    Tensor memory = model_.encode(s, p.src(), p.src_lengths());
    Tensor logits = model_.decode_logits(s, PaddedSources::host(tgt_in, {rows, t}),
                                         PaddedSources::host(tgt_lengths, {rows}), memory,
                                         p.src_lengths());
    out_ = Buffer(logits.dtype, {rows, v});
    const size_t row_bytes = size_t(v) * dtype_size(logits.dtype);
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(static_cast<char*>(out_.tensor().data) + size_t(r) * row_bytes,
                  static_cast<const char*>(logits.data) + size_t(r * t + t - 1) * row_bytes,
                  row_bytes);
    log_softmax_rows(out_, out_);
    return out_;
  }

  void reorder(const std::vector<int64_t>& rows) override {
    std::vector<int64_t> sentence;
    std::vector<std::vector<int32_t>> prefix;
    for (int64_t r : rows) {
      TFM_CHECK(r >= 0 && r < int64_t(sentence_.size()), "reorder: row ", r, " out of range");
      sentence.push_back(sentence_[size_t(r)]);
      prefix.push_back(prefix_[size_t(r)]);
    }
    sentence_ = std::move(sentence);
    prefix_ = std::move(prefix);
  }

 private:
  Transformer& model_;
  const Context& ctx_;
  Arena& arena_;
  std::vector<std::vector<int32_t>> sources_;
  int64_t max_steps_;
  std::vector<int64_t> sentence_;              // [rows]
  std::vector<std::vector<int32_t>> prefix_;   // [rows] tokens fed so far
  Buffer out_;
};

// Calls f(row pointer) with the log-probabilities' element type.
template <class F>
void with_rows(const Tensor& lp, F&& f) {
  TFM_CHECK(lp.device == Device::cpu, "decode: log-probabilities must be on the host");
  if (lp.dtype == DType::f64) f(lp.as<double>());
  else f(lp.as<float>());
}

bool generable(int32_t v) { return v != kPadId && v != kBosId; }

// Which rows of the step model continue: identity is skipped.
void reorder_if_needed(StepModel& model, const std::vector<int64_t>& rows, int64_t old_rows) {
  bool identity = int64_t(rows.size()) == old_rows;
  for (size_t i = 0; identity && i < rows.size(); ++i) identity = rows[i] == int64_t(i);
  if (!identity) model.reorder(rows);
}

}  // namespace

void DecodeOptions::validate() const {
  TFM_CHECK(beam >= 1, "--beam must be ≥ 1, got ", beam);
  TFM_CHECK(std::isfinite(alpha) && alpha >= 0, "--alpha must be ≥ 0, got ", alpha);
  TFM_CHECK(n_best >= 1 && n_best <= beam, "--n-best must be in [1, --beam = ", beam, "], got ",
            n_best);
  TFM_CHECK(max_extra_len >= 0, "--max-extra-len must be ≥ 0, got ", max_extra_len);
}

double length_penalty(int64_t length, double alpha) {
  return alpha == 0 ? 1.0 : std::pow((5.0 + double(length)) / 6.0, alpha);
}

std::unique_ptr<StepModel> make_step_model(Transformer& model, const Context& ctx, Arena& arena,
                                           const std::vector<std::vector<int32_t>>& sources,
                                           int64_t rows_per_sentence, int64_t max_steps,
                                           bool cached) {
  TFM_CHECK(!sources.empty(), "decode: no sentences to decode");
  if (cached)
    return std::make_unique<CachedStepModel>(model, ctx, arena, sources, rows_per_sentence,
                                             max_steps);
  return std::make_unique<RecomputingStepModel>(model, ctx, arena, sources, rows_per_sentence,
                                                max_steps);
}

std::vector<Hypothesis> greedy_search(StepModel& model, int64_t vocab,
                                      const std::vector<int64_t>& max_tokens, double alpha) {
  const int64_t n = int64_t(max_tokens.size());
  std::vector<Hypothesis> out(static_cast<size_t>(n));
  std::vector<int64_t> active(static_cast<size_t>(n));  // active[row] = sentence
  for (int64_t b = 0; b < n; ++b) active[size_t(b)] = b;
  std::vector<int32_t> last(size_t(n), kBosId);
  for (int64_t t = 0; !active.empty(); ++t) {
    Tensor lp = model.step(last);
    std::vector<int64_t> keep_rows, keep_active;
    std::vector<int32_t> keep_last;
    with_rows(lp, [&](const auto* data) {
      for (size_t r = 0; r < active.size(); ++r) {
        Hypothesis& h = out[size_t(active[r])];
        const auto* row = data + int64_t(r) * vocab;
        int32_t best = kEosId;  // forced at the length limit
        if (t < max_tokens[size_t(active[r])]) {
          best = -1;
          for (int32_t v = 0; v < int32_t(vocab); ++v)
            if (generable(v) && (best < 0 || row[v] > row[best])) best = v;
        }
        h.log_prob += double(row[best]);
        if (best == kEosId) {
          h.score = h.log_prob / length_penalty(int64_t(h.tokens.size()) + 1, alpha);
          continue;
        }
        h.tokens.push_back(best);
        keep_rows.push_back(int64_t(r));
        keep_active.push_back(active[r]);
        keep_last.push_back(best);
      }
    });
    if (keep_rows.empty()) break;
    reorder_if_needed(model, keep_rows, int64_t(active.size()));
    active = std::move(keep_active);
    last = std::move(keep_last);
  }
  return out;
}

std::vector<std::vector<Hypothesis>> beam_search(StepModel& model, int64_t vocab,
                                                 const std::vector<int64_t>& max_tokens,
                                                 const DecodeOptions& o) {
  o.validate();
  const int64_t n = int64_t(max_tokens.size()), k = o.beam;
  struct Slot {
    std::vector<int32_t> tokens;
    double log_prob = kNegInf;  // −∞: an empty slot (fewer than k hypotheses so far)
    bool ended = false;         // ended with EOS: carried unchanged, its row is idle
    bool live() const { return !ended && log_prob > kNegInf; }
  };
  struct Sentence {
    int64_t id = 0;
    std::vector<Slot> slots;            // [k], slot j on row a·k + j of the step model
    std::vector<Hypothesis> finished;   // every ended hypothesis, in the order it ended
  };
  struct Candidate {
    double key;       // the ranking score: log-probability / lp(length)
    double log_prob;
    int64_t slot;
    int32_t token;    // −1: an ended slot carried over
  };
  // "a ranks before b": higher score; ties to the lower slot, then the lower token.
  auto before = [](const Candidate& a, const Candidate& b) {
    if (a.key != b.key) return a.key > b.key;
    return a.slot != b.slot ? a.slot < b.slot : a.token < b.token;
  };

  std::vector<std::vector<Hypothesis>> out(static_cast<size_t>(n));
  std::vector<Sentence> active;
  for (int64_t b = 0; b < n; ++b) {
    Sentence s;
    s.id = b;
    s.slots.resize(size_t(k));
    s.slots[0].log_prob = 0;  // all k rows start from BOS; one of them is live
    active.push_back(std::move(s));
  }
  std::vector<int32_t> last(size_t(n * k), kBosId);

  for (int64_t t = 0; !active.empty(); ++t) {
    Tensor lp = model.step(last);
    std::vector<Sentence> next;
    std::vector<int64_t> rows;
    std::vector<int32_t> next_last;
    // Every extension made now has t + 1 tokens (counting an EOS), so one penalty ranks them.
    const double step_lp = length_penalty(t + 1, o.alpha);
    for (size_t a = 0; a < active.size(); ++a) {
      Sentence& s = active[a];
      const int64_t limit = max_tokens[size_t(s.id)];
      const bool forced = t >= limit;  // live slots hold `limit` tokens: only EOS is left
      // The top k of: ended slots as they are, and every extension of every live slot.
      std::priority_queue<Candidate, std::vector<Candidate>, decltype(before)> heap(before);
      auto offer = [&](const Candidate& c) {
        if (!(c.log_prob > kNegInf)) return;  // −∞ or NaN: never a hypothesis
        if (int64_t(heap.size()) < k) heap.push(c);
        else if (before(c, heap.top())) { heap.pop(); heap.push(c); }
      };
      with_rows(lp, [&](const auto* data) {
        for (int64_t j = 0; j < k; ++j) {
          const Slot& slot = s.slots[size_t(j)];
          if (slot.ended) {
            offer({slot.log_prob / length_penalty(int64_t(slot.tokens.size()) + 1, o.alpha),
                   slot.log_prob, j, -1});
            continue;
          }
          if (!slot.live()) continue;
          const auto* row = data + (int64_t(a) * k + j) * vocab;
          auto extend = [&](int32_t v) {
            const double lpv = slot.log_prob + double(row[v]);
            offer({lpv / step_lp, lpv, j, v});
          };
          if (forced) { extend(kEosId); continue; }
          for (int32_t v = 0; v < int32_t(vocab); ++v)
            if (generable(v)) extend(v);
        }
      });
      std::vector<Candidate> ranked;
      for (; !heap.empty(); heap.pop()) ranked.push_back(heap.top());
      std::reverse(ranked.begin(), ranked.end());  // best first

      std::vector<Slot> slots;
      std::vector<int64_t> parents;
      for (const Candidate& c : ranked) {
        Slot next_slot = s.slots[size_t(c.slot)];
        if (c.token >= 0) {
          next_slot.log_prob = c.log_prob;
          if (c.token == kEosId) {
            next_slot.ended = true;
            Hypothesis h;
            h.tokens = next_slot.tokens;
            h.log_prob = c.log_prob;
            h.score = c.key;
            s.finished.push_back(std::move(h));
          } else {
            next_slot.tokens.push_back(c.token);
          }
        }
        slots.push_back(std::move(next_slot));
        parents.push_back(c.slot);
      }

      double best_reachable = kNegInf;  // the best score a live slot could still end with
      for (const Slot& slot : slots)
        if (slot.live())
          best_reachable = std::max(best_reachable,
                                    slot.log_prob / length_penalty(limit + 1, o.alpha));
      // Every slot has ended: nothing is left to extend.
      bool done = best_reachable == kNegInf;
      if (!done && o.early_stop && int64_t(s.finished.size()) >= o.n_best) {
        // A live slot's log-probability (≤ 0) can only fall and lp is largest at the limit: when
        // the n-th best finished score is at least that bound, the n-best list is final.
        std::vector<double> scores;
        for (const Hypothesis& h : s.finished) scores.push_back(h.score);
        std::nth_element(scores.begin(), scores.begin() + (o.n_best - 1), scores.end(),
                         std::greater<double>());
        done = scores[size_t(o.n_best - 1)] >= best_reachable;
      }
      if (done) {
        std::stable_sort(s.finished.begin(), s.finished.end(),
                         [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
        if (int64_t(s.finished.size()) > o.n_best) s.finished.resize(size_t(o.n_best));
        out[size_t(s.id)] = std::move(s.finished);
        continue;
      }
      // Continue: slot j on the row of its parent; idle rows (ended or empty slots) are fed EOS.
      for (int64_t j = 0; j < k; ++j) {
        const bool filled = j < int64_t(slots.size());
        rows.push_back(int64_t(a) * k + (filled ? parents[size_t(j)] : 0));
        next_last.push_back(filled && slots[size_t(j)].live() ? slots[size_t(j)].tokens.back()
                                                               : kEosId);
      }
      slots.resize(size_t(k));
      s.slots = std::move(slots);
      next.push_back(std::move(s));
    }
    if (next.empty()) break;
    reorder_if_needed(model, rows, int64_t(active.size()) * k);
    active = std::move(next);
    last = std::move(next_last);
  }
  return out;
}

std::vector<std::vector<Hypothesis>> decode_batch(Transformer& model, const Context& ctx,
                                                  Arena& arena,
                                                  const std::vector<std::vector<int32_t>>& sources,
                                                  const DecodeOptions& options) {
  options.validate();
  if (sources.empty()) return {};
  std::vector<int64_t> max_tokens;
  int64_t longest = 0;
  for (const auto& s : sources) {
    max_tokens.push_back(int64_t(s.size()) + options.max_extra_len);
    longest = std::max(longest, max_tokens.back());
  }
  const int64_t vocab = model.config().vocab_size;
  // Positions fed: BOS and up to `longest` tokens.
  auto step_model = make_step_model(model, ctx, arena, sources, options.beam, longest + 1,
                                    options.use_cache);
  if (options.beam == 1) {
    std::vector<std::vector<Hypothesis>> out;
    for (Hypothesis& h : greedy_search(*step_model, vocab, max_tokens, options.alpha))
      out.push_back({std::move(h)});
    return out;
  }
  return beam_search(*step_model, vocab, max_tokens, options);
}

}  // namespace tfm
