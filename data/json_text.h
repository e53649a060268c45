// JSON text shared by the manifest's Json (data/json.cpp) and the metrics logger
// (trainer/metrics.cpp). Header-only and standard library only: tfm_trainer_util includes it
// without linking tfm_data.
#pragma once
#include <cstdio>
#include <string>
#include <string_view>

namespace tfm {

// Appends `s` to `out` as a quoted JSON string: '"', '\\' and the control characters below 0x20
// escaped (\n, \r, \t by name, the others as \u00XX); every other byte, UTF-8 included, passes
// through unchanged (JSON text is UTF-8).
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

}  // namespace tfm
