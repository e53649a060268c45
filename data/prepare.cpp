#include "data/prepare.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "data/demo.h"
#include "data/files.h"
#include "data/manifest.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "kernels/core/check.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace tfm {

namespace {

constexpr int kShownProblems = 5;  // blank lines listed by file:line before "… and N more"
constexpr const char* kTokenizerFile = "spm.model";

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Reads one split's pairs in file order, from two parallel files or one TSV file. Mismatched line
// counts and malformed TSV lines are errors naming file and line.
class PairSource {
 public:
  explicit PairSource(const PrepareInput& in) : in_(in) {
    if (in.tsv.empty()) {
      src_ = std::make_unique<LineReader>(in.src);
      tgt_ = std::make_unique<LineReader>(in.tgt);
    } else {
      src_ = std::make_unique<LineReader>(in.tsv);
    }
  }

  // Next pair; false at the end. `line` is the 1-based line number (the same in both files).
  bool next(std::string& src, std::string& tgt, int64_t& line) {
    if (!tgt_) {
      if (!src_->next(buffer_)) return false;
      line = src_->line_number();
      size_t tab = buffer_.find('\t');
      size_t tabs = size_t(std::count(buffer_.begin(), buffer_.end(), '\t'));
      if (tabs != 1) {
        fail(cat(in_.tsv, ":", line, ": expected source<TAB>target (one TAB), found ", tabs, " TABs"));
      }
      src.assign(buffer_, 0, tab);
      tgt.assign(buffer_, tab + 1);
      return true;
    }
    bool a = src_->next(src), b = tgt_->next(tgt);
    if (a && b) {
      line = src_->line_number();
      return true;
    }
    if (a || b) {  // one file ended first: count the rest of the other for the message
      LineReader& longer = a ? *src_ : *tgt_;
      std::string rest;
      while (longer.next(rest)) {
      }
      int64_t n_src = a ? longer.line_number() : src_->line_number();
      int64_t n_tgt = b ? longer.line_number() : tgt_->line_number();
      fail(cat("line counts differ: ", in_.src, " has ", n_src, " lines but ", in_.tgt, " has ", n_tgt,
               " lines (parallel files must match line for line)"));
    }
    return false;
  }

  std::string where(bool target, int64_t line) const {
    if (!in_.tsv.empty()) return cat(in_.tsv, ":", line, target ? " (target)" : " (source)");
    return cat(target ? in_.tgt : in_.src, ":", line);
  }

