// metrics.jsonl, its TensorBoard mirror and the progress line; see metrics.h.
#include "trainer/metrics.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "data/json_text.h"
#include "kernels/core/check.h"

namespace tfm {

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  // Without a format argument, to_chars emits the shortest representation that round-trips.
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  TFM_CHECK(res.ec == std::errc(), "json_number: to_chars failed");
  return std::string(buf, res.ptr);
}

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

MetricsLogger::MetricsLogger(const std::string& run_dir, bool tensorboard) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  TFM_CHECK(!ec, "metrics: cannot create run directory '", run_dir, "': ", ec.message());
  path_ = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  file_ = std::fopen(path_.c_str(), "a");
  TFM_CHECK(file_, "metrics: cannot open '", path_, "' for appending: ", std::strerror(errno));
  if (tensorboard) tensorboard_ = std::make_unique<TensorBoardWriter>(run_dir);
}

MetricsLogger::~MetricsLogger() {
  if (file_) std::fclose(file_);
}

void MetricsLogger::log(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  std::string line = "{\"step\": " + std::to_string(step);
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string& key = values[i].first;
    TFM_CHECK(key != "step", "metrics: key 'step' is reserved (step ", step, ")");
    for (size_t j = 0; j < i; ++j)
      TFM_CHECK(values[j].first != key, "metrics: key '", key, "' given twice at step ", step);
    line += ", ";
    line += json_string(key);
    line += ": ";
    line += json_number(values[i].second);
  }
  line += "}\n";
  TFM_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size() &&
                std::fflush(file_) == 0,
            "metrics: cannot write '", path_, "': ", std::strerror(errno));
  if (tensorboard_) tensorboard_->add_scalars(values, step);
}

void MetricsLogger::flush() {
  TFM_CHECK(std::fflush(file_) == 0, "metrics: cannot flush '", path_, "': ",
            std::strerror(errno));
  if (tensorboard_) tensorboard_->flush();
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  const long long total = std::llround(std::max(seconds, 0.0));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, (total / 60) % 60,
                total % 60);
  return buf;
}

std::string format_rate(double per_second) {
  if (!std::isfinite(per_second)) return "?";
  char buf[48];
  if (std::fabs(per_second) < 999.5) {
    std::snprintf(buf, sizeof buf, "%.0f", per_second);
    return buf;
  }
  static const char* const kUnits[] = {"k", "M", "G", "T"};
  double v = per_second / 1000;
  int unit = 0;
  // Move up a unit when one decimal would print 1000.0 or more ("999.96k" → "1.0M").
  while (std::fabs(v) >= 999.95 && unit < 3) {
    v /= 1000;
    ++unit;
  }
  std::snprintf(buf, sizeof buf, "%.1f%s", v, kUnits[unit]);
  return buf;
}

std::string format_progress(const Progress& p) {
  char loss[400], lr[32];  // %.3f of a huge loss can be long; never truncate it
  std::snprintf(loss, sizeof loss, "%.3f", p.loss);
  std::snprintf(lr, sizeof lr, "%.1e", p.lr);
  std::string out = cat("step ", p.step);
  if (p.total_steps > 0) out += cat("/", p.total_steps);
  out += cat(" | loss ", loss, " | lr ", lr, " | ", format_rate(p.tokens_per_s), " tok/s | ",
             format_duration(p.elapsed_s), " elapsed");
  if (p.total_steps > 0) {
    const int64_t done = p.step - p.start_step;
    if (done > 0) {
      const double remaining = static_cast<double>(std::max<int64_t>(p.total_steps - p.step, 0));
      out += cat(" | ETA ", format_duration(p.elapsed_s * remaining / static_cast<double>(done)));
    } else {
      out += " | ETA ?";  // no timed step yet
    }
  }
  return out;
}

std::string format_progress(int64_t step, int64_t total_steps, double loss, double lr,
                            double tokens_per_s, double elapsed_s, int64_t start_step) {
  Progress p;
  p.step = step;
  p.total_steps = total_steps;
  p.loss = loss;
  p.lr = lr;
  p.tokens_per_s = tokens_per_s;
  p.elapsed_s = elapsed_s;
  p.start_step = start_step;
  return format_progress(p);
}

}  // namespace tfm
