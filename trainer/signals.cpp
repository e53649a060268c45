#include "trainer/signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace tfm {

namespace {

std::atomic<int> g_requests{0};
std::atomic<int> g_signal{0};
struct sigaction g_old_term, g_old_int;

// Async-signal-safe only: atomics, write(2), _exit(2).
void on_signal(int sig) {
  if (g_requests.fetch_add(1) > 0) {
    const char msg[] = "\ntfm train: second signal, exiting now without a checkpoint\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(128 + sig);
  }
  g_signal.store(sig);
  const char msg[] = "\ntfm train: stop requested; finishing the step and writing a checkpoint "
                     "(signal again to exit at once)\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

}  // namespace

StopSignals::StopSignals() {
  clear_stop_request();
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and waits in progress carry on; the loop checks the flag
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGINT, &sa, &g_old_int);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGINT, &g_old_int, nullptr);
}

bool stop_requested() { return g_requests.load() > 0; }
int stop_signal() { return g_signal.load(); }
void request_stop() { g_requests.fetch_add(1); }
void clear_stop_request() {
  g_requests.store(0);
  g_signal.store(0);
}

}  // namespace tfm
