// Every collective against values computed by hand, on every group this world can form (the
// world, and the dp and tp groups of each tp that splits it), for sizes 1, 7 and 1000003 (see
// cases()), dtypes f32, f64, i32, i64, blocking and non-blocking (completed by wait() and by
// polling test()); several non-blocking collectives in flight at once, completed in any order;
// in-place forms; argument errors; the self communicator's copies.
//
// Inputs are small integers (times 0.5, plus 0.25·rank, for floats) so every sum is exact in
// every dtype and the expected values are exact too. Each rank can compute any rank's input, so
// it checks its own result against the reduction of all of them.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <thread>
#include <type_traits>
#include <vector>

#include "comm/grid.h"
#include "comm/mpi_communicator.h"
#include "comm/self_communicator.h"
#include "comm/test_world.h"

namespace tfm::comm {
namespace {

using testing::expect_error;
using testing::view;

const int64_t kBig = 1000003;

template <class T>
T input(int rank, int64_t i) {
  int64_t v = (i * 7 + int64_t(rank) * 13) % 31 - 15;
  if constexpr (std::is_floating_point_v<T>)
    return T(v) * T(0.5) + T(0.25) * T(rank);
  else
    return T(v + rank);
}

template <class T>
T reduce_ref(ReduceOp op, int n, int64_t i) {
  T acc = input<T>(0, i);
  for (int r = 1; r < n; ++r) {
    T v = input<T>(r, i);
    if (op == ReduceOp::sum)
      acc = T(acc + v);
    else if (op == ReduceOp::max)
      acc = std::max(acc, v);
    else
      acc = std::min(acc, v);
  }
  return acc;
}

// Compares a whole buffer with expected(i); reports the count and the first mismatch only.
template <class T, class F>
void expect_all(const std::vector<T>& got, F expected, const std::string& what) {
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < int64_t(got.size()); ++i) {
    if (got[size_t(i)] != expected(i)) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  if (bad)
    ADD_FAILURE() << what << ": " << bad << " of " << got.size() << " elements wrong; first at "
                  << first << ": got " << +got[size_t(first)] << ", expected " << +expected(first);
}

enum class Mode { blocking, wait, test };
const Mode kModes[] = {Mode::blocking, Mode::wait, Mode::test};
const char* mode_name(Mode m) {
  return m == Mode::blocking ? "blocking" : m == Mode::wait ? "async+wait" : "async+test";
}

// The (element count, mode) cases of one collective on `c`: on the world group sizes 1 and 7 in
// every mode, and 1000003 in the mode `variant` picks (callers vary it across reduce ops and
// roots so each mode meets the big size); on the dp and tp groups size 7 in every mode. More
// would make the oversubscribed 6-rank run take minutes without testing anything new.
// `per_rank_blocks`: for reduce_scatter and all_gather, whose big buffer holds size() blocks, the
// big block is 1000003 / size() elements (still odd-sized), so the big buffer stays ~1000003.
std::vector<std::pair<int64_t, Mode>> cases(const Communicator& c, int variant,
                                            bool per_rank_blocks = false) {
  const bool world = c.name() == "world";
  std::vector<std::pair<int64_t, Mode>> v;
  for (int64_t n : {1, 7})
    for (Mode m : kModes)
      if (world || n == 7) v.push_back({n, m});
  if (world) v.push_back({per_rank_blocks ? kBig / c.size() : kBig, kModes[variant % 3]});
  return v;
}

// Runs one collective in `mode`: the blocking form, or the async form completed by wait() or by
// polling test() (after which wait() must return at once).
void run(Mode mode, const std::function<void()>& blocking, const std::function<Request()>& async) {
  if (mode == Mode::blocking) return blocking();
  Request r = async();
  if (mode == Mode::wait) {
    r.wait();
  } else {
    while (!r.test()) std::this_thread::yield();
  }
  EXPECT_FALSE(r.pending());
  EXPECT_TRUE(r.test());
}

// The communicators this world can form, each handed to f in turn (every rank calls f for the
// same sequence, so their collectives line up).
void for_each_comm(const std::function<void(Communicator&)>& f) {
  const World& world = testing::test_world();
  {
    ParallelContext ctx(world, {.tp = 1});
    f(ctx.world());
  }
  for (int tp : {2, 3}) {
    if (world.size() % tp != 0 || world.size() == tp) continue;
    ParallelContext ctx(world, {.tp = tp});
    f(ctx.dp());
    f(ctx.tp());
  }
}

std::string where(const Communicator& c, int64_t n, Mode m, const char* dtype) {
  return cat(c.group().describe(), " rank ", c.rank(), ", ", dtype, " x ", n, ", ", mode_name(m));
}

template <class T>
class Collective : public ::testing::Test {};
using Dtypes = ::testing::Types<float, double, int32_t, int64_t>;
TYPED_TEST_SUITE(Collective, Dtypes);

TYPED_TEST(Collective, AllReduceSumMaxMin) {
  using T = TypeParam;
  for_each_comm([](Communicator& c) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min})
      for (auto [n, m] : cases(c, int(op))) {
        std::vector<T> x(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) x[size_t(i)] = input<T>(c.rank(), i);
        run(
            m, [&] { c.all_reduce(view(x), op); }, [&] { return c.all_reduce_async(view(x), op); });
        expect_all(
            x, [&](int64_t i) { return reduce_ref<T>(op, c.size(), i); },
            cat("all_reduce ", reduce_op_name(op), " on ",
                where(c, n, m, dtype_name(dtype_of<T>()))));
      }
  });
}

