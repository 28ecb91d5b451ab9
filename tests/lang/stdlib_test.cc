// Tests of the standard library: each function with a typical call and an error case, the
// function table, and the retry predicates.
#include <gtest/gtest.h>

#include "lang/eval.h"

namespace atomflow::lang {
namespace {

// Variables only; the library under test needs nothing else from the host.
class VariablesHost : public EvalHost {
 public:
  const Value* Lookup(std::string_view name) const override { return variables.Find(name); }
  bool IsSubworkflow(std::string_view) const override { return false; }
  Value CallHost(std::string_view name, std::vector<Value>) override {
    Raise("SystemError", "unexpected host call " + std::string(name));
  }

  Map variables;
};

Value Eval(std::string_view text) {
  VariablesHost host;
  host.variables.Set("m", Map{{"a", 1}, {"b", Map{{"c", 2}}}});
  host.variables.Set("bytes", Value::Bytes("h\xc3\xa9"));
  host.variables.Set("bad_utf8", Value::Bytes("\xff"));
  host.variables.Set("http_503",
                     Map{{"message", "unavailable"}, {"code", 503}, {"tags", List{"HttpError"}}});
  host.variables.Set("http_500", Map{{"code", 500}, {"tags", List{"HttpError"}}});
  host.variables.Set("http_502", Map{{"code", 502}, {"tags", List{"HttpError"}}});
  host.variables.Set("conn", MakeError("ConnectionError", "reset"));
  host.variables.Set("conn_failed", MakeError("ConnectionFailedError", "refused"));
  auto expr = ParseExpression(text);
  if (!expr.ok()) throw std::runtime_error("parse failed: " + expr.message());
  return Evaluate(**expr, host);
}

struct Case {
  const char* text;
  Value expected;
};

void ExpectValues(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    Value actual;
    try {
      actual = Eval(c.text);
    } catch (const RaisedError& error) {
      ADD_FAILURE() << c.text << " raised " << error.what();
      continue;
    }
    EXPECT_EQ(actual, c.expected) << c.text << " gave " << DebugString(actual);
    EXPECT_EQ(actual.type(), c.expected.type()) << c.text << " gave " << DebugString(actual);
  }
}

struct ErrorCase {
  const char* text;
  const char* tag;
};

void ExpectErrors(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    try {
      Value value = Eval(c.text);
      ADD_FAILURE() << c.text << " gave " << DebugString(value) << ", expected " << c.tag;
    } catch (const RaisedError& error) {
      EXPECT_TRUE(HasTag(error.payload(), c.tag)) << c.text << " raised " << error.what();
    }
  }
}

TEST(StdlibTest, ExpressionHelpers) {
  ExpectValues({
      {"default(null, 5)", 5},
      {"default(0, 5)", 0},
      {"default(map.get(m, \"zz\"), \"fallback\")", "fallback"},
      {"if(1 < 2, \"yes\", \"no\")", "yes"},
      {"if(null, \"yes\", \"no\")", "no"},
      {"keys(m)", List{"a", "b"}},
      {"len(\"h\xc3\xa9llo\")", 5},
      {"len([1, 2])", 2},
      {"len(m)", 2},
      {"len(bytes)", 3},
      {"int(\"42\")", 42},
      {"int(\"-7\")", -7},
      {"int(3.9)", 3},
      {"int(-3.9)", -3},
      {"double(\"2.5\")", 2.5},
      {"double(2)", 2.0},
      {"string(12)", "12"},
      {"string(1.5)", "1.5"},
      {"string(2.0)", "2.0"},
      {"string(true)", "true"},
      {"get_type(null)", "null"},
      {"get_type(true)", "boolean"},
      {"get_type(1)", "integer"},
      {"get_type(1.0)", "double"},
      {"get_type(\"\")", "string"},
      {"get_type(bytes)", "bytes"},
      {"get_type([])", "list"},
      {"get_type(m)", "map"},
  });
  ExpectErrors({
      {"len(1)", "TypeError"},
      {"keys([1])", "TypeError"},
      {"int(\"4x\")", "ValueError"},
      {"int(\"1.5\")", "ValueError"},
      {"int(1e300)", "ValueError"},
      {"int(null)", "TypeError"},
      {"double(\"abc\")", "ValueError"},
      {"string([1])", "TypeError"},
      {"string(null)", "TypeError"},
      {"if(1, 2, 3)", "TypeError"},
      {"default(1)", "TypeError"},
  });
}

