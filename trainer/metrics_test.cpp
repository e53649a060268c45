// metrics.jsonl (parsed back by a small strict JSON-object reader written here), its
// TensorBoard mirror, appending across logger instances, and the progress line's arithmetic.
#include "trainer/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <random>

#include "kernels/core/check.h"

namespace tfm {
namespace {

namespace fs = std::filesystem;

// Parses one flat JSON object whose values are numbers or null (what the logger writes):
// {"k": v, ...}. Returns key → value (nullopt for null); throws on anything else.
std::vector<std::pair<std::string, std::optional<double>>> parse_flat_object(const std::string& s) {
  std::vector<std::pair<std::string, std::optional<double>>> out;
  size_t i = 0;
  auto skip_ws = [&] { while (i < s.size() && s[i] == ' ') ++i; };
  auto expect = [&](char c) {
    skip_ws();
    if (i >= s.size() || s[i] != c) throw Error(cat("expected '", c, "' at ", i, " in ", s));
    ++i;
  };
  expect('{');
  skip_ws();
  if (i < s.size() && s[i] == '}') return out;
  while (true) {
    expect('"');
    std::string key;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        ++i;
        if (i >= s.size()) throw Error("dangling escape");
        const char c = s[i];
        key += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        ++i;
      } else {
        key += s[i++];
      }
    }
    expect('"');
    expect(':');
    skip_ws();
    std::optional<double> value;
    if (s.compare(i, 4, "null") == 0) {
      i += 4;
    } else {
      double v;
      const auto res = std::from_chars(s.data() + i, s.data() + s.size(), v);
      if (res.ec != std::errc()) throw Error(cat("bad number at ", i, " in ", s));
      // JSON numbers: no leading '+', no "inf"/"nan", no bare '.'.
      const std::string text(s.data() + i, res.ptr);
      if (text.find_first_not_of("-0123456789.eE+") != std::string::npos || text[0] == '.')
        throw Error("not a JSON number: " + text);
      i = static_cast<size_t>(res.ptr - s.data());
      value = v;
    }
    out.emplace_back(key, value);
    skip_ws();
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    expect('}');
    if (i != s.size()) throw Error("trailing characters in " + s);
    return out;
  }
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tfm_metrics_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(MetricsTest, LinesParseBackWithKeysInOrderAndExactValues) {
  {
    MetricsLogger log(dir_.string(), /*tensorboard=*/false);
    log.log(120, {{"loss", 4.213}, {"lr", 3.1e-4}, {"tokens_per_s", 12345.678}});
    log.log(121, {{"loss", 0.1 + 0.2}, {"tiny", 5e-324}, {"huge", 1.7976931348623157e308},
                  {"neg", -2.5}, {"int", 7.0}});
  }
  const auto lines = read_lines((dir_ / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& l : lines) {
    EXPECT_EQ(l.front(), '{');
    EXPECT_EQ(l.back(), '}');
  }
  const auto a = parse_flat_object(lines[0]);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0].first, "step");
  EXPECT_EQ(a[0].second, 120.0);
  EXPECT_EQ(a[1].first, "loss");
  EXPECT_EQ(a[1].second, 4.213);
  EXPECT_EQ(a[2].second, 3.1e-4);
  EXPECT_EQ(a[3].second, 12345.678);
  const auto b = parse_flat_object(lines[1]);
  ASSERT_EQ(b.size(), 6u);
  EXPECT_EQ(b[1].second, 0.1 + 0.2);  // 0.30000000000000004 must survive, not print as 0.3
  EXPECT_EQ(b[2].second, 5e-324);
  EXPECT_EQ(b[3].second, 1.7976931348623157e308);
  EXPECT_EQ(b[4].second, -2.5);
  EXPECT_EQ(b[5].second, 7.0);
  EXPECT_NE(lines[1].find("\"int\": 7}"), std::string::npos) << lines[1];  // integers stay short
}

TEST_F(MetricsTest, RandomDoublesRoundTrip) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v)) continue;
    const std::string text = json_number(v);
    double back;
    std::from_chars(text.data(), text.data() + text.size(), back);
    ASSERT_EQ(std::memcmp(&back, &v, sizeof v), 0) << text;
  }
}

TEST_F(MetricsTest, NonFiniteValuesAreNull) {
  {
    MetricsLogger log(dir_.string(), false);
    log.log(1, {{"loss", std::numeric_limits<double>::quiet_NaN()},
                {"grad_norm", std::numeric_limits<double>::infinity()},
                {"scale", -std::numeric_limits<double>::infinity()}, {"ok", 1.5}});
  }
  const auto lines = read_lines((dir_ / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], R"({"step": 1, "loss": null, "grad_norm": null, "scale": null, "ok": 1.5})");
  const auto obj = parse_flat_object(lines[0]);
  EXPECT_FALSE(obj[1].second.has_value());
  EXPECT_EQ(obj[4].second, 1.5);
}

TEST_F(MetricsTest, KeysAreEscaped) {
  EXPECT_EQ(json_string("a\"b\\c\nd\x01"), R"("a\"b\\c\nd\u0001")");
  {
    MetricsLogger log(dir_.string(), false);
    log.log(3, {{"we\"ird", 1.0}});
  }
  const auto obj = parse_flat_object(read_lines((dir_ / "metrics.jsonl").string()).at(0));
  EXPECT_EQ(obj.at(1).first, "we\"ird");
}