TYPED_TEST(Collective, ReduceScatterSumMax) {
  using T = TypeParam;
  for_each_comm([](Communicator& c) {
    const int n = c.size();
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max})
      for (auto [b, m] : cases(c, int(op) + 1, true)) {
        std::vector<T> in(static_cast<size_t>(b * n)), out(static_cast<size_t>(b), T(-99));
        for (int64_t j = 0; j < b * n; ++j) in[size_t(j)] = input<T>(c.rank(), j);
        run(
            m, [&] { c.reduce_scatter(view(in), view(out), op); },
            [&] { return c.reduce_scatter_async(view(in), view(out), op); });
        const int64_t base = c.rank() * b;
        expect_all(
            out, [&](int64_t i) { return reduce_ref<T>(op, n, base + i); },
            cat("reduce_scatter ", reduce_op_name(op), " on ",
                where(c, b, m, dtype_name(dtype_of<T>()))));
        // The input is left as it was.
        expect_all(
            in, [&](int64_t j) { return input<T>(c.rank(), j); },
            "reduce_scatter input afterwards");
      }
  });
}

TYPED_TEST(Collective, AllGather) {
  using T = TypeParam;
  for_each_comm([](Communicator& c) {
    const int n = c.size();
    for (auto [b, m] : cases(c, 2, true)) {
      std::vector<T> in(static_cast<size_t>(b)), out(static_cast<size_t>(b * n), T(-99));
      for (int64_t i = 0; i < b; ++i) in[size_t(i)] = input<T>(c.rank(), i);
      run(
          m, [&] { c.all_gather(view(in), view(out)); },
          [&] { return c.all_gather_async(view(in), view(out)); });
      expect_all(
          out, [&](int64_t j) { return input<T>(int(j / b), j % b); },
          cat("all_gather on ", where(c, b, m, dtype_name(dtype_of<T>()))));
    }
  });
}

TYPED_TEST(Collective, BroadcastFromFirstAndLastRank) {
  using T = TypeParam;
  for_each_comm([](Communicator& c) {
    for (int root : {0, c.size() - 1})
      for (auto [n, m] : cases(c, root == 0 ? 0 : 1)) {
        std::vector<T> x(static_cast<size_t>(n), T(-99));
        if (c.rank() == root)
          for (int64_t i = 0; i < n; ++i) x[size_t(i)] = input<T>(root, i);
        run(
            m, [&] { c.broadcast(view(x), root); },
            [&] { return c.broadcast_async(view(x), root); });
        expect_all(
            x, [&](int64_t i) { return input<T>(root, i); },
            cat("broadcast from ", root, " on ", where(c, n, m, dtype_name(dtype_of<T>()))));
      }
  });
}

