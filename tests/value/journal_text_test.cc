// Journal payloads written as text (JsonObjectText) read back exactly as the Json they replace.
#include "value/journal_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace atomflow {
namespace {

// The text reads back as what the store wrote from ToJournalJson, down to the number types:
// both dump alike.
void ExpectSameAsJson(const Value& value) {
  std::string text;
  AppendJournalText(value, text);
  Json parsed = Json::parse(text);
  // The store dumps with the replace handler: a map key that is not UTF-8 is replaced.
  std::string expected = ToJournalJson(value).dump(-1, ' ', false, Json::error_handler_t::replace);
  EXPECT_EQ(parsed.dump(), expected) << text;
  EXPECT_EQ(FromJournalJson(parsed), FromJournalJson(Json::parse(expected))) << text;
}

TEST(JournalTextTest, ScalarsReadBackWithTheirTypes) {
  ExpectSameAsJson(Value());
  ExpectSameAsJson(Value(true));
  ExpectSameAsJson(Value(false));
  ExpectSameAsJson(Value(int64_t{0}));
  ExpectSameAsJson(Value(std::numeric_limits<int64_t>::min()));
  ExpectSameAsJson(Value(std::numeric_limits<int64_t>::max()));
  for (double number : {1.0, -0.0, 0.1, 1e300, -2.5e-300, 123456789.0, 1e21, 5e-324}) {
    ExpectSameAsJson(Value(number));
  }
}

TEST(JournalTextTest, StringsAreEscapedAsDumpEscapesThem) {
  ExpectSameAsJson(Value(std::string("plain")));
  ExpectSameAsJson(Value(std::string("quote \" backslash \\ slash /")));
  ExpectSameAsJson(Value(std::string("\b\f\n\r\t\x01\x1f\x7f", 8)));
  ExpectSameAsJson(Value(std::string("nul \0 inside", 12)));
  ExpectSameAsJson(Value(std::string("é 漢字 😀")));
  ExpectSameAsJson(Value(std::string("bad \xff utf-8")));  // tagged as $text
  ExpectSameAsJson(Value::Bytes(std::string("\x00\x01\xfe\xff", 4)));
}

TEST(JournalTextTest, ListsAndMapsKeepOrderAndEscapeDollarKeys) {
  Map inner{{"$bytes", Value("not bytes")}, {"b", Value(List{1, 2.5, "x"})}, {"a", Value()}};
  ExpectSameAsJson(Value(Map{{"z", Value(inner)}, {"$$x", 1}, {"k\"ey\n", Value(List{})}}));
  ExpectSameAsJson(Value(List{Value(Map{}), Value(List{Value(List{})})}));
  ExpectSameAsJson(Value(Map{{"bad \xfe key", 1}}));  // replaced as dump replaces it
}

TEST(JournalTextTest, ANonFiniteNumberAnywhereMakesTheValueNull) {
  Value value(Map{{"ok", 1}, {"bad", Value(List{std::nan("")})}});
  std::string text = "[";
  AppendJournalText(value, text);
  EXPECT_EQ(text, "[null");
  ExpectSameAsJson(Value(std::numeric_limits<double>::infinity()));
}

TEST(JournalTextTest, ObjectTextIsTheOrderedJsonItReplaces) {
  JsonObjectText record;
  record.String("function", "http.post")
      .Int("n", -3)
      .Bool("ok", true)
      .Null("none")
      .JournalValue("value", Value(Map{{"code", 200}}))
      .Raw("raw", "[1]");
  Json expected = {{"function", "http.post"},  {"n", -3},   {"ok", true}, {"none", nullptr},
                   {"value", {{"code", 200}}}, {"raw", {1}}};
  EXPECT_EQ(record.Take(), expected.dump());
  EXPECT_EQ(record.Take(), "{}");  // the writer starts over
}

}  // namespace
}  // namespace atomflow
