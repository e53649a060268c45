// `tfm score`; see score.h for the command's contract.
#include "trainer/score.h"

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "kernels/core/check.h"
#include "trainer/bleu.h"

namespace tfm {

namespace po = boost::program_options;

namespace {

// Offset of the first byte that is not part of valid UTF-8 (Python's strict decoder: no
// overlong forms, no surrogates, nothing above U+10FFFF), or npos.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp, min;
    if (b0 < 0x80) {
      ++i;
      continue;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Python's float repr of a value already rounded to `width` decimals, as json.dumps prints
// sacreBLEU's float(f"{score:.{width}f}"): trailing zeros dropped, at least one decimal kept.
std::string json_rounded_number(double value, int width) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", width, value);
  std::string s = buf;
  if (s.find('.') == std::string::npos) return s + ".0";
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s += '0';
  return s;
}

// sacreBLEU's JSON output: json.dumps(d, indent=1, ensure_ascii=False) of name, score,
// signature, verbose_score and then every signature field.
std::string format_json(const bleu::BleuScore& score, const std::string& signature, int width) {
  std::ostringstream os;
  os << "{\n \"name\": \"BLEU\",\n \"score\": " << json_rounded_number(score.score, width)
     << ",\n \"signature\": \"" << signature << "\",\n \"verbose_score\": \"" << score.verbose()
     << "\"";
  std::istringstream fields(signature);
  std::string field;
  while (std::getline(fields, field, '|')) {
    const size_t colon = field.find(':');
    os << ",\n \"" << field.substr(0, colon) << "\": \"" << field.substr(colon + 1) << "\"";
  }
  os << "\n}";
  return os.str();
}

bleu::Smooth parse_smooth(const std::string& s) {
  if (s == "exp") return bleu::Smooth::kExp;
  if (s == "none") return bleu::Smooth::kNone;
  if (s == "floor") return bleu::Smooth::kFloor;
  if (s == "add-k") return bleu::Smooth::kAddK;
  throw po::error(cat("--smooth must be exp, none, floor or add-k, not '", s, "'"));
}

bleu::Tokenize parse_tokenize(const std::string& s) {
  if (s == "13a") return bleu::Tokenize::k13a;
  if (s == "none") return bleu::Tokenize::kNone;
  throw po::error(cat("--tokenize must be 13a or none, not '", s, "'"));
}

}  // namespace

std::vector<std::string> read_segments(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(cat("cannot open '", path, "': ", std::strerror(errno)));
  std::vector<std::string> lines;
  std::string line;
  // std::getline splits at '\n' only, like Python's open(newline="\n"); a final line without
  // '\n' is still a line, and a trailing '\n' does not start an empty one.
  while (std::getline(in, line)) {
    if (const size_t bad = invalid_utf8_at(line); bad != std::string::npos)
      fail(cat("'", path, "' line ", lines.size() + 1, ": invalid UTF-8 at byte ", bad + 1));
    lines.emplace_back(bleu::rstrip(line));
  }
  if (in.bad()) fail(cat("error reading '", path, "': ", std::strerror(errno)));
  return lines;
}

int score_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  std::string hyp_path, smooth, tokenize, format;
  std::vector<std::string> ref_paths;
  double smooth_value = 0;
  int width = 2;
  po::options_description desc(
      "tfm score: corpus BLEU exactly as sacreBLEU computes it (13a tokenisation, exp "
      "smoothing by default)\nOptions");
  desc.add_options()
      ("help,h", "print this help")
      ("hyp", po::value(&hyp_path)->value_name("FILE"),
       "hypotheses, one segment per line (required)")
      ("ref,r", po::value(&ref_paths)->value_name("FILE")->composing(),
       "references, one segment per line; repeat for multiple references (at least one)")
      ("lowercase,l", po::bool_switch(), "lowercase hypotheses and references (case:lc)")
      ("tokenize", po::value(&tokenize)->default_value("13a"), "tokenizer: 13a or none")
      ("smooth", po::value(&smooth)->default_value("exp"),
       "smoothing: exp, none, floor or add-k")
      ("smooth-value", po::value(&smooth_value),
       "value for floor (default 0.1) or add-k (default 1)")
      ("effective-order", po::bool_switch(),
       "average only over n-gram orders the hypotheses have (sacreBLEU's sentence-level "
       "setting)")
      ("width,w", po::value(&width)->default_value(2), "decimals of the score")
      ("format,f", po::value(&format)->default_value("text"),
       "output: text (sacreBLEU's `-f text` line) or json (sacreBLEU's default output)")
      ("score-only,b", po::bool_switch(), "print only the score");
  const char* prog = argc > 0 ? argv[0] : "score";
  po::variables_map vm;
  bleu::BleuOptions options;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      out << "usage: tfm " << prog << " --hyp FILE --ref FILE [--ref FILE ...] [options]\n\n"
          << desc << "\n";
      return 0;
    }
    if (hyp_path.empty()) throw po::error("--hyp FILE is required");
    if (ref_paths.empty()) throw po::error("at least one --ref FILE is required");
    if (width < 0 || width > 17) throw po::error(cat("--width ", width, " is out of 0..17"));
    if (format != "text" && format != "json")
      throw po::error(cat("--format must be text or json, not '", format, "'"));
    options.lowercase = vm["lowercase"].as<bool>();
    options.effective_order = vm["effective-order"].as<bool>();
    options.tokenize = parse_tokenize(tokenize);
    options.smooth = parse_smooth(smooth);
    if (vm.count("smooth-value")) options.smooth_value = smooth_value;
  } catch (const po::error& e) {
    err << "tfm " << prog << ": " << e.what() << "\n(see tfm " << prog << " --help)\n";
    return 2;
  }

  try {
    const std::vector<std::string> hyps = read_segments(hyp_path);
    if (hyps.empty()) fail(cat("hypothesis file '", hyp_path, "' has no lines"));
    std::vector<std::vector<std::string>> refs;
    for (const std::string& path : ref_paths) {
      refs.push_back(read_segments(path));
      if (refs.back().size() != hyps.size())
        fail(cat("reference file '", path, "' has ", refs.back().size(),
                 " lines but hypothesis file '", hyp_path, "' has ", hyps.size()));
    }
    const bleu::BleuScore score = bleu::corpus_bleu(hyps, refs, options);
    const std::string sig = bleu::signature(options, static_cast<int>(refs.size()));
    if (vm["score-only"].as<bool>()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.*f", width, score.score);
      out << buf << "\n";
    } else if (format == "json") {
      out << format_json(score, sig, width) << "\n";
    } else {
      out << score.format(width, sig) << "\n";
    }
    return 0;
  } catch (const Error& e) {
    err << "tfm " << prog << ": " << e.what() << "\n";
    return 1;
  }
}

int score_main(int argc, char** argv) { return score_main(argc, argv, std::cout, std::cerr); }

}  // namespace tfm