TEST(Collectives, BarrierWaitsForTheLastRankToArrive) {
  int group = 0;
  for_each_comm([&](Communicator& c) {
    // Every mode on the world group; one each, in turn, on the others.
    std::vector<Mode> modes(std::begin(kModes), std::end(kModes));
    if (c.name() != "world") modes = {kModes[group % 3]};
    ++group;
    for (Mode m : modes) {
      // Rank r arrives r·60 ms late, so nobody may leave before (n−1)·60 ms. The ranks left the
      // previous barrier a little apart, hence the 30 ms slack; a barrier that let a rank through
      // early would show at least 60 ms short.
      const auto delay = std::chrono::milliseconds(60);
      c.barrier();
      auto start = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(delay * c.rank());
      run(m, [&] { c.barrier(); }, [&] { return c.barrier_async(); });
      auto waited = std::chrono::steady_clock::now() - start;
      EXPECT_GE(waited, delay * (c.size() - 1) - delay / 2) << where(c, 0, m, "-");
    }
  });
}

TEST(Collectives, ManyInFlightCompleteInAnyWaitOrder) {
  const World& world = testing::test_world();
  const int tp = world.size() % 2 == 0 ? 2 : 1;
  ParallelContext ctx(world, {.tp = tp});
  Communicator& w = ctx.world();
  Communicator& dp = ctx.dp();
  Communicator& tpc = ctx.tp();
  const int64_t big = 1000003, small = 7;

  std::vector<float> a(big);
  std::vector<double> b(static_cast<size_t>(small * w.size())), b_out(small);
  std::vector<int32_t> g_in(small), g_out(static_cast<size_t>(small * w.size()));
  std::vector<int64_t> bc(big, -1);
  std::vector<int32_t> mx(small);
  std::vector<float> d(small), t(small);
  for (int64_t i = 0; i < big; ++i) a[size_t(i)] = input<float>(w.rank(), i);
  for (int64_t j = 0; j < int64_t(b.size()); ++j) b[size_t(j)] = input<double>(w.rank(), j);
  for (int64_t i = 0; i < small; ++i) {
    g_in[size_t(i)] = input<int32_t>(w.rank(), i);
    mx[size_t(i)] = input<int32_t>(w.rank(), i);
    d[size_t(i)] = input<float>(dp.rank(), i);
    t[size_t(i)] = input<float>(tpc.rank(), i);
  }
  if (w.rank() == 0)
    for (int64_t i = 0; i < big; ++i) bc[size_t(i)] = input<int64_t>(0, i);

  // Started in the same order on every rank, on three communicators at once.
  std::vector<Request> reqs;
  reqs.push_back(w.all_reduce_async(view(a)));
  reqs.push_back(dp.all_reduce_async(view(d)));
  reqs.push_back(w.reduce_scatter_async(view(b), view(b_out)));
  reqs.push_back(tpc.all_reduce_async(view(t), ReduceOp::max));
  reqs.push_back(w.all_gather_async(view(g_in), view(g_out)));
  reqs.push_back(w.broadcast_async(view(bc), 0));
  reqs.push_back(w.all_reduce_async(view(mx), ReduceOp::max));
  reqs.push_back(w.barrier_async());

  // Waited in an order that differs from rank to rank (and from the start order).
  std::vector<size_t> order(reqs.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(unsigned(1234 + w.rank())));
  for (size_t k : order) {
    if (k % 2)
      reqs[k].wait();
    else
      while (!reqs[k].test()) std::this_thread::yield();
  }

  expect_all(
      a, [&](int64_t i) { return reduce_ref<float>(ReduceOp::sum, w.size(), i); },
      "in-flight world all_reduce");
  expect_all(
      d, [&](int64_t i) { return reduce_ref<float>(ReduceOp::sum, dp.size(), i); },
      "in-flight dp all_reduce");
  expect_all(
      t, [&](int64_t i) { return reduce_ref<float>(ReduceOp::max, tpc.size(), i); },
      "in-flight tp all_reduce max");
  expect_all(
      b_out,
      [&](int64_t i) { return reduce_ref<double>(ReduceOp::sum, w.size(), w.rank() * small + i); },
      "in-flight reduce_scatter");
  expect_all(
      g_out, [&](int64_t j) { return input<int32_t>(int(j / small), j % small); },
      "in-flight all_gather");
  expect_all(
      bc, [&](int64_t i) { return input<int64_t>(0, i); }, "in-flight broadcast");
  expect_all(
      mx, [&](int64_t i) { return reduce_ref<int32_t>(ReduceOp::max, w.size(), i); },
      "in-flight all_reduce max");
}