TEST(StdlibTest, ListAndMap) {
  ExpectValues({
      {"list.concat([1], 2)", List{1, 2}},
      {"list.concat([], [3])", List{List{3}}},
      {"list.prepend([1], 0)", List{0, 1}},
      {"map.get(m, \"a\")", 1},
      {"map.get(m, \"zz\")", nullptr},
      {"map.get(m, [\"b\", \"c\"])", 2},
      {"map.get(m, [\"b\", \"zz\"])", nullptr},
      {"map.get(m, [\"a\", \"c\"])", nullptr},
      {"map.get(null, \"a\")", nullptr},
      {"map.delete(m, \"a\")", Map{{"b", Map{{"c", 2}}}}},
      {"map.delete(m, \"zz\")", Map{{"a", 1}, {"b", Map{{"c", 2}}}}},
      {"map.merge({\"a\": 1, \"b\": {\"x\": 1}}, {\"b\": {\"y\": 2}, \"c\": 3})",
       Map{{"a", 1}, {"b", Map{{"y", 2}}}, {"c", 3}}},
      {"map.merge_nested({\"a\": 1, \"b\": {\"x\": 1}}, {\"b\": {\"y\": 2}, \"c\": 3})",
       Map{{"a", 1}, {"b", Map{{"x", 1}, {"y", 2}}}, {"c", 3}}},
  });
  ExpectErrors({
      {"list.concat(1, 2)", "TypeError"},
      {"list.prepend(m, 2)", "TypeError"},
      {"map.get([1], \"a\")", "TypeError"},
      {"map.get(m, 1)", "TypeError"},
      {"map.delete(m, 1)", "TypeError"},
      {"map.merge(m, [1])", "TypeError"},
      {"map.merge_nested(1, m)", "TypeError"},
  });
}

TEST(StdlibTest, ListFunctionsDoNotChangeTheirArgument) {
  VariablesHost host;
  host.variables.Set("l", List{1});
  Value grown = Evaluate(**ParseExpression("list.concat(l, 2)"), host);
  EXPECT_EQ(grown, Value(List{1, 2}));
  EXPECT_EQ(*host.variables.Find("l"), Value(List{1}));
}

TEST(StdlibTest, Math) {
  ExpectValues({
      {"math.abs(-3)", 3},
      {"math.abs(-2.5)", 2.5},
      {"math.floor(2.7)", 2},
      {"math.floor(-2.5)", -3},
      {"math.floor(4)", 4},
      {"math.max(1, 2)", 2},
      {"math.max(3, 2.5)", 3},
      {"math.min(1, 2.5)", 1},
      {"math.min(-1.5, 2)", -1.5},
  });
  ExpectErrors({
      {"math.abs(\"1\")", "TypeError"},
      {"math.abs(-9223372036854775807 - 1)", "ValueError"},
      {"math.floor(null)", "TypeError"},
      {"math.max(1, \"2\")", "TypeError"},
  });
}

