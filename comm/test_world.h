// The World of a comm test binary: created by comm/test_main.cpp before any test runs (one per
// process, as MPI allows) and reachable from the tests through test_world(); and the helpers the
// comm tests share.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "comm/world.h"
#include "kernels/core/tensor.h"

namespace tfm::comm::testing {

const World& test_world();

// A host vector as a flat tensor (what the MPI communicator takes).
template <class T>
Tensor view(std::vector<T>& v) {
  return Tensor(v.data(), dtype_of<T>(), Device::cpu, {int64_t(v.size())});
}

// Checks `f` throws tfm::Error whose message contains every one of `needles`.
inline void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needles[0] << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const auto& s : needles) EXPECT_NE(m.find(s), std::string::npos) << "'" << s << "' in: " << m;
  }
}

}  // namespace tfm::comm::testing
