// Text input for `tfm prepare`: a line reader that counts lines (1-based, for file:line messages),
// strips the line terminator ("\n" or "\r\n"), and UTF-8 validation. A final line without a
// trailing newline still counts as a line.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace tfm {

class LineReader {
 public:
  // Throws tfm::Error naming the file when it cannot be opened (missing, a directory, no access).
  explicit LineReader(std::string path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Reads the next line into `line` (without terminator); false at end of file.
  bool next(std::string& line);
  int64_t line_number() const { return line_number_; }  // of the line last returned
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t line_number_ = 0;
  char* buffer_ = nullptr;  // getline's buffer, grown as needed
  size_t capacity_ = 0;
};

// Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or -1 when the text is valid.
int64_t find_invalid_utf8(std::string_view text);

// True when the text holds nothing but spaces, tabs and carriage returns.
bool is_blank(std::string_view text);

}  // namespace tfm
