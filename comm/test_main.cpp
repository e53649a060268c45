// gtest main for the comm tests, run plainly (a world of one) or under mpirun: every rank runs
// every test in the same order (the tests' collectives line up), rank 0 prints gtest's usual
// report, other ranks print only their failures, prefixed with their rank, and every rank exits
// non-zero when a test failed on any rank.
#include <gtest/gtest.h>

#include <cstdio>

#include "comm/mpi_communicator.h"
#include "comm/test_world.h"

namespace tfm::comm::testing {

namespace {
const World* g_world = nullptr;

// The report of a rank other than 0: its failures only.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(),
                   info.name());
  }

 private:
  int rank_;
};
}  // namespace

const World& test_world() { return *g_world; }

}  // namespace tfm::comm::testing

int main(int argc, char** argv) {
  tfm::comm::World world(&argc, &argv);
  tfm::comm::testing::g_world = &world;
  ::testing::InitGoogleTest(&argc, argv);
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (world.rank() != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new tfm::comm::testing::RankFailurePrinter(world.rank()));
  } else {
    std::printf("[ comm     ] %s\n", world.describe().c_str());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  if (world.uses_mpi()) {
    // Every rank learns whether any failed, so mpirun's exit status says so whichever it was.
    tfm::comm::MpiCommunicator all(MPI_COMM_WORLD, "world");
    tfm::Tensor flag(&failed, tfm::DType::i32, tfm::Device::cpu, {1});
    all.all_reduce(flag, tfm::comm::ReduceOp::max);
    if (failed && world.rank() == 0)
      std::fprintf(stderr, "[ comm     ] a test failed on some rank\n");
  }
  return failed;
}
