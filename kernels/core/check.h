// Error handling for tfm: every failed precondition throws tfm::Error with a message that names
// what was wrong and where, so the CLI can print it and exit non-zero instead of crashing.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace tfm {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class First, class... Rest>
void append(std::ostringstream& os, const First& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable pieces: tfm::cat("shard ", path, " line ", n).
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  return os.str();
}

[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

}  // namespace tfm

// TFM_CHECK(cond, "message pieces", ...) throws tfm::Error with the message when cond is false.
// Messages are for users: they name the option, file, tensor or op and what was expected, so
// the source location is left out.
#define TFM_CHECK(cond, ...)                         \
  do {                                               \
    if (!(cond)) ::tfm::fail(::tfm::cat(__VA_ARGS__)); \
  } while (0)
