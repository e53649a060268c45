#include "data/text.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "kernels/core/check.h"

namespace tfm {

LineReader::LineReader(std::string path) : path_(std::move(path)) {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) fail(cat("cannot open ", path_, ": ", std::strerror(errno)));
  if (S_ISDIR(st.st_mode)) fail(cat("cannot read ", path_, ": it is a directory"));
  file_ = std::fopen(path_.c_str(), "rb");
  if (!file_) fail(cat("cannot open ", path_, ": ", std::strerror(errno)));
}

LineReader::~LineReader() {
  if (file_) std::fclose(file_);
  std::free(buffer_);
}

bool LineReader::next(std::string& line) {
  // POSIX getline keeps embedded NUL bytes and any line length.
  ssize_t n = ::getline(&buffer_, &capacity_, file_);
  if (n < 0) {
    if (std::ferror(file_)) fail(cat("error reading ", path_, " after line ", line_number_));
    line.clear();
    return false;
  }
  size_t len = size_t(n);
  if (len > 0 && buffer_[len - 1] == '\n') --len;
  if (len > 0 && buffer_[len - 1] == '\r') --len;
  line.assign(buffer_, len);
  ++line_number_;
  return true;
}

int64_t find_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return int64_t(i);
    if (i + len > n) return int64_t(i);
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return int64_t(i);
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return int64_t(i);
    i += len;
  }
  return -1;
}

bool is_blank(std::string_view text) {
  for (char c : text) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

}  // namespace tfm
