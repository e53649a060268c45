// CUDA emulation: the block scheduler behind tfm_emu_device.h. See README.md for what it
// checks and what it cannot.
//
// A block's threads are fibers on the launching OS thread. The scheduler resumes
// them round-robin; a fiber runs until it reaches a barrier (block or warp) and yields. A
// barrier releases when every thread it waits for has arrived (exited threads count as arrived
// for __syncthreads, as on the device). A round in which no fiber can run while some have not
// finished is a deadlock: on a GPU the kernel would hang; here the launch fails with a report.
#include <sys/mman.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <mutex>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"
#include "kernels/core/cuda_emu/engine_internal.h"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace tfm_emu {
namespace {

// ---- fiber contexts ---------------------------------------------------------------------------
// On x86-64 a fiber switch saves the callee-saved registers and the FP control words on the
// old stack and swaps stack pointers (a few nanoseconds; glibc's swapcontext makes a
// sigprocmask system call per switch, which made the emulator ten times slower). Elsewhere,
// and under AddressSanitizer (which must see stack switches), ucontext.
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define TFM_EMU_ASM_SWITCH 1
extern "C" void tfm_emu_switch(void** save_sp, void* load_sp);
extern "C" void tfm_emu_fiber_start();
asm(R"(
  .text
  .globl tfm_emu_switch
  .type tfm_emu_switch, @function
tfm_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size tfm_emu_switch, .-tfm_emu_switch

  .globl tfm_emu_fiber_start
  .type tfm_emu_fiber_start, @function
tfm_emu_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size tfm_emu_fiber_start, .-tfm_emu_fiber_start
)");

struct FiberContext {
  void* sp = nullptr;
};
// A context that starts entry(arg) on [stack, stack + bytes) at its first switch.
void init_context(FiberContext& c, void* stack, size_t bytes, void (*entry)(void*), void* arg) {
  auto top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<uint64_t*>(top) - 8;
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  sp[0] = uint64_t(mxcsr) | (uint64_t(fpucw) << 32);
  sp[1] = 0;                                        // r15
  sp[2] = 0;                                        // r14
  sp[3] = reinterpret_cast<uint64_t>(entry);        // r13
  sp[4] = reinterpret_cast<uint64_t>(arg);          // r12
  sp[5] = 0;                                        // rbx
  sp[6] = 0;                                        // rbp
  sp[7] = reinterpret_cast<uint64_t>(&tfm_emu_fiber_start);  // "return" address
  c.sp = sp;  // after the switch pops all this, rsp = top: 16-byte aligned at the call
}
void switch_context(FiberContext& from, FiberContext& to) { tfm_emu_switch(&from.sp, to.sp); }
#else
struct FiberContext {
  ucontext_t uc;
};
thread_local void (*t_entry)(void*);
thread_local void* t_arg;
void ucontext_start() { t_entry(t_arg); }
void init_context(FiberContext& c, void* stack, size_t bytes, void (*entry)(void*), void* arg) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  t_entry = entry;  // every fiber of this thread has the same entry and argument
  t_arg = arg;
  makecontext(&c.uc, ucontext_start, 0);
}
void switch_context(FiberContext& from, FiberContext& to) { swapcontext(&from.uc, &to.uc); }
#endif

constexpr size_t kStackBytes = 256 << 10;
constexpr size_t kPage = 4096;
constexpr size_t kDefaultSmemLimit = 48 << 10;
constexpr size_t kOptinSmemLimit = 227 << 10;  // H100: 227 KiB per block with the opt-in

struct Fiber {
  FiberContext ctx;
  uint3 tid;
  int warp = 0, lane = 0;
  bool done = false;
  enum Wait { none, block, warp_op } wait = none;
  uint64_t wait_gen = 0;
};

struct Warp {
  unsigned exists = 0, exited = 0;  // lane masks
  unsigned arrived = 0;             // lanes waiting at the current collective
  unsigned op_mask = 0;
  const char* op = nullptr;
  uint64_t gen = 0;
  alignas(16) unsigned char slots[2][32][kSlotBytes];
};

struct Scheduler {
  FiberContext host;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  int block_live = 0, block_arrived = 0;
  uint64_t block_gen = 0;
  int current = -1;
  ThreadBody body = nullptr;
  void* closure = nullptr;
  bool faulted = false;
  std::string fault;
  std::vector<unsigned char> smem;
  std::vector<void*> stacks;  // mmap'ed, guard page at the bottom; reused across launches
};

thread_local Scheduler* t_sched = nullptr;

Scheduler& sched() {
  if (!t_sched) t_sched = new Scheduler();  // one per emulating OS thread, kept for its life
  return *t_sched;
}

void* stack_for(Scheduler& s, size_t i) {
  while (s.stacks.size() <= i) {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "tfm CUDA emulator: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(p, kPage, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
    s.stacks.push_back(p);
  }
  return s.stacks[i];
}

