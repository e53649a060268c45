// All-reduce bandwidth of tfm's Communicator against the same collective called directly
// (MPI on host memory; NCCL as well with --device cuda), sizes 1 KiB … 256 MiB of f32.
//
//   mpirun -np 2 build/comm/tfm_comm_bench [--device cpu|cuda] [--min-bytes N] [--max-bytes N]
//                                          [--seconds S]
//
// Bandwidths as nccl-tests defines them: algbw = bytes / time; busbw = algbw · 2(n−1)/n, the
// traffic each rank's links carry in a ring all-reduce, comparable across rank counts. A time is
// the slowest rank's mean over a loop of blocking in-place all-reduces, best of five rounds that
// interleave the columns (see time_ops).
// Columns:
//   tfm       Communicator::all_reduce (blocking): on cpu MPI's blocking collective run by the
//             calling thread (comm/mpi_communicator.h, thread mode); on cuda NCCL on the
//             communicator's stream, the host waiting for completion
//   tfm async Communicator::all_reduce_async + Request::wait: on cpu the communication thread
//             runs it, so this adds the hand-off to that thread (what overlapped gradient
//             buckets pay)
//   Allred    MPI_Allreduce on a duplicate of MPI_COMM_WORLD (cpu)
//   Iallr     MPI_Iallreduce + MPI_Wait (cpu): MPI's non-blocking algorithm, which tfm uses only
//             under MPI_THREAD_SERIALIZED or FUNNELED
//   nccl      ncclAllReduce + cudaStreamSynchronize (cuda)
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "kernels/core/buffer.h"
#include "kernels/core/device.h"
#if defined(TFM_HAVE_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>

#include "comm/nccl_communicator.h"
#endif

namespace {

using tfm::cat;
using Clock = std::chrono::steady_clock;

struct Args {
  tfm::Device device = tfm::Device::cpu;
  int64_t min_bytes = 1 << 10;
  int64_t max_bytes = int64_t(256) << 20;
  double seconds = 0.25;  // per size and column (spread over the rounds)
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      TFM_CHECK(i + 1 < argc, "comm_bench: ", k, " needs a value");
      return argv[++i];
    };
    if (k == "--device") {
      std::string d = value();
      TFM_CHECK(d == "cpu" || d == "cuda", "comm_bench: --device ", d, " (cpu or cuda)");
      a.device = d == "cpu" ? tfm::Device::cpu : tfm::Device::cuda;
    } else if (k == "--min-bytes") {
      a.min_bytes = std::stoll(value());
    } else if (k == "--max-bytes") {
      a.max_bytes = std::stoll(value());
    } else if (k == "--seconds") {
      a.seconds = std::stod(value());
    } else {
      tfm::fail(cat("comm_bench: unknown option ", k,
                    " (--device, --min-bytes, --max-bytes, --seconds)"));
    }
  }
  TFM_CHECK(a.min_bytes >= 4 && a.min_bytes <= a.max_bytes, "comm_bench: bad size range");
  return a;
}

// Seconds per call of each of `ops`: the slowest rank's mean over a timed loop, the best of 5
// rounds. The rounds interleave the ops (round 1 times every op, then round 2 ...), so a burst of
// load from other processes lands on all of them alike rather than on whichever ran then. Each op
// is warmed up twice, then timed over about budget / 5 seconds per round (2 to 1000 calls; every
// rank runs the count rank 0 chose).
std::vector<double> time_ops(const std::vector<std::function<void()>>& ops,
                             const std::function<void()>& sync, double budget, MPI_Comm world) {
  const int rounds = 5;
  std::vector<int> iters(ops.size());
  for (size_t k = 0; k < ops.size(); ++k) {
    ops[k]();
    ops[k]();
    sync();
    MPI_Barrier(world);
    auto t0 = Clock::now();
    ops[k]();
    sync();
    double one = std::chrono::duration<double>(Clock::now() - t0).count();
    iters[k] = int(std::min(1000.0, std::max(2.0, budget / rounds / std::max(one, 1e-6))));
  }
  MPI_Bcast(iters.data(), int(iters.size()), MPI_INT, 0, world);
  std::vector<double> best(ops.size(), 1e30);
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < ops.size(); ++k) {
      MPI_Barrier(world);
      auto t0 = Clock::now();
      for (int i = 0; i < iters[k]; ++i) ops[k]();
      sync();
      double mean = std::chrono::duration<double>(Clock::now() - t0).count() / iters[k];
      MPI_Allreduce(MPI_IN_PLACE, &mean, 1, MPI_DOUBLE, MPI_MAX, world);
      best[k] = std::min(best[k], mean);
    }
  }
  return best;
}

