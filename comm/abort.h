// How the comm code ends a job that cannot go on (a collective past its deadline, an MPI or NCCL
// error in flight), and the polling helpers its deadlines are built on.
//
// A collective that fails on one rank leaves its peers waiting inside the same collective, so an
// exception on that rank would turn into a hang elsewhere. Instead the rank prints one line that
// names itself, the operation and the group, and takes the whole job down: MPI_Abort under a
// launcher, _Exit in a world of one. The exit status says which: 124 a deadline (as timeout(1)),
// 125 a communication error.
#pragma once
#include <chrono>
#include <string>

namespace tfm::comm::detail {

constexpr int kTimeoutExitCode = 124;
constexpr int kCommErrorExitCode = 125;

// Prints "tfm: rank R on HOST: <message>" to stderr in one write and ends the job.
[[noreturn]] void abort_job(int exit_code, const std::string& message);
// The two halves, for callers with clean-up in between (the NCCL watchdog aborts NCCL first).
void print_fatal(const std::string& message);
[[noreturn]] void end_job(int exit_code);

// The collective deadline when none is given: TFM_COMM_TIMEOUT (seconds) or 300.
double default_timeout_seconds();

// "2.0 s", "300 s"
std::string format_seconds(double seconds);

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Pause between polls of something that completes on its own time (an MPI request, a CUDA
// event): yields the core for the first ~100 µs, then sleeps with a growing interval capped at
// `max_sleep_us`, so a waiting rank does not burn a core that computation (or an oversubscribed
// peer) needs.
class Backoff {
 public:
  explicit Backoff(int max_sleep_us = 200) : max_sleep_us_(max_sleep_us) {}
  void pause();
  void reset() { polls_ = 0; }

 private:
  int max_sleep_us_;
  int polls_ = 0;
};

}  // namespace tfm::comm::detail
