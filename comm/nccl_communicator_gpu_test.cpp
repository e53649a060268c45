// The NCCL communicator on real GPUs: every collective against values computed by hand, bf16
// included, several in flight, and stream ordering through wait_stream. Run plainly (one GPU, a
// group of one that needs no MPI) or under mpirun with one GPU per rank. Skips with a message
// where no GPU is visible (CI) or a node has fewer GPUs than ranks.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "comm/test_world.h"
#include "kernels/core/buffer.h"
#include "kernels/core/device.h"
#if defined(TFM_HAVE_NCCL)
#include "comm/grid.h"
#include "comm/nccl_communicator.h"
#endif

namespace tfm::comm {
namespace {

// Why these tests cannot run here, or "" when they can.
std::string why_not_runnable() {
  int gpus = cuda_device_count();
  if (gpus == 0) return "no GPU: the NCCL communicator tests need a CUDA device";
#if !defined(TFM_HAVE_NCCL)
  return "this build has no NCCL (CUDA present, NCCL not found by CMake)";
#else
  const World& world = testing::test_world();
  if (world.local_size() > gpus)
    return cat("no GPU per rank: ", world.local_size(), " ranks on this node, ", gpus, " GPUs");
  return "";
#endif
}

#define SKIP_WITHOUT_GPUS()                \
  do {                                     \
    std::string why = why_not_runnable();  \
    if (!why.empty()) GTEST_SKIP() << why; \
  } while (0)

#if defined(TFM_HAVE_NCCL)

// The NCCL communicator over the whole world: a group of one without MPI when run plainly, the
// world of a cuda ParallelContext under mpirun.
struct Fixture {
  std::unique_ptr<ParallelContext> ctx;
  std::unique_ptr<NcclCommunicator> single;
  Communicator* comm = nullptr;
  Fixture() {
    const World& world = testing::test_world();
    if (world.size() == 1) {
      cuda_set_device(0);
      single = std::make_unique<NcclCommunicator>(MPI_COMM_NULL, "world");
      comm = single.get();
    } else {
      ctx = std::make_unique<ParallelContext>(world, ParallelOptions{.device = Device::cuda});
      comm = &ctx->world();
    }
  }
};

float input(int rank, int64_t i) { return float((i * 7 + rank * 13) % 31 - 15) + 0.5f * rank; }

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t(u >> 16);  // exact for the small values used here
}
float from_bf16(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Buffer upload(const std::vector<float>& host) {
  Buffer b(DType::f32, {int64_t(host.size())}, Device::cuda);
  copy_to_device(b.tensor().data, host.data(), host.size() * 4);
  return b;
}
std::vector<float> download(const Tensor& t) {
  std::vector<float> host(static_cast<size_t>(t.numel()));
  device_synchronize();
  copy_to_host(host.data(), t.data, t.bytes());
  return host;
}

TEST(NcclCommunicator, AllReduceSumAndMaxForOddSizes) {
  SKIP_WITHOUT_GPUS();
  Fixture f;
  Communicator& c = *f.comm;
  EXPECT_STREQ(c.backend(), "nccl");
  for (int64_t n : {1, 7, 1000003})
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max})
      for (bool async : {false, true}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) x[size_t(i)] = input(c.rank(), i);
        Buffer d = upload(x);
        if (async)
          c.all_reduce_async(d, op).wait();
        else
          c.all_reduce(d, op);
        std::vector<float> got = download(d);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          float want = input(0, i);
          for (int r = 1; r < c.size(); ++r)
            want = op == ReduceOp::sum ? want + input(r, i) : std::max(want, input(r, i));
          bad += got[size_t(i)] != want;
        }
        EXPECT_EQ(bad, 0) << reduce_op_name(op) << " x " << n << (async ? " async" : "");
      }
}

