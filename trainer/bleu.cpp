// sacreBLEU-compatible BLEU; see bleu.h for the contract. Every rule below mirrors one step of
// sacreBLEU 2.6.0 (metrics/bleu.py, tokenizers/tokenizer_13a.py, tokenizer_re.py) or of the
// Python string operations it relies on; the comments name which.
#include "trainer/bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <unordered_map>

#include "kernels/core/check.h"

namespace tfm::bleu {

namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8 and the Unicode properties Python's str methods use.

constexpr char32_t kInvalid = 0xFFFFFFFF;

// Decodes the code point at s[i]; returns its byte length. Invalid or truncated sequences (and
// overlong forms, surrogates) decode as kInvalid with length 1, so such bytes pass through.
size_t decode(std::string_view s, size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t len;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    cp = kInvalid;
    return 1;
  }
  if (i + len > s.size()) {
    cp = kInvalid;
    return 1;
  }
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      cp = kInvalid;
      return 1;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
    cp = kInvalid;
    return 1;
  }
  return len;
}

void encode(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Python's str.isspace() for one code point (Py_UNICODE_ISSPACE: bidi class WS, B or S, or
// category Zs) — the separators of str.split() and str.rstrip(). U+200B and U+FEFF are not.
bool is_space(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D:
    case 0x1C: case 0x1D: case 0x1E: case 0x1F: case 0x20:
    case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

struct LowerRun {
  char32_t first;
  int count, stride, delta;  // first + k·stride (k < count) lowers to itself + delta
};
struct CodeRange {
  char32_t lo, hi;  // inclusive
};
#include "trainer/bleu_unicode.inc"

bool in_ranges(std::span<const CodeRange> ranges, char32_t c) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), c,
                             [](char32_t v, const CodeRange& r) { return v < r.lo; });
  return it != ranges.begin() && c <= std::prev(it)->hi;
}

// One-to-one lowercase mappings, expanded from the generated runs (runs may interleave, so a
// flat sorted table is the simple correct lookup).
char32_t lower_simple(char32_t c) {
  static const std::vector<std::pair<char32_t, char32_t>> table = [] {
    std::vector<std::pair<char32_t, char32_t>> t;
    for (const LowerRun& r : kLowerRuns)
      for (int k = 0; k < r.count; ++k) {
        const char32_t from = r.first + static_cast<char32_t>(k * r.stride);
        t.emplace_back(from, static_cast<char32_t>(static_cast<int64_t>(from) + r.delta));
      }
    std::sort(t.begin(), t.end());
    return t;
  }();
  auto it = std::lower_bound(table.begin(), table.end(), std::pair<char32_t, char32_t>(c, 0));
  return it != table.end() && it->first == c ? it->second : c;
}

// ---------------------------------------------------------------------------------------------
// Python's str.replace(old, new): one left-to-right pass over non-overlapping occurrences;
// text produced by a replacement is not scanned again.
std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The character class of the first regex of sacreBLEU's TokenizerRegexp,
// [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII punctuation and symbols, but not ' , - . which have their
// own rules (or none).
bool is_split_symbol(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

// re.sub with a two-character pattern "(A)(B)" → rewrite(a, b): matches are found left to right
// and never overlap, exactly like Python's re.sub. Working on bytes is equivalent to Python's
// code points here because every class involved either is ASCII or is the complement of an
// ASCII class, and no match can split a multi-byte character (its continuation bytes are never
// '.', ',' or '-', and a lead byte followed by '.'/',' lies in the same "not a digit" class as
// the whole character).
template <class Match, class Rewrite>
std::string sub_pairs(const std::string& s, Match match, Rewrite rewrite) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && match(s[i], s[i + 1])) {
      rewrite(s[i], s[i + 1], out);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::vector<std::string_view> split_whitespace(std::string_view text) {
  std::vector<std::string_view> tokens;
  size_t start = std::string_view::npos;
  size_t i = 0;
  while (i < text.size()) {
    char32_t cp;
    const size_t len = decode(text, i, cp);
    if (is_space(cp)) {
      if (start != std::string_view::npos) tokens.push_back(text.substr(start, i - start));
      start = std::string_view::npos;
    } else if (start == std::string_view::npos) {
      start = i;
    }
    i += len;
  }
  if (start != std::string_view::npos) tokens.push_back(text.substr(start));
  return tokens;
}

std::string_view rstrip(std::string_view text) {
  size_t end = 0;  // one past the last non-whitespace code point
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    const size_t len = decode(text, i, cp);
    i += len;
    if (!is_space(cp)) end = i;
  }
  return text.substr(0, end);
}

