// GradientReducer against sums computed locally: every rank generates every rank's gradients
// (small integers from a hash of seed, rank and element, so every sum is exact in f32 and f64)
// and checks its own buffer against their sum. Run plainly (a world of one: the self
// communicator) and under mpirun at several world sizes, on the world group and, where the world
// splits, on a dp group. Covers both modes, several bucket sizes (tiny buckets that split
// parameters, one huge bucket), marking in reverse, scrambled (per-rank) and no order, the
// bucket layout, the overlap (buckets start and complete before finish()), and the errors.
#include "comm/gradient_reducer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>
#include <random>
#include <thread>

#include "comm/grid.h"
#include "comm/test_world.h"

namespace tfm::comm {
namespace {

using testing::expect_error;
using testing::view;

using Mode = GradientReducer::Mode;
const Mode kModes[] = {Mode::all_reduce, Mode::reduce_scatter};

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Rank r's gradient for element i in step `seed`: an integer in [-64, 63].
template <class T>
T grad(uint64_t seed, int rank, int64_t i) {
  return T(int64_t(mix(mix(seed * 1000003 + uint64_t(rank)) + uint64_t(i)) % 128) - 64);
}
template <class T>
T grad_sum(uint64_t seed, int n, int64_t i) {
  T s = 0;
  for (int r = 0; r < n; ++r) s += grad<T>(seed, r, i);
  return s;
}

// A parameter layout of `count` parameters with random sizes (some of 1 element, one empty, most
// up to 300) and occasional gaps, padded at the end to a multiple of n (a gap too).
struct Layout {
  std::vector<ParamRange> params;
  int64_t numel = 0;
};
Layout make_layout(uint64_t seed, int count, int n) {
  std::mt19937_64 rng(seed);
  Layout l;
  int64_t at = 0;
  for (int p = 0; p < count; ++p) {
    if (rng() % 4 == 0) at += int64_t(rng() % 5) + 1;  // a gap
    int64_t size = p == count / 2 ? 0 : rng() % 5 == 0 ? 1 : int64_t(rng() % 300) + 1;
    l.params.push_back({at, size});
    at += size;
  }
  l.numel = (at + n - 1) / n * n;
  if (l.numel == 0) l.numel = n;
  return l;
}

// The communicators to test on: the world, and a dp group where the world splits into tp = 2
// (every rank calls f in the same sequence, so collectives line up).
void for_each_comm(const std::function<void(Communicator&)>& f) {
  const World& world = testing::test_world();
  {
    ParallelContext ctx(world, {.tp = 1});
    f(ctx.world());
  }
  if (world.size() % 2 == 0 && world.size() > 2) {
    ParallelContext ctx(world, {.tp = 2});
    f(ctx.dp());
  }
}

// Compares buf[i] with expected(i) for i in [begin, end); reports the count and first mismatch.
template <class T, class F>
void expect_range(const std::vector<T>& buf, int64_t begin, int64_t end, F expected,
                  const std::string& what) {
  int64_t bad = 0, first = -1;
  for (int64_t i = begin; i < end; ++i)
    if (buf[size_t(i)] != expected(i)) {
      if (first < 0) first = i;
      ++bad;
    }
  if (bad)
    ADD_FAILURE() << what << ": " << bad << " of " << end - begin << " elements wrong; first at "
                  << first << ": got " << buf[size_t(first)] << ", expected " << expected(first);
}

std::string where(const Communicator& c, Mode m, int64_t bucket_bytes) {
  return cat(c.group().describe(), " rank ", c.rank(), ", ", reducer_mode_name(m), ", buckets of ",
             bucket_bytes, " bytes");
}

enum class Order { reverse, scrambled, none };

// One step: fills the buffer with this rank's gradients for `seed`, marks in `order`, finishes,
// and checks the owned ranges hold the sums. In reduce_scatter mode it then simulates the
// sharded update (values −= sum on owned ranges only), gathers, and checks every element.
template <class T>
void run_step(Communicator& c, GradientReducer& red, const std::vector<ParamRange>& params,
              std::vector<T>& g, uint64_t seed, Order order, const std::string& what) {
  const int n = c.size();
  // Like backward: each parameter's gradient is written just before it is marked, so a bucket
  // started too early would reduce the poison (gaps hold their values from the start).
  for (int64_t i = 0; i < int64_t(g.size()); ++i) g[size_t(i)] = grad<T>(seed, c.rank(), i);
  if (order != Order::none)
    for (const ParamRange& r : params) std::fill_n(g.begin() + r.offset, r.numel, T(1e6));
  red.begin_step();
  EXPECT_TRUE(red.in_step());
  std::vector<int> ps(size_t(red.num_params()));
  std::iota(ps.begin(), ps.end(), 0);
  if (order == Order::reverse) std::reverse(ps.begin(), ps.end());
  if (order == Order::scrambled)  // differs from rank to rank: starts must still line up
    std::shuffle(ps.begin(), ps.end(), std::mt19937(unsigned(seed * 31 + uint64_t(c.rank()))));
  // The buckets startable so far, computed independently: the longest prefix of buckets whose
  // overlapping parameters are all marked.
  std::vector<char> marked(params.size(), 0);
  int expect_started = 0;
  auto advance = [&] {
    const auto& b = red.bucket_ranges();
    while (expect_started < int(b.size())) {
      const ElementRange& bk = b[size_t(expect_started)];
      bool ready = true;
      for (size_t p = 0; p < params.size() && ready; ++p)
        if (params[p].numel && params[p].offset < bk.end() && bk.offset < params[p].end())
          ready = marked[p];
      if (!ready) break;
      ++expect_started;
    }
  };
  bool reported = false;
  if (order != Order::none) {
    advance();
    EXPECT_EQ(red.buckets_started(), expect_started) << what << ", after begin_step()";
    for (int p : ps) {
      const ParamRange& r = params[size_t(p)];
      for (int64_t i = r.offset; i < r.end(); ++i) g[size_t(i)] = grad<T>(seed, c.rank(), i);
      red.mark_ready(p);
      marked[size_t(p)] = 1;
      advance();
      if (red.buckets_started() != expect_started && !reported) {  // once, not per parameter
        ADD_FAILURE() << what << ", after marking " << p << ": " << red.buckets_started()
                      << " buckets started, expected " << expect_started;
        reported = true;
      }
    }
  }
  // Every parameter marked: every bucket has started before finish().
  if (order != Order::none) EXPECT_EQ(red.buckets_started(), red.num_buckets()) << what;
  red.finish();
  EXPECT_FALSE(red.in_step());
  EXPECT_EQ(red.buckets_started(), red.num_buckets());
  EXPECT_EQ(red.buckets_completed(), red.num_buckets());
  EXPECT_GE(red.last_exposed_seconds(), 0.0);
  EXPECT_GE(red.last_step_seconds(), red.last_exposed_seconds());

  auto sum = [&](int64_t i) { return grad_sum<T>(seed, n, i); };
  for (const ElementRange& r : red.owned())
    expect_range(g, r.offset, r.end(), sum, cat(what, ", owned range after finish()"));
  if (red.mode() == Mode::all_reduce) return;

  // ZeRO-1: update owned ranges of the weights only, then gather.
  auto w0 = [&](int64_t i) { return T(i % 1000) * T(0.5); };
  std::vector<T> w(g.size());  // the weights, replicated on every rank before the step
  for (int64_t i = 0; i < int64_t(w.size()); ++i) w[size_t(i)] = w0(i);
  for (const ElementRange& r : red.owned())
    for (int64_t i = r.offset; i < r.end(); ++i) w[size_t(i)] -= g[size_t(i)];
  // Poison what this rank does not own, so the gather must overwrite it.
  std::vector<char> mine(w.size(), 0);
  for (const ElementRange& r : red.owned()) std::fill_n(mine.begin() + r.offset, r.numel, 1);
  for (size_t i = 0; i < w.size(); ++i)
    if (!mine[i]) w[i] = T(-99999);
  red.gather(view(w));
  expect_range(
      w, 0, int64_t(w.size()), [&](int64_t i) { return T(w0(i) - sum(i)); },
      cat(what, ", weights after the sharded update and gather()"));
}

template <class T>
class Reducer : public ::testing::Test {};
using Dtypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Reducer, Dtypes);

TYPED_TEST(Reducer, ReverseOrderSumsForSeveralBucketSizes) {
  using T = TypeParam;
  for_each_comm([](Communicator& c) {
    const Layout l = make_layout(7, 24, c.size());
    const int64_t es = sizeof(T);
    // one element per rank (every parameter split), small, medium, one bucket for everything
    for (int64_t bytes : {es, 37 * es, 500 * es, int64_t(1) << 30})
      for (Mode m : kModes) {
        std::vector<T> g(size_t(l.numel));
        GradientReducer red(c, view(g), l.params, bytes, m);
        if (bytes == int64_t(1) << 30) EXPECT_EQ(red.num_buckets(), 1);
        if (bytes == es) EXPECT_EQ(red.num_buckets(), l.numel / c.size());
        // Two steps with the same reducer: the per-step state resets.
        for (uint64_t step : {1, 2})
          run_step(c, red, l.params, g, 100 * uint64_t(bytes) + step, Order::reverse,
                   cat(where(c, m, bytes), ", step ", step));
      }
  });
}

TYPED_TEST(Reducer, ScrambledOrderAndNoMarkingStillSumEverything) {
  using T = TypeParam;
  for_each_comm([](Communicator& c) {
    const Layout l = make_layout(11, 25, c.size());
    for (int64_t bytes : {int64_t(3 * sizeof(T)), int64_t(200 * sizeof(T))})
      for (Mode m : kModes) {
        std::vector<T> g(size_t(l.numel));
        GradientReducer red(c, view(g), l.params, bytes, m);
        const std::string what = where(c, m, bytes);
        run_step(c, red, l.params, g, 5, Order::scrambled, what + ", scrambled order");
        run_step(c, red, l.params, g, 6, Order::none, what + ", nothing marked");
        run_step(c, red, l.params, g, 7, Order::reverse, what + ", reverse after those");
      }
  });
}

TEST(GradientReducer, BucketLayoutCoversTheBufferFromTheEnd) {
  for_each_comm([](Communicator& c) {
    const int64_t n = c.size();
    const Layout l = make_layout(3, 30, c.size());
    std::vector<float> g(size_t(l.numel));
    for (int64_t bytes : {int64_t(1), int64_t(4), int64_t(4 * 13), int64_t(4 * 1000),
                          int64_t(4) * l.numel, int64_t(1) << 40})
      for (Mode m : kModes) {
        GradientReducer red(c, view(g), l.params, bytes, m);
        const std::string what = where(c, m, bytes);
        const auto& b = red.bucket_ranges();
        ASSERT_EQ(int(b.size()), red.num_buckets());
        ASSERT_GE(red.num_buckets(), 1);
        EXPECT_EQ(red.bucket_elements() % n, 0) << what;
        EXPECT_GE(red.bucket_elements(), n) << what;
        // about bucket_bytes: within half a rank-multiple of the target, unless clamped to n
        if (bytes / 4 >= n)
          EXPECT_LE(std::abs(red.bucket_elements() - bytes / 4), n / 2 + 1) << what;
        EXPECT_EQ(red.num_buckets(), (l.numel + red.bucket_elements() - 1) / red.bucket_elements())
            << what;
        // Built from the end: bucket 0 ends at the end, each next one ends where its
        // predecessor begins, the last begins at 0; every boundary a multiple of n; all full
        // but the last.
        int64_t end = l.numel;
        for (int k = 0; k < red.num_buckets(); ++k) {
          EXPECT_EQ(b[size_t(k)].end(), end) << what << ", bucket " << k;
          EXPECT_EQ(b[size_t(k)].offset % n, 0) << what << ", bucket " << k;
          EXPECT_GT(b[size_t(k)].numel, 0) << what << ", bucket " << k;
          if (k + 1 < red.num_buckets())
            EXPECT_EQ(b[size_t(k)].numel, red.bucket_elements()) << what << ", bucket " << k;
          end = b[size_t(k)].offset;
        }
        EXPECT_EQ(end, 0) << what;
        EXPECT_EQ(red.bytes_per_step(), l.numel * 4);
        EXPECT_EQ(red.numel(), l.numel);
        EXPECT_EQ(red.num_params(), 30);

        // owned(): sorted, disjoint; the whole buffer in all_reduce mode; in reduce_scatter
        // mode this rank's block of each bucket, so across ranks every element is owned once.
        const auto& o = red.owned();
        for (size_t j = 1; j < o.size(); ++j) EXPECT_GE(o[j].offset, o[j - 1].end()) << what;
        if (m == Mode::all_reduce) {
          ASSERT_EQ(o.size(), 1u);
          EXPECT_EQ(o[0], (ElementRange{0, l.numel}));
        } else {
          ASSERT_EQ(int(o.size()), red.num_buckets());
          for (int k = 0; k < red.num_buckets(); ++k) {
            const ElementRange& bk = b[size_t(red.num_buckets() - 1 - k)];
            EXPECT_EQ(o[size_t(k)], (ElementRange{bk.offset + c.rank() * (bk.numel / n),
                                                  bk.numel / n}))
                << what;
          }
          std::vector<int32_t> cover(size_t(l.numel), 0);
          for (const ElementRange& r : o) std::fill_n(cover.begin() + r.offset, r.numel, 1);
          c.all_reduce(view(cover));
          expect_range(
              cover, 0, l.numel, [](int64_t) { return int32_t(1); },
              cat(what, ", ranks owning each element"));
        }
      }
  });
}

TEST(GradientReducer, BucketsStartInOrderDuringBackwardAndCompleteBeforeFinish) {
  for_each_comm([](Communicator& c) {
    const int64_t n = c.size();
    const int64_t half = 1000 * n;  // two buckets of `half` elements, one parameter each
    std::vector<float> g(size_t(2 * half));
    const std::vector<ParamRange> params = {{0, half}, {half, half}};
    for (Mode m : kModes) {
      GradientReducer red(c, view(g), params, half * 4, m);
      ASSERT_EQ(red.num_buckets(), 2);
      EXPECT_EQ(red.bucket_ranges()[0], (ElementRange{half, half}));  // the last in the buffer
      const std::string what = where(c, m, half * 4);

      // Step 1: the parameter of the last-in-buffer bucket alone starts it before finish(),
      // and it completes while the caller only polls (the communication overlapped).
      for (int64_t i = 0; i < 2 * half; ++i) g[size_t(i)] = grad<float>(1, c.rank(), i);
      red.begin_step();
      EXPECT_EQ(red.buckets_started(), 0) << what;
      red.mark_ready(1);
      EXPECT_EQ(red.buckets_started(), 1) << what;
      auto start = std::chrono::steady_clock::now();
      while (red.poll() < 1 && std::chrono::steady_clock::now() - start < std::chrono::seconds(20))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      EXPECT_EQ(red.buckets_completed(), 1) << what << ": bucket 0 did not complete in 20 s";
      EXPECT_EQ(red.buckets_started(), 1) << what;
      // Its result is already there, before finish().
      const ElementRange own0 =
          m == Mode::all_reduce ? ElementRange{half, half}
                                : ElementRange{half + c.rank() * (half / n), half / n};
      expect_range(
          g, own0.offset, own0.end(), [&](int64_t i) { return grad_sum<float>(1, int(n), i); },
          cat(what, ", bucket 0 before finish()"));
      red.finish();
      for (const ElementRange& r : red.owned())
        expect_range(
            g, r.offset, r.end(), [&](int64_t i) { return grad_sum<float>(1, int(n), i); },
            cat(what, ", after finish()"));

      // Step 2: the first-in-buffer parameter marked first must not start its bucket (bucket 1)
      // ahead of bucket 0; marking the other then starts both, in order.
      for (int64_t i = 0; i < 2 * half; ++i) g[size_t(i)] = grad<float>(2, c.rank(), i);
      red.begin_step();
      red.mark_ready(0);
      EXPECT_EQ(red.buckets_started(), 0) << what;
      red.mark_ready(1);
      EXPECT_EQ(red.buckets_started(), 2) << what;
      red.finish();
      for (const ElementRange& r : red.owned())
        expect_range(
            g, r.offset, r.end(), [&](int64_t i) { return grad_sum<float>(2, int(n), i); },
            cat(what, ", step 2"));
    }
  });
}

TEST(GradientReducer, GapOnlyBucketsStartAtBeginStep) {
  for_each_comm([](Communicator& c) {
    const int64_t n = c.size();
    // [0, 4n) a parameter, [4n, 8n) padding only: bucket 0 (the padding) is ready at once.
    std::vector<double> g(size_t(8 * n));
    GradientReducer red(c, view(g), {{0, 4 * n}}, 4 * n * 8, Mode::all_reduce);
    ASSERT_EQ(red.num_buckets(), 2);
    for (int64_t i = 0; i < 8 * n; ++i) g[size_t(i)] = grad<double>(9, c.rank(), i);
    red.begin_step();
    EXPECT_EQ(red.buckets_started(), 1);
    red.mark_ready(0);
    EXPECT_EQ(red.buckets_started(), 2);
    red.finish();
    expect_range(
        g, 0, 8 * n, [&](int64_t i) { return grad_sum<double>(9, int(n), i); }, "gap bucket");
  });
}

TEST(GradientReducer, ConstructionErrors) {
  for_each_comm([](Communicator& c) {
    const int64_t n = c.size();
    std::vector<float> g(size_t(10 * n) + 1);
    if (n > 1) {
      Tensor odd(g.data(), DType::f32, Device::cpu, {10 * n + 1});
      expect_error([&] { GradientReducer r(c, odd, {}, 64, Mode::all_reduce); },
                   {std::to_string(10 * n + 1), "multiple", "group size " + std::to_string(n),
                    "pad", c.group().describe()});
    }
    Tensor t(g.data(), DType::f32, Device::cpu, {10 * n});
    expect_error([&] { GradientReducer r(c, t, {{0, 5}, {5, 10 * n}}, 64, Mode::all_reduce); },
                 {"parameter 1", "outside the gradient buffer"});
    expect_error([&] { GradientReducer r(c, t, {{-1, 2}}, 64, Mode::all_reduce); },
                 {"parameter 0", "outside"});
    expect_error([&] { GradientReducer r(c, t, {{0, 5}, {4, 2}}, 64, Mode::reduce_scatter); },
                 {"parameter 1", "overlap"});
    expect_error([&] { GradientReducer r(c, t, {{6, 2}, {0, 2}}, 64, Mode::all_reduce); },
                 {"parameter 1", "increasing order"});
    expect_error([&] { GradientReducer r(c, t, {}, 0, Mode::all_reduce); },
                 {"bucket size", "positive"});
    std::vector<int32_t> ints(static_cast<size_t>(n));
    expect_error([&] { GradientReducer r(c, view(ints), {}, 64, Mode::all_reduce); },
                 {"i32", "f32 or f64"});
    Tensor on_gpu(g.data(), DType::f32, Device::cuda, {n});
    expect_error([&] { GradientReducer r(c, on_gpu, {}, 64, Mode::all_reduce); },
                 {"cuda memory", "cpu memory"});
    Tensor empty(g.data(), DType::f32, Device::cpu, {0});
    expect_error([&] { GradientReducer r(c, empty, {}, 64, Mode::all_reduce); }, {"empty"});
  });
}

TEST(GradientReducer, UsageErrorsNameTheParameter) {
  // Thrown identically on every rank and before anything is started, so nobody waits.
  for_each_comm([](Communicator& c) {
    const int64_t n = c.size();
    std::vector<float> g(size_t(6 * n), 1.0f);
    const std::vector<ParamRange> params = {{0, 2 * n}, {2 * n, 2 * n}, {4 * n, 2 * n}};
    GradientReducer red(c, view(g), params, 2 * n * 4, Mode::all_reduce);
    expect_error([&] { red.mark_ready(0); }, {"mark_ready(0)", "begin_step"});
    expect_error([&] { red.finish(); }, {"finish()", "begin_step"});
    red.begin_step();
    expect_error([&] { red.begin_step(); }, {"begin_step()", "in progress"});
    expect_error([&] { red.mark_ready(3); }, {"mark_ready(3)", "unknown parameter", "3"});
    expect_error([&] { red.mark_ready(-1); }, {"mark_ready(-1)", "unknown parameter"});
    red.mark_ready(2);
    expect_error([&] { red.mark_ready(2); }, {"parameter 2", "already marked"});
    EXPECT_EQ(red.buckets_started(), 1);  // the failed calls changed nothing
    red.finish();
    expect_range(
        g, 0, 6 * n, [&](int64_t) { return float(n); }, "sums after the usage errors");
    expect_error([&] { red.mark_ready(1); }, {"mark_ready(1)", "begin_step"});
    expect_error([&] { red.gather(view(g)); }, {"gather()", "reduce_scatter"});

    GradientReducer zero(c, view(g), params, 2 * n * 4, Mode::reduce_scatter);
    std::vector<float> short_values(size_t(3 * n));
    expect_error([&] { zero.gather(view(short_values)); },
                 {"gather()", std::to_string(3 * n), std::to_string(6 * n)});
    zero.begin_step();
    expect_error([&] { zero.gather(view(g)); }, {"gather()", "during a step"});
    zero.finish();
  });
}

}  // namespace
}  // namespace tfm::comm
