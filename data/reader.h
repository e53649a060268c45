// DatasetReader: streams one split of a prepared dataset (data/prepare.h) as token-budget batches
// for one data-parallel rank. Nothing here knows about MPI: the caller passes (rank, world).
//
// Opening: reads DIR/manifest.json, checks format_version, the tokenizer's SHA-256 and (unless
// verify = false, for huge datasets) every shard's SHA-256 against the manifest, refusing with a
// message that names the shard. Then it reads each shard's offsets (not its tokens) into an index
// of example lengths: 8 bytes per example. Tokens are read on a background thread, one window at
// a time, by HDF5 hyperslab; memory stays bounded by one window plus `prefetch` batches.
//
// The global batch sequence of an epoch is a pure function of (dataset, split, seed, epoch,
// batch_tokens, block_examples, window_blocks) — never of rank, world or where a run started:
//   1. every shard is cut into blocks of block_examples consecutive examples (fixed at open);
//   2. the blocks are permuted by a generator seeded from (seed, epoch);
//   3. consecutive runs of window_blocks blocks form windows; within a window the examples are
//      shuffled (seed, epoch, window), stably sorted by (source length, target length), and cut
//      greedily into batches with B·Ts + B·Tt ≤ batch_tokens, where Ts = longest source + 1 (EOS)
//      and Tt = longest target + 1 (BOS/EOS): padding counts. A single pair over the budget gets
//      a batch of its own. The batches of a window are then shuffled (seed, epoch, window);
//   4. the epoch is the concatenation of its windows' batches; epochs follow each other forever.
// Sorting inside windows keeps padding small; shuffling blocks, examples and batches keeps
// batches varied from epoch to epoch.
//
// Ranks: from the start position, steps take W consecutive global batches; rank r of W gets the
// r-th of each step (global batches s+r for s = 0, W, 2W, …). The sequence runs across epoch
// boundaries, so a step may hold the last batches of epoch e and the first of e+1: nothing is
// dropped or repeated, every pair is seen exactly once per epoch across all ranks, and all ranks
// make the same number of steps. Because the sequence does not depend on W, a run saved at world
// size 2 can resume at world size 1 or 4 and continue the same global sequence.
//
// Position: after the k-th next() on any rank, position() is the global batch where the next step
// starts — the same value on every rank, so rank 0 can save it. A reader constructed with that
// position yields exactly what the uninterrupted reader would have yielded next, in O(window) time:
// the position names the window and the batch inside it, so no earlier batch is replayed.
//
// Evaluation: shuffle = false gives one pass over the split in file order (shards in manifest
// order, batches of consecutive examples under the same budget), rank r taking batches r, r+W, …;
// next() returns false at the end. BatchInfo::examples gives each row's example index so outputs
// can be put back in order.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/manifest.h"
#include "data/tokenizer.h"

namespace tfm {

struct ReaderOptions {
  std::string split = "train";
  int64_t batch_tokens = 4096;  // per batch and rank, padding and EOS/BOS included, both sides
  uint64_t seed = 1;
  int rank = 0;
  int world = 1;
  bool shuffle = true;  // false: one pass in file order (valid/test)
  bool verify = true;   // check every shard's SHA-256 against the manifest at open
  // Both part of the batch plan (change one and saved positions no longer fit): examples are read
  // in blocks of block_examples, and window_blocks blocks are length-sorted and batched together.
  int64_t block_examples = 1024;
  int64_t window_blocks = 16;
  int64_t prefetch = 32;          // batches the background thread may queue
};

// Where the next step starts in the global batch sequence. A few integers, so it can live in a
// checkpoint as a string or as five int64.
struct ReaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;         // index in the epoch of the next step's first global batch
  int64_t window = 0;        // the window holding that batch …
  int64_t window_batch = 0;  // … and its index inside the window
  int64_t plan = 0;          // fingerprint of the batch plan it belongs to; 0 = do not check

  std::array<int64_t, 5> to_ints() const { return {epoch, batch, window, window_batch, plan}; }
  static ReaderPosition from_ints(const std::array<int64_t, 5>& v) { return {v[0], v[1], v[2], v[3], v[4]}; }
  // "epoch=E batch=B window=W window_batch=K plan=P"; from_string() accepts exactly that.
  std::string to_string() const;
  static ReaderPosition from_string(const std::string& text);
  bool operator==(const ReaderPosition&) const = default;
};

struct BatchInfo {
  int64_t epoch = 0;
  int64_t index = 0;              // global batch index within the epoch
  std::vector<int64_t> examples;  // per batch row: example index in the split (file order of kept pairs)
};

class DatasetReader {
 public:
  // Throws tfm::Error when the dataset is incomplete, changed or corrupt (naming the shard), when
  // the split is missing, or when `start` belongs to another plan or does not fit the dataset.
  DatasetReader(const std::string& dir, const ReaderOptions& options, const ReaderPosition& start = {});
  ~DatasetReader();
  DatasetReader(const DatasetReader&) = delete;
  DatasetReader& operator=(const DatasetReader&) = delete;

  // The next batch for this rank. Always true when shuffling; false after the last batch of a
  // sequential pass. Errors met by the background thread (a shard that went bad) are thrown here.
  bool next(Batch& batch, BatchInfo* info = nullptr);
  // Where to restart to continue after the last batch next() returned (the start before any).
  ReaderPosition position() const;

  const Tokenizer& tokenizer() const;
  const Manifest& manifest() const;
  int64_t num_examples() const;  // in the split
  int64_t num_windows() const;   // per epoch
  // Global batches in an epoch (plans every window from the length index: O(n log n), no I/O).
  int64_t batches_in_epoch(int64_t epoch) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tfm