std::string where(const Scheduler& s) {
  if (s.current < 0) return "host code";
  const Fiber& f = s.fibers[size_t(s.current)];
  char buf[160];
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u) [warp %d lane %d]",
                blockIdx.x, blockIdx.y, blockIdx.z, f.tid.x, f.tid.y, f.tid.z, f.warp, f.lane);
  return buf;
}

bool blocked(const Scheduler& s, const Fiber& f);

// The order in which runnable threads take turns: ascending thread index, or descending with
// TFM_EMU_ORDER=reverse. A race that one order hides (a missing barrier whose reader happens to
// run after its writer) the other order shows: run the suite both ways.
int schedule_step() {
  static const int step = [] {
    const char* e = std::getenv("TFM_EMU_ORDER");
    return e && std::string(e) == "reverse" ? -1 : 1;
  }();
  return step;
}

// Hands the CPU from the current fiber straight to the next one that can run (round-robin),
// or to the host when none can (all finished, or a deadlock the host reports). Going fiber to
// fiber halves the switches of going through the host each time.
void switch_away(Scheduler& s) {
  const int n = int(s.fibers.size()), cur = s.current;
  Fiber& me = s.fibers[size_t(cur)];
  const int step = schedule_step();
  for (int d = 1; d <= n; ++d) {
    const int j = ((cur + step * d) % n + n) % n;
    Fiber& next = s.fibers[size_t(j)];
    if (next.done || blocked(s, next)) continue;
    if (j == cur) return;  // only this fiber can run: it goes on
    s.current = j;
    threadIdx = next.tid;
    switch_context(me.ctx, next.ctx);
    return;  // resumed by whoever set s.current back to this fiber
  }
  s.current = -1;
  switch_context(me.ctx, s.host);
}

void fiber_exit(Scheduler& s, Fiber& f) {
  f.done = true;
  Warp& w = s.warps[size_t(f.warp)];
  const unsigned bit = 1u << f.lane;
  w.exited |= bit;
  if (w.arrived && (w.op_mask & bit)) {
    s.faulted = true;
    s.fault = where(s) + " exited while lanes of its warp wait for it at " + w.op;
  }
  --s.block_live;
  if (s.block_arrived > 0 && s.block_arrived == s.block_live) {
    s.block_arrived = 0;
    ++s.block_gen;
  }
}

void fiber_main(void*) {
  Scheduler& s = *t_sched;
  Fiber& f = s.fibers[size_t(s.current)];
  try {
    s.body(s.closure);
  } catch (const std::exception& e) {
    s.faulted = true;
    s.fault = where(s) + " threw: " + e.what();
  }
  fiber_exit(s, f);
  if (s.faulted) {
    s.current = -1;
    switch_context(f.ctx, s.host);
  }
  switch_away(s);  // never resumed: it is done
  std::abort();
}

bool blocked(const Scheduler& s, const Fiber& f) {
  if (f.wait == Fiber::block) return s.block_gen == f.wait_gen;
  if (f.wait == Fiber::warp_op) return s.warps[size_t(f.warp)].gen == f.wait_gen;
  return false;
}

std::string deadlock_report(const Scheduler& s) {
  std::string r = "deadlock: no thread can proceed (on a GPU the kernel would hang).";
  int shown = 0;
  for (const Fiber& f : s.fibers) {
    if (f.done || shown >= 8) continue;
    ++shown;
    char buf[200];
    const char* at = f.wait == Fiber::block ? "__syncthreads"
                     : f.wait == Fiber::warp_op ? s.warps[size_t(f.warp)].op
                                                : "?";
    std::snprintf(buf, sizeof buf, " thread (%u,%u,%u) waits at %s;", f.tid.x, f.tid.y, f.tid.z,
                  at ? at : "?");
    r += buf;
  }
  char buf[120];
  std::snprintf(buf, sizeof buf, " %d of %zu threads still running in block (%u,%u,%u)",
                s.block_live, s.fibers.size(), blockIdx.x, blockIdx.y, blockIdx.z);
  return r + buf;
}

