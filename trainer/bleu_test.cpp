// BLEU against sacreBLEU: its published test vectors (README, test/test_bleu.py,
// test/test_sentence_bleu.py, each case marked with its source), hand-checked 13a and lowercase
// edge cases (expected strings produced by sacreBLEU 2.6.0's Tokenizer13a and Python 3.11's
// str.lower()), and the fixture corpus of tests/fixtures/bleu (make_fixture.py), where tokens,
// statistics, scores and formatted lines must match sacreBLEU's exactly.
#include "trainer/bleu.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "kernels/core/check.h"

namespace tfm::bleu {
namespace {

// ---- sacreBLEU README ("Using SacreBLEU from Python"), also test_bleu.py's _hyps/_refs. ----
const std::vector<std::string> kReadmeHyps = {"The dog bit the man.", "It wasn't surprising.",
                                              "The man had just bitten him."};
const std::vector<std::vector<std::string>> kReadmeRefs = {
    {"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
    {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};

TEST(Bleu, ReadmeExampleFormatAndSignature) {
  const BleuScore s = corpus_bleu(kReadmeHyps, kReadmeRefs);
  // README: "Out[3]: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17
  // ref_len = 18)" and "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.0.0" (the
  // version field is the release; we name the one we reproduce).
  EXPECT_EQ(s.format(),
            "BLEU = 48.53 82.4/50.0/45.5/37.5 "
            "(BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  EXPECT_EQ(signature({}, 2), "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  // The sacrebleu command line's `-f text` line (README "JSON output" section shape, width 1).
  EXPECT_EQ(s.format(1, signature({}, 2)),
            "BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 48.5 "
            "82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  EXPECT_EQ(s.sys_len, 17);
  EXPECT_EQ(s.ref_len, 18);
}

TEST(Bleu, ReadmeVariableReferencesWithEmptyString) {
  // README "Variable Number of References": first reference of the first segment replaced by ''
  // → "BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)".
  auto refs = kReadmeRefs;
  refs[0][0] = "";
  EXPECT_EQ(corpus_bleu(kReadmeHyps, refs).format(),
            "BLEU = 29.44 82.4/42.9/27.3/12.5 "
            "(BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)");
}

// ---- sacreBLEU test/test_bleu.py (commit 785d26bb), EPSILON = 1e-8 there. ----
TEST(Bleu, TestBleuPyCorpusCases) {
  // test_corpus_bleu_cases (the 'intl' tokenizer case is not supported by tfm).
  EXPECT_NEAR(corpus_bleu(kReadmeHyps, kReadmeRefs).score, 48.530827, 1e-6);
  const std::vector<std::string> empty = {"", "", ""};
  EXPECT_EQ(corpus_bleu(empty, kReadmeRefs).score, 0.0);  // empty hypotheses are kept
  BleuOptions none_tok;
  none_tok.tokenize = Tokenize::kNone;
  EXPECT_NEAR(corpus_bleu(kReadmeHyps, kReadmeRefs, none_tok).score, 49.1919566, 1e-6);
  BleuOptions no_smooth;
  no_smooth.smooth = Smooth::kNone;
  EXPECT_NEAR(corpus_bleu(kReadmeHyps, kReadmeRefs, no_smooth).score, 48.530827, 1e-6);
}

// sacrebleu.raw_corpus_bleu(hyps, refs, smooth_value): no tokenisation, floor smoothing,
// effective order.
BleuScore raw_corpus_bleu(const std::vector<std::string>& hyps,
                          const std::vector<std::string>& refs, std::optional<double> floor) {
  BleuOptions o;
  o.tokenize = Tokenize::kNone;
  o.smooth = Smooth::kFloor;
  o.smooth_value = floor;
  o.effective_order = true;
  const std::vector<std::vector<std::string>> ref_sets = {refs};
  return corpus_bleu(hyps, ref_sets, o);
}

TEST(Bleu, TestBleuPyRawAndEffectiveOrderCases) {
  // test_raw_bleu_cases; the first "now returns 0.0 score (#141)": no match at any order.
  EXPECT_EQ(raw_corpus_bleu({"this is a test", "another test"}, {"ref1", "ref2"}, .01).score, 0);
  EXPECT_NEAR(raw_corpus_bleu({"this is a test"}, {"this is a test"}, .01).score / 100, 1.0, 1e-8);
  EXPECT_NEAR(raw_corpus_bleu({"this is a fest"}, {"this is a test"}, .01).score / 100,
              0.223606797749979, 1e-8);
  // test_case_effective_order.
  EXPECT_NEAR(raw_corpus_bleu({"test"}, {"a test"}, .01).score / 100, 0.3678794411714425, 1e-8);
  EXPECT_NEAR(raw_corpus_bleu({"a test"}, {"a test"}, .01).score / 100, 1.0, 1e-8);
  EXPECT_NEAR(raw_corpus_bleu({"a little test"}, {"a test"}, .01).score / 100,
              0.03218297948685433, 1e-8);
}

TEST(Bleu, TestBleuPyStatisticsAndOffset) {
  // test_case_statistics: clipped counts and totals.
  const BleuScore s =
      raw_corpus_bleu({"am I am a character sequence"}, {"I am a symbol string sequence a a"}, .01);
  EXPECT_EQ(s.counts, (std::array<double, 4>{4, 2, 1, 0}));
  EXPECT_EQ(s.totals, (std::array<double, 4>{6, 5, 4, 3}));
  // test_case_offset: floor 0 leaves a zero precision (score 0); the default floor is 0.1.
  EXPECT_EQ(raw_corpus_bleu({"am I am a character sequence"},
                            {"I am a symbol string sequence a a"}, 0.0).score, 0.0);
  EXPECT_NEAR(raw_corpus_bleu({"am I am a character sequence"},
                              {"I am a symbol string sequence a a"}, std::nullopt).score / 100,
              0.1555722182, 1e-8);
}

TEST(Bleu, TestBleuPyScoringFromStatistics) {
  // test_case_scoring: BLEU.compute_bleu(...) with its default smooth_method='none'.
  BleuStats st;
  st.counts = {9, 7, 5, 3};
  st.totals = {10, 8, 6, 4};
  st.sys_len = st.ref_len = 11;
  BleuOptions o;
  o.smooth = Smooth::kNone;
  EXPECT_NEAR(compute_bleu(st, o).score / 100, 0.8375922397, 1e-8);

  // test_case_degenerate_stats: floor smoothing with various offsets gives exactly 0.
  struct Case {
    std::array<int64_t, 4> counts, totals;
    int64_t sys_len, ref_len;
    double offset;
  };
  const Case cases[] = {{{0, 0, 0, 0}, {4, 4, 2, 1}, 0, 1, 0.0},
                        {{0, 0, 0, 0}, {10, 11, 12, 0}, 14, 10, 0.0},
                        {{0, 0, 0, 0}, {0, 0, 0, 0}, 0, 0, 0.0},
                        {{6, 5, 4, 0}, {6, 5, 4, 3}, 6, 6, 0.0},
                        {{0, 0, 0, 0}, {0, 0, 0, 0}, 0, 0, 0.1},
                        {{0, 0, 0, 0}, {0, 0, 0, 0}, 1, 5, 0.01}};
  for (const Case& c : cases) {
    BleuStats d;
    d.counts = c.counts;
    d.totals = c.totals;
    d.sys_len = c.sys_len;
    d.ref_len = c.ref_len;
    BleuOptions f;
    f.smooth = Smooth::kFloor;
    f.smooth_value = c.offset;
    EXPECT_EQ(compute_bleu(d, f).score, 0.0) << "offset " << c.offset;
  }
}

// ---- sacreBLEU test/test_sentence_bleu.py (commit 27bec349), EPSILON = 1e-3 there. ----
TEST(Bleu, TestSentenceBleuPyCases) {
  // "Example taken from #98": Romanian with ţ/ț and ă (non-ASCII tokens, one-sided matches).
  const std::string ref = "producţia de zahăr brut se exprimă în zahăr alb;";
  const std::string sys =
      "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;";
  struct Case {
    Smooth smooth;
    std::optional<double> value;
    Tokenize tok;
    double expected;
  };
  const Case cases[] = {{Smooth::kExp, {}, Tokenize::k13a, 8.493},
                        {Smooth::kNone, {}, Tokenize::k13a, 0.0},
                        {Smooth::kFloor, {}, Tokenize::k13a, 4.51688},
                        {Smooth::kFloor, 0.1, Tokenize::k13a, 4.51688},
                        {Smooth::kFloor, 0.5, Tokenize::k13a, 10.10},
                        {Smooth::kAddK, {}, Tokenize::k13a, 14.882},
                        {Smooth::kAddK, 1, Tokenize::k13a, 14.882},
                        {Smooth::kAddK, 2, Tokenize::k13a, 21.389},
                        {Smooth::kExp, {}, Tokenize::kNone, 7.347}};
  const std::vector<std::string> refs = {ref};
  for (const Case& c : cases) {
    BleuOptions o = BleuOptions::sentence_defaults();
    o.smooth = c.smooth;
    o.smooth_value = c.value;
    o.tokenize = c.tok;
    EXPECT_NEAR(sentence_bleu(sys, refs, o).score, c.expected, 1e-3)
        << "smooth " << static_cast<int>(c.smooth) << " value " << c.value.value_or(-1);
  }
  // "Example taken from #141": no match at all is 0 under every smoothing.
  const std::vector<std::string> refs0 = {"okay thanks"};
  for (Smooth sm : {Smooth::kExp, Smooth::kNone, Smooth::kFloor, Smooth::kAddK}) {
    BleuOptions o = BleuOptions::sentence_defaults();
    o.smooth = sm;
    EXPECT_EQ(sentence_bleu("this is a cat", refs0, o).score, 0.0);
  }
  // Unsmoothed sentence value from sacreBLEU 2.6.0 itself: repr 8.493098745313148.
  EXPECT_NEAR(sentence_bleu(sys, refs).score, 8.493098745313148, 1e-12);
}

// ---- 13a tokenizer and lowercase edge cases (expected: sacreBLEU 2.6.0 / Python 3.11). ----
TEST(Bleu, Tokenizer13aRules) {
  const std::pair<std::string, std::string> cases[] = {
      {"Hello, world!", "Hello , world !"},
      {"1,000.50 dollars.", "1,000.50 dollars ."},
      {"It cost $3.50, not 3,50.", "It cost $ 3.50 , not 3,50 ."},
      {"state-\nof-the-art", "stateof-the-art"},  // "-\n" joins a hyphenated line break
      {"line one\nline two", "line one line two"},
      {"a<skipped>b", "ab"},
      {"<skip<skipped>ped>", "< skipped >"},  // one pass: the joined "<skipped>" stays
      {"&quot;x&quot; &amp;lt; &amp;quot; &lt;b&gt;", "\" x \" < & quot ; < b >"},
      {"&amp;amp;", "& amp ;"},
      {"10-20 x-1 -5 5- a-b", "10 - 20 x-1 -5 5 - a-b"},  // dash split only after a digit
      {"a..b 5.. ..5 .5 5. ,5 5,5 a,b", "a . . b 5 . . . .5 . 5 5 . , 5 5,5 a , b"},
      {"U.S.A. e.g. 3.14.15", "U . S . A . e . g . 3.14.15"},
      {"1.2.3 1,2,3", "1.2.3 1,2,3"},
      {"a.,b", "a . , b"},
      {"5.-3", "5 . -3"},
      {"9-", "9 -"},
      {"don't rock'n'roll", "don't rock'n'roll"},  // apostrophe is never split
      {"(a)[b]{c}<d>", "( a ) [ b ] { c } < d >"},
      {"a/b\\c|d~e^f_g`h", "a / b \\ c | d ~ e ^ f _ g ` h"},
      {"#1 @x %y &z *w +v =u ?t ;s :r", "# 1 @ x % y & z * w + v = u ? t ; s : r"},
      {"  multiple   spaces\there ", "multiple spaces here"},
      // U+00A0, U+3000 and U+2009 are whitespace to Python's split(); U+200B is not.
      {"x\u00a0y\u3000z\u2009w\u200bv", "x y z w\u200bv"},
      {"über.Straße,ΣΟΦΙΑ.", "über . Straße , ΣΟΦΙΑ ."},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(tokenize_13a(in), want) << "input: " << in;
}

TEST(Bleu, LowercaseMatchesPythonStrLower) {
  const std::pair<std::string, std::string> cases[] = {
      // Final sigma: after a cased letter and not before one, skipping case-ignorables ('.').
      {"ΟΔΟΣ ΣΟΦΙΑ Σ ΑΣ. Σ.Σ 'ΑΣ'", "οδος σοφια σ ας. σ.ς 'ας'"},
      {"ΜΆΣ̈ ΑΣ̈Α", "μάς̈ ασ̈α"},  // a combining mark after Σ is skipped both ways
      // U+0130 lowers to two code points; Turkish dotless I is not special; ß stays.
      {"İstanbul IŞIK Straße ǅ Ǆ ǈ", "i̇stanbul işik straße ǆ ǆ ǉ"},
      {"ÀÉÎÕÜ Ω Ⅻ 𝐀 Ａ", "àéîõü ω ⅻ 𝐀 ａ"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(lowercase(in), want) << "input: " << in;
  // Bytes that are not UTF-8 pass through untouched.
  EXPECT_EQ(lowercase("A\xff" "B\xc3"), "a\xff" "b\xc3");
}

TEST(Bleu, PreprocessRstripsBeforeTokenizing) {
  // sacreBLEU rstrips first, so a trailing "-\n" keeps its dash instead of being joined away.
  EXPECT_EQ(preprocess("well-\n", {}), "well-");
  EXPECT_EQ(tokenize_13a("well-\n"), "well");
  BleuOptions none;
  none.tokenize = Tokenize::kNone;
  EXPECT_EQ(preprocess("a,b.\u3000\r", none), "a,b.");
  BleuOptions lc;
  lc.lowercase = true;
  EXPECT_EQ(preprocess("Hello, WORLD!\u2028", lc), "hello , world !");
}

// ---- Statistics: accumulation (ranks, batches) and errors. ----
TEST(Bleu, StatsSumAcrossShardsEqualsWholeCorpus) {
  std::vector<std::string> h = kReadmeHyps;
  const BleuStats whole = corpus_stats(h, kReadmeRefs);
  // Two "ranks": segment 0 on one, segments 1-2 on the other.
  const std::vector<std::string> h0 = {h[0]}, h1 = {h[1], h[2]};
  const std::vector<std::vector<std::string>> r0 = {{kReadmeRefs[0][0]}, {kReadmeRefs[1][0]}};
  const std::vector<std::vector<std::string>> r1 = {
      {kReadmeRefs[0][1], kReadmeRefs[0][2]}, {kReadmeRefs[1][1], kReadmeRefs[1][2]}};
  BleuStats sum = corpus_stats(h0, r0);
  sum += corpus_stats(h1, r1);
  EXPECT_EQ(sum, whole);
  // The flat layout that goes through an all-reduce: sacreBLEU's [sys, ref, counts, totals].
  const auto flat = whole.to_array();
  EXPECT_EQ(flat[0], 17);
  EXPECT_EQ(flat[1], 18);
  EXPECT_EQ(BleuStats::from_array(flat), whole);
  std::array<int64_t, BleuStats::kFlatSize> doubled{};
  for (int i = 0; i < BleuStats::kFlatSize; ++i) doubled[i] = 2 * flat[i];
  EXPECT_EQ(BleuStats::from_array(doubled), whole + whole);
  // Precisions are ratios of sums: the doubled corpus has the same score.
  EXPECT_DOUBLE_EQ(compute_bleu(whole + whole).score, compute_bleu(whole).score);
}

TEST(Bleu, ClosestReferenceLengthPrefersShorterOnTies) {
  // Hypothesis of 3 tokens; references of 2 and 4 tokens are equally close: 2 is taken.
  const std::vector<std::string> refs = {"a b c d", "a b"};
  EXPECT_EQ(segment_stats("a b c", refs).ref_len, 2);
  const std::vector<std::string> refs2 = {"a b c d e", "a b c d"};
  EXPECT_EQ(segment_stats("a b c", refs2).ref_len, 4);
}

TEST(Bleu, ClippingUsesMaxCountOverReferences) {
  // "the" ×3 in the hypothesis; references have it ×1 and ×2: clip at 2, not 3 (sum).
  const std::vector<std::string> refs = {"the cat", "the the dog"};
  const BleuStats s = segment_stats("the the the", refs);
  EXPECT_EQ(s.counts[0], 2);
  EXPECT_EQ(s.totals[0], 3);
}

TEST(Bleu, MismatchedStreamsNameTheStreamAndCounts) {
  const std::vector<std::string> hyps = {"a", "b"};
  const std::vector<std::vector<std::string>> refs = {{"a", "b"}, {"a"}};
  try {
    corpus_bleu(hyps, refs);
    FAIL() << "expected tfm::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reference stream 2 has 1 segments but the hypothesis "
                                         "stream has 2"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(BleuStats::from_array(std::vector<int64_t>(3)), Error);
}

// ---- Agreement with the sacrebleu package on the fixture corpus. ----
std::string fixture(const std::string& name) {
  return std::string(TFM_BLEU_FIXTURE_DIR) + "/" + name;
}

// Lines split at '\n' only, nothing stripped: exactly the strings make_fixture.py scored.
std::vector<std::string> read_lines(const std::string& name) {
  std::ifstream in(fixture(name), std::ios::binary);
  if (!in) throw Error("cannot open fixture " + fixture(name));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream is(s);
  while (std::getline(is, field, sep)) out.push_back(field);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

struct Corpus {
  std::vector<std::string> hyps, refs0, refs1;
};
const Corpus& corpus() {
  static const Corpus c{read_lines("hyps.txt"), read_lines("refs.0.txt"), read_lines("refs.1.txt")};
  return c;
}

TEST(BleuFixture, CorpusHasThousandsOfAlignedLines) {
  const Corpus& c = corpus();
  EXPECT_GE(c.hyps.size(), 2000u);
  EXPECT_EQ(c.refs0.size(), c.hyps.size());
  EXPECT_EQ(c.refs1.size(), c.hyps.size());
}

void expect_tokenized(const std::vector<std::string>& raw, const std::string& expected_file,
                      const BleuOptions& options) {
  const std::vector<std::string> want = read_lines(expected_file);
  ASSERT_EQ(want.size(), raw.size()) << expected_file;
  int mismatches = 0;
  for (size_t i = 0; i < raw.size() && mismatches < 10; ++i) {
    const std::string got = preprocess(raw[i], options);
    if (got != want[i]) ++mismatches;
    EXPECT_EQ(got, want[i]) << expected_file << " line " << i + 1 << ", input: " << raw[i];
  }
}

TEST(BleuFixture, Tokenizer13aMatchesSacrebleuOnEveryLine) {
  expect_tokenized(corpus().hyps, "tok.hyps.txt", {});
  expect_tokenized(corpus().refs0, "tok.refs.0.txt", {});
  BleuOptions lc;
  lc.lowercase = true;
  expect_tokenized(corpus().refs1, "lctok.refs.1.txt", lc);
}

TEST(BleuFixture, CorpusScoresMatchSacrebleu) {
  const std::vector<std::string> rows = read_lines("corpus.tsv");
  ASSERT_GT(rows.size(), 1u);
  const std::vector<std::string> header = split(rows[0], '\t');
  ASSERT_EQ(header.size(), 12u) << rows[0];
  const Corpus& c = corpus();
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::vector<std::string> f = split(rows[r], '\t');
    ASSERT_EQ(f.size(), 12u) << "corpus.tsv row " << r + 1;
    BleuOptions o;
    const int nrefs = std::stoi(f[0]);
    o.lowercase = f[1] == "1";
    o.tokenize = f[2] == "none" ? Tokenize::kNone : Tokenize::k13a;
    const std::map<std::string, Smooth> smooths = {
        {"exp", Smooth::kExp}, {"none", Smooth::kNone}, {"floor", Smooth::kFloor},
        {"add-k", Smooth::kAddK}};
    o.smooth = smooths.at(f[3]);
    o.effective_order = f[4] == "1";
    std::vector<std::vector<std::string>> refs = {c.refs0};
    if (nrefs == 2) refs.push_back(c.refs1);
    const BleuScore s = corpus_bleu(c.hyps, refs, o);
    SCOPED_TRACE("corpus.tsv row " + std::to_string(r + 1) + ": " + f[10]);
    const double want = std::stod(f[5]);
    EXPECT_NEAR(s.score, want, 0.01);  // the agreement required of tfm
    EXPECT_NEAR(s.score, want, 1e-9 * std::max(1.0, want));  // what we actually achieve
    EXPECT_EQ(s.sys_len, std::stoll(f[6]));
    EXPECT_EQ(s.ref_len, std::stoll(f[7]));
    const auto counts = split(f[8], ','), totals = split(f[9], ',');
    ASSERT_EQ(counts.size(), 4u);
    for (int n = 0; n < 4; ++n) {
      EXPECT_EQ(s.counts[n], std::stod(counts[n])) << "order " << n + 1;
      EXPECT_EQ(s.totals[n], std::stod(totals[n])) << "order " << n + 1;
    }
    EXPECT_EQ(s.format(), f[10]);
    EXPECT_EQ(signature(o, nrefs), f[11]);
  }
}

TEST(BleuFixture, SentenceScoresMatchSacrebleu) {
  const std::vector<std::string> rows = read_lines("sentence.tsv");
  ASSERT_GT(rows.size(), 300u);
  const Corpus& c = corpus();
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::vector<std::string> f = split(rows[r], '\t');
    ASSERT_EQ(f.size(), 4u) << "sentence.tsv row " << r + 1;
    const size_t i = std::stoul(f[0]);
    ASSERT_LT(i, c.hyps.size());
    std::vector<std::string> refs = {c.refs0[i]};
    if (f[1] == "2") refs.push_back(c.refs1[i]);
    const BleuScore s = sentence_bleu(c.hyps[i], refs);
    const double want = std::stod(f[2]);
    EXPECT_NEAR(s.score, want, 0.01) << "line " << i + 1 << " nrefs " << f[1];
    EXPECT_NEAR(s.score, want, 1e-9 * std::max(1.0, want)) << "line " << i + 1;
    EXPECT_EQ(s.format(), f[3]) << "line " << i + 1 << " nrefs " << f[1];
  }
}

}  // namespace
}  // namespace tfm::bleu
