// `tfm translate`: one output line per input line in input order whatever the batching, empty
// lines stay empty, the n-best format, a checkpoint round trip (weights and tokenizer) that
// translates exactly as the model in memory, and errors that name the checkpoint or option.
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "data/test_helpers.h"
#include "tests/testing/testing.h"
#include "trainer/translate.h"

namespace tfm {
namespace {

using testing_data::small_tokenizer;
using testing_data::TempDir;

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = small_tokenizer().vocab_size();
  c.d_model = 16;
  c.d_ff = 24;
  c.heads = 2;
  c.encoder_layers = c.decoder_layers = 1;
  return c;
}

std::unique_ptr<Transformer> random_model() {
  auto m = std::make_unique<Transformer>(tiny_config());
  m->params().allocate(DType::f32);
  testing::fill_uniform<float>(m->params().values(), 23, -0.4, 0.4);
  return m;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// Eight pseudo-sentences of varied length, an empty line, a blank one and a CRLF line.
std::string input_text() {
  std::vector<std::string> s = testing_data::sentences(8, 3, 9);
  s.insert(s.begin() + 2, "");
  s.insert(s.begin() + 5, "   ");
  s.push_back(s[0] + "\r");
  std::string text;
  for (const auto& l : s) text += l + "\n";
  return text;
}

std::string translate(Transformer& model, const std::string& text, const TranslateOptions& o) {
  std::istringstream in(text);
  std::ostringstream out;
  translate_stream(model, small_tokenizer(), in, out, o);
  return out.str();
}

TEST(Translate, OneLinePerInputInOrderWhateverTheBatching) {
  auto model = random_model();
  TranslateOptions o;
  o.decode.max_extra_len = 5;
  o.batch_sentences = 1;
  const std::string one_at_a_time = translate(*model, input_text(), o);
  o.batch_sentences = 4;
  const std::string batched = translate(*model, input_text(), o);
  EXPECT_EQ(batched, one_at_a_time);
  const auto lines = split_lines(batched);
  ASSERT_EQ(lines.size(), 11u);
  EXPECT_EQ(lines[2], "");  // empty input
  EXPECT_EQ(lines[5], "");  // blank input
  EXPECT_EQ(lines[10], lines[0]);  // the CRLF copy of line 0
  int non_empty = 0;
  for (const auto& l : lines) non_empty += !l.empty();
  EXPECT_GE(non_empty, 6) << "a random model with a 5-token allowance should say something";
}

TEST(Translate, NBestLinesAreNumberedSortedAndScored) {
  auto model = random_model();
  TranslateOptions o;
  o.decode.max_extra_len = 5;
  o.decode.n_best = 3;
  const auto lines = split_lines(translate(*model, input_text(), o));
  std::map<int, std::vector<double>> scores;
  for (const auto& l : lines) {
    const size_t a = l.find(" ||| "), b = l.rfind(" ||| ");
    ASSERT_NE(a, std::string::npos) << l;
    ASSERT_NE(a, b) << l;
    scores[std::stoi(l.substr(0, a))].push_back(std::stod(l.substr(b + 5)));
  }
  ASSERT_EQ(scores.size(), 11u);
  EXPECT_EQ(scores[2], std::vector<double>{0.0});  // empty input: one empty entry
  for (const auto& [i, s] : scores) {
    if (i == 2 || i == 5) continue;
    EXPECT_EQ(s.size(), 3u) << "line " << i;
    for (size_t k = 1; k < s.size(); ++k) EXPECT_GE(s[k - 1], s[k]) << "line " << i;
  }
  // The first of each n-best list is the 1-best translation.
  o.decode.n_best = 1;
  const auto best = split_lines(translate(*model, input_text(), o));
  int previous = -1;
  for (const auto& l : lines) {
    const size_t a = l.find(" ||| "), b = l.rfind(" ||| ");
    const int i = std::stoi(l.substr(0, a));
    if (i != previous) EXPECT_EQ(l.substr(a + 5, b - a - 5), best[size_t(i)]) << "line " << i;
    previous = i;
  }
}

TEST(Translate, CheckpointRoundTripTranslatesAsTheModelInMemory) {
  TempDir dir;
  auto model = random_model();
  const std::string spm = dir / "spm.model";
  small_tokenizer().save(spm);
  CheckpointWrite w;
  w.params = &model->params();
  w.state.step = 7;
  w.state.model = tiny_config();
  w.state.config = "preset = tiny\n";
  w.tokenizer_path = spm;
  const std::string ckpt = save_checkpoint(dir / "run", w, 1);

  TranslateOptions o;
  o.decode.max_extra_len = 5;
  const std::string expected = translate(*model, input_text(), o);
  for (const std::string& path : {ckpt, dir / "run"}) {  // a checkpoint, or a run's latest
    DecodingModel loaded = load_decoding_model(path, "--checkpoint");
    EXPECT_EQ(loaded.state.step, 7);
    ASSERT_TRUE(loaded.tokenizer.has_value());
    EXPECT_EQ(loaded.tokenizer->sha256(), small_tokenizer().sha256());
    EXPECT_EQ(translate(*loaded.model, input_text(), o), expected) << path;
  }

  // The command line, with files.
  testing_data::write_text(dir / "in.txt", input_text());
  std::vector<std::string> args = {"translate", "--checkpoint", dir / "run", "--input",
                                   dir / "in.txt", "--output", dir / "out.txt",
                                   "--max-extra-len", "5", "--threads", "1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  EXPECT_EQ(translate_main(int(argv.size()), argv.data()), 0);
  EXPECT_EQ(testing_data::read_text(dir / "out.txt"), expected);
}

TEST(Translate, ErrorsNameTheCheckpointOrOption) {
  TempDir dir;
  auto expect_error = [](std::vector<std::string> args, const std::vector<std::string>& needles) {
    args.insert(args.begin(), "translate");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    try {
      translate_main(int(argv.size()), argv.data());
      ADD_FAILURE() << "no error; expected one mentioning " << needles[0];
    } catch (const Error& e) {
      for (const auto& n : needles)
        EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  };
  expect_error({"--checkpoint", dir / "nope"}, {"--checkpoint", dir / "nope"});
  expect_error({}, {"--checkpoint"});
  expect_error({"--checkpoint", dir.str(), "--beam", "0"}, {"--beam"});
  expect_error({"--checkpoint", dir.str(), "--n-best", "5"}, {"--n-best"});
  expect_error({"--checkpoint", dir.str(), "--batch-sentences", "0"}, {"--batch-sentences"});
  expect_error({"--checkpoint", dir.str(), "--bogus"}, {"bogus"});
}

}  // namespace
}  // namespace tfm