TEST(NcclCommunicator, Bf16AllReduce) {
  SKIP_WITHOUT_GPUS();
  Fixture f;
  Communicator& c = *f.comm;
  const int64_t n = 4099;
  std::vector<uint16_t> h(n);
  for (int64_t i = 0; i < n; ++i) h[size_t(i)] = to_bf16(float(i % 9 + c.rank()));
  Buffer d(DType::bf16, {n}, Device::cuda);
  copy_to_device(d.tensor().data, h.data(), size_t(n) * 2);
  c.all_reduce(d);
  device_synchronize();
  copy_to_host(h.data(), d.tensor().data, size_t(n) * 2);
  const int s = c.size();
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(from_bf16(h[size_t(i)]), float(s * (i % 9) + s * (s - 1) / 2)) << "element " << i;
}

TEST(NcclCommunicator, ReduceScatterAllGatherBroadcastBarrier) {
  SKIP_WITHOUT_GPUS();
  Fixture f;
  Communicator& c = *f.comm;
  const int s = c.size();
  const int64_t b = 1000003;
  std::vector<float> in(static_cast<size_t>(b * s));
  for (int64_t j = 0; j < b * s; ++j) in[size_t(j)] = input(c.rank(), j);
  Buffer din = upload(in), dout(DType::f32, {b}, Device::cuda);
  c.reduce_scatter(din, dout);
  std::vector<float> got = download(dout);
  for (int64_t i = 0; i < b; i += 9973) {
    float want = 0;
    for (int r = 0; r < s; ++r) want += input(r, c.rank() * b + i);
    ASSERT_EQ(got[size_t(i)], want) << "reduce_scatter element " << i;
  }
  // all_gather back, in place from this rank's block.
  Tensor all = din.tensor();
  copy_to_device(all.rows(c.rank() * b, b).data, got.data(), size_t(b) * 4);
  c.all_gather(all.rows(c.rank() * b, b), all);
  std::vector<float> gathered = download(all);
  for (int64_t j = 0; j < b * s; j += 9973) {
    float want = 0;
    for (int r = 0; r < s; ++r) want += input(r, j);
    ASSERT_EQ(gathered[size_t(j)], want) << "all_gather element " << j;
  }
  std::vector<float> x(7, c.rank() == s - 1 ? 42.0f : -1.0f);
  Buffer dx = upload(x);
  c.broadcast(dx, s - 1);
  EXPECT_EQ(download(dx), std::vector<float>(7, 42.0f));
  c.barrier();
}

TEST(NcclCommunicator, SeveralInFlightAndStreamOrdering) {
  SKIP_WITHOUT_GPUS();
  Fixture f;
  Communicator& c = *f.comm;
  std::vector<Buffer> bufs;
  std::vector<Request> reqs;
  for (int k = 0; k < 6; ++k) {
    bufs.push_back(upload(std::vector<float>(size_t(1000 + 333 * k), float(k + c.rank()))));
    reqs.push_back(c.all_reduce_async(bufs.back()));
  }
  // Half waited by the host, half ordered on the default stream without blocking the host.
  for (int k = 5; k >= 0; --k) {
    if (k % 2)
      reqs[size_t(k)].wait();
    else
      reqs[size_t(k)].wait_stream(nullptr);
  }
  const int s = c.size();
  for (int k = 0; k < 6; ++k) {
    std::vector<float> got = download(bufs[size_t(k)]);
    EXPECT_EQ(got.front(), float(s * k + s * (s - 1) / 2)) << "buffer " << k;
    EXPECT_EQ(got.back(), got.front());
  }
}

TEST(NcclCommunicator, ReportsItsVersion) {
  SKIP_WITHOUT_GPUS();
  EXPECT_EQ(nccl_version().rfind("2.", 0), 0u) << nccl_version();
}

#else  // !TFM_HAVE_NCCL

TEST(NcclCommunicator, NotBuilt) { SKIP_WITHOUT_GPUS(); }

#endif

}  // namespace
}  // namespace tfm::comm
