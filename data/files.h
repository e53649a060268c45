// Small file helpers with the durability rules of the data layer: whatever a reader may open is
// written under a temporary name, fsynced, and renamed into place, so a crash never leaves a
// half-written file under a final name. Errors throw tfm::Error naming the path.
#pragma once
#include <string>
#include <string_view>

namespace tfm {

std::string read_file(const std::string& path);
// Writes bytes to path + ".tmp", fsyncs it, renames it to path and fsyncs the directory.
void write_file_atomic(const std::string& path, std::string_view bytes);
// fsyncs `from`, renames it to `to`, fsyncs the directory holding `to`.
void rename_durable(const std::string& from, const std::string& to);
void fsync_path(const std::string& path);  // a file or a directory
std::string parent_dir(const std::string& path);

}  // namespace tfm
