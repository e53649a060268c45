#include "data/reader.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "data/files.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "kernels/core/check.h"

namespace fs = std::filesystem;

namespace tfm {

// ------------------------------------------------------------------------------- position

std::string ReaderPosition::to_string() const {
  return cat("epoch=", epoch, " batch=", batch, " window=", window, " window_batch=", window_batch,
             " plan=", plan);
}

ReaderPosition ReaderPosition::from_string(const std::string& text) {
  ReaderPosition p;
  long long v[5];
  char tail = 0;
  int n = std::sscanf(text.c_str(), "epoch=%lld batch=%lld window=%lld window_batch=%lld plan=%lld %c", &v[0],
                      &v[1], &v[2], &v[3], &v[4], &tail);
  if (n != 5) fail(cat("not a reader position: '", text, "' (expected ", ReaderPosition{}.to_string(), ")"));
  p = from_ints({v[0], v[1], v[2], v[3], v[4]});
  if (p.epoch < 0 || p.batch < 0 || p.window < 0 || p.window_batch < 0) {
    fail(cat("reader position '", text, "' has a negative field"));
  }
  return p;
}

namespace {

// SplitMix64 streams keyed by (seed, epoch, window, purpose): fully specified, so shuffles are
// identical on every platform (std::shuffle and the std distributions are not).
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct Rng {
  uint64_t state;
  Rng(uint64_t seed, uint64_t epoch, uint64_t window, uint64_t purpose)
      : state(mix(mix(mix(seed + 0x9e3779b97f4a7c15ULL) ^ epoch) ^ (window * 0x2545f4914f6cdd1dULL)) ^ purpose) {}
  uint64_t next() { return mix(state += 0x9e3779b97f4a7c15ULL); }
  template <class T>
  void shuffle(std::vector<T>& v) {  // Fisher–Yates
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[size_t(next() % i)]);
  }
};

enum Purpose : uint64_t { kBlocks = 1, kExamples = 2, kBatches = 3 };

// A run of consecutive examples of one shard: the unit of reading and of the epoch permutation.
struct Block {
  int32_t shard;
  int64_t first;           // example index within the shard
  int64_t count;
  int64_t global_first;    // example index within the split
  int64_t src_token_start; // offsets[first] of each side
  int64_t tgt_token_start;
};

// The batches of one window. Examples are numbered locally in block order (the order their tokens
// are read in); `order[starts[b] .. starts[b+1])` are batch b's rows.
struct WindowPlan {
  int64_t epoch = -1, window = -1;
  std::vector<int32_t> blocks;
  std::vector<int64_t> global;  // local → split example index
  std::vector<int32_t> order;
  std::vector<int64_t> starts;
  int64_t num_batches() const { return int64_t(starts.size()) - 1; }
};

// Tokens of one window, local example i at [off[i], off[i+1]).
struct WindowData {
  int64_t epoch = -1, window = -1;
  std::vector<int32_t> tokens[2];
  std::vector<int64_t> off[2];
};

struct Item {
  Batch batch;
  BatchInfo info;
  ReaderPosition after;
  int64_t emit_at = 0;  // sequence offset whose position becomes `after`
};

}  // namespace

struct DatasetReader::Impl {
  std::string dir;
  ReaderOptions opt;
  Manifest manifest;
  std::optional<Tokenizer> tokenizer;
  std::vector<ShardEntry> shards;
  std::vector<std::string> paths;
  std::vector<uint32_t> len[2];  // per split example: stored tokens per side (no EOS/BOS)
  std::vector<Block> blocks;
  int64_t num_windows = 0;
  int64_t plan_id = 0;

  // Background thread and the queue it fills.
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv_item, cv_space;
  std::deque<Item> queue;
  bool stop = false, done = false;
  std::exception_ptr error;
  ReaderPosition position;

  // Producer-side state: used by the background thread only (and by the constructor before the
  // thread starts).
  std::vector<int32_t> perm_cache;
  int64_t perm_epoch = -1;
  WindowPlan plans[2];  // the current window and the next (rank stamping may look ahead)
  WindowData data;
  std::map<int32_t, std::unique_ptr<ShardFile>> open;
  std::vector<int32_t> open_order;

  // -------------------------------------------------------------------------- planning