std::string lowercase(std::string_view utf8) {
  // Decode first: the final-sigma rule looks at neighbouring code points on both sides.
  std::vector<char32_t> cps;
  std::vector<size_t> starts;  // byte offset of each code point, to copy invalid bytes through
  for (size_t i = 0; i < utf8.size();) {
    char32_t cp;
    starts.push_back(i);
    i += decode(utf8, i, cp);
    cps.push_back(cp);
  }
  std::string out;
  out.reserve(utf8.size());
  const auto ignorable = [](char32_t c) { return c != kInvalid && in_ranges(kCaseIgnorable, c); };
  const auto cased = [](char32_t c) { return c != kInvalid && in_ranges(kCased, c); };
  for (size_t k = 0; k < cps.size(); ++k) {
    const char32_t c = cps[k];
    if (c == kInvalid) {
      out += utf8[starts[k]];
    } else if (c == 0x130) {
      // LATIN CAPITAL LETTER I WITH DOT ABOVE: the one code point whose lowercase is two
      // (SpecialCasing.txt): i + COMBINING DOT ABOVE.
      out += 'i';
      encode(0x307, out);
    } else if (c == 0x3A3) {
      // GREEK CAPITAL LETTER SIGMA lowers to final ς when preceded by a cased letter and not
      // followed by one, skipping case-ignorable characters both ways (Unicode Final_Sigma,
      // as CPython's str.lower() applies it).
      ptrdiff_t j = static_cast<ptrdiff_t>(k) - 1;
      while (j >= 0 && ignorable(cps[j])) --j;
      bool final_sigma = j >= 0 && cased(cps[j]);
      if (final_sigma) {
        size_t m = k + 1;
        while (m < cps.size() && ignorable(cps[m])) ++m;
        final_sigma = m == cps.size() || !cased(cps[m]);
      }
      encode(final_sigma ? 0x3C2 : 0x3C3, out);
    } else {
      encode(lower_simple(c), out);
    }
  }
  return out;
}

std::string tokenize_13a(std::string_view input) {
  // Language-independent part (Tokenizer13a.__call__).
  std::string line = replace_all(input, "<skipped>", "");
  line = replace_all(line, "-\n", "");
  line = replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    // In this order, one pass each: "&amp;lt;" becomes "<", "&amp;quot;" stays "&quot;".
    line = replace_all(line, "&quot;", "\"");
    line = replace_all(line, "&amp;", "&");
    line = replace_all(line, "&lt;", "<");
    line = replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";

  // Language-dependent part (TokenizerRegexp), four substitutions in sequence.
  // 1. Space around ASCII punctuation and symbols other than ' , - .
  std::string s;
  s.reserve(line.size() * 2);
  for (char c : line) {
    if (is_split_symbol(c)) {
      s += ' ';
      s += c;
      s += ' ';
    } else {
      s += c;
    }
  }
  const auto period_or_comma = [](char c) { return c == '.' || c == ','; };
  // 2. ([^0-9])([\.,]) → "\1 \2 ": period and comma split off unless preceded by a digit.
  s = sub_pairs(
      s, [&](char a, char b) { return !is_digit(a) && period_or_comma(b); },
      [](char a, char b, std::string& out) { out += a, out += ' ', out += b, out += ' '; });
  // 3. ([\.,])([^0-9]) → " \1 \2": ... and unless followed by a digit.
  s = sub_pairs(
      s, [&](char a, char b) { return period_or_comma(a) && !is_digit(b); },
      [](char a, char b, std::string& out) { out += ' ', out += a, out += ' ', out += b; });
  // 4. ([0-9])(-) → "\1 \2 ": a dash after a digit.
  s = sub_pairs(
      s, [](char a, char b) { return is_digit(a) && b == '-'; },
      [](char a, char b, std::string& out) { out += a, out += ' ', out += b, out += ' '; });

  // ' '.join(line.split()): collapse Unicode whitespace.
  std::string out;
  out.reserve(s.size());
  for (std::string_view tok : split_whitespace(s)) {
    if (!out.empty()) out += ' ';
    out.append(tok);
  }
  return out;
}