std::string human(int64_t bytes) {
  if (bytes >= (1 << 20)) return cat(bytes >> 20, " MiB");
  if (bytes >= (1 << 10)) return cat(bytes >> 10, " KiB");
  return cat(bytes, " B");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tfm::comm;
  World world(&argc, &argv);
  try {
    Args args = parse(argc, argv);
    TFM_CHECK(world.uses_mpi() && world.size() >= 2,
              "comm_bench: run under mpirun with at least 2 ranks (mpirun -np 2 ...)");
    ParallelContext ctx(world, {.tp = 1, .device = args.device});
    Communicator& ours = ctx.world();
    const int n = world.size();
    MPI_Comm raw;
    MPI_Comm_dup(MPI_COMM_WORLD, &raw);
    const bool cuda = args.device == tfm::Device::cuda;
    const bool root = world.rank() == 0;

#if defined(TFM_HAVE_NCCL)
    ncclComm_t nccl = nullptr;
    cudaStream_t stream = nullptr;
    if (cuda) {
      ncclUniqueId id;
      if (root) ncclGetUniqueId(&id);
      MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
      TFM_CHECK(ncclCommInitRank(&nccl, n, id, world.rank()) == ncclSuccess, "ncclCommInitRank");
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    }
#else
    TFM_CHECK(!cuda, "comm_bench: --device cuda needs a build with NCCL");
#endif

    if (root) {
      std::printf("# all-reduce (sum, f32, in place), %d ranks, %s memory, %s\n", n,
                  tfm::device_name(args.device), world.describe().c_str());
      std::printf("# algbw = bytes/time, busbw = algbw*2(n-1)/n (GB/s = 1e9 B/s); time in us\n");
      std::printf("%10s |%10s %8s %8s |%10s %8s %8s |%10s %8s %8s |%10s %8s %8s%s\n", "size",
                  "tfm us", "algbw", "busbw", "async us", "algbw", "busbw", "Allred us", "algbw",
                  "busbw", "Iallr us", "algbw", "busbw",
                  cuda ? " |   nccl us    algbw    busbw" : "");
    }
    for (int64_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 4) {
      const int64_t count = bytes / 4;
      tfm::Buffer buf(tfm::DType::f32, {count}, args.device);  // zero-filled on cpu
      if (!cuda) {
        // One correctness check per size: ones sum to n.
        float* p = buf.as<float>();
        for (int64_t i = 0; i < count; ++i) p[i] = 1.0f;
        ours.all_reduce(buf);
        for (int64_t i = 0; i < count; ++i)
          TFM_CHECK(p[i] == float(n), "comm_bench: wrong sum at ", i, ": ", p[i]);
        for (int64_t i = 0; i < count; ++i) p[i] = 0.0f;  // 0 + 0 stays 0 over the iterations
      }
      auto sync = [&] {
        if (cuda) tfm::device_synchronize();
      };
      void* p = buf.tensor().data;
      std::vector<std::function<void()>> ops = {
          [&] { ours.all_reduce(buf); },
          [&] { ours.all_reduce_async(buf).wait(); },
      };
      if (!cuda) {
        ops.push_back([&] { MPI_Allreduce(MPI_IN_PLACE, p, int(count), MPI_FLOAT, MPI_SUM, raw); });
        ops.push_back([&] {
          MPI_Request r;
          MPI_Iallreduce(MPI_IN_PLACE, p, int(count), MPI_FLOAT, MPI_SUM, raw, &r);
          MPI_Wait(&r, MPI_STATUS_IGNORE);
        });
      }
#if defined(TFM_HAVE_NCCL)
      if (cuda) {
        ops.push_back([&] {
          ncclAllReduce(p, p, size_t(count), ncclFloat32, ncclSum, nccl, stream);
          cudaStreamSynchronize(stream);
        });
      }
#endif
      std::vector<double> times = time_ops(ops, sync, args.seconds, raw);
      const double t_ours = times[0], t_async = times[1];
      const double t_mpi = cuda ? 0 : times[2], t_impi = cuda ? 0 : times[3];
      const double t_nccl = cuda ? times[2] : 0;
      if (root) {
        const double bus = 2.0 * (n - 1) / n;
        auto cols = [&](double t) {
          if (t <= 0) return std::string(cat("         - ", "       - ", "       -"));
          char s[64];
          std::snprintf(s, sizeof s, "%10.1f %8.3f %8.3f", t * 1e6, bytes / t / 1e9,
                        bytes / t / 1e9 * bus);
          return std::string(s);
        };
        std::printf("%10s |%s |%s |%s |%s", human(bytes).c_str(), cols(t_ours).c_str(),
                    cols(t_async).c_str(), cols(t_mpi).c_str(), cols(t_impi).c_str());
        if (cuda) std::printf(" |%s", cols(t_nccl).c_str());
        std::printf("\n");
        std::fflush(stdout);
      }
    }
#if defined(TFM_HAVE_NCCL)
    if (nccl) ncclCommDestroy(nccl);
    if (stream) cudaStreamDestroy(stream);
#endif
    MPI_Comm_free(&raw);
  } catch (const tfm::Error& e) {
    world.abort(1, e.what());
  }
  return 0;
}