  const std::vector<int32_t>& block_order(int64_t epoch) {
    if (perm_epoch != epoch) {
      perm_cache.resize(blocks.size());
      for (size_t i = 0; i < blocks.size(); ++i) perm_cache[i] = int32_t(i);
      if (opt.shuffle) Rng(opt.seed, uint64_t(epoch), 0, kBlocks).shuffle(perm_cache);
      perm_epoch = epoch;
    }
    return perm_cache;
  }

  WindowPlan make_plan(int64_t epoch, int64_t window, const std::vector<int32_t>& order) const {
    WindowPlan p;
    p.epoch = epoch;
    p.window = window;
    int64_t b0 = window * opt.window_blocks, b1 = std::min<int64_t>(int64_t(blocks.size()), b0 + opt.window_blocks);
    for (int64_t b = b0; b < b1; ++b) {
      const Block& blk = blocks[size_t(order[size_t(b)])];
      p.blocks.push_back(order[size_t(b)]);
      for (int64_t k = 0; k < blk.count; ++k) p.global.push_back(blk.global_first + k);
    }
    const int64_t n = int64_t(p.global.size());
    p.order.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) p.order[size_t(i)] = int32_t(i);
    auto src_len = [&](int32_t i) { return len[0][size_t(p.global[size_t(i)])]; };
    auto tgt_len = [&](int32_t i) { return len[1][size_t(p.global[size_t(i)])]; };
    if (opt.shuffle) {
      // Shuffle first so equal lengths land in random order; stable_sort keeps that order.
      Rng(opt.seed, uint64_t(epoch), uint64_t(window), kExamples).shuffle(p.order);
      std::stable_sort(p.order.begin(), p.order.end(), [&](int32_t a, int32_t b) {
        uint32_t sa = src_len(a), sb = src_len(b);
        return sa != sb ? sa < sb : tgt_len(a) < tgt_len(b);
      });
    }
    // Greedy cut: a row joins the batch while (rows)·(max Ts) + (rows)·(max Tt) stays in budget.
    p.starts.push_back(0);
    int64_t rows = 0, ts = 0, tt = 0;
    for (int64_t i = 0; i < n; ++i) {
      int64_t s = int64_t(src_len(p.order[size_t(i)])) + 1, t = int64_t(tgt_len(p.order[size_t(i)])) + 1;
      int64_t ns = std::max(ts, s), nt = std::max(tt, t);
      if (rows > 0 && (rows + 1) * (ns + nt) > opt.batch_tokens) {
        p.starts.push_back(i);
        rows = 0;
        ns = s;
        nt = t;
      }
      ++rows;
      ts = ns;
      tt = nt;
    }
    if (n > 0) p.starts.push_back(n);
    if (opt.shuffle) {
      // Shuffle the batches (as [begin, end) ranges) so lengths do not rise through the window.
      std::vector<std::pair<int64_t, int64_t>> ranges;
      for (size_t b = 0; b + 1 < p.starts.size(); ++b) ranges.emplace_back(p.starts[b], p.starts[b + 1]);
      Rng(opt.seed, uint64_t(epoch), uint64_t(window), kBatches).shuffle(ranges);
      std::vector<int32_t> shuffled;
      shuffled.reserve(p.order.size());
      p.starts.assign(1, 0);
      for (auto [a, b] : ranges) {
        shuffled.insert(shuffled.end(), p.order.begin() + a, p.order.begin() + b);
        p.starts.push_back(int64_t(shuffled.size()));
      }
      p.order.swap(shuffled);
    }
    return p;
  }

  // The plan of (epoch, window), kept for the current and the next window.
  const WindowPlan& plan(int64_t epoch, int64_t window) {
    for (auto& p : plans) {
      if (p.epoch == epoch && p.window == window) return p;
    }
    WindowPlan& slot = (plans[0].epoch < plans[1].epoch ||
                        (plans[0].epoch == plans[1].epoch && plans[0].window < plans[1].window))
                           ? plans[0]
                           : plans[1];
    slot = make_plan(epoch, window, block_order(epoch));
    return slot;
  }

  // ---------------------------------------------------------------------------- reading

  ShardFile& shard_file(int32_t s) {
    auto it = open.find(s);
    if (it != open.end()) return *it->second;
    if (open.size() >= 32) {  // bound the open files; the oldest opened goes
      open.erase(open_order.front());
      open_order.erase(open_order.begin());
    }
    auto file = std::make_unique<ShardFile>(paths[size_t(s)]);
    ShardFile& ref = *file;
    open.emplace(s, std::move(file));
    open_order.push_back(s);
    return ref;
  }

  void load(const WindowPlan& p) {
    if (data.epoch == p.epoch && data.window == p.window) return;
    for (int side = 0; side < 2; ++side) {
      data.off[side].assign(1, 0);
      for (int64_t g : p.global) data.off[side].push_back(data.off[side].back() + len[side][size_t(g)]);
      data.tokens[side].resize(size_t(data.off[side].back()));
    }
    int64_t at[2] = {0, 0};
    for (int32_t b : p.blocks) {
      const Block& blk = blocks[size_t(b)];
      ShardFile& f = shard_file(blk.shard);
      for (int side = 0; side < 2; ++side) {
        int64_t n = 0;
        for (int64_t k = 0; k < blk.count; ++k) n += len[side][size_t(blk.global_first + k)];
        f.read_tokens(Side(side), side == 0 ? blk.src_token_start : blk.tgt_token_start, n,
                      data.tokens[side].data() + at[side]);
        at[side] += n;
      }
    }
    data.epoch = p.epoch;
    data.window = p.window;
  }

  Item build(const WindowPlan& p, int64_t b, int64_t index) {
    load(p);
    Item item;
    std::vector<std::vector<int32_t>> src, tgt;
    for (int64_t i = p.starts[size_t(b)]; i < p.starts[size_t(b) + 1]; ++i) {
      int32_t local = p.order[size_t(i)];
      const int32_t* s = data.tokens[0].data();
      const int32_t* t = data.tokens[1].data();
      src.emplace_back(s + data.off[0][size_t(local)], s + data.off[0][size_t(local) + 1]);
      tgt.emplace_back(t + data.off[1][size_t(local)], t + data.off[1][size_t(local) + 1]);
      item.info.examples.push_back(p.global[size_t(local)]);
    }
    item.batch = make_batch(src, tgt);
    item.info.epoch = p.epoch;
    item.info.index = index;
    return item;
  }

  // --------------------------------------------------------------------------- producer

  // Pushes an item, waiting for space; false when the reader is being destroyed.
  bool push(Item&& item) {
    std::unique_lock<std::mutex> lock(mu);
    cv_space.wait(lock, [&] { return stop || int64_t(queue.size()) < opt.prefetch; });
    if (stop) return false;
    queue.push_back(std::move(item));
    cv_item.notify_one();
    return true;
  }

  void produce(ReaderPosition cur) {
    const int64_t W = opt.world, r = opt.rank;
    std::optional<Item> pending;  // our last batch, waiting for the position after its step
    for (int64_t offset = 0;; ++offset) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stop) return;
      }
      // Normalise: past a window's last batch is the next window's first, or the next epoch's.
      const WindowPlan* p = &plan(cur.epoch, cur.window);
      if (cur.window_batch >= p->num_batches()) {
        cur.window_batch = 0;
        if (++cur.window == num_windows) {
          cur.window = 0;
          cur.batch = 0;
          ++cur.epoch;
        }
        if (!opt.shuffle && cur.epoch > 0) {  // a sequential pass is over
          if (pending) {
            pending->after = cur;
            if (!push(std::move(*pending))) return;
          }
          std::lock_guard<std::mutex> lock(mu);
          done = true;
          cv_item.notify_all();
          return;
        }
        p = &plan(cur.epoch, cur.window);
      }
      if (pending && pending->emit_at == offset) {
        pending->after = cur;
        if (!push(std::move(*pending))) return;
        pending.reset();
      }
      if (offset % W == r) {
        pending = build(*p, cur.window_batch, cur.batch);
        pending->emit_at = offset - r + W;
      }
      ++cur.window_batch;
      ++cur.batch;
    }
  }

  // ----------------------------------------------------------------------------- opening

  void open_dataset() {
    manifest = Manifest::load(dir);
    const SplitEntry& split = manifest.split(opt.split);
    shards = split.shards;
    const std::string tok_path = (fs::path(dir) / manifest.tokenizer_file).string();
    if (!fs::exists(tok_path)) fail(cat("dataset ", dir, ": tokenizer ", tok_path, " is missing"));
    tokenizer = Tokenizer::load(tok_path);
    if (tokenizer->sha256() != manifest.tokenizer_sha256) {
      fail(cat("dataset ", dir, ": tokenizer ", tok_path, " has SHA-256 ", tokenizer->sha256(),
               " but the manifest says ", manifest.tokenizer_sha256));
    }
    if (tokenizer->vocab_size() != manifest.vocab_size) {
      fail(cat("dataset ", dir, ": tokenizer has ", tokenizer->vocab_size(), " pieces but the manifest says vocab_size ",
               manifest.vocab_size));
    }
    for (const auto& s : shards) {
      paths.push_back((fs::path(dir) / s.name).string());
      if (!fs::exists(paths.back())) fail(cat("dataset ", dir, ": shard ", paths.back(), " is missing"));
    }
    if (opt.verify) verify_hashes();

    // The length index and the blocks, shard by shard.
    int64_t total = split.num_examples();
    len[0].reserve(size_t(total));
    len[1].reserve(size_t(total));
    int64_t global = 0;
    for (size_t s = 0; s < shards.size(); ++s) {
      ShardFile f(paths[s]);
      const ShardEntry& e = shards[s];
      auto mismatch = [&](const char* what, auto have, auto want) {
        fail(cat("shard ", paths[s], ": ", what, " is ", have, " but the manifest says ", want));
      };
      if (f.num_examples() != e.num_examples) mismatch("num_examples", f.num_examples(), e.num_examples);
      if (f.vocab_size() != manifest.vocab_size) mismatch("vocab_size", f.vocab_size(), manifest.vocab_size);
      if (f.tokenizer_sha256() != manifest.tokenizer_sha256) {
        mismatch("tokenizer_sha256", f.tokenizer_sha256(), manifest.tokenizer_sha256);
      }
      if (f.num_tokens(Side::src) != e.src_tokens) mismatch("the length of /src/tokens", f.num_tokens(Side::src), e.src_tokens);
      if (f.num_tokens(Side::tgt) != e.tgt_tokens) mismatch("the length of /tgt/tokens", f.num_tokens(Side::tgt), e.tgt_tokens);
      std::vector<int64_t> off;
      std::vector<int64_t> block_start[2];
      for (int side = 0; side < 2; ++side) {
        const int64_t n = e.num_examples;
        int64_t prev = 0;
        const int64_t step = 1 << 18;  // offsets read in slices: memory stays small for big shards
        for (int64_t first = 0; first <= n; first += step) {
          int64_t count = std::min(step, n + 1 - first);
          off.resize(size_t(count));
          f.read_offsets(Side(side), first, count, off.data());
          for (int64_t k = 0; k < count; ++k) {
            int64_t i = first + k;  // offsets[i]
            int64_t o = off[size_t(k)];
            if (i == 0) {
              if (o != 0) fail(cat("shard ", paths[s], ": /", side_name(Side(side)), "/offsets[0] is ", o, ", not 0"));
            } else {
              if (o < prev || o - prev > int64_t(UINT32_MAX)) {
                fail(cat("shard ", paths[s], ": /", side_name(Side(side)), "/offsets is not non-decreasing at ", i));
              }
              len[side].push_back(uint32_t(o - prev));
            }
            if (i < n && i % opt.block_examples == 0) block_start[side].push_back(o);
            prev = o;
          }
        }
        if (prev != f.num_tokens(Side(side))) {
          fail(cat("shard ", paths[s], ": /", side_name(Side(side)), "/offsets ends at ", prev, " but /",
                   side_name(Side(side)), "/tokens has ", f.num_tokens(Side(side)), " entries"));
        }
      }
      for (size_t b = 0; b < block_start[0].size(); ++b) {
        int64_t first = int64_t(b) * opt.block_examples;
        blocks.push_back({int32_t(s), first, std::min(opt.block_examples, e.num_examples - first), global + first,
                          block_start[0][b], block_start[1][b]});
      }
      global += e.num_examples;
    }
    num_windows = (int64_t(blocks.size()) + opt.window_blocks - 1) / opt.window_blocks;

    // The plan fingerprint: what the global batch sequence depends on.
    std::string key = cat("split=", opt.split, " seed=", opt.seed, " batch_tokens=", opt.batch_tokens,
                          " shuffle=", opt.shuffle, " block=", opt.block_examples, " window=", opt.window_blocks,
                          " tokenizer=", manifest.tokenizer_sha256);
    for (const auto& s : shards) key += " " + s.sha256;
    plan_id = int64_t(std::stoull(sha256_hex(key).substr(0, 15), nullptr, 16)) + 1;  // positive, never 0
  }

  void verify_hashes() {
    // Hash shards on a few threads: at open this is the only pass over the data.
    const size_t n = shards.size();
    std::vector<std::string> got(n);
    std::vector<std::exception_ptr> errors(n);
    const size_t threads = std::max<size_t>(1, std::min<size_t>(n, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (size_t s = t; s < n; s += threads) {
          try {
            got[s] = sha256_file(paths[s]);
          } catch (...) {
            errors[s] = std::current_exception();
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    for (size_t s = 0; s < n; ++s) {
      if (errors[s]) std::rethrow_exception(errors[s]);
      if (got[s] != shards[s].sha256) {
        fail(cat("shard ", paths[s], ": SHA-256 ", got[s], " does not match the manifest (", shards[s].sha256,
                 "): the file changed after tfm prepare wrote it (re-run prepare; verify = false skips this check)"));
      }
    }
  }
};

DatasetReader::DatasetReader(const std::string& dir, const ReaderOptions& options, const ReaderPosition& start)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.dir = dir;
  m.opt = options;
  const ReaderOptions& o = m.opt;
  TFM_CHECK(o.world >= 1 && o.rank >= 0 && o.rank < o.world, "DatasetReader: rank ", o.rank, " of world ", o.world);
  TFM_CHECK(o.batch_tokens >= 2, "DatasetReader: batch_tokens ", o.batch_tokens, " < 2");
  TFM_CHECK(o.block_examples >= 1 && o.window_blocks >= 1, "DatasetReader: block_examples and window_blocks must be ≥ 1");
  TFM_CHECK(o.block_examples * o.window_blocks <= INT32_MAX, "DatasetReader: window too large");
  TFM_CHECK(o.prefetch >= 1, "DatasetReader: prefetch must be ≥ 1");
  m.open_dataset();
  if (o.shuffle && m.len[0].empty()) fail(cat("dataset ", dir, ": split '", o.split, "' has no examples to train on"));

  ReaderPosition p = start;
  if (p.plan != 0 && p.plan != m.plan_id) {
    fail(cat("reader position (", start.to_string(), ") was saved with a different dataset, split, seed, batch_tokens "
             "or window settings (this reader's plan is ", m.plan_id, ")"));
  }
  p.plan = m.plan_id;
  if (!o.shuffle && p.epoch > 0) {  // a finished pass stays finished
    m.done = true;
  } else if (m.num_windows > 0) {
    if (p.window >= m.num_windows) fail(cat("reader position ", start.to_string(), ": window out of range (", m.num_windows, " windows)"));
    int64_t nb = m.plan(p.epoch, p.window).num_batches();
    if (p.window_batch >= nb) {
      fail(cat("reader position ", start.to_string(), ": window ", p.window, " has ", nb, " batches"));
    }
  } else {
    m.done = true;  // empty split, sequential pass
  }
  m.position = p;
  if (!m.done) {
    m.thread = std::thread([&m, p] {
      try {
        m.produce(p);
      } catch (...) {
        std::lock_guard<std::mutex> lock(m.mu);
        m.error = std::current_exception();
        m.done = true;
        m.cv_item.notify_all();
      }
    });
  }
}

DatasetReader::~DatasetReader() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv_space.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool DatasetReader::next(Batch& batch, BatchInfo* info) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mu);
  m.cv_item.wait(lock, [&] { return !m.queue.empty() || m.done; });
  if (m.queue.empty()) {
    if (m.error) std::rethrow_exception(m.error);
    return false;
  }
  Item item = std::move(m.queue.front());
  m.queue.pop_front();
  m.position = item.after;
  m.position.plan = m.plan_id;
  lock.unlock();
  m.cv_space.notify_one();
  batch = std::move(item.batch);
  if (info) *info = std::move(item.info);
  return true;
}

ReaderPosition DatasetReader::position() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->position;
}

const Tokenizer& DatasetReader::tokenizer() const { return *impl_->tokenizer; }
const Manifest& DatasetReader::manifest() const { return impl_->manifest; }
int64_t DatasetReader::num_examples() const { return int64_t(impl_->len[0].size()); }
int64_t DatasetReader::num_windows() const { return impl_->num_windows; }

int64_t DatasetReader::batches_in_epoch(int64_t epoch) const {
  const Impl& m = *impl_;
  std::vector<int32_t> order(m.blocks.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int32_t(i);
  if (m.opt.shuffle) Rng(m.opt.seed, uint64_t(epoch), 0, kBlocks).shuffle(order);
  int64_t n = 0;
  for (int64_t w = 0; w < m.num_windows; ++w) n += m.make_plan(epoch, w, order).num_batches();
  return n;
}

}  // namespace tfm
