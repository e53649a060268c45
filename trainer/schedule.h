// Learning-rate schedules. The paper's (§5.3, "Noam"):
//   lr(step) = factor · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)
// rising linearly for `warmup` steps, then decaying with the inverse square root of the step.
// "constant" is factor alone (a fixed learning rate, for fine-tuning and debugging).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/core/check.h"

namespace tfm {

struct LrSchedule {
  std::string kind = "noam";  // noam | constant
  double factor = 1.0;
  int64_t warmup = 4000;
  int64_t d_model = 512;

  double at(int64_t step) const {  // step ≥ 1
    if (kind == "constant") return factor;
    double s = double(std::max<int64_t>(step, 1));
    return factor / std::sqrt(double(d_model)) *
           std::min(1.0 / std::sqrt(s), s * std::pow(double(warmup), -1.5));
  }
  void validate() const {
    TFM_CHECK(kind == "noam" || kind == "constant", "--lr-schedule: expected noam or constant, got '",
              kind, "'");
    TFM_CHECK(factor > 0, "--lr: must be positive, got ", factor);
    TFM_CHECK(kind != "noam" || warmup > 0, "--warmup: must be positive, got ", warmup);
  }
};

}  // namespace tfm
