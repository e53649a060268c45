#include "comm/abort.h"

#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "comm/world.h"
#include "kernels/core/check.h"

namespace tfm::comm::detail {

void abort_job(int exit_code, const std::string& message) {
  print_fatal(message);
  end_job(exit_code);
}

void print_fatal(const std::string& message) {
  // The first thread to fail ends the job; any other (say the dp and tp communication threads
  // timing out together) parks here until the process is gone.
  static std::atomic<bool> reported{false};
  if (reported.exchange(true)) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::string line = cat("tfm: rank ", world_rank(), " on ", host_name(), ": ", message, "\n");
  // One write(2), so lines from ranks that abort at the same moment do not interleave.
  std::fflush(stdout);
  std::fflush(stderr);
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
}

void end_job(int exit_code) {
  if (mpi_active()) {
    // MPI_Abort may be called from any thread; it ends every process of MPI_COMM_WORLD.
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  }
  std::_Exit(exit_code);
}

double default_timeout_seconds() {
  if (const char* v = std::getenv("TFM_COMM_TIMEOUT"); v && *v) {
    char* end = nullptr;
    double s = std::strtod(v, &end);
    TFM_CHECK(end && *end == '\0' && s > 0, "TFM_COMM_TIMEOUT='", v,
              "' is not a positive number of seconds");
    return s;
  }
  return 300.0;
}

std::string format_seconds(double seconds) {
  char buf[32];
  if (seconds < 10)
    std::snprintf(buf, sizeof buf, "%.1f s", seconds);
  else
    std::snprintf(buf, sizeof buf, "%.0f s", seconds);
  return buf;
}

void Backoff::pause() {
  ++polls_;
  if (polls_ < 200) {
    std::this_thread::yield();
    return;
  }
  int us = 10 << std::min((polls_ - 200) / 50, 6);  // 10, 20, 40 ... 640 µs
  std::this_thread::sleep_for(std::chrono::microseconds(std::min(us, max_sleep_us_)));
}

}  // namespace tfm::comm::detail
