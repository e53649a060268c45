// Loops over independent rows on the host, through OpenMP. The CPU twins use this and nothing
// else for threading, so their results do not depend on the thread count (each row is computed
// by one thread, in a fixed order).
#pragma once
#include <cstdint>

namespace tfm {

template <class F>
void parallel_for(int64_t n, F&& body) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

}  // namespace tfm