std::string preprocess(std::string_view segment, const BleuOptions& options) {
  // BLEU._preprocess_segment: lowercase, then rstrip, then tokenise.
  std::string lowered;
  if (options.lowercase) {
    lowered = lowercase(segment);
    segment = lowered;
  }
  segment = rstrip(segment);
  if (options.tokenize == Tokenize::kNone) return std::string(segment);
  return tokenize_13a(segment);
}

// ---------------------------------------------------------------------------------------------

BleuStats& BleuStats::operator+=(const BleuStats& other) {
  for (int n = 0; n < kMaxNgramOrder; ++n) {
    counts[n] += other.counts[n];
    totals[n] += other.totals[n];
  }
  sys_len += other.sys_len;
  ref_len += other.ref_len;
  return *this;
}

std::array<int64_t, BleuStats::kFlatSize> BleuStats::to_array() const {
  std::array<int64_t, kFlatSize> flat{};
  flat[0] = sys_len;
  flat[1] = ref_len;
  for (int n = 0; n < kMaxNgramOrder; ++n) {
    flat[2 + n] = counts[n];
    flat[2 + kMaxNgramOrder + n] = totals[n];
  }
  return flat;
}

BleuStats BleuStats::from_array(std::span<const int64_t> flat) {
  TFM_CHECK(flat.size() == kFlatSize, "BleuStats::from_array: expected ", kFlatSize,
            " values [sys_len, ref_len, counts x4, totals x4], got ", flat.size());
  BleuStats s;
  s.sys_len = flat[0];
  s.ref_len = flat[1];
  for (int n = 0; n < kMaxNgramOrder; ++n) {
    s.counts[n] = flat[2 + n];
    s.totals[n] = flat[2 + kMaxNgramOrder + n];
  }
  return s;
}

namespace {

// N-gram counts of a tokenised segment, orders 1..4. Keys join tokens with a single space,
// which no token contains (tokens come from a whitespace split), so keys are unambiguous.
using NgramCounts = std::unordered_map<std::string, int64_t>;

NgramCounts count_ngrams(const std::vector<std::string_view>& tokens) {
  NgramCounts counts;
  for (size_t n = 1; n <= kMaxNgramOrder; ++n) {
    for (size_t i = 0; i + n <= tokens.size(); ++i) {
      std::string key(tokens[i]);
      for (size_t k = 1; k < n; ++k) {
        key += ' ';
        key.append(tokens[i + k]);
      }
      ++counts[key];
    }
  }
  return counts;
}

size_t ngram_order(const std::string& key) {
  return static_cast<size_t>(std::count(key.begin(), key.end(), ' ')) + 1;
}

// BLEU._get_closest_ref_len: the closest length wins; among equally close, the shorter.
int64_t closest_ref_len(int64_t hyp_len, const std::vector<int64_t>& ref_lens) {
  int64_t best_diff = -1, best_len = -1;
  for (int64_t len : ref_lens) {
    const int64_t diff = std::llabs(hyp_len - len);
    if (best_diff == -1 || diff < best_diff) {
      best_diff = diff;
      best_len = len;
    } else if (diff == best_diff && len < best_len) {
      best_len = len;
    }
  }
  return best_len;
}

// sacrebleu.utils.my_log: log floored so that a zero precision gives a huge negative number
// (and the score underflows to 0) instead of -inf.
double floored_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

double default_smooth_value(Smooth s) {
  return s == Smooth::kFloor ? 0.1 : s == Smooth::kAddK ? 1.0 : 0.0;
}

const char* smooth_name(Smooth s) {
  switch (s) {
    case Smooth::kExp: return "exp";
    case Smooth::kNone: return "none";
    case Smooth::kFloor: return "floor";
    case Smooth::kAddK: return "add-k";
  }
  return "?";
}

}  // namespace