TEST(StdlibTest, Text) {
  ExpectValues({
      {"text.split(\"a,b,,c\", \",\")", List{"a", "b", "", "c"}},
      {"text.split(\"abc\", \"-\")", List{"abc"}},
      {"text.split(\"h\xc3\xa9\", \"\")", List{"h", "\xc3\xa9"}},
      {"text.substring(\"h\xc3\xa9llo\", 1, 3)", "\xc3\xa9l"},
      {"text.substring(\"hello\", 3, 99)", "lo"},
      {"text.substring(\"hello\", 4, 2)", ""},
      {"text.to_upper(\"abC1\")", "ABC1"},
      {"text.to_lower(\"ABc1\")", "abc1"},
      {"text.find_all(\"abcabc\", \"bc\")",
       List{Map{{"index", 1}, {"match", "bc"}}, Map{{"index", 4}, {"match", "bc"}}}},
      {"text.find_all(\"\xc3\xa9\x61\", \"a\")", List{Map{{"index", 1}, {"match", "a"}}}},
      {"text.find_all_regex(\"a1b22\", \"[0-9]+\")",
       List{Map{{"index", 1}, {"match", "1"}}, Map{{"index", 3}, {"match", "22"}}}},
      {"text.match_regex(\"order-123\", \"^order-\\\\d+$\")", true},
      {"text.match_regex(\"order-x\", \"\\\\d\")", false},
      {"text.replace_all(\"a-b-c\", \"-\", \"+\")", "a+b+c"},
      {"text.replace_all(\"aaa\", \"a\", \"aa\")", "aaaaaa"},
      {"text.replace_all_regex(\"john smith\", \"(\\\\w+) (\\\\w+)\", \"\\\\2 \\\\1\")",
       "smith john"},
      {"text.url_encode(\"a b&c/\xc3\xa9\")", "a%20b%26c%2F%C3%A9"},
      {"text.url_encode_plus(\"a b\")", "a+b"},
      {"text.url_decode(\"a%20b+c%C3%A9\")", "a b c\xc3\xa9"},
      {"text.encode(\"h\xc3\xa9\") == bytes", true},
      {"text.decode(bytes)", "h\xc3\xa9"},
      {"text.decode(text.encode(\"x\", \"utf-8\"), \"UTF-8\")", "x"},
      {"len(text.encode(\"h\xc3\xa9\", \"ISO-8859-1\"))", 2},
      {"text.decode(text.encode(\"h\xc3\xa9\", \"latin1\"), \"ISO-8859-1\")", "h\xc3\xa9"},
      // \x escapes end at a literal split, so the ASCII letter after them stays a letter.
      {"text.to_upper(\"\xc3\xa9"
       "a\")",
       "\xc3\x89"
       "A"},
      {"text.to_lower(\"\xc3\x89"
       "A\")",
       "\xc3\xa9"
       "a"},
  });
  ExpectErrors({
      {"text.split(1, \",\")", "TypeError"},
      {"text.substring(\"abc\", \"1\", 2)", "TypeError"},
      {"text.match_regex(\"a\", \"(\")", "ValueError"},
      {"text.find_all_regex(\"a\", \"[\")", "ValueError"},
      {"text.find_all_regex(\"a\", \"(\")", "ValueError"},  // the cached failure again
      {"text.replace_all_regex(\"a\", \"a\", \"\\\\9\")", "ValueError"},
      {"text.url_decode(\"%zz\")", "ValueError"},
      {"text.decode(bad_utf8)", "ValueError"},
      {"text.decode(\"not bytes\")", "TypeError"},
      {"text.encode(\"x\", \"latin-9\")", "ValueError"},
      {"text.to_upper(null)", "TypeError"},
      {"text.encode(\"\xc3\xa9\", \"US-ASCII\")", "ValueError"},
      {"text.decode(text.encode(\"\xc3\xa9\", \"latin1\"), \"ascii\")", "ValueError"},
  });
}

TEST(StdlibTest, Base64AndJson) {
  ExpectValues({
      {"base64.encode(text.encode(\"hi\"))", "aGk="},
      {"base64.encode(text.encode(\"hi\"), false)", "aGk"},
      {"text.decode(base64.decode(\"aGk=\"))", "hi"},
      {"text.decode(base64.decode(\"aGk\", false))", "hi"},
      {"json.decode(\"{\\\"a\\\": [1, 2.5, null, true]}\")",
       Map{{"a", List{1, 2.5, nullptr, true}}}},
      {"json.decode(text.encode(\"[1]\"))", List{1}},
      {"json.encode_to_string({\"a\": [true, null], \"b\": 1})", "{\"a\":[true,null],\"b\":1}"},
      {"json.encode({\"a\": \"x\"}) == text.encode(\"{\\\"a\\\":\\\"x\\\"}\")", true},
      {"json.encode_to_string([1], true)", "[\n    1\n]"},
      {"json.encode_to_string({\"a\": [1]}, {\"prefix\": \"#\", \"indent\": \" \"})",
       "{\n# \"a\": [\n#  1\n# ]\n#}"},
      {"json.encode_to_string([], true)", "[]"},
      {"json.decode(json.encode_to_string(m)) == m", true},
  });
  ExpectErrors({
      {"base64.decode(\"!!!\")", "ValueError"},
      {"base64.encode(1)", "TypeError"},
      {"json.decode(\"{oops\")", "ValueError"},
      {"json.decode(1)", "TypeError"},
      {"json.encode_to_string(bytes)", "ValueError"},
      {"json.encode_to_string(1, 2)", "TypeError"},
      {"json.encode_to_string(1, {\"tab\": \" \"})", "ValueError"},
      {"json.encode_to_string(1, {\"indent\": 2})", "TypeError"},
  });
}

