#include "data/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "kernels/core/check.h"

namespace tfm {

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(cat("cannot open ", path, ": ", std::strerror(errno)));
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) fail(cat("error reading ", path));
  return out;
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(cat("cannot open ", path, " to sync it: ", std::strerror(errno)));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the data itself was synced.
  if (rc != 0 && err != EINVAL) fail(cat("fsync ", path, ": ", std::strerror(err)));
}

std::string parent_dir(const std::string& path) {
  std::filesystem::path p = std::filesystem::path(path).parent_path();
  return p.empty() ? "." : p.string();
}

void rename_durable(const std::string& from, const std::string& to) {
  fsync_path(from);
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    fail(cat("cannot rename ", from, " to ", to, ": ", std::strerror(errno)));
  }
  fsync_path(parent_dir(to));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(cat("cannot create ", tmp, ": ", std::strerror(errno)));
  size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  bool bad = written != bytes.size() || std::fflush(f) != 0;
  std::fclose(f);
  if (bad) {
    std::remove(tmp.c_str());
    fail(cat("cannot write ", tmp, " (disk full?)"));
  }
  rename_durable(tmp, path);
}

}  // namespace tfm
