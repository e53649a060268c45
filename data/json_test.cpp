// The manifest's JSON: round trip, and parse errors that point at file:line:column.
#include "data/json.h"

#include <gtest/gtest.h>

#include "kernels/core/check.h"

namespace tfm {
namespace {

TEST(Json, RoundTripKeepsOrderTypesAndEscapes) {
  Json j = Json::object();
  j.set("b", int64_t(1) << 40);
  j.set("a", "tab\there \"quoted\" ü \\ \n");
  Json arr = Json::array();
  arr.push_back(Json(true));
  arr.push_back(Json());
  arr.push_back(Json(0.25));
  arr.push_back(Json(-3));
  j.set("list", arr);
  j.set("empty", Json::object());
  std::string text = j.dump();
  Json k = Json::parse(text, "x.json");
  EXPECT_EQ(k.dump(), text);
  EXPECT_EQ(k.members()[0].first, "b");  // insertion order, not sorted
  EXPECT_EQ(k.at("b", "x").as_int("b"), int64_t(1) << 40);
  EXPECT_EQ(k.at("a", "x").as_string("a"), "tab\there \"quoted\" ü \\ \n");
  EXPECT_EQ(k.at("list", "x").as_array("list")[2].as_number("n"), 0.25);
  EXPECT_EQ(Json::parse(R"("\u00fc\ud83d\ude00")", "s").as_string("s"), "ü😀");
}

TEST(Json, ErrorsNameFileLineAndColumn) {
  auto error_of = [](const std::string& text) {
    try {
      Json::parse(text, "m.json");
      return std::string();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  };
  EXPECT_EQ(error_of("{\n  \"a\": 1,\n  \"b\" 2\n}").rfind("m.json:3:7:", 0), 0u) << error_of("{\n  \"a\": 1,\n  \"b\" 2\n}");
  EXPECT_NE(error_of("{\"a\": 1, \"a\": 2}").find("duplicate key"), std::string::npos);
  EXPECT_NE(error_of("[1, 2").find("m.json:1:"), std::string::npos);
  EXPECT_NE(error_of("{} x").find("unexpected text"), std::string::npos);
  EXPECT_NE(error_of("\"abc").find("unterminated"), std::string::npos);
  EXPECT_EQ(error_of(" {\"ok\": [1, 2.5e3, false, null]} "), "");
}

TEST(Json, TypeErrorsNameTheValue) {
  Json j = Json::parse(R"({"n": "seven"})", "m.json");
  try {
    j.at("n", "m.json").as_int("m.json: splits.train.num_examples");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("splits.train.num_examples: expected an integer, found a string"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(j.at("missing", "m.json"), Error);
}

}  // namespace
}  // namespace tfm