TEST(StdlibTest, HashAndTime) {
  ExpectValues({
      {"base64.encode(hash.compute_checksum(text.encode(\"abc\"), \"SHA256\"))",
       "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="},
      {"len(hash.compute_checksum(\"abc\", \"md5\"))", 16},
      {"base64.encode(hash.compute_hmac(\"key\", \"The quick brown fox jumps over the lazy dog\", "
       "\"SHA256\"))",
       "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="},
      {"time.format(0)", "1970-01-01T00:00:00Z"},
      {"time.format(1700000000.25)", "2023-11-14T22:13:20.25Z"},
      {"time.format(3600, \"+02:00\")", "1970-01-01T03:00:00+02:00"},
      {"time.parse(\"2023-11-14T22:13:20.25Z\")", 1700000000.25},
      {"time.parse(\"1970-01-01T03:00:00+02:00\")", 3600.0},
      {"time.parse(time.format(1234567890))", 1234567890.0},
  });
  ExpectErrors({
      {"hash.compute_checksum(\"a\", \"CRC32\")", "ValueError"},
      {"hash.compute_hmac(1, \"a\", \"SHA1\")", "TypeError"},
      {"time.format(\"now\")", "TypeError"},
      {"time.format(0, \"Mars/Olympus\")", "ValueError"},
      {"time.parse(\"yesterday\")", "ValueError"},
      {"time.parse(\"2023-13-01T00:00:00Z\")", "ValueError"},
  });
}

TEST(StdlibTest, RetryPredicates) {
  ExpectValues({
      {"http.default_retry_predicate(http_503)", true},
      {"http.default_retry_predicate(http_502)", true},
      {"http.default_retry_predicate(http_500)", false},
      {"http.default_retry_predicate(conn)", true},
      {"http.default_retry_predicate(conn_failed)", true},
      {"http.default_retry_predicate(\"a string error\")", false},
      {"http.default_retry_predicate_non_idempotent(http_503)", true},
      {"http.default_retry_predicate_non_idempotent(http_502)", false},
      {"http.default_retry_predicate_non_idempotent(conn)", false},
      {"http.default_retry_predicate_non_idempotent(conn_failed)", true},
      {"retry.always(http_500)", true},
      {"retry.never(http_503)", false},
  });
  ExpectErrors({{"retry.always()", "TypeError"}});
}

TEST(StdlibTest, FunctionTableListsEveryCallable) {
  const FunctionSignature* split = FindFunction("text.split");
  ASSERT_NE(split, nullptr);
  EXPECT_EQ(split->params, (std::vector<std::string>{"source", "separator"}));
  EXPECT_EQ(split->required, 2u);
  EXPECT_FALSE(split->blocking || split->effect);

  for (const char* name : {"sys.now", "sys.get_env", "uuid.generate"}) {
    ASSERT_NE(FindFunction(name), nullptr) << name;
    EXPECT_TRUE(FindFunction(name)->effect) << name;
  }
  for (const char* name : {"http.get", "http.post", "http.put", "http.patch", "http.delete",
                           "http.request", "sys.sleep", "sys.sleep_until", "sys.log",
                           "atomflow.jobs.run", "atomflow.files.write", "atomflow.files.publish"}) {
    ASSERT_NE(FindFunction(name), nullptr) << name;
    EXPECT_TRUE(FindFunction(name)->blocking) << name;
  }
  EXPECT_EQ(FindFunction("atomflow.jobs.run")->params.front(), "command");
  EXPECT_EQ(FindFunction("http.request")->params[0], "method");
  EXPECT_EQ(FindFunction("no.such"), nullptr);
}

TEST(StdlibTest, CallPureFunctionChecksItsTarget) {
  EXPECT_EQ(CallPureFunction("text.split", {"a b", " "}), Value(List{"a", "b"}));
  EXPECT_THROW(CallPureFunction("sys.now", {}), RaisedError);
  EXPECT_THROW(CallPureFunction("nothing", {}), RaisedError);
  try {
    CallPureFunction("text.split", {1, ","});
    FAIL() << "expected a TypeError";
  } catch (const RaisedError& error) {
    EXPECT_EQ(*error.payload().AsMap().Find("message"),
              Value("text.split: argument 'source' must be a string, got integer"));
  }
}

}  // namespace
}  // namespace atomflow::lang
