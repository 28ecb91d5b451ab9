// Tests of the value model: sharing, equality, map order and JSON round trips.
#include "value/value.h"

#include <gtest/gtest.h>

namespace atomflow {
namespace {

TEST(ValueTest, CopiesShareUntilMutated) {
  Value a(List{1, 2, 3});
  Value b = a;
  b.MutableList().push_back(4);
  EXPECT_EQ(a.AsList().size(), 3u);
  EXPECT_EQ(b.AsList().size(), 4u);
}

TEST(ValueTest, IntEqualsDoubleOfSameValue) {
  EXPECT_EQ(Value(2), Value(2.0));
  EXPECT_NE(Value(2), Value("2"));
  EXPECT_NE(Value(true), Value(1));
}

TEST(ValueTest, DeepEqualityIgnoresMapOrder) {
  Value a(Map{{"x", 1}, {"y", List{"a"}}});
  Value b(Map{{"y", List{"a"}}, {"x", 1}});
  EXPECT_EQ(a, b);
}

TEST(ValueTest, MapKeepsInsertionOrderAndReplacesInPlace) {
  Map map;
  map.Set("b", 1);
  map.Set("a", 2);
  map.Set("b", 3);
  std::vector<std::string> keys;
  for (const auto& [key, value] : map) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(map.Find("b")->AsInt(), 3);
}

TEST(ValueTest, JsonKeepsIntegersAndDoublesApart) {
  Value value = FromJson(Json::parse(R"({"i": 3, "d": 3.5, "l": [null, true]})"));
  EXPECT_TRUE(value.AsMap().Find("i")->is_int());
  EXPECT_TRUE(value.AsMap().Find("d")->is_double());
  EXPECT_EQ(ToJson(value)->dump(), R"({"i":3,"d":3.5,"l":[null,true]})");
}

TEST(ValueTest, BytesAreNotJsonButSurviveTheJournal) {
  Value value(Map{{"raw", Value::Bytes(std::string("\x00\xff", 2))}, {"$bytes", "user key"}});
  EXPECT_FALSE(ToJson(value).ok());
  Value back = FromJournalJson(ToJournalJson(value));
  EXPECT_EQ(back, value);
}

TEST(ValueTest, Base64RoundTrip) {
  for (std::string text : {"", "a", "ab", "abc", "abcd", "hello world"}) {
    EXPECT_EQ(Base64Decode(Base64Encode(text)).value(), text);
  }
  EXPECT_EQ(Base64Encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(Base64Decode("a*b").ok());
}

}  // namespace
}  // namespace atomflow

namespace atomflow {
namespace {

// Regression: a job's output with a byte that is not UTF-8 aborted the process when the
// journal tried to write it, leaving the execution ACTIVE for good.
TEST(JournalJsonTest, StringThatIsNotUtf8RoundTripsAndPlainJsonRefusesIt) {
  Value text(std::string("caf\xe9 \xff"));
  Value decoded = FromJournalJson(ToJournalJson(Value(Map{{"k", text}})));
  EXPECT_EQ(decoded.AsMap().Find("k")->AsString(), text.AsString());
  EXPECT_FALSE(ToJson(text).ok());
  EXPECT_EQ(ToJournalJson(Value(Map{{"$text", Value("x")}})).dump(), R"({"$$text":"x"})");
}

TEST(Utf8Test, FindsTheFirstBadSequence) {
  size_t bad = 0;
  EXPECT_TRUE(IsValidUtf8("h\xc3\xa9llo \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("ab\xc0\xaf", &bad));  // an overlong '/'
  EXPECT_EQ(bad, 2u);
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80", &bad));  // a surrogate
  EXPECT_FALSE(IsValidUtf8("ok\xe2\x82", &bad));    // cut short
  EXPECT_EQ(bad, 2u);
}

}  // namespace
}  // namespace atomflow