 private:
  const PrepareInput& in_;
  std::unique_ptr<LineReader> src_, tgt_;
  std::string buffer_;
};

struct ScanResult {
  int64_t lines = 0;
  int64_t blank_pairs = 0;
  std::vector<std::string> blank_examples;  // the first few, as "file:line: empty source"
  std::string content_sha256;               // of the split's lines, both sides
};

// First pass over a split: validates everything that makes the input unusable and fingerprints
// the content (lines, each with "\n"; so CRLF vs LF or a missing final newline do not matter).
ScanResult scan(const PrepareInput& in) {
  ScanResult r;
  PairSource source(in);
  Sha256 src_hash, tgt_hash;
  std::string src, tgt;
  int64_t line = 0;
  while (source.next(src, tgt, line)) {
    for (int side = 0; side < 2; ++side) {
      const std::string& text = side == 0 ? src : tgt;
      int64_t bad = find_invalid_utf8(text);
      if (bad >= 0) fail(cat(source.where(side == 1, line), ": invalid UTF-8 at byte ", bad + 1));
    }
    src_hash.update(src);
    src_hash.update("\n", 1);
    tgt_hash.update(tgt);
    tgt_hash.update("\n", 1);
    bool blank_src = is_blank(src), blank_tgt = is_blank(tgt);
    if (blank_src || blank_tgt) {
      if (int(r.blank_examples.size()) < kShownProblems) {
        r.blank_examples.push_back(cat(source.where(!blank_src, line), ": empty ",
                                       blank_src && blank_tgt ? "source and target" : blank_src ? "source" : "target"));
      }
      ++r.blank_pairs;
    }
  }
  r.lines = line;
  r.content_sha256 = sha256_hex(src_hash.hex() + tgt_hash.hex());
  return r;
}

std::string fingerprint(const PrepareConfig& c, const std::vector<std::string>& content_hashes,
                        const std::string& spm_model_sha) {
  std::ostringstream os;
  os << "tfm-prepare format_version " << kShardFormatVersion << "\n";
  for (size_t k = 0; k < c.inputs.size(); ++k) os << c.inputs[k].split << " " << content_hashes[k] << "\n";
  if (spm_model_sha.empty()) {
    os << "spm " << c.model_type << " vocab " << c.vocab_size << " coverage " << c.character_coverage
       << " sentences " << c.spm_sentences << " split_digits " << c.split_digits << " seed " << c.seed
       << " threads " << c.spm_threads << "\n";
  } else {
    os << "spm-model " << spm_model_sha << "\n";
  }
  os << "shards " << c.shards << " max_len " << c.max_len << " strict " << c.strict << "\n";
  return sha256_hex(os.str());
}

// Files of ours that may be in an output directory: what --force deletes and what makes a
// directory count as holding a dataset.
bool is_dataset_file(const std::string& name) {
  auto ends = [&](const char* suffix) {
    std::string s = suffix;
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return name == Manifest::kFileName || name == std::string(Manifest::kFileName) + ".tmp" ||
         name == kTokenizerFile || name == std::string(kTokenizerFile) + ".tmp" || ends(".h5") || ends(".h5.tmp");
}

std::vector<std::string> dataset_files(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::is_directory(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && is_dataset_file(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// True when DIR holds a complete dataset with this fingerprint (so there is nothing to do).
bool holds_same_dataset(const std::string& dir, const std::string& print) {
  Manifest m;
  try {
    m = Manifest::load(dir);
  } catch (const Error&) {
    return false;
  }
  if (m.fingerprint != print || !fs::exists(fs::path(dir) / m.tokenizer_file)) return false;
  for (const auto& [name, split] : m.splits) {
    for (const auto& s : split.shards) {
      if (!fs::exists(fs::path(dir) / s.name)) return false;
    }
  }
  return true;
}

// Decides what to do with the output directory; returns false when there is nothing to do.
bool claim_output_dir(const PrepareConfig& c, const std::string& print, std::ostream& log) {
  if (fs::exists(c.out) && !fs::is_directory(c.out)) fail(cat("--out ", c.out, " exists and is not a directory"));
  std::vector<std::string> ours = dataset_files(c.out);
  if (ours.empty()) {
    fs::create_directories(c.out);
    return true;
  }
  if (!c.force && holds_same_dataset(c.out, print)) {
    log << "prepare: " << c.out << " already holds this dataset (same inputs and options): nothing to do\n";
    return false;
  }
  if (!c.force) {
    bool complete = std::find(ours.begin(), ours.end(), Manifest::kFileName) != ours.end();
    fail(cat("--out ", c.out, " already holds ",
             complete ? "a different prepared dataset (other inputs or options, or files missing)"
                      : "pieces of an unfinished dataset (no manifest.json)",
             " (", ours.size(), " files, e.g. ", ours.front(), "); pass --force to replace it"));
  }
  // The manifest goes first, so an interrupted clean-up never leaves a manifest naming missing
  // or stale shards.
  if (fs::exists(fs::path(c.out) / Manifest::kFileName)) fs::remove(fs::path(c.out) / Manifest::kFileName);
  for (const auto& name : ours) fs::remove(fs::path(c.out) / name);
  log << "prepare: --force: removed " << ours.size() << " files of the previous dataset in " << c.out << "\n";
  return true;
}

Tokenizer make_tokenizer(const PrepareConfig& c, const std::optional<Tokenizer>& given, std::ostream& log) {
  if (given) {
    log << "prepare: using SentencePiece model " << c.spm_model << " (vocab " << given->vocab_size() << ")\n";
    return *given;
  }
  const PrepareInput& train = c.inputs.front();
  log << "prepare: training a joint SentencePiece " << c.model_type << " model, vocab " << c.vocab_size
      << ", on the " << train.split << " split\n";
  auto start = Clock::now();
  PairSource source(train);
  std::string src, tgt;
  bool tgt_pending = false;
  int64_t line = 0;
  // Source then target of each usable pair; blank sides are left out.
  auto next = [&](std::string& sentence) {
    if (tgt_pending) {
      tgt_pending = false;
      sentence = tgt;
      return true;
    }
    while (source.next(src, tgt, line)) {
      if (is_blank(src) || is_blank(tgt)) continue;
      sentence = src;
      tgt_pending = true;
      return true;
    }
    return false;
  };
  TokenizerTrainOptions o;
  o.vocab_size = c.vocab_size;
  o.model_type = c.model_type;
  o.character_coverage = c.character_coverage;
  o.input_sentence_size = c.spm_sentences;
  o.split_digits = c.split_digits;
  o.seed = c.seed;
  o.threads = c.spm_threads;
  Tokenizer t = Tokenizer::train(next, o);
  log << "prepare: trained in " << std::fixed << std::setprecision(1) << seconds_since(start) << " s\n";
  return t;
}

struct EncodedPair {
  std::vector<int32_t> src, tgt;
};

// Encodes one split on c.threads threads and writes its shards in file order.
SplitEntry encode_split(const PrepareConfig& c, const PrepareInput& in, const ScanResult& scanned,
                        const Tokenizer& tok, SplitReport& report, std::ostream& log) {
  report.name = in.split;
  report.lines = scanned.lines;
  const int64_t candidates = scanned.lines - scanned.blank_pairs;
  const int64_t num_shards = std::max<int64_t>(1, std::min(c.shards, candidates));
  const bool limit_len = c.max_len > 0 && in.split == "train";
  // Shard k holds candidates [k·n/S, (k+1)·n/S): contiguous runs, so file order is kept.
  auto shard_end = [&](int64_t k) { return (k + 1) * candidates / num_shards; };

  SplitEntry entry;
  int64_t shard = 0;
  std::unique_ptr<ShardWriter> writer;
  auto open_shard = [&] {
    writer = std::make_unique<ShardWriter>((fs::path(c.out) / shard_file_name(in.split, shard, num_shards)).string(),
                                           tok.vocab_size(), tok.sha256());
  };
  auto close_shard = [&] {
    ShardStats st = writer->finish();
    writer.reset();
    std::string name = shard_file_name(in.split, shard, num_shards);
    entry.shards.push_back({name, st.num_examples, st.src_tokens, st.tgt_tokens,
                            sha256_file((fs::path(c.out) / name).string())});
    ++shard;
  };
  open_shard();

  PairSource source(in);
  const int threads = std::max(1, c.threads);
  const size_t chunk = size_t(threads) * 2048;
  std::vector<std::string> srcs(chunk), tgts(chunk);
  std::vector<int64_t> lines(chunk);
  std::vector<EncodedPair> encoded(chunk);
  std::string src, tgt;
  int64_t line = 0, candidate = 0, shown_empty = 0;
  auto start = Clock::now(), last_report = start;
  while (true) {
    size_t n = 0;
    while (n < chunk && source.next(src, tgt, line)) {
      if (is_blank(src) || is_blank(tgt)) {  // reported by scan()
        ++report.dropped_empty;
        continue;
      }
      srcs[n].swap(src);
      tgts[n].swap(tgt);
      lines[n] = line;
      ++n;
    }
    if (n == 0) break;
    // Each thread encodes a contiguous slice; results land in place, so order is kept.
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        try {
          for (size_t i = n * size_t(t) / size_t(threads); i < n * size_t(t + 1) / size_t(threads); ++i) {
            encoded[i].src = tok.encode(srcs[i]);
            encoded[i].tgt = tok.encode(tgts[i]);
          }
        } catch (...) {
          errors[size_t(t)] = std::current_exception();
        }
      });
    }
    for (auto& th : pool) th.join();
    for (auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    for (size_t i = 0; i < n; ++i, ++candidate) {
      while (candidate >= shard_end(shard)) {
        close_shard();
        open_shard();
      }
      const EncodedPair& p = encoded[i];
      if (p.src.empty() || p.tgt.empty()) {  // e.g. only characters the normaliser removes
        if (shown_empty++ < kShownProblems) {
          log << "prepare: warning: " << source.where(!p.src.empty(), lines[i])
              << ": nothing left after tokenisation; pair dropped\n";
        }
        ++report.dropped_empty;
        continue;
      }
      if (limit_len && (int64_t(p.src.size()) > c.max_len || int64_t(p.tgt.size()) > c.max_len)) {
        ++report.dropped_too_long;
        continue;
      }
      writer->add(p.src, p.tgt);
      ++report.kept;
      report.src_tokens += int64_t(p.src.size());
      report.tgt_tokens += int64_t(p.tgt.size());
    }
    if (!c.quiet && seconds_since(last_report) >= 1.0) {
      last_report = Clock::now();
      log << "prepare: " << in.split << ": " << line << "/" << scanned.lines << " lines, " << std::fixed
          << std::setprecision(0) << double(candidate) / std::max(1e-9, seconds_since(start)) << " pairs/s\n";
    }
  }
  close_shard();
  while (shard < num_shards) {  // only when the last shards' candidates were all dropped
    open_shard();
    close_shard();
  }
  report.shards = num_shards;
  return entry;
}

std::string format_count(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return s;
}

void check_config(const PrepareConfig& c) {
  TFM_CHECK(!c.inputs.empty() && c.inputs.front().split == "train", "prepare: the first input must be the train split");
  TFM_CHECK(!c.out.empty(), "prepare: no output directory");
}

PrepareReport run_prepare(const PrepareConfig& c, const std::vector<std::string>* demo_hashes,
                          const std::function<void()>& write_demo_files, std::ostream& log) {
  check_config(c);
  auto start = Clock::now();
  PrepareReport report;
  // A given model is loaded (and checked) now: before the long scan, and before --force may
  // delete an spm.model in --out that it could be.
  std::optional<Tokenizer> given;
  if (!c.spm_model.empty()) given = Tokenizer::load(c.spm_model);
  const std::string spm_sha = given ? given->sha256() : "";

  // 1. Scan (validate and fingerprint) every input; the demo's are fingerprinted from memory so
  //    nothing is written into --out before it has been claimed.
  std::vector<ScanResult> scans;
  std::vector<std::string> hashes;
  if (demo_hashes) {
    hashes = *demo_hashes;
  } else {
    for (const auto& in : c.inputs) {
      if (!c.quiet) log << "prepare: scanning " << in.split << " (" << (in.tsv.empty() ? in.src + ", " + in.tgt : in.tsv) << ")\n";
      scans.push_back(scan(in));
      hashes.push_back(scans.back().content_sha256);
    }
  }
  const std::string print = fingerprint(c, hashes, spm_sha);
  if (!claim_output_dir(c, print, log)) {
    report.nothing_to_do = true;
    report.seconds = seconds_since(start);
    return report;
  }
  if (demo_hashes) {
    write_demo_files();
    for (const auto& in : c.inputs) scans.push_back(scan(in));
  }

  // 2. Blank sides: listed, then dropped — or fatal under --strict.
  int64_t blank_total = 0;
  std::string listed;
  for (size_t k = 0; k < scans.size(); ++k) {
    blank_total += scans[k].blank_pairs;
    for (const auto& e : scans[k].blank_examples) listed += "\n  " + e;
    if (scans[k].blank_pairs > int64_t(scans[k].blank_examples.size())) {
      listed += cat("\n  … and ", scans[k].blank_pairs - int64_t(scans[k].blank_examples.size()), " more in ",
                    c.inputs[k].split);
    }
  }
  if (blank_total > 0) {
    if (c.strict) fail(cat(blank_total, " pairs with an empty side (--strict):", listed));
    log << "prepare: warning: dropping " << blank_total << " pairs with an empty side:" << listed << "\n";
  }
  if (scans.front().lines - scans.front().blank_pairs == 0) {
    fail(cat("the train split has no usable pairs (", scans.front().lines, " lines)"));
  }

  // 3. Tokenizer, copied into the dataset before any shard names its hash.
  Tokenizer tok = make_tokenizer(c, given, log);
  tok.save((fs::path(c.out) / kTokenizerFile).string());

  // 4. Shards, split by split.
  Manifest m;
  m.vocab_size = tok.vocab_size();
  m.token_dtype = tokens_fit_uint16(m.vocab_size) ? "uint16" : "int32";
  m.tokenizer_file = kTokenizerFile;
  m.tokenizer_sha256 = tok.sha256();
  m.fingerprint = print;
  Json dropped = Json::object();
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    if (!c.quiet) log << "prepare: encoding " << c.inputs[k].split << " on " << c.threads << " threads\n";
    SplitReport r;
    m.splits.emplace_back(c.inputs[k].split, encode_split(c, c.inputs[k], scans[k], tok, r, log));
    if (k == 0 && r.kept == 0) {
      fail(cat("every pair of the train split was dropped (", r.dropped_empty, " empty after tokenisation, ",
               r.dropped_too_long, " over --max-len ", c.max_len, "); nothing to train on"));
    }
    Json d = Json::object();
    d.set("lines", r.lines);
    d.set("empty_side", r.dropped_empty);
    d.set("over_max_len", r.dropped_too_long);
    dropped.set(r.name, d);
    report.splits.push_back(r);
  }
  m.prepare.set("model_type", c.spm_model.empty() ? c.model_type : std::string("given: ") + c.spm_model);
  m.prepare.set("max_len", c.max_len);
  m.prepare.set("shards", c.shards);
  m.prepare.set("dropped", dropped);

  // 5. The manifest, last: its presence marks the dataset complete.
  m.save(c.out);
  report.vocab_size = m.vocab_size;
  report.seconds = seconds_since(start);
  return report;
}

void print_report(const PrepareConfig& c, const PrepareReport& r, std::ostream& out) {
  if (r.nothing_to_do) {
    out << "tfm prepare: " << c.out << " is up to date (nothing to do)\n";
    return;
  }
  out << "tfm prepare: wrote " << c.out << " in " << std::fixed << std::setprecision(1) << r.seconds
      << " s (vocab " << r.vocab_size << ", tokenizer " << kTokenizerFile << ", manifest " << Manifest::kFileName
      << ")\n";
  out << "  split        lines         kept   empty side  over max-len     src tokens     tgt tokens  shards\n";
  for (const auto& s : r.splits) {
    out << "  " << std::left << std::setw(6) << s.name << std::right << std::setw(13) << format_count(s.lines)
        << std::setw(13) << format_count(s.kept) << std::setw(13) << format_count(s.dropped_empty)
        << std::setw(14) << format_count(s.dropped_too_long) << std::setw(15) << format_count(s.src_tokens)
        << std::setw(15) << format_count(s.tgt_tokens) << std::setw(8) << s.shards << "\n";
  }
  int64_t lines = 0;
  for (const auto& s : r.splits) lines += s.lines;
  out << "  " << std::fixed << std::setprecision(0) << double(lines) / std::max(1e-9, r.seconds)
      << " pairs/s overall\n";
}

// A command-line mistake: reported with the option's name, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

PrepareReport prepare(const PrepareConfig& config, std::ostream& log) {
  return run_prepare(config, nullptr, {}, log);
}

PrepareReport prepare_demo(PrepareConfig c, std::ostream& log) {
  TFM_CHECK(c.inputs.empty(), "prepare_demo: the demo brings its own inputs");
  std::vector<DemoSplit> corpus = make_demo_corpus();
  const fs::path raw = fs::path(c.out) / "raw";
  std::vector<std::string> hashes;
  for (const auto& split : corpus) {
    PrepareInput in;
    in.split = split.name;
    in.src = (raw / (split.name + ".en")).string();
    in.tgt = (raw / (split.name + ".de")).string();
    c.inputs.push_back(in);
    Sha256 src_hash, tgt_hash;  // as scan() hashes the files these lines will be written to
    for (const auto& [en, de] : split.pairs) {
      src_hash.update(en + "\n");
      tgt_hash.update(de + "\n");
    }
    hashes.push_back(sha256_hex(src_hash.hex() + tgt_hash.hex()));
  }
  auto write_files = [&] {
    fs::create_directories(raw);
    for (size_t k = 0; k < corpus.size(); ++k) {
      std::string en, de;
      for (const auto& [s, t] : corpus[k].pairs) {
        en += s + "\n";
        de += t + "\n";
      }
      write_file_atomic(c.inputs[k].src, en);
      write_file_atomic(c.inputs[k].tgt, de);
    }
    log << "prepare: wrote the demo corpus to " << raw.string() << " (short English sentences about numbers → German)\n";
  };
  return run_prepare(c, &hashes, write_files, log);
}

int prepare_main(int argc, char** argv, std::ostream& out, std::ostream& err) {
  PrepareConfig c;
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  std::string src, tgt, tsv, valid_src, valid_tgt, valid_tsv, test_src, test_tgt, test_tsv;
  int64_t seed = 1;
  po::options_description opts("tfm prepare: parallel text → SentencePiece model + HDF5 shards + manifest\n\n"
                               "Usage: tfm prepare --src F --tgt F --out DIR [options]\n"
                               "       tfm prepare --tsv F --out DIR [options]\n"
                               "       tfm prepare --demo --out DIR\n\nOptions");
  // clang-format off
  opts.add_options()
    ("help,h", "show this help and exit")
    ("src", po::value(&src)->default_value(""), "training source text, one sentence per line")
    ("tgt", po::value(&tgt)->default_value(""), "training target text, line-aligned with --src")
    ("tsv", po::value(&tsv)->default_value(""), "training pairs as source<TAB>target lines (instead of --src/--tgt)")
    ("valid-src", po::value(&valid_src)->default_value(""), "validation source text")
    ("valid-tgt", po::value(&valid_tgt)->default_value(""), "validation target text")
    ("valid-tsv", po::value(&valid_tsv)->default_value(""), "validation pairs as TSV")
    ("test-src", po::value(&test_src)->default_value(""), "test source text")
    ("test-tgt", po::value(&test_tgt)->default_value(""), "test target text")
    ("test-tsv", po::value(&test_tsv)->default_value(""), "test pairs as TSV")
    ("out", po::value(&c.out)->default_value(""), "output directory (created if missing)")
    ("demo", po::bool_switch(), "generate the bundled demo corpus (short English sentences about numbers → German) into OUT/raw and prepare it")
    ("vocab-size", po::value(&c.vocab_size)->default_value(8000), "SentencePiece vocabulary size, joint source+target (demo: 320)")
    ("model-type", po::value(&c.model_type)->default_value("bpe"), "SentencePiece model: bpe | unigram")
    ("character-coverage", po::value(&c.character_coverage)->default_value(0.9995, "0.9995"), "share of characters the model must cover (1.0: all; demo: 1.0)")
    ("spm-sentences", po::value(&c.spm_sentences)->default_value(2000000), "sentences sampled to train SentencePiece (0: all; demo: 10000)")
    ("split-digits", po::bool_switch(&c.split_digits), "make every digit its own piece (on for the demo)")
    ("spm-threads", po::value(&c.spm_threads)->default_value(8), "SentencePiece training threads; fixed rather than the core count because the unigram model depends on it")
    ("seed", po::value(&seed)->default_value(1), "SentencePiece sampling seed")
    ("spm-model", po::value(&c.spm_model)->default_value(""), "use this SentencePiece model instead of training one (ids must be pad 0 unk 1 bos 2 eos 3)")
    ("shards", po::value(&c.shards)->default_value(4), "shards per split (fewer when a split has fewer pairs; demo: 2)")
    ("max-len", po::value(&c.max_len)->default_value(256), "drop train pairs with more tokens than this on either side (0: no limit; demo: 64)")
    ("strict", po::bool_switch(&c.strict), "make pairs with an empty side an error instead of dropping them")
    ("force", po::bool_switch(&c.force), "replace a different dataset already in --out")
    ("threads", po::value(&c.threads)->default_value(hw), "encoding threads (default: all cores)")
    ("quiet", po::bool_switch(&c.quiet), "no progress lines");
  // clang-format on
  po::variables_map vm;
  try {
    try {
      po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      throw UsageError(e.what());
    }
    if (vm.count("help")) {
      out << opts << "\n";
      return 0;
    }
    const bool demo = vm["demo"].as<bool>();
    auto given = [&](const char* name) { return !vm[name].defaulted(); };
    if (c.out.empty()) throw UsageError("--out is required");
    if (c.vocab_size < 8 || c.vocab_size > int64_t(INT32_MAX)) {
      throw UsageError(cat("--vocab-size must be in [8, ", INT32_MAX, "], got ", c.vocab_size));
    }
    if (c.model_type != "bpe" && c.model_type != "unigram") {
      throw UsageError(cat("--model-type must be bpe or unigram, got '", c.model_type, "'"));
    }
    if (!(c.character_coverage > 0 && c.character_coverage <= 1)) {
      throw UsageError(cat("--character-coverage must be in (0, 1], got ", c.character_coverage));
    }
    if (c.spm_sentences < 0) throw UsageError(cat("--spm-sentences must be ≥ 0, got ", c.spm_sentences));
    if (c.spm_threads < 1 || c.spm_threads > 1024) throw UsageError(cat("--spm-threads must be in [1, 1024], got ", c.spm_threads));
    if (seed < 0 || seed > int64_t(UINT32_MAX) - 1) throw UsageError(cat("--seed must be in [0, ", UINT32_MAX - 1, "], got ", seed));
    c.seed = uint32_t(seed);
    if (c.shards < 1 || c.shards > 99999) throw UsageError(cat("--shards must be in [1, 99999], got ", c.shards));
    if (c.max_len < 0) throw UsageError(cat("--max-len must be ≥ 0, got ", c.max_len));
    if (c.threads < 1 || c.threads > 1024) throw UsageError(cat("--threads must be in [1, 1024], got ", c.threads));
    if (!c.spm_model.empty() && (given("vocab-size") || given("model-type"))) {
      throw UsageError("--spm-model gives the vocabulary: drop --vocab-size / --model-type");
    }

    // Inputs per split: --X-src with --X-tgt, or --X-tsv.
    auto add_split = [&](const std::string& split, const std::string& prefix, const std::string& s,
                         const std::string& t, const std::string& v) {
      if (!v.empty() && (!s.empty() || !t.empty())) {
        throw UsageError(cat("--", prefix, "tsv cannot be combined with --", prefix, "src/--", prefix, "tgt"));
      }
      if (s.empty() != t.empty()) {
        throw UsageError(cat("--", prefix, s.empty() ? "src" : "tgt", " is missing (--", prefix, "src and --",
                             prefix, "tgt go together)"));
      }
      if (s.empty() && v.empty()) return;
      c.inputs.push_back({split, s, t, v});
    };
    add_split("train", "", src, tgt, tsv);
    add_split("valid", "valid-", valid_src, valid_tgt, valid_tsv);
    add_split("test", "test-", test_src, test_tgt, test_tsv);

    PrepareReport report;
    if (demo) {
      if (!c.inputs.empty()) throw UsageError("--demo brings its own corpus: drop --src/--tgt/--tsv and the valid/test inputs");
      if (!given("vocab-size") && c.spm_model.empty()) c.vocab_size = 320;
      if (!given("max-len")) c.max_len = 64;
      if (!given("shards")) c.shards = 2;
      c.split_digits = true;
      // ö and ß are rarer than SentencePiece's default coverage keeps; every character matters.
      if (!given("character-coverage")) c.character_coverage = 1.0;
      // A sample trains SentencePiece as well as the whole corpus here, in a tenth of the time
      // (the German side is 50,000 distinct long words, which BPE training is slow on).
      if (!given("spm-sentences")) c.spm_sentences = 10000;
      report = prepare_demo(c, err);
    } else {
      if (c.inputs.empty() || c.inputs.front().split != "train") {
        throw UsageError("no training data: give --src and --tgt, or --tsv (or --demo)");
      }
      report = prepare(c, err);
    }
    print_report(c, report, out);
    return 0;
  } catch (const UsageError& e) {
    err << "tfm prepare: " << e.what() << " (see tfm prepare --help)\n";
    return 2;
  } catch (const Error& e) {
    err << "tfm prepare: error: " << e.what() << "\n";
    return 1;
  } catch (const fs::filesystem_error& e) {
    err << "tfm prepare: error: " << e.what() << "\n";
    return 1;
  }
}

int prepare_main(int argc, char** argv) { return prepare_main(argc, argv, std::cout, std::cerr); }

}  // namespace tfm