// Runs one block to completion; false (with s.fault) when it faulted.
bool run_block(Scheduler& s, dim3 block) {
  const int n = int(block.x * block.y * block.z);
  s.fibers.assign(size_t(n), Fiber{});
  s.warps.assign(size_t((n + 31) / 32), Warp{});
  s.block_live = n;
  s.block_arrived = 0;
  s.block_gen = 0;
  s.faulted = false;
  std::fill(s.smem.begin(), s.smem.end(), 0xff);  // NaN in every float type: unwritten reads show
  for (int i = 0; i < n; ++i) {
    Fiber& f = s.fibers[size_t(i)];
    f.tid = {unsigned(i) % block.x, (unsigned(i) / block.x) % block.y,
             unsigned(i) / (block.x * block.y)};
    f.warp = i / 32;
    f.lane = i % 32;
    s.warps[size_t(f.warp)].exists |= 1u << f.lane;
    init_context(f.ctx, stack_for(s, size_t(i)), kStackBytes, fiber_main, nullptr);
  }
  // The fibers pass the CPU among themselves and come back here only when none can run.
  for (;;) {
    int runnable = -1, running = 0;
    for (int k = 0; k < n; ++k) {
      const int i = schedule_step() > 0 ? k : n - 1 - k;
      const Fiber& f = s.fibers[size_t(i)];
      if (f.done) continue;
      ++running;
      if (runnable < 0 && !blocked(s, f)) runnable = i;
    }
    if (running == 0) return true;
    if (runnable < 0) {
      s.fault = deadlock_report(s);
      return false;
    }
    s.current = runnable;
    threadIdx = s.fibers[size_t(runnable)].tid;
    switch_context(s.host, s.fibers[size_t(runnable)].ctx);
    s.current = -1;
    if (s.faulted) return false;
  }
}

std::mutex g_attr_mutex;
std::unordered_map<const void*, size_t>& smem_limits() {
  static std::unordered_map<const void*, size_t> m;
  return m;
}

}  // namespace

void block_barrier() {
  Scheduler& s = sched();
  if (s.current < 0) device_fault("__syncthreads outside a kernel");
  Fiber& f = s.fibers[size_t(s.current)];
  const uint64_t gen = s.block_gen;
  if (++s.block_arrived == s.block_live) {  // the last to arrive releases everyone
    s.block_arrived = 0;
    ++s.block_gen;
    return;
  }
  f.wait = Fiber::block;
  f.wait_gen = gen;
  while (s.block_gen == gen) switch_away(s);
  f.wait = Fiber::none;
}

const unsigned char* warp_collective(unsigned mask, const char* op, const void* in,
                                     size_t bytes) {
  Scheduler& s = sched();
  if (s.current < 0) device_fault("a warp collective outside a kernel");
  Fiber& f = s.fibers[size_t(s.current)];
  Warp& w = s.warps[size_t(f.warp)];
  const unsigned bit = 1u << f.lane;
  char msg[200];
  if (!(mask & bit)) {
    std::snprintf(msg, sizeof msg, "%s: mask 0x%08x does not include the calling lane", op, mask);
    device_fault(msg);
  }
  if (mask & ~w.exists) {
    std::snprintf(msg, sizeof msg, "%s: mask 0x%08x names lanes that do not exist (0x%08x do)",
                  op, mask, w.exists);
    device_fault(msg);
  }
  if (mask & w.exited) {
    std::snprintf(msg, sizeof msg, "%s: mask 0x%08x names lanes that have exited (0x%08x)", op,
                  mask, w.exited);
    device_fault(msg);
  }
  if (w.arrived == 0) {
    w.op = op;
    w.op_mask = mask;
  } else if ((w.op != op && std::strcmp(w.op, op) != 0) || w.op_mask != mask) {
    std::snprintf(msg, sizeof msg,
                  "divergent warp: this lane is at %s (mask 0x%08x) while others wait at %s "
                  "(mask 0x%08x)",
                  op, mask, w.op, w.op_mask);
    device_fault(msg);
  }
  const uint64_t gen = w.gen;
  unsigned char* slots = &w.slots[gen & 1][0][0];
  if (bytes) std::memcpy(slots + size_t(f.lane) * kSlotBytes, in, bytes);
  w.arrived |= bit;
  if (w.arrived == mask) {
    w.arrived = 0;
    ++w.gen;
    return slots;
  }
  f.wait = Fiber::warp_op;
  f.wait_gen = gen;
  while (w.gen == gen) switch_away(s);
  f.wait = Fiber::none;
  return slots;
}

unsigned char* dynamic_smem() { return sched().smem.data(); }

void device_fault(const char* what) {
  Scheduler& s = sched();
  if (s.current < 0) {
    std::fprintf(stderr, "tfm CUDA emulator: %s\n", what);
    std::abort();
  }
  s.faulted = true;
  s.fault = where(s) + ": " + what;
  Fiber& me = s.fibers[size_t(s.current)];
  s.current = -1;
  switch_context(me.ctx, s.host);  // never resumed
  std::abort();
}

cudaError_t set_max_dynamic_smem(const void* kernel, int bytes) {
  if (bytes < 0 || size_t(bytes) > kOptinSmemLimit) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_attr_mutex);
  smem_limits()[kernel] = size_t(bytes);
  return cudaSuccess;
}

