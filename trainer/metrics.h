// Training metrics for people and for plots.
//
// MetricsLogger appends one JSON object per logged step to RUN_DIR/metrics.jsonl (JSON Lines:
// one object per '\n'-terminated line; the file is opened in append mode so a resumed run
// continues it) and mirrors the same scalars to a TensorBoard event file in RUN_DIR. A line is
//   {"step": 120, "loss": 4.213, "lr": 0.00031, "tokens_per_s": 12345.6}
// "step" first, then the values in the order given. Numbers are the shortest text that reads
// back as the same double (std::to_chars); NaN and ±inf, which JSON cannot express, are null.
// Each line is written with one call and flushed, so a killed run leaves whole lines (at most
// the last one cut short) and `tail -f` shows progress as it happens.
//
// format_progress() renders the console line the training loop prints, e.g.
//   step 120/2000 | loss 4.213 | lr 3.1e-04 | 12.3k tok/s | 0:01:23 elapsed | ETA 0:21:40
// The ETA assumes the remaining steps run at the average rate since `start_step` (the step
// this process started from, so a resumed run does not count steps it did not time).
//
// Not thread-safe: one logger, used by the training loop on one rank.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "trainer/tensorboard.h"

namespace tfm {

class MetricsLogger {
 public:
  // Creates run_dir if needed and opens run_dir/metrics.jsonl for appending; with
  // `tensorboard`, also a new event file in run_dir. Throws tfm::Error naming the path.
  explicit MetricsLogger(const std::string& run_dir, bool tensorboard = true);
  ~MetricsLogger();
  MetricsLogger(const MetricsLogger&) = delete;
  MetricsLogger& operator=(const MetricsLogger&) = delete;

  // Writes {"step": step, key: value, ...}. Keys must be distinct and not "step".
  void log(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  void flush();

  const std::string& jsonl_path() const { return path_; }
  TensorBoardWriter* tensorboard() { return tensorboard_.get(); }  // null when disabled

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

// JSON helpers used by the logger (exposed for tests and other writers of JSON).
std::string json_number(double v);          // shortest round-trip text; "null" if not finite
std::string json_string(std::string_view s);  // quoted, with JSON escapes

struct Progress {
  int64_t step = 0;
  int64_t total_steps = 0;  // 0: unknown (no "/total", no ETA)
  double loss = 0;
  double lr = 0;
  double tokens_per_s = 0;
  double elapsed_s = 0;     // wall time since start_step
  int64_t start_step = 0;   // step at which elapsed_s started counting
};
std::string format_progress(const Progress& p);
// The same, positionally: format_progress(step, total_steps, loss, lr, tokens_per_s, elapsed_s).
std::string format_progress(int64_t step, int64_t total_steps, double loss, double lr,
                            double tokens_per_s, double elapsed_s, int64_t start_step = 0);
// H:MM:SS, hours unbounded ("0:01:23", "27:46:40"), rounded to the nearest second; "?" when
// not finite.
std::string format_duration(double seconds);
// 850, 12.3k, 4.6M, 1.2G (one decimal once scaled).
std::string format_rate(double per_second);

}  // namespace tfm