TEST(Collectives, ProgressWithoutTheCallerInThreadMode) {
  // In thread mode test() only reads a flag, so completion while the caller merely sleeps
  // proves the communication thread moved the collective (what overlap with backward needs).
  const World& world = testing::test_world();
  ParallelContext ctx(world, {.tp = 1});
  Communicator& c = ctx.world();
  std::vector<float> x(1 << 20);
  for (size_t i = 0; i < x.size(); ++i) x[i] = input<float>(c.rank(), int64_t(i));
  Request r = c.all_reduce_async(view(x));
  auto start = std::chrono::steady_clock::now();
  bool done = false;
  while (!done && std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    done = r.test();
  }
  EXPECT_TRUE(done) << "all_reduce of 4 MiB did not complete in 20 s on " << c.group().describe();
  r.wait();
  expect_all(
      x, [&](int64_t i) { return reduce_ref<float>(ReduceOp::sum, c.size(), i); },
      "background all_reduce");
  if (auto* mpi = dynamic_cast<MpiCommunicator*>(&c)) {
    EXPECT_EQ(mpi->progress(), default_progress());
  }
}

TEST(Collectives, InPlaceReduceScatterAndAllGather) {
  for_each_comm([](Communicator& c) {
    const int n = c.size();
    const int64_t b = 1001;
    // reduce_scatter into this rank's own block of the input.
    std::vector<float> buf(static_cast<size_t>(b * n));
    for (int64_t j = 0; j < b * n; ++j) buf[size_t(j)] = input<float>(c.rank(), j);
    Tensor all = view(buf);
    Tensor mine = all.rows(c.rank() * b, b);
    c.reduce_scatter(all, mine);
    expect_all(
        buf,
        [&](int64_t j) {
          return j / b == c.rank() ? reduce_ref<float>(ReduceOp::sum, n, j)
                                   : input<float>(c.rank(), j);
        },
        cat("in-place reduce_scatter on ", c.group().describe()));
    // all_gather from this rank's own block of the output.
    std::vector<int32_t> out(static_cast<size_t>(b * n), -1);
    for (int64_t i = 0; i < b; ++i) out[size_t(c.rank() * b + i)] = input<int32_t>(c.rank(), i);
    Tensor o = view(out);
    c.all_gather(o.rows(c.rank() * b, b), o);
    expect_all(
        out, [&](int64_t j) { return input<int32_t>(int(j / b), j % b); },
        cat("in-place all_gather on ", c.group().describe()));
  });
}

TEST(Collectives, SixteenBitWordsMoveBitExact) {
  // bf16 and u16 travel as raw words in gathers and broadcasts (MPI has no bf16 arithmetic).
  for_each_comm([](Communicator& c) {
    const int64_t b = 9;
    std::vector<uint16_t> in(b), out(static_cast<size_t>(b * c.size()));
    for (int64_t i = 0; i < b; ++i) in[size_t(i)] = uint16_t(0x3f80 + 17 * c.rank() + i);
    Tensor tin(in.data(), DType::bf16, Device::cpu, {b});
    Tensor tout(out.data(), DType::bf16, Device::cpu, {b * c.size()});
    c.all_gather(tin, tout);
    expect_all(
        out, [&](int64_t j) { return uint16_t(0x3f80 + 17 * (j / b) + j % b); }, "bf16 all_gather");
    std::vector<uint16_t> x(b, c.rank() == 0 ? uint16_t(0xabcd) : uint16_t(0));
    c.broadcast(Tensor(x.data(), DType::u16, Device::cpu, {b}), 0);
    expect_all(
        x, [](int64_t) { return uint16_t(0xabcd); }, "u16 broadcast");
  });
}