BleuStats segment_stats(std::string_view hyp, std::span<const std::string> refs,
                        const BleuOptions& options) {
  TFM_CHECK(!refs.empty(), "BLEU: a hypothesis needs at least one reference");
  // BLEU._extract_reference_info: clip counts are the maximum over references.
  NgramCounts ref_counts;
  std::vector<int64_t> ref_lens;
  for (const std::string& ref : refs) {
    const std::string tokenized = preprocess(ref, options);
    const auto tokens = split_whitespace(tokenized);
    ref_lens.push_back(static_cast<int64_t>(tokens.size()));
    for (auto& [key, count] : count_ngrams(tokens)) {
      int64_t& best = ref_counts[key];
      best = std::max(best, count);
    }
  }
  // BLEU._compute_segment_statistics.
  const std::string tokenized = preprocess(hyp, options);
  const auto tokens = split_whitespace(tokenized);
  BleuStats stats;
  stats.sys_len = static_cast<int64_t>(tokens.size());
  stats.ref_len = closest_ref_len(stats.sys_len, ref_lens);
  for (const auto& [key, count] : count_ngrams(tokens)) {
    const size_t n = ngram_order(key) - 1;
    stats.totals[n] += count;
    if (auto it = ref_counts.find(key); it != ref_counts.end())
      stats.counts[n] += std::min(count, it->second);
  }
  return stats;
}

BleuStats corpus_stats(std::span<const std::string> hyps,
                       std::span<const std::vector<std::string>> ref_sets,
                       const BleuOptions& options) {
  TFM_CHECK(!ref_sets.empty(), "BLEU: no reference stream given");
  for (size_t k = 0; k < ref_sets.size(); ++k)
    TFM_CHECK(ref_sets[k].size() == hyps.size(), "BLEU: reference stream ", k + 1, " has ",
              ref_sets[k].size(), " segments but the hypothesis stream has ", hyps.size());
  BleuStats total;
  std::vector<std::string> refs(ref_sets.size());
  for (size_t i = 0; i < hyps.size(); ++i) {
    for (size_t k = 0; k < ref_sets.size(); ++k) refs[k] = ref_sets[k][i];
    total += segment_stats(hyps[i], refs, options);
  }
  return total;
}

