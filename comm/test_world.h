// The World of a comm test binary: created by comm/test_main.cpp before any test runs (one per
// process, as MPI allows) and reachable from the tests through test_world().
#pragma once
#include "comm/world.h"

namespace tfm::comm::testing {

const World& test_world();

}  // namespace tfm::comm::testing
