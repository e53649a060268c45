// Preemption: SIGTERM (what schedulers send before killing a job) and SIGINT (Ctrl-C) ask the
// training loop to stop at the next step boundary; it then writes a checkpoint and exits 0, so a
// relaunch of the same command continues exactly. A second signal means "now": the process exits
// at once with 128 + the signal number. Nothing is corrupted either way, because checkpoints are
// written to a temporary directory and renamed (trainer/checkpoint.h).
//
// The flag is process-wide (signals are); the handlers are installed only by StopSignals, which
// `tfm train` holds for the duration of the run. Tests call request_stop() directly.
#pragma once

namespace tfm {

class StopSignals {
 public:
  StopSignals();   // installs the SIGTERM and SIGINT handlers and clears the flag
  ~StopSignals();  // restores the previous handlers
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
};

bool stop_requested();
int stop_signal();       // the signal that asked to stop (0 when none, or request_stop())
void request_stop();     // as if a first signal had arrived
void clear_stop_request();

}  // namespace tfm