BleuScore compute_bleu(const BleuStats& stats, const BleuOptions& options) {
  // BLEU.compute_bleu, step by step and in the same floating-point order.
  const double smooth_value = options.smooth_value.value_or(default_smooth_value(options.smooth));
  BleuScore r;
  r.sys_len = stats.sys_len;
  r.ref_len = stats.ref_len;
  r.ratio = stats.ref_len ? static_cast<double>(stats.sys_len) / static_cast<double>(stats.ref_len)
                          : 0.0;
  for (int n = 0; n < kMaxNgramOrder; ++n) {
    r.counts[n] = static_cast<double>(stats.counts[n]);
    r.totals[n] = static_cast<double>(stats.totals[n]);
  }
  r.bp = 1.0;
  if (stats.sys_len < stats.ref_len)
    r.bp = stats.sys_len > 0 ? std::exp(1.0 - static_cast<double>(stats.ref_len) /
                                                  static_cast<double>(stats.sys_len))
                             : 0.0;
  // No match of any order: score 0 with zero precisions, before any smoothing (sacreBLEU #141).
  if (std::all_of(stats.counts.begin(), stats.counts.end(), [](int64_t c) { return c == 0; })) {
    r.score = 0.0;
    return r;
  }
  double smooth_mteval = 1.0;
  int eff_order = kMaxNgramOrder;
  for (int n = 1; n <= kMaxNgramOrder; ++n) {
    double& correct = r.counts[n - 1];
    double& total = r.totals[n - 1];
    if (options.smooth == Smooth::kAddK && n > 1) {
      correct += smooth_value;
      total += smooth_value;
    }
    if (total == 0) break;
    if (options.effective_order) eff_order = n;
    if (correct == 0) {
      if (options.smooth == Smooth::kExp) {
        smooth_mteval *= 2;
        r.precisions[n - 1] = 100.0 / (smooth_mteval * total);
      } else if (options.smooth == Smooth::kFloor) {
        r.precisions[n - 1] = 100.0 * smooth_value / total;
      }
    } else {
      r.precisions[n - 1] = 100.0 * correct / total;
    }
  }
  double log_sum = 0.0;
  for (int n = 0; n < eff_order; ++n) log_sum += floored_log(r.precisions[n]);
  r.score = r.bp * std::exp(log_sum / eff_order);
  return r;
}

BleuScore corpus_bleu(std::span<const std::string> hyps,
                      std::span<const std::vector<std::string>> ref_sets,
                      const BleuOptions& options) {
  return compute_bleu(corpus_stats(hyps, ref_sets, options), options);
}

BleuScore sentence_bleu(std::string_view hyp, std::span<const std::string> refs,
                        const BleuOptions& options) {
  return compute_bleu(segment_stats(hyp, refs, options), options);
}

// ---------------------------------------------------------------------------------------------

std::string BleuScore::verbose() const {
  // BLEUScore.__init__'s _verbose: precisions .1f, BP and ratio .3f, lengths as integers.
  std::string out;
  char buf[64];
  for (int n = 0; n < kMaxNgramOrder; ++n) {
    std::snprintf(buf, sizeof buf, n ? "/%.1f" : "%.1f", precisions[n]);
    out += buf;
  }
  std::snprintf(buf, sizeof buf, " (BP = %.3f ", bp);
  out += buf;
  std::snprintf(buf, sizeof buf, "ratio = %.3f ", ratio);
  out += buf;
  out += cat("hyp_len = ", sys_len, " ref_len = ", ref_len, ")");
  return out;
}

std::string BleuScore::format(int width, std::string_view signature) const {
  // Score.format(): "<name>[|<signature>] = <score> <verbose>". printf's %.Nf and Python's
  // f"{x:.Nf}" both round the exact binary value correctly, so they agree digit for digit.
  TFM_CHECK(width >= 0 && width <= 17, "BLEU format: width ", width, " is out of range 0..17");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", width, score);
  std::string out = "BLEU";
  if (!signature.empty()) out += cat("|", signature);
  return cat(out, " = ", buf, " ", verbose());
}

std::string signature(const BleuOptions& options, int nrefs) {
  // BLEUSignature: nrefs, case, eff, tok, smooth (with its value for floor/add-k), version.
  std::string smooth = smooth_name(options.smooth);
  if (options.smooth == Smooth::kFloor || options.smooth == Smooth::kAddK) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "[%.2f]",
                  options.smooth_value.value_or(default_smooth_value(options.smooth)));
    smooth += buf;
  }
  return cat("nrefs:", nrefs, "|case:", options.lowercase ? "lc" : "mixed",
             "|eff:", options.effective_order ? "yes" : "no",
             "|tok:", options.tokenize == Tokenize::k13a ? "13a" : "none", "|smooth:", smooth,
             "|version:", kSacreBleuVersion);
}

}  // namespace tfm::bleu
