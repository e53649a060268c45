#include "data/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "data/json_text.h"
#include "kernels/core/check.h"

namespace tfm {

namespace {

const char* kind_name(Json::Kind k) {
  switch (k) {
    case Json::Kind::null: return "null";
    case Json::Kind::boolean: return "a boolean";
    case Json::Kind::integer: return "an integer";
    case Json::Kind::number: return "a number";
    case Json::Kind::string: return "a string";
    case Json::Kind::array: return "an array";
    case Json::Kind::object: return "an object";
  }
  return "?";
}

// Recursive-descent parser over the whole text; tracks the offset so errors can name line:col.
class Parser {
 public:
  Parser(std::string_view text, const std::string& where) : s_(text), where_(where) {}

  Json parse_document() {
    Json v = value(0);
    skip_space();
    if (i_ != s_.size()) error("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& message) const {
    int64_t line = 1, col = 1;
    for (size_t k = 0; k < i_ && k < s_.size(); ++k) {
      if (s_[k] == '\n') { ++line; col = 1; } else { ++col; }
    }
    fail(cat(where_, ":", line, ":", col, ": ", message));
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    skip_space();
    if (i_ < s_.size() && s_[i_] == c) { ++i_; return true; }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) error(cat("expected '", c, "'"));
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) == word) { i_ += word.size(); return true; }
    return false;
  }

  Json value(int depth) {
    if (depth > 64) error("nesting too deep");
    skip_space();
    if (i_ >= s_.size()) error("unexpected end of input");
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      Json obj = Json::object();
      if (eat('}')) return obj;
      do {
        skip_space();
        if (i_ >= s_.size() || s_[i_] != '"') error("expected a string key");
        std::string key = string();
        if (obj.has(key)) error(cat("duplicate key \"", key, "\""));
        expect(':');
        obj.set(key, value(depth + 1));
      } while (eat(','));
      expect('}');
      return obj;
    }
    if (c == '[') {
      ++i_;
      Json arr = Json::array();
      if (eat(']')) return arr;
      do arr.push_back(value(depth + 1));
      while (eat(','));
      expect(']');
      return arr;
    }
    if (c == '"') return Json(string());
    if (literal("true")) return Json(true);
    if (literal("false")) return Json(false);
    if (literal("null")) return Json();
    return number();
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (i_ >= s_.size()) error("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string");
      if (c != '\\') { out += c; continue; }
      if (i_ >= s_.size()) error("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
            if (!literal("\\u")) error("unpaired surrogate in \\u escape");
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) error("bad low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: error(cat("bad escape \\", e));
      }
    }
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) error("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= uint32_t(h - '0');
      else if (h >= 'a' && h <= 'f') v |= uint32_t(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= uint32_t(h - 'A' + 10);
      else error("bad hex digit in \\u escape");
    }
    return v;
  }
  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 63)); out += char(0x80 | (cp & 63));
    } else {
      out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 63));
      out += char(0x80 | ((cp >> 6) & 63)); out += char(0x80 | (cp & 63));
    }
  }

  Json number() {
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    bool integral = true;
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c >= '0' && c <= '9') { ++i_; continue; }
      if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') { integral = false; ++i_; continue; }
      break;
    }
    std::string_view tok = s_.substr(start, i_ - start);
    if (tok.empty() || tok == "-") { i_ = start; error("expected a value"); }
    if (integral) {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
      if (ec != std::errc() || p != tok.data() + tok.size()) { i_ = start; error(cat("bad integer '", tok, "'")); }
      return Json(v);
    }
    std::string copy(tok);
    char* end = nullptr;
    double d = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) { i_ = start; error(cat("bad number '", tok, "'")); }
    return Json(d);
  }

  std::string_view s_;
  const std::string& where_;
  size_t i_ = 0;
};

}  // namespace

Json Json::parse(std::string_view text, const std::string& where) {
  return Parser(text, where).parse_document();
}

std::string Json::dump() const {
  std::string out;
  dump_to(out, 0);
  out += '\n';
  return out;
}

void Json::dump_to(std::string& out, int indent) const {
  std::string pad(size_t(indent + 2), ' ');
  switch (kind_) {
    case Kind::null: out += "null"; break;
    case Kind::boolean: out += bool_ ? "true" : "false"; break;
    case Kind::integer: out += std::to_string(int_); break;
    case Kind::number: {
      TFM_CHECK(std::isfinite(number_), "JSON cannot hold ", number_);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", number_);
      out += buf;
      break;
    }
    case Kind::string: append_json_string(out, string_); break;
    case Kind::array: {
      if (array_.empty()) { out += "[]"; break; }
      out += "[\n";
      for (size_t k = 0; k < array_.size(); ++k) {
        out += pad;
        array_[k].dump_to(out, indent + 2);
        out += k + 1 < array_.size() ? ",\n" : "\n";
      }
      out += std::string(size_t(indent), ' ') + "]";
      break;
    }
    case Kind::object: {
      if (object_.empty()) { out += "{}"; break; }
      out += "{\n";
      for (size_t k = 0; k < object_.size(); ++k) {
        out += pad;
        append_json_string(out, object_[k].first);
        out += ": ";
        object_[k].second.dump_to(out, indent + 2);
        out += k + 1 < object_.size() ? ",\n" : "\n";
      }
      out += std::string(size_t(indent), ' ') + "}";
      break;
    }
  }
}

int64_t Json::as_int(const std::string& what) const {
  if (kind_ != Kind::integer) fail(cat(what, ": expected an integer, found ", kind_name(kind_)));
  return int_;
}
double Json::as_number(const std::string& what) const {
  if (kind_ == Kind::integer) return double(int_);
  if (kind_ != Kind::number) fail(cat(what, ": expected a number, found ", kind_name(kind_)));
  return number_;
}
bool Json::as_bool(const std::string& what) const {
  if (kind_ != Kind::boolean) fail(cat(what, ": expected a boolean, found ", kind_name(kind_)));
  return bool_;
}
const std::string& Json::as_string(const std::string& what) const {
  if (kind_ != Kind::string) fail(cat(what, ": expected a string, found ", kind_name(kind_)));
  return string_;
}
const std::vector<Json>& Json::as_array(const std::string& what) const {
  if (kind_ != Kind::array) fail(cat(what, ": expected an array, found ", kind_name(kind_)));
  return array_;
}

bool Json::has(const std::string& key) const {
  for (const auto& [k, v] : object_) {
    if (k == key) return true;
  }
  return false;
}

const Json& Json::at(const std::string& key, const std::string& what) const {
  if (kind_ != Kind::object) fail(cat(what, ": expected an object, found ", kind_name(kind_)));
  for (const auto& [k, v] : object_) {
    if (k == key) return v;
  }
  fail(cat(what, ": missing \"", key, "\""));
}

Json& Json::set(const std::string& key, Json value) {
  TFM_CHECK(kind_ == Kind::object, "Json::set on ", kind_name(kind_));
  for (auto& [k, v] : object_) {
    if (k == key) return v = std::move(value);
  }
  object_.emplace_back(key, std::move(value));
  return object_.back().second;
}

void Json::push_back(Json value) {
  TFM_CHECK(kind_ == Kind::array, "Json::push_back on ", kind_name(kind_));
  array_.push_back(std::move(value));
}

}  // namespace tfm
