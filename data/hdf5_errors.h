// HDF5 error plumbing shared by everything that reads or writes HDF5 (data shards, checkpoints):
// HDF5's own printing of its error stack is silenced while a QuietHdf5 guard lives, and failures
// become tfm::Error carrying the innermost HDF5 message.
#pragma once
#include <hdf5.h>

#include <string>

#include "kernels/core/check.h"

namespace tfm {

// Switches HDF5's error printing off for the calling thread while it lives (the error stack and
// its printer are per thread in the thread-safe build).
class QuietHdf5 {
 public:
  QuietHdf5() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5(const QuietHdf5&) = delete;
  QuietHdf5& operator=(const QuietHdf5&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The innermost message on the HDF5 error stack, e.g. "truncated file: eof = 1024, ..."; clears
// the stack.
inline std::string hdf5_reason() {
  std::string reason;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        if (e->desc && *e->desc) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &reason);
  H5Eclear2(H5E_DEFAULT);
  return reason.empty() ? "HDF5 error" : reason;
}

// Throws tfm::Error: `what` (which names the file), then HDF5's reason in parentheses.
[[noreturn]] inline void h5fail(const std::string& what) {
  fail(cat(what, " (", hdf5_reason(), ")"));
}

}  // namespace tfm
