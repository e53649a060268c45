// HDF5 plumbing shared by everything that reads or writes HDF5 (data shards, checkpoints):
// HDF5's own printing of its error stack is silenced while a QuietHdf5 guard lives, failures
// become tfm::Error carrying the innermost HDF5 message, and Hdf5Handle closes identifiers.
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

// Owns one HDF5 identifier and closes it with the matching H5?close (H5Fclose, H5Dclose, ...)
// when it dies; movable, not copyable.
class Hdf5Handle {
 public:
  Hdf5Handle() = default;
  // Takes `id` as returned by the H5?create/open call; a negative id (the call failed) throws
  // h5fail(what).
  Hdf5Handle(hid_t id, herr_t (*close)(hid_t), const std::string& what) : id_(id), close_(close) {
    if (id_ < 0) h5fail(what);
  }
  Hdf5Handle(Hdf5Handle&& o) noexcept : id_(o.release()), close_(o.close_) {}
  Hdf5Handle& operator=(Hdf5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      close_ = o.close_;
      id_ = o.release();
    }
    return *this;
  }
  Hdf5Handle(const Hdf5Handle&) = delete;
  Hdf5Handle& operator=(const Hdf5Handle&) = delete;
  ~Hdf5Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now, ignoring failure (destructors, error paths).
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  // Closes now and reports failure (a file's close is where buffered data reaches the disk).
  void close(const std::string& what) {
    const hid_t id = release();
    if ((close_ ? close_(id) : -1) < 0) h5fail(what);
  }
  // Gives up ownership without closing.
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

}  // namespace tfm
