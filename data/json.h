// A small JSON value for the dataset manifest: parse (with file:line:column in every error) and
// pretty-print. Objects keep insertion order so written manifests read top-down and diff cleanly.
// Numbers are kept as int64 when they are integers (counts, sizes), double otherwise.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tfm {

class Json {
 public:
  enum class Kind { null, boolean, integer, number, string, array, object };

  Json() = default;
  Json(bool b) : kind_(Kind::boolean), bool_(b) {}
  Json(int v) : kind_(Kind::integer), int_(v) {}
  Json(int64_t v) : kind_(Kind::integer), int_(v) {}
  Json(double v) : kind_(Kind::number), number_(v) {}
  Json(const char* s) : kind_(Kind::string), string_(s) {}
  Json(std::string s) : kind_(Kind::string), string_(std::move(s)) {}
  static Json array() { Json j; j.kind_ = Kind::array; return j; }
  static Json object() { Json j; j.kind_ = Kind::object; return j; }

  // Parses text; `where` (a file name) prefixes error messages: "where:line:col: message".
  static Json parse(std::string_view text, const std::string& where);
  // Pretty-printed with two-space indentation and a trailing newline.
  std::string dump() const;

  Kind kind() const { return kind_; }
  bool is_object() const { return kind_ == Kind::object; }
  bool is_array() const { return kind_ == Kind::array; }

  // Typed access; `what` names the value in the error when the type is wrong
  // (e.g. "manifest.json: splits.train.shards[2].sha256").
  int64_t as_int(const std::string& what) const;
  double as_number(const std::string& what) const;
  bool as_bool(const std::string& what) const;
  const std::string& as_string(const std::string& what) const;
  const std::vector<Json>& as_array(const std::string& what) const;

  // Object members. at() throws naming `what` and the key when the key is absent.
  bool has(const std::string& key) const;
  const Json& at(const std::string& key, const std::string& what) const;
  Json& set(const std::string& key, Json value);  // replaces or appends; returns the new member
  const std::vector<std::pair<std::string, Json>>& members() const { return object_; }

  void push_back(Json value);  // arrays

 private:
  void dump_to(std::string& out, int indent) const;
  Kind kind_ = Kind::null;
  bool bool_ = false;
  int64_t int_ = 0;
  double number_ = 0;
  std::string string_;
  std::vector<Json> array_;
  std::vector<std::pair<std::string, Json>> object_;
};

}  // namespace tfm