TEST(Collectives, BadArgumentsAreErrorsNamingTheOperationAndGroup) {
  // Thrown before anything is posted, identically on every rank, so nobody is left waiting.
  for_each_comm([](Communicator& c) {
    const int n = c.size();
    std::vector<float> in(static_cast<size_t>(4 * n)), out(5);
    expect_error([&] { c.reduce_scatter(view(in), view(out)); },
                 {"reduce_scatter", c.group().describe(), "expected size x out"});
    expect_error([&] { c.all_gather(view(out), view(in)); }, {"all_gather", "expected size x in"});
    std::vector<double> wrong(4);
    expect_error([&] { c.all_gather(view(wrong), view(in)); }, {"all_gather", "f64", "f32"});
    expect_error([&] { c.broadcast(view(in), n); },
                 {"broadcast", "root " + std::to_string(n), "not a rank"});
    Tensor on_gpu(in.data(), DType::f32, Device::cuda, {4});
    expect_error([&] { c.all_reduce(on_gpu); }, {"all_reduce", "cuda memory", "cpu memory"});
    // Overlap other than the in-place forms.
    Tensor all = view(in);
    if (n > 1)
      expect_error([&] { c.all_gather(all.rows((c.rank() + 1) % n * 4, 4), all); },
                   {"all_gather", "overlaps"});
    if (std::string(c.backend()) == "mpi") {
      std::vector<uint16_t> h(4);
      expect_error([&] { c.all_reduce(Tensor(h.data(), DType::bf16, Device::cpu, {4})); },
                   {"all_reduce", "no bf16 arithmetic"});
    }
  });
}

TEST(Request, DefaultIsCompleteAndDestructionWaits) {
  Request none;
  EXPECT_TRUE(none.test());
  none.wait();
  const World& world = testing::test_world();
  ParallelContext ctx(world, {.tp = 1});
  std::vector<float> x(100003);
  for (size_t i = 0; i < x.size(); ++i) x[i] = input<float>(ctx.world().rank(), int64_t(i));
  { Request dropped = ctx.world().all_reduce_async(view(x)); }  // waits here
  expect_all(
      x, [&](int64_t i) { return reduce_ref<float>(ReduceOp::sum, world.size(), i); },
      "all_reduce whose Request was dropped");
  // Assigning over a pending request completes it first.
  Request r = ctx.world().all_reduce_async(view(x));
  r = ctx.world().barrier_async();
  r.wait();
  expect_all(
      x,
      [&](int64_t i) {
        return float(world.size()) * reduce_ref<float>(ReduceOp::sum, world.size(), i);
      },
      "all_reduce completed by assigning over its Request");
}

TEST(SelfCommunicator, CopiesWhereTheSemanticsNeedAndCompletesAtOnce) {
  SelfCommunicator c("tp", 7, Device::cpu);
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.group().describe(), "tp group {7}");
  std::vector<float> x = {1, 2, 3}, y(3, 0);
  Request r = c.all_reduce_async(view(x), ReduceOp::max);
  EXPECT_TRUE(r.test());
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3}));
  c.reduce_scatter(view(x), view(y));
  EXPECT_EQ(y, x);
  std::vector<float> z(3, 0);
  c.all_gather(view(x), view(z));
  EXPECT_EQ(z, x);
  c.broadcast(view(x), 0);
  c.barrier();
  EXPECT_THROW(c.broadcast(view(x), 1), Error);
  std::vector<float> four(4);
  EXPECT_THROW(c.all_gather(view(x), view(four)), Error);
}

}  // namespace
}  // namespace tfm::comm
