// The DP × TP grid: its arithmetic for every layout the issue names (no MPI needed), and the
// communicators a ParallelContext builds on the world this binary runs in (1, 2, 4 or 6 ranks
// under ctest), checked by gathering world ranks over each group.
#include "comm/grid.h"

#include <gtest/gtest.h>

#include <vector>

#include "comm/test_world.h"

namespace tfm::comm {
namespace {

using Groups = std::vector<std::vector<int>>;

struct Layout {
  int world, tp;
  Groups tp_groups;  // [dp_rank] → world ranks
  Groups dp_groups;  // [tp_rank] → world ranks
};

// Written out by hand from "TP ranks adjacent": same r / tp → TP group, same r % tp → DP group.
const Layout kLayouts[] = {
    {1, 1, {{0}}, {{0}}},
    {2, 1, {{0}, {1}}, {{0, 1}}},
    {2, 2, {{0, 1}}, {{0}, {1}}},
    {4, 1, {{0}, {1}, {2}, {3}}, {{0, 1, 2, 3}}},
    {4, 2, {{0, 1}, {2, 3}}, {{0, 2}, {1, 3}}},
    {6, 1, {{0}, {1}, {2}, {3}, {4}, {5}}, {{0, 1, 2, 3, 4, 5}}},
    {6, 2, {{0, 1}, {2, 3}, {4, 5}}, {{0, 2, 4}, {1, 3, 5}}},
    {6, 3, {{0, 1, 2}, {3, 4, 5}}, {{0, 3}, {1, 4}, {2, 5}}},
};

TEST(ProcessGrid, LayoutsMatchTheHandWrittenTables) {
  for (const Layout& L : kLayouts) {
    SCOPED_TRACE(::testing::Message() << "world " << L.world << ", tp " << L.tp);
    ProcessGrid g(L.world, L.tp);
    EXPECT_EQ(g.tp_size(), L.tp);
    EXPECT_EQ(g.dp_size(), L.world / L.tp);
    for (int r = 0; r < L.world; ++r) {
      int d = r / L.tp, t = r % L.tp;
      EXPECT_EQ(g.dp_rank(r), d);
      EXPECT_EQ(g.tp_rank(r), t);
      EXPECT_EQ(g.world_rank(d, t), r);
      EXPECT_EQ(g.tp_group(r), L.tp_groups[size_t(d)]) << "rank " << r;
      EXPECT_EQ(g.dp_group(r), L.dp_groups[size_t(t)]) << "rank " << r;
    }
  }
}

TEST(ProcessGrid, RejectsTpThatDoesNotDivideTheWorldNamingBoth) {
  for (auto [world, tp] : {std::pair{4, 3}, std::pair{6, 4}, std::pair{2, 3}, std::pair{1, 2}}) {
    try {
      ProcessGrid g(world, tp);
      ADD_FAILURE() << "world " << world << ", tp " << tp << " was accepted";
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("world size " + std::to_string(world)), std::string::npos) << m;
      EXPECT_NE(m.find("tensor-parallel size " + std::to_string(tp)), std::string::npos) << m;
    }
  }
  EXPECT_THROW(ProcessGrid(4, 0), Error);
  EXPECT_THROW(ProcessGrid(0, 1), Error);
}

// Gathers every member's world rank over `c` (host memory).
std::vector<int> gather_world_ranks(Communicator& c, int world_rank) {
  int32_t mine = world_rank;
  std::vector<int32_t> all(size_t(c.size()), -1);
  c.all_gather(Tensor(&mine, DType::i32, Device::cpu, {1}),
               Tensor(all.data(), DType::i32, Device::cpu, {int64_t(all.size())}));
  return std::vector<int>(all.begin(), all.end());
}

TEST(ParallelContext, BuildsTheGridsGroupsOnThisWorld) {
  const World& world = testing::test_world();
  for (int tp : {1, 2, 3, 4, 6}) {
    if (world.size() % tp != 0) continue;
    SCOPED_TRACE(::testing::Message() << "world " << world.size() << ", tp " << tp);
    ParallelContext ctx(world, {.tp = tp});
    ProcessGrid g(world.size(), tp);
    const int r = world.rank();
    EXPECT_EQ(ctx.world_rank(), r);
    EXPECT_EQ(ctx.world_size(), world.size());
    EXPECT_EQ(ctx.tp_size(), tp);
    EXPECT_EQ(ctx.dp_size(), world.size() / tp);
    EXPECT_EQ(ctx.tp_rank(), g.tp_rank(r));
    EXPECT_EQ(ctx.dp_rank(), g.dp_rank(r));
    EXPECT_EQ(ctx.local_rank(), world.local_rank());

    // The communicators connect exactly the grid's groups, in rank order.
    EXPECT_EQ(gather_world_ranks(ctx.tp(), r), g.tp_group(r));
    EXPECT_EQ(gather_world_ranks(ctx.dp(), r), g.dp_group(r));
    std::vector<int> everyone;
    for (int i = 0; i < world.size(); ++i) everyone.push_back(i);
    EXPECT_EQ(gather_world_ranks(ctx.world(), r), everyone);
    EXPECT_EQ(ctx.tp().rank(), ctx.tp_rank());
    EXPECT_EQ(ctx.dp().rank(), ctx.dp_rank());
    EXPECT_EQ(ctx.tp().group().world_ranks, g.tp_group(r));
    EXPECT_EQ(ctx.dp().group().world_ranks, g.dp_group(r));
    EXPECT_EQ(ctx.tp().name(), "tp");
    EXPECT_EQ(ctx.dp().name(), "dp");

    // Groups of one need no MPI; on cpu the host communicators are the device ones.
    EXPECT_STREQ(ctx.tp().backend(), tp == 1 ? "self" : "mpi");
    EXPECT_STREQ(ctx.dp().backend(), world.size() / tp == 1 ? "self" : "mpi");
    EXPECT_EQ(&ctx.host_comm(Axis::dp), &ctx.dp());
    EXPECT_EQ(ctx.mpi_comm(Axis::world) == MPI_COMM_NULL, !world.uses_mpi());
  }
}

TEST(ParallelContext, RejectsTpThatDoesNotDivideOnEveryRank) {
  const World& world = testing::test_world();
  const int bad = world.size() + 1;  // never divides (world ≥ 1)
  try {
    ParallelContext ctx(world, {.tp = bad});
    ADD_FAILURE() << "tp " << bad << " accepted on a world of " << world.size();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("world size " + std::to_string(world.size())), std::string::npos) << m;
    EXPECT_NE(m.find("tensor-parallel size " + std::to_string(bad)), std::string::npos) << m;
  }
}

TEST(ParallelContext, DescribesItsPlace) {
  const World& world = testing::test_world();
  ParallelContext ctx(world, {.tp = 1});
  EXPECT_NE(ctx.describe().find("rank " + std::to_string(world.rank()) + " of " +
                                std::to_string(world.size())),
            std::string::npos)
      << ctx.describe();
  EXPECT_EQ(ctx.world().group().describe().rfind("world group {0", 0), 0u)
      << ctx.world().group().describe();
}

TEST(GroupInfo, AbbreviatesLongRankLists) {
  GroupInfo g{"dp", 0, {}};
  for (int i = 0; i < 64; ++i) g.world_ranks.push_back(i * 8);
  EXPECT_EQ(g.describe(), "dp group {0, 8, 16, 24, ..., 496, 504} (64 ranks)");
  g.world_ranks = {1, 3, 5};
  EXPECT_EQ(g.describe(), "dp group {1, 3, 5}");
}

}  // namespace
}  // namespace tfm::comm
