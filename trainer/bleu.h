// BLEU (Papineni et al., 2002) computed exactly as sacreBLEU 2.x computes it (Post, 2018, "A Call
// for Clarity in Reporting BLEU Scores"; reference implementation: sacrebleu/metrics/bleu.py and
// sacrebleu/tokenizers/tokenizer_13a.py, release 2.6.0), so tfm's numbers can be reported beside
// anyone else's sacreBLEU numbers.
//
// Contract, per segment: optionally lowercase (Python's str.lower(), full Unicode, final sigma
// included), strip trailing Unicode whitespace (str.rstrip()), tokenise (13a by default), split
// on Unicode whitespace (str.split()); count n-grams of order 1..4, clip hypothesis counts by the
// maximum count in any one reference, and take as reference length the reference length closest
// to the hypothesis length (the shorter one on ties). Corpus BLEU sums these statistics over all
// segments first and only then forms precisions, so BleuStats add (across batches or DP ranks:
// to_array/from_array give a flat int64 vector for an all-reduce) and compute_bleu() turns the
// sum into a score: BP = exp(1 − r/c) when c < r; score = BP · exp(mean_n log p_n), with
// sacreBLEU's smoothing ('exp' by default: the k-th order with no match gets 1/(2^k · total)).
//
// Text is UTF-8. Bytes that are not valid UTF-8 pass through the tokenizer unchanged (sacreBLEU
// would have refused to decode them; `tfm score` rejects such files with file and line).
// An empty reference string is a reference of length 0, as in sacreBLEU.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tfm::bleu {

inline constexpr int kMaxNgramOrder = 4;
// The sacreBLEU release whose behaviour (and signature text) this reproduces; the fixtures in
// tests/fixtures/bleu were generated with it.
inline constexpr const char* kSacreBleuVersion = "2.6.0";

enum class Tokenize { k13a, kNone };  // sacreBLEU's '13a' (default) and 'none'
enum class Smooth { kExp, kNone, kFloor, kAddK };  // 'exp' (default), 'none', 'floor', 'add-k'

struct BleuOptions {
  bool lowercase = false;
  Tokenize tokenize = Tokenize::k13a;
  Smooth smooth = Smooth::kExp;
  // For 'floor' (default 0.1) and 'add-k' (default 1); ignored by 'exp' and 'none'.
  std::optional<double> smooth_value;
  // Average only over orders up to the last one with any hypothesis n-gram. sacreBLEU's
  // corpus_bleu leaves it off; its sentence_bleu turns it on (see sentence_defaults()).
  bool effective_order = false;

  // sacreBLEU's sentence_bleu() defaults: exp smoothing with effective order.
  static BleuOptions sentence_defaults() {
    BleuOptions o;
    o.effective_order = true;
    return o;
  }
};

// Sufficient statistics of BLEU over any number of segments; sums are exact (integers).
struct BleuStats {
  std::array<int64_t, kMaxNgramOrder> counts{};  // [n-1]: clipped matching n-grams
  std::array<int64_t, kMaxNgramOrder> totals{};  // [n-1]: hypothesis n-grams
  int64_t sys_len = 0;                           // hypothesis tokens
  int64_t ref_len = 0;                           // closest-reference tokens

  static constexpr int kFlatSize = 2 + 2 * kMaxNgramOrder;
  BleuStats& operator+=(const BleuStats& other);
  friend BleuStats operator+(BleuStats a, const BleuStats& b) { return a += b; }
  bool operator==(const BleuStats&) const = default;
  // [sys_len, ref_len, counts..., totals...] — sacreBLEU's own layout; for all-reduce (sum).
  std::array<int64_t, kFlatSize> to_array() const;
  static BleuStats from_array(std::span<const int64_t> flat);
};

struct BleuScore {
  double score = 0;                                 // 0..100
  std::array<double, kMaxNgramOrder> precisions{};  // percent, after smoothing
  double bp = 0;                                    // brevity penalty
  double ratio = 0;                                 // sys_len / ref_len (0 when ref_len = 0)
  int64_t sys_len = 0, ref_len = 0;
  // As sacreBLEU reports them: add-k smoothing adds k to orders 2..4 (hence doubles).
  std::array<double, kMaxNgramOrder> counts{}, totals{};

  // sacreBLEU's Score.format(): "BLEU = 41.83 71.4/50.0/37.5/28.6 (BP = 1.000 ratio = 1.000
  // hyp_len = 7 ref_len = 7)"; width = decimals of the score (the API default is 2, the
  // sacrebleu command line's is 1). With a signature: "BLEU|<signature> = 41.83 …" (the CLI's
  // `-f text` line).
  std::string format(int width = 2, std::string_view signature = {}) const;
  // The part after the score: "71.4/50.0/37.5/28.6 (BP = … ref_len = 7)".
  std::string verbose() const;
};

// sacreBLEU's signature for these options, e.g.
// "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0".
std::string signature(const BleuOptions& options, int nrefs);

// --- Pre-processing, exposed for tests and for callers that tokenise once. ---
// The 13a tokenizer (mteval-v13a.pl as sacreBLEU implements it), including the final
// whitespace normalisation: tokens joined by single spaces, no leading/trailing space.
std::string tokenize_13a(std::string_view line);
// Python's str.lower() on UTF-8 text (full Unicode mapping, U+0130 → "i̇", final sigma).
std::string lowercase(std::string_view utf8);
// What sacreBLEU does to every hypothesis and reference: lowercase (if asked), rstrip, tokenise.
std::string preprocess(std::string_view segment, const BleuOptions& options);
// Python's str.split(): tokens separated by runs of Unicode whitespace.
std::vector<std::string_view> split_whitespace(std::string_view text);
// Python's str.rstrip() (Unicode whitespace).
std::string_view rstrip(std::string_view text);

// --- Scoring. ---
// Statistics of one segment against its references (at least one).
BleuStats segment_stats(std::string_view hyp, std::span<const std::string> refs,
                        const BleuOptions& options = {});
// Statistics of a corpus: ref_sets[k][i] is the k-th reference of hypothesis i; every stream must
// have hyps.size() lines (throws tfm::Error naming the stream and both counts otherwise).
BleuStats corpus_stats(std::span<const std::string> hyps,
                       std::span<const std::vector<std::string>> ref_sets,
                       const BleuOptions& options = {});
// sacreBLEU's BLEU.compute_bleu(): the score of summed statistics.
BleuScore compute_bleu(const BleuStats& stats, const BleuOptions& options = {});

// sacreBLEU's corpus_bleu(hyps, refs): compute_bleu(corpus_stats(...)).
BleuScore corpus_bleu(std::span<const std::string> hyps,
                      std::span<const std::vector<std::string>> ref_sets,
                      const BleuOptions& options = {});
// sacreBLEU's sentence_bleu(hyp, refs) (pass sentence_defaults() to match its defaults).
BleuScore sentence_bleu(std::string_view hyp, std::span<const std::string> refs,
                        const BleuOptions& options = BleuOptions::sentence_defaults());

}  // namespace tfm::bleu
