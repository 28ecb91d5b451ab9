// Tests of the expression language: parsing, precedence, operators, access errors, name
// resolution, calls, assignment targets and template rendering.
#include <gtest/gtest.h>

#include <set>

#include "lang/ast.h"
#include "lang/eval.h"

namespace atomflow::lang {
namespace {

// Variables from a map; one subworkflow `double_it(x)` that the host computes and counts, and
// the effect functions answer fixed values.
class TestHost : public EvalHost {
 public:
  const Value* Lookup(std::string_view name) const override { return variables.Find(name); }
  bool IsSubworkflow(std::string_view name) const override {
    return name == "double_it" || name == "side_effect";
  }
  Value CallHost(std::string_view name, std::vector<Value> args) override {
    ++calls;
    called.push_back(std::string(name));
    if (name == "double_it") return args.at(0).AsInt() * 2;
    if (name == "sys.now") return 1700000000.5;
    return true;
  }

  Map variables;
  int calls = 0;
  std::vector<std::string> called;
};

Value Eval(std::string_view text, TestHost& host) {
  auto expr = ParseExpression(text);
  if (!expr.ok()) throw std::runtime_error("parse failed: " + expr.message());
  return Evaluate(**expr, host);
}

Value Eval(std::string_view text) {
  TestHost host;
  host.variables.Set("x", 10);
  host.variables.Set("s", "abc");
  host.variables.Set("l", List{1, 2, 3});
  host.variables.Set("m", Map{{"a", 1}, {"b", Map{{"c", "deep"}}}, {"n", nullptr}});
  return Eval(text, host);
}

// The tag of the error text raises, or "" when it does not raise.
std::string ErrorTag(std::string_view text) {
  try {
    Eval(text);
  } catch (const RaisedError& error) {
    const Value& tags = *error.payload().AsMap().Find("tags");
    return tags.AsList().front().AsString();
  }
  return "";
}

std::string ErrorMessage(std::string_view text) {
  try {
    Eval(text);
  } catch (const RaisedError& error) {
    return error.payload().AsMap().Find("message")->AsString();
  }
  return "";
}

struct Case {
  const char* text;
  Value expected;
};

void ExpectValues(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    Value actual = Eval(c.text);
    EXPECT_EQ(actual, c.expected) << c.text << " gave " << DebugString(actual);
    EXPECT_EQ(actual.type(), c.expected.type()) << c.text << " gave " << DebugString(actual);
  }
}

TEST(ExprTest, Literals) {
  ExpectValues({
      {"42", 42},
      {"-7", -7},
      {"2.5", 2.5},
      {"1e3", 1000.0},
      {"\"a\\\"b\\\\c\\n\\t\"", "a\"b\\c\n\t"},
      {"\"\\u00e9\"", "\xc3\xa9"},
      {"true", true},
      {"True", true},
      {"TRUE", true},
      {"false", false},
      {"FALSE", false},
      {"null", nullptr},
      {"[1, \"two\", [3]]", List{1, "two", List{3}}},
      {"{\"k\": 1, \"j\": [x]}", Map{{"k", 1}, {"j", List{10}}}},
      {"{}", Map{}},
      {"[]", List{}},
      {"9223372036854775807", INT64_MAX},
  });
}

TEST(ExprTest, PrecedenceTable) {
  ExpectValues({
      {"1 + 2 * 3", 7},
      {"(1 + 2) * 3", 9},
      {"10 - 4 - 3", 3},
      {"2 * 3 % 4", 2},
      {"-2 * 3", -6},
      {"- x + 1", -9},
      {"1 + 2 == 3", true},
      {"1 < 2 and 2 < 3", true},
      {"true or false and false", true},
      {"(true or false) and false", false},
      {"not true == false", true},     // (not true) == false
      {"not false and false", false},  // (not false) and false
      {"not (1 in [1])", false},
      {"not(\"a\" in m)", false},
      {"m.b.c", "deep"},
      {"l[1] + l[2]", 5},
      {"x * 9/5 + 32", 50.0},
      {"\"n\" + 1 + 2", "n12"},
      {"1 + 2 + \"n\"", "3n"},
      {"NOT false AND TRUE OR FALSE", true},
  });
}

TEST(ExprTest, PlusTable) {
  ExpectValues({
      {"1 + 2", 3},
      {"1 + 2.5", 3.5},
      {"2.5 + 1", 3.5},
      {"\"a\" + \"b\"", "ab"},
      {"\"a\" + 1", "a1"},
      {"1 + \"a\"", "1a"},
      {"\"a\" + 1.5", "a1.5"},
      {"2.0 + \"a\"", "2.0a"},
      {"true + \"a\"", "truea"},
      {"\"a\" + false", "afalse"},
  });
  EXPECT_EQ(ErrorTag("true + 1"), "TypeError");
  EXPECT_EQ(ErrorTag("1 + true"), "TypeError");
  EXPECT_EQ(ErrorTag("true + true"), "TypeError");
  EXPECT_EQ(ErrorTag("null + \"a\""), "TypeError");
  EXPECT_EQ(ErrorTag("[1] + [2]"), "TypeError");
  EXPECT_EQ(ErrorTag("9223372036854775807 + 1"), "ValueError");
  EXPECT_EQ(ErrorTag("-9223372036854775807 - 2"), "ValueError");
  EXPECT_EQ(ErrorTag("9223372036854775807 * 2"), "ValueError");
}

TEST(ExprTest, Arithmetic) {
  ExpectValues({
      {"7 / 2", 3.5},
      {"6 / 2", 3.0},
      {"7 // 2", 3},
      {"-7 // 2", -4},
      {"7.5 // 2", 3.0},
      {"7 % 3", 1},
      {"-7 % 3", 2},
      {"7 % -3", -2},
      {"7.5 % 2", 1.5},
      {"3 - 5", -2},
      {"2 * 2.5", 5.0},
      {"-(2.5)", -2.5},
  });
  for (const char* text : {"1 / 0", "1 // 0", "1 % 0", "1.5 / 0.0", "1 / 0.0", "x % 0"}) {
    EXPECT_EQ(ErrorTag(text), "ZeroDivisionError") << text;
  }
  EXPECT_EQ(ErrorTag("\"a\" - 1"), "TypeError");
  EXPECT_EQ(ErrorTag("\"a\" * 2"), "TypeError");
  EXPECT_EQ(ErrorTag("-\"a\""), "TypeError");
  EXPECT_EQ(ErrorMessage("null * 2"), "unsupported operand types for *: null and integer");
  EXPECT_EQ(ErrorMessage("x.f"), "cannot read field 'f' of an integer: only maps have fields");
  EXPECT_EQ(ErrorMessage("s[0]"), "cannot index a string: only lists and maps");
}

TEST(ExprTest, DoubleOverflowIsValueError) {
  for (const char* text : {"1e308 * 10", "1.7976931348623157e308 + 1.7976931348623157e308",
                           "-1e308 - 1e308", "1e308 / 1e-10"}) {
    EXPECT_EQ(ErrorTag(text), "ValueError") << text;
  }
  ExpectValues({{"1e308 * 1", 1e308}, {"1e-320 / 1e10", 0.0}});
}

TEST(ExprTest, Comparisons) {
  ExpectValues({
      {"1 < 2", true},
      {"1 < 1.5", true},
      {"2.0 == 2", true},
      {"2 >= 2.0", true},
      {"\"abc\" < \"abd\"", true},
      {"\"b\" > \"abc\"", true},
      {"[1, {\"a\": [2]}] == [1, {\"a\": [2]}]", true},
      {"[1, 2] == [2, 1]", false},
      {"{\"a\": 1, \"b\": 2} == {\"a\": 1, \"b\": 2}", true},
      {"{\"a\": 1} != {\"a\": 2}", true},
      {"null == null", true},
      {"1 == \"1\"", false},
      {"null != 0", true},
      {"m.b == {\"c\": \"deep\"}", true},
  });
  EXPECT_EQ(ErrorTag("1 < \"a\""), "TypeError");
  EXPECT_EQ(ErrorTag("null < 1"), "TypeError");
  EXPECT_EQ(ErrorTag("[1] < [2]"), "TypeError");
  EXPECT_EQ(ErrorTag("true > false"), "TypeError");
}

// Arithmetic and logic on numbers and booleans take a fast path that gives up on anything
// unusual; each case here reads variables and fields, so it runs on that path first, and must
// give the general path's value, or its error when the general path raises.
TEST(ExprTest, ScalarOperationsOnVariablesMatchTheGeneralRules) {
  TestHost host;
  host.variables.Set("x", 10);
  host.variables.Set("d", 2.5);
  host.variables.Set("b", true);
  host.variables.Set("s", "abc");
  host.variables.Set("big", INT64_MAX);
  host.variables.Set("m", Map{{"a", 1}, {"n", nullptr}, {"inner", Map{{"k", 4}}}});
  const std::vector<Case> values = {
      {"x * 3 + m.a", 31},
      {"m.inner.k * d", 10.0},
      {"x / 4", 2.5},
      {"x // 3 + x % 3", 4},
      {"-x // 3", -4},
      {"x % -3", -2},
      {"-x", -10},
      {"-d", -2.5},
      {"x == 10.0", true},
      {"b == 1", false},
      {"b != 1", true},
      {"x >= d and b", true},
      {"not b or x < 0", false},
      {"false and x", false},
      {"x + s", "10abc"},
      {"s + d", "abc2.5"},
      {"big - 1 > x", true},
      {"http.default_retry.max_retries + x", 15},
  };
  for (const Case& c : values) {
    Value actual = Eval(c.text, host);
    EXPECT_EQ(actual, c.expected) << c.text << " gave " << DebugString(actual);
    EXPECT_EQ(actual.type(), c.expected.type()) << c.text << " gave " << DebugString(actual);
  }

  const std::vector<std::pair<const char*, const char*>> errors = {
      {"big + x", "ValueError"},
      {"-big * x", "ValueError"},
      {"x // 0", "ZeroDivisionError"},
      {"d % (x - 10)", "ZeroDivisionError"},
      {"x / (d - 2.5)", "ZeroDivisionError"},
      {"m.n + 1", "TypeError"},
      {"m.inner + 1", "TypeError"},
      {"m.missing + 1", "KeyError"},
      {"x.field + 1", "TypeError"},
      {"nowhere * 2", "KeyError"},
      {"b < x", "TypeError"},
      {"not x", "TypeError"},
      {"x and b", "TypeError"},
      {"b and x", "TypeError"},
  };
  for (const auto& [text, tag] : errors) {
    std::string raised;
    try {
      Eval(text, host);
    } catch (const RaisedError& error) {
      raised = error.payload().AsMap().Find("tags")->AsList().front().AsString();
    }
    EXPECT_EQ(raised, tag) << text;
  }
}

TEST(ExprTest, InOperator) {
  ExpectValues({
      {"2 in l", true},
      {"4 in l", false},
      {"2.0 in l", true},
      {"\"a\" in m", true},
      {"\"z\" in m", false},
      {"[1] in [[1], [2]]", true},
      {"\"HttpError\" in [\"HttpError\", \"x\"]", true},
  });
  EXPECT_EQ(ErrorMessage("1 in null"),
            "The argument of 'in' must be a dict or an array; got: null");
  EXPECT_EQ(ErrorTag("\"a\" in \"abc\""), "TypeError");
}

TEST(ExprTest, LogicalOperatorsNeedBooleans) {
  EXPECT_EQ(ErrorTag("1 and true"), "TypeError");
  EXPECT_EQ(ErrorTag("true and 1"), "TypeError");
  EXPECT_EQ(ErrorTag("null or true"), "TypeError");
  EXPECT_EQ(ErrorTag("not 1"), "TypeError");
  EXPECT_EQ(ErrorTag("not null"), "TypeError");
}

TEST(ExprTest, AndOrShortCircuit) {
  TestHost host;
  EXPECT_EQ(Eval("false and side_effect()", host), Value(false));
  EXPECT_EQ(Eval("true or side_effect()", host), Value(true));
  EXPECT_EQ(Eval("FALSE AND side_effect()", host), Value(false));
  EXPECT_EQ(host.calls, 0);

  EXPECT_EQ(Eval("true and side_effect()", host), Value(true));
  EXPECT_EQ(Eval("false or side_effect()", host), Value(true));
  EXPECT_EQ(host.calls, 2);
}

TEST(ExprTest, IfEvaluatesOnlyTheChosenBranch) {
  TestHost host;
  host.variables.Set("v", nullptr);
  EXPECT_EQ(Eval("if(v != null, v.field, \"none\")", host), Value("none"));
  EXPECT_EQ(Eval("if(true, 1, side_effect())", host), Value(1));
  EXPECT_EQ(Eval("if(null, side_effect(), 2)", host), Value(2));
  EXPECT_EQ(host.calls, 0);
}

TEST(ExprTest, FieldAndIndexAccess) {
  ExpectValues({
      {"m.a", 1},
      {"m[\"a\"]", 1},
      {"m[\"b\"][\"c\"]", "deep"},
      {"m.n", nullptr},
      {"l[0]", 1},
      {"l[x - 8]", 3},
      {"[[1, 2], [3, 4]][1][0]", 3},
      {"{\"k\": [5]}.k[0]", 5},
  });
  EXPECT_EQ(ErrorTag("m.zz"), "KeyError");
  EXPECT_EQ(ErrorMessage("m.zz"), "key 'zz' not found in map");
  EXPECT_EQ(ErrorMessage("m[\"missing\"]"), "key 'missing' not found in map");
  EXPECT_EQ(ErrorTag("l[3]"), "IndexError");
  EXPECT_EQ(ErrorTag("l[-1]"), "IndexError");
  EXPECT_EQ(ErrorTag("l[\"a\"]"), "TypeError");
  EXPECT_EQ(ErrorTag("l[1.0]"), "TypeError");
  EXPECT_EQ(ErrorTag("m[1]"), "TypeError");
  EXPECT_EQ(ErrorTag("s[0]"), "TypeError");
  EXPECT_EQ(ErrorTag("x.f"), "TypeError");
  EXPECT_EQ(ErrorTag("m.n.f"), "TypeError");
}

TEST(ExprTest, UndefinedVariableIsKeyError) {
  EXPECT_EQ(ErrorTag("nope"), "KeyError");
  EXPECT_EQ(ErrorMessage("nope + 1"), "variable 'nope' is not defined");
  EXPECT_EQ(ErrorMessage("nope.a.b"), "variable 'nope' is not defined");
  EXPECT_EQ(ErrorMessage("http.nothing"), "variable 'http' is not defined");
}

TEST(ExprTest, LibraryNamesResolveToValuesAndFunctionRefs) {
  Value policy = Eval("http.default_retry");
  EXPECT_EQ(policy.AsMap().Find("predicate")->AsMap(),
            FunctionRef("http.default_retry_predicate").AsMap());
  EXPECT_EQ(*policy.AsMap().Find("max_retries"), Value(5));
  EXPECT_EQ(Eval("http.default_retry.backoff.multiplier"), Value(1.25));
  EXPECT_EQ(Eval("http.default_retry_non_idempotent.predicate"),
            FunctionRef("http.default_retry_predicate_non_idempotent"));
  EXPECT_EQ(Eval("retry.default_backoff"),
            Value(Map{{"initial_delay", 1.0}, {"max_delay", 60.0}, {"multiplier", 1.25}}));
  EXPECT_EQ(AsFunctionRef(Eval("retry.always")), "retry.always");
  EXPECT_EQ(AsFunctionRef(Eval("double_it")), "double_it");
  EXPECT_EQ(AsFunctionRef(Eval("len")), "len");
  EXPECT_EQ(AsFunctionRef(Value(Map{{"a", 1}})), std::nullopt);
}

TEST(ExprTest, VariablesShadowLibraryNames) {
  TestHost host;
  host.variables.Set("http", Map{{"default_retry", "mine"}});
  host.variables.Set("list", List{1});
  host.variables.Set("map", Map{{"k", 2}});
  EXPECT_EQ(Eval("http.default_retry", host), Value("mine"));
  EXPECT_EQ(Eval("list", host), Value(List{1}));
  EXPECT_EQ(Eval("map[\"k\"] + len(map)", host), Value(3));
  EXPECT_EQ(Eval("list.concat(list, 2)", host), Value(List{1, 2}));
}

TEST(ExprTest, CallsReachPureFunctionsEffectsAndSubworkflows) {
  TestHost host;
  host.variables.Set("loc", "us-central1-a");
  EXPECT_EQ(Eval("text.split(loc, \"-\")[0]", host), Value("us"));
  EXPECT_EQ(Eval("double_it(21)", host), Value(42));
  EXPECT_EQ(Eval("sys.now()", host), Value(1700000000.5));
  EXPECT_EQ(host.called, (std::vector<std::string>{"double_it", "sys.now"}));
}

TEST(ExprTest, CallErrors) {
  EXPECT_EQ(ErrorTag("http.get(\"http://x\")"), "TypeError");
  EXPECT_NE(ErrorMessage("sys.sleep(1)").find("call step"), std::string::npos);
  EXPECT_NE(ErrorMessage("atomflow.jobs.run(\"true\")").find("call step"), std::string::npos);
  EXPECT_EQ(ErrorMessage("no_such(1)"), "function 'no_such' is not defined");
  EXPECT_EQ(ErrorMessage("len(1, 2)"), "len takes 1 arguments, got 2");
  EXPECT_EQ(ErrorMessage("text.split(\"a\")"), "text.split takes 2 arguments, got 1");
}

TEST(ExprTest, ParseErrorsNameTheColumn) {
  struct ParseCase {
    const char* text;
    const char* message;
  };
  std::vector<ParseCase> cases = {
      {"1 +", "unexpected end of expression at column 4"},
      {"(1 + 2))", "unexpected ')' at column 8"},
      {"a b", "unexpected 'b' at column 3"},
      {"\"abc", "unterminated string starting at column 1"},
      {"1 # 2", "unexpected character '#' at column 3"},
      {"[1, 2", "expected ']' but found end of expression at column 6"},
      {"{a: 1}", "a map key must be a string literal, found 'a' at column 2"},
      {"x[0](1)", "only a function name can be called, at column 5"},
      {"\"\\q\"", "invalid escape '\\q' at column 2"},
      {"99999999999999999999", "integer 99999999999999999999 out of range at column 1"},
      {"2 * 1e999", "number 1e999 out of range at column 5"},
      {"", "empty expression"},
      {"1 and", "unexpected end of expression at column 6"},
      {"a.", "expected a field name after '.' but found end of expression at column 3"},
      {"12abc", "malformed number at column 1"},
  };
  for (const ParseCase& c : cases) {
    auto expr = ParseExpression(c.text);
    ASSERT_FALSE(expr.ok()) << c.text;
    EXPECT_EQ(expr.message(), c.message) << c.text;
  }
}

TEST(ExprTest, CollectNames) {
  auto expr = ParseExpression(
      "a.b[i + 1] + len(text.split(s, \",\")) + sub(http.default_retry) + retry.always.x");
  ASSERT_TRUE(expr.ok()) << expr.message();
  ExprNames names = CollectNames(**expr);
  EXPECT_EQ(std::set<std::string>(names.variables.begin(), names.variables.end()),
            (std::set<std::string>{"a", "i", "s"}));
  EXPECT_EQ(
      std::set<std::string>(names.functions.begin(), names.functions.end()),
      (std::set<std::string>{"len", "text.split", "sub", "http.default_retry", "retry.always"}));
}

TEST(ExprTest, ParseAssignTarget) {
  auto target = ParseAssignTarget("a.b[\"c\"][i+1]");
  ASSERT_TRUE(target.ok()) << target.message();
  EXPECT_EQ(target->root, "a");
  ASSERT_EQ(target->path.size(), 3u);
  EXPECT_EQ(target->path[0].field, "b");
  EXPECT_EQ(target->path[0].index, nullptr);

  TestHost host;
  host.variables.Set("i", 4);
  ASSERT_NE(target->path[1].index, nullptr);
  EXPECT_EQ(Evaluate(*target->path[1].index, host), Value("c"));
  EXPECT_EQ(Evaluate(*target->path[2].index, host), Value(5));

  auto simple = ParseAssignTarget("counter");
  ASSERT_TRUE(simple.ok());
  EXPECT_EQ(simple->root, "counter");
  EXPECT_TRUE(simple->path.empty());
}

TEST(ExprTest, ParseAssignTargetRejectsExpressions) {
  for (const char* text : {"a + 1", "f(x)", "1", "\"a\"", "[a]", "a.b(1)", "(a)[0] +", "null"}) {
    auto target = ParseAssignTarget(text);
    EXPECT_FALSE(target.ok()) << text;
  }
  EXPECT_EQ(ParseAssignTarget("a + 1").message(),
            "cannot assign to 'a + 1': not assignable (column 1): a target is a variable name "
            "followed by .field or [index]");
}

TEST(ExprTest, ParsedExpressionIsReusable) {
  auto expr = ParseExpression("n * 2");
  ASSERT_TRUE(expr.ok());
  for (int n = 0; n < 3; ++n) {
    TestHost host;
    host.variables.Set("n", n);
    EXPECT_EQ(Evaluate(**expr, host), Value(n * 2));
  }
}

Template Literal(Value value) {
  Template t;
  t.literal = std::move(value);
  return t;
}

Template Expression(const char* text) {
  Template t;
  t.kind = Template::Kind::kExpression;
  t.expression = ParseExpression(text).value();
  t.expression_text = text;
  return t;
}

TEST(TemplateTest, RendersNestedExpressionsAndKeys) {
  Template list;
  list.kind = Template::Kind::kList;
  list.items = {Literal(1), Expression("x + 1")};
  Template map;
  map.kind = Template::Kind::kMap;
  map.entries.emplace_back(Literal("fixed"), list);
  map.entries.emplace_back(Expression("\"k\" + string(x)"), Expression("s"));

  TestHost host;
  host.variables.Set("x", 1);
  host.variables.Set("s", "v");
  EXPECT_EQ(Render(map, host), Value(Map{{"fixed", List{1, 2}}, {"k1", "v"}}));
}

TEST(TemplateTest, NonStringKeyIsTypeError) {
  Template map;
  map.kind = Template::Kind::kMap;
  map.entries.emplace_back(Expression("1 + 1"), Literal(true));
  TestHost host;
  try {
    Render(map, host);
    FAIL() << "expected a TypeError";
  } catch (const RaisedError& error) {
    EXPECT_TRUE(HasTag(error.payload(), "TypeError"));
  }
}

TEST(ErrorTest, MakeErrorAndHasTag) {
  Value error = MakeError("KeyError", "key 'a' not found");
  EXPECT_EQ(error, Value(Map{{"message", "key 'a' not found"}, {"tags", List{"KeyError"}}}));
  EXPECT_TRUE(HasTag(error, "KeyError"));
  EXPECT_FALSE(HasTag(error, "TypeError"));
  EXPECT_FALSE(HasTag(Value("KeyError"), "KeyError"));
  EXPECT_STREQ(RaisedError(error).what(), "KeyError: key 'a' not found");
  EXPECT_STREQ(RaisedError(Value("plain")).what(), "plain");
}

}  // namespace
}  // namespace atomflow::lang
