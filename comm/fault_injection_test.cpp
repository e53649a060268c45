// Fault injection for the deadline tests (run by ctest through comm/expect_failure.sh): rank 1
// misbehaves after a warm-up collective that everyone completes, and the job must end non-zero
// within the deadline, with a message naming the operation and the group.
//
//   tfm_comm_fault_test stuck   rank 1 sleeps instead of entering the all_reduce
//   tfm_comm_fault_test skip    rank 1 skips the all_reduce and waits in the next collective
//   tfm_comm_fault_test kill    rank 1 is killed with SIGKILL before the all_reduce
//   tfm_comm_fault_test ok      nobody misbehaves (the program exits 0)
//
// Run under mpirun with TFM_COMM_TIMEOUT set low (ctest uses 2 s).
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "comm/grid.h"

int main(int argc, char** argv) {
  using namespace tfm::comm;
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "stuck" && mode != "skip" && mode != "kill" && mode != "ok") {
    std::fprintf(stderr, "usage: %s stuck|skip|kill|ok\n", argv[0]);
    return 2;
  }
  World world(&argc, &argv);
  int rc = 0;
  {
    ParallelContext ctx(world, {.tp = 1});
    std::vector<float> x(1000, 1.0f);
    tfm::Tensor t(x.data(), tfm::DType::f32, tfm::Device::cpu, {1000});
    ctx.dp().all_reduce(t);  // collective #0: everyone is alive
    std::printf("rank %d: warm-up all_reduce done (%g)\n", world.rank(), double(x[0]));
    std::fflush(stdout);

    const bool culprit = world.rank() == 1;
    if (culprit && mode == "stuck") std::this_thread::sleep_for(std::chrono::seconds(600));
    if (culprit && mode == "kill") raise(SIGKILL);
    if (!(culprit && mode == "skip")) ctx.dp().all_reduce(t);  // collective #1
    ctx.dp().barrier();
    std::printf("rank %d: finished (%g)\n", world.rank(), double(x[0]));
    rc = x[0] == float(world.size() * world.size()) ? 0 : 1;
  }
  return rc;
}
