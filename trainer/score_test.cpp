// `tfm score` end to end on files: the sacreBLEU README example through every output format,
// line handling as sacreBLEU's CLI reads files, and the errors a user can cause (each must name
// the file and the problem, and exit non-zero).
#include "trainer/score.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace tfm {
namespace {

namespace fs = std::filesystem;

class ScoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tfm_score_test_" + std::to_string(getpid()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  int run(std::vector<std::string> args) {
    args.insert(args.begin(), "score");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    out_.str("");
    err_.str("");
    return score_main(static_cast<int>(argv.size()), argv.data(), out_, err_);
  }

  // The sacreBLEU README example as files.
  void write_readme() {
    hyp_ = write("hyp.txt",
                 "The dog bit the man.\nIt wasn't surprising.\nThe man had just bitten him.\n");
    ref_a_ = write("ref.a",
                   "The dog bit the man.\nIt was not unexpected.\nThe man bit him first.\n");
    ref_b_ = write("ref.b",
                   "The dog had bit the man.\nNo one was surprised.\nThe man had bitten the dog.\n");
  }

  fs::path dir_;
  std::ostringstream out_, err_;
  std::string hyp_, ref_a_, ref_b_;
};

constexpr const char* kReadmeLine =
    "BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 48.53 82.4/50.0/45.5/37.5 "
    "(BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)\n";

TEST_F(ScoreTest, TextLineWithTwoReferences) {
  write_readme();
  ASSERT_EQ(run({"--hyp", hyp_, "--ref", ref_a_, "--ref", ref_b_}), 0) << err_.str();
  EXPECT_EQ(out_.str(), kReadmeLine);
  // -r is --ref; the files may also follow one --ref.
  ASSERT_EQ(run({"--hyp", hyp_, "-r", ref_a_, "-r", ref_b_}), 0) << err_.str();
  EXPECT_EQ(out_.str(), kReadmeLine);
}

TEST_F(ScoreTest, JsonAsTheSacrebleuCommandPrintsIt) {
  write_readme();
  // `sacrebleu ref.a ref.b -i hyp.txt` (JSON, width 1) prints exactly this.
  ASSERT_EQ(
      run({"--hyp", hyp_, "--ref", ref_a_, "--ref", ref_b_, "--format", "json", "-w", "1"}), 0)
      << err_.str();
  EXPECT_EQ(out_.str(),
            "{\n"
            " \"name\": \"BLEU\",\n"
            " \"score\": 48.5,\n"
            " \"signature\": \"nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0\",\n"
            " \"verbose_score\": \"82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 "
            "ref_len = 18)\",\n"
            " \"nrefs\": \"2\",\n"
            " \"case\": \"mixed\",\n"
            " \"eff\": \"no\",\n"
            " \"tok\": \"13a\",\n"
            " \"smooth\": \"exp\",\n"
            " \"version\": \"2.6.0\"\n"
            "}\n");
}

TEST_F(ScoreTest, ScoreOnlyLowercaseAndSmoothingOptions) {
  hyp_ = write("hyp.txt", "THE DOG BIT THE MAN.\n");
  ref_a_ = write("ref.txt", "the dog bit the man.\n");
  ASSERT_EQ(run({"--hyp", hyp_, "--ref", ref_a_, "-b"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "8.12\n");  // case-sensitive: only "." matches (sacrebleu -b -w 2)
  ASSERT_EQ(run({"--hyp", hyp_, "--ref", ref_a_, "-b", "--lowercase"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "100.00\n");
  ASSERT_EQ(run({"--hyp", hyp_, "--ref", ref_a_, "--lowercase", "--smooth", "floor"}), 0);
  // `sacrebleu ref.txt -i hyp.txt -f text -lc -s floor -w 2` prints exactly this.
  EXPECT_EQ(out_.str(),
            "BLEU|nrefs:1|case:lc|eff:no|tok:13a|smooth:floor[0.10]|version:2.6.0 = 100.00 "
            "100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)\n");
}

TEST_F(ScoreTest, CrlfAndTrailingWhitespaceAreStrippedLikeSacrebleu) {
  write_readme();
  const std::string crlf = write("hyp.crlf",
                                 "The dog bit the man.\r\nIt wasn't surprising.\u3000\r\n"
                                 "The man had just bitten him.");  // no final newline
  ASSERT_EQ(run({"--hyp", crlf, "--ref", ref_a_, "--ref", ref_b_}), 0) << err_.str();
  EXPECT_EQ(out_.str(), kReadmeLine);
}

TEST_F(ScoreTest, LineCountMismatchNamesFilesAndCounts) {
  write_readme();
  const std::string short_ref =
      write("short.ref", "The dog bit the man.\nIt was not unexpected.\n");
  EXPECT_EQ(run({"--hyp", hyp_, "--ref", ref_a_, "--ref", short_ref}), 1);
  EXPECT_NE(err_.str().find("reference file '" + short_ref + "' has 2 lines but hypothesis file '" +
                            hyp_ + "' has 3"),
            std::string::npos)
      << err_.str();
  EXPECT_EQ(out_.str(), "");
}

TEST_F(ScoreTest, MissingFileIsNamed) {
  write_readme();
  const std::string missing = (dir_ / "nope.txt").string();
  EXPECT_EQ(run({"--hyp", missing, "--ref", ref_a_}), 1);
  EXPECT_NE(err_.str().find("cannot open '" + missing + "'"), std::string::npos) << err_.str();
  EXPECT_EQ(run({"--hyp", hyp_, "--ref", missing}), 1);
  EXPECT_NE(err_.str().find(missing), std::string::npos) << err_.str();
}

TEST_F(ScoreTest, InvalidUtf8NamesFileAndLine) {
  write_readme();
  const std::string bad = write("bad.txt", "fine\nstill fine\nbroken \xC3\x28 here\n");
  EXPECT_EQ(run({"--hyp", bad, "--ref", ref_a_}), 1);
  EXPECT_NE(err_.str().find("'" + bad + "' line 3: invalid UTF-8 at byte 8"), std::string::npos)
      << err_.str();
}

TEST_F(ScoreTest, EmptyHypothesisFileIsAnError) {
  const std::string empty = write("empty.txt", "");
  EXPECT_EQ(run({"--hyp", empty, "--ref", empty}), 1);
  EXPECT_NE(err_.str().find("has no lines"), std::string::npos) << err_.str();
}

TEST_F(ScoreTest, UsageErrorsExitTwoAndHelpExitsZero) {
  write_readme();
  EXPECT_EQ(run({"--hyp", hyp_}), 2);
  EXPECT_NE(err_.str().find("--ref"), std::string::npos) << err_.str();
  EXPECT_EQ(run({"--ref", ref_a_}), 2);
  EXPECT_NE(err_.str().find("--hyp"), std::string::npos) << err_.str();
  EXPECT_EQ(run({"--hyp", hyp_, "--ref", ref_a_, "--smooth", "magic"}), 2);
  EXPECT_NE(err_.str().find("magic"), std::string::npos) << err_.str();
  EXPECT_EQ(run({"--hyp", hyp_, "--ref", ref_a_, "--no-such-option"}), 2);
  EXPECT_EQ(run({"--help"}), 0);
  EXPECT_NE(out_.str().find("--lowercase"), std::string::npos);
  EXPECT_NE(out_.str().find("default"), std::string::npos);
}

}  // namespace
}  // namespace tfm