TEST_F(MetricsTest, SecondLoggerAppendsLikeAResumedRun) {
  {
    MetricsLogger log(dir_.string(), false);
    log.log(1, {{"loss", 9.0}});
    log.log(2, {{"loss", 8.0}});
  }
  {
    MetricsLogger log(dir_.string(), false);  // the resumed run
    log.log(3, {{"loss", 7.0}});
  }
  const auto lines = read_lines((dir_ / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto obj = parse_flat_object(lines[i]);
    EXPECT_EQ(obj[0].second, i + 1.0);
    EXPECT_EQ(obj[1].second, 9.0 - i);
  }
}

TEST_F(MetricsTest, EachLineIsOnDiskWhenLogReturns) {
  MetricsLogger log(dir_.string(), false);
  log.log(1, {{"loss", 2.0}});
  EXPECT_EQ(read_lines(log.jsonl_path()).size(), 1u);  // no flush() or close needed
}

TEST_F(MetricsTest, ReservedAndDuplicateKeysAreRejected) {
  MetricsLogger log(dir_.string(), false);
  EXPECT_THROW(log.log(1, {{"step", 1.0}}), Error);
  EXPECT_THROW(log.log(1, {{"loss", 1.0}, {"loss", 2.0}}), Error);
}

TEST_F(MetricsTest, MirrorsScalarsToTensorBoardInRunDir) {
  std::string tb_path;
  {
    MetricsLogger log(dir_.string());
    ASSERT_NE(log.tensorboard(), nullptr);
    tb_path = log.tensorboard()->path();
    log.log(10, {{"loss", 3.0}, {"lr", 1e-3}});
    log.flush();
  }
  EXPECT_EQ(fs::path(tb_path).parent_path(), dir_);
  // The event file holds the version record and one event; its decoding is tested in
  // tensorboard_test.cpp, here only that the tags and values went in.
  std::ifstream in(tb_path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
  EXPECT_NE(bytes.find("loss"), std::string::npos);
  EXPECT_NE(bytes.find("lr"), std::string::npos);
  const float three = 3.0f;
  EXPECT_NE(bytes.find(std::string(reinterpret_cast<const char*>(&three), 4)), std::string::npos);
}

TEST_F(MetricsTest, UnwritableRunDirNamesPath) {
  fs::create_directories(dir_);
  const std::string file = (dir_ / "file").string();
  std::ofstream(file) << "x";
  try {
    MetricsLogger log(file, false);
    FAIL() << "expected tfm::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

// ---- Progress line. ----
TEST(Progress, ExampleLine) {
  Progress p;
  p.step = 120;
  p.total_steps = 2000;
  p.loss = 4.2134;
  p.lr = 3.1e-4;
  p.tokens_per_s = 12345;
  p.elapsed_s = 83;
  // 83 s for 120 steps → 1880 remaining steps take 83·1880/120 = 1300.3 s = 21 min 40 s.
  EXPECT_EQ(format_progress(p),
            "step 120/2000 | loss 4.213 | lr 3.1e-04 | 12.3k tok/s | 0:01:23 elapsed | "
            "ETA 0:21:40");
  EXPECT_EQ(format_progress(120, 2000, 4.2134, 3.1e-4, 12345, 83), format_progress(p));
}

TEST(Progress, UnknownTotalHasNoEta) {
  Progress p;
  p.step = 5;
  p.loss = std::numeric_limits<double>::quiet_NaN();
  p.lr = 1e-3;
  p.tokens_per_s = 850;
  p.elapsed_s = 4000;
  EXPECT_EQ(format_progress(p), "step 5 | loss nan | lr 1.0e-03 | 850 tok/s | 1:06:40 elapsed");
}

TEST(Progress, EtaCountsOnlyStepsThisProcessTimed) {
  Progress p;
  p.step = 1100;
  p.start_step = 1000;  // resumed at 1000: 100 steps in 50 s
  p.total_steps = 2000;
  p.elapsed_s = 50;
  p.tokens_per_s = 2.5e6;
  const std::string line = format_progress(p);
  EXPECT_NE(line.find("2.5M tok/s"), std::string::npos) << line;
  EXPECT_NE(line.find("| 0:00:50 elapsed | ETA 0:07:30"), std::string::npos) << line;  // 900·0.5
  p.step = 1000;  // nothing timed yet
  EXPECT_NE(format_progress(p).find("ETA ?"), std::string::npos);
  p.step = 2500;  // past the end: nothing remains
  EXPECT_NE(format_progress(p).find("ETA 0:00:00"), std::string::npos);
}

TEST(Progress, DurationFormatting) {
  EXPECT_EQ(format_duration(0), "0:00:00");
  EXPECT_EQ(format_duration(59.4), "0:00:59");
  EXPECT_EQ(format_duration(59.5), "0:01:00");  // rounded to the nearest second
  EXPECT_EQ(format_duration(3599), "0:59:59");
  EXPECT_EQ(format_duration(3600), "1:00:00");
  EXPECT_EQ(format_duration(100000), "27:46:40");  // hours do not wrap into days
  EXPECT_EQ(format_duration(-5), "0:00:00");
  EXPECT_EQ(format_duration(std::numeric_limits<double>::infinity()), "?");
}

TEST(Progress, RateFormatting) {
  EXPECT_EQ(format_rate(0), "0");
  EXPECT_EQ(format_rate(999.4), "999");
  EXPECT_EQ(format_rate(999.6), "1.0k");
  EXPECT_EQ(format_rate(12345), "12.3k");
  EXPECT_EQ(format_rate(999960), "1.0M");  // not "1000.0k"
  EXPECT_EQ(format_rate(4.6e6), "4.6M");
  EXPECT_EQ(format_rate(1.23e9), "1.2G");
}

}  // namespace
}  // namespace tfm