void run_grid(dim3 grid, dim3 block, size_t smem_bytes, const void* kernel, ThreadBody body,
              void* closure) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  char msg[240];
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    std::snprintf(msg, sizeof msg,
                  "invalid launch configuration: grid (%u,%u,%u), block (%u,%u,%u)", grid.x,
                  grid.y, grid.z, block.x, block.y, block.z);
    record_launch_error(cudaErrorInvalidConfiguration, msg);
    return;
  }
  size_t limit = kDefaultSmemLimit;
  {
    std::lock_guard<std::mutex> lock(g_attr_mutex);
    auto it = smem_limits().find(kernel);
    if (it != smem_limits().end() && it->second > limit) limit = it->second;
  }
  if (smem_bytes > limit) {
    std::snprintf(msg, sizeof msg,
                  "launch asks for %zu bytes of dynamic shared memory; the kernel's limit is %zu "
                  "(cudaFuncSetAttribute(MaxDynamicSharedMemorySize) raises it up to %zu)",
                  smem_bytes, limit, kOptinSmemLimit);
    record_launch_error(cudaErrorInvalidValue, msg);
    return;
  }
  Scheduler& s = sched();
  if (s.current >= 0) device_fault("kernel launch from device code is not emulated");
  s.smem.assign(smem_bytes, 0xff);
  s.body = body;
  s.closure = closure;
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {x, y, z};
        if (!run_block(s, block)) {
          record_launch_error(cudaErrorLaunchFailure, s.fault.c_str());
          return;
        }
      }
}

// ---- tensor-core fragments ------------------------------------------------------------------

void ldmatrix_x4(uint32_t (&r)[4], const void* row_address, bool trans) {
  if (reinterpret_cast<uintptr_t>(row_address) & 15)
    device_fault("ldmatrix: a row address is not 16-byte aligned");
  const unsigned char* slots = warp_collective(
      0xffffffffu, trans ? "ldmatrix.x4.trans" : "ldmatrix.x4", &row_address, sizeof row_address);
  const int lane = sched().fibers[size_t(sched().current)].lane;
  auto row = [&](int i) {
    const uint16_t* p;
    std::memcpy(&p, slots + size_t(i) * kSlotBytes, sizeof p);
    return p;
  };
  for (int m = 0; m < 4; ++m) {
    uint16_t lo, hi;
    if (!trans) {
      const uint16_t* p = row(8 * m + lane / 4);
      lo = p[2 * (lane % 4)];
      hi = p[2 * (lane % 4) + 1];
    } else {
      lo = row(8 * m + 2 * (lane % 4))[lane / 4];
      hi = row(8 * m + 2 * (lane % 4) + 1)[lane / 4];
    }
    r[m] = uint32_t(lo) | (uint32_t(hi) << 16);
  }
}

void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                  bool is_bf16) {
  uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  const unsigned char* slots = warp_collective(
      0xffffffffu, is_bf16 ? "mma.m16n8k16.bf16" : "mma.m16n8k16.f16", mine, sizeof mine);
  const int lane = sched().fibers[size_t(sched().current)].lane;
  auto word = [&](int l, int i) {
    uint32_t w;
    std::memcpy(&w, slots + size_t(l) * kSlotBytes + 4 * size_t(i), 4);
    return w;
  };
  auto value = [&](uint32_t w, int half) {
    const uint16_t bits = uint16_t(half ? w >> 16 : w & 0xffffu);
    return is_bf16 ? bits_float(uint32_t(bits) << 16) : half_bits_to_float(bits);
  };
  // A(r, k): lane (r % 8)·4 + (k % 8)/2, register (r ≥ 8) + 2·(k ≥ 8), half k % 2.
  auto A = [&](int r, int k) {
    return value(word((r % 8) * 4 + (k % 8) / 2, (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)), k % 2);
  };
  // B(k, n): lane n·4 + (k % 8)/2, register 4 + (k ≥ 8), half k % 2.
  auto B = [&](int k, int n) { return value(word(n * 4 + (k % 8) / 2, 4 + (k >= 8 ? 1 : 0)), k % 2); };
  const int g = lane / 4, t = lane % 4;
  // This lane's outputs need rows g, g + 8 of A and columns 2t, 2t + 1 of B: decode them once.
  float a_rows[2][16], b_cols[2][16];
  for (int k = 0; k < 16; ++k) {
    a_rows[0][k] = A(g, k), a_rows[1][k] = A(g + 8, k);
    b_cols[0][k] = B(k, 2 * t), b_cols[1][k] = B(k, 2 * t + 1);
  }
  for (int i = 0; i < 4; ++i) {  // c[0], c[1]: row g; c[2], c[3]: row g + 8
    const float* ar = a_rows[i / 2];
    const float* bc = b_cols[i % 2];
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc += ar[k] * bc[k];
    c[i] = acc;
  }
}

}  // namespace tfm_emu
