// The standard library's expression helpers (default, keys, len, int, double, string, get_type),
// list, map and math functions, and the retry predicates.
#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "lang/stdlib.h"

namespace atomflow::lang {
namespace {

Value Default(Args& args) { return args.Has(0) ? args.Take(0) : args.Take(1); }

// `if` is evaluated lazily by the evaluator; this eager form serves call steps and references.
Value If(Args& args) {
  const Value& condition = args[0];
  if (!condition.is_bool() && !condition.is_null()) args.WrongType(0, "a boolean");
  return condition.is_bool() && condition.AsBool() ? args.Take(1) : args.Take(2);
}

Value Keys(Args& args) {
  List keys;
  keys.reserve(args.MapArg(0).size());
  for (const auto& [key, value] : args.MapArg(0)) keys.push_back(key);
  return keys;
}

Value Len(Args& args) {
  const Value& value = args[0];
  switch (value.type()) {
    case Value::Type::kString:
      return static_cast<int64_t>(Utf8Length(value.AsString()));
    case Value::Type::kBytes:
      return static_cast<int64_t>(value.AsBytes().size());
    case Value::Type::kList:
      return static_cast<int64_t>(value.AsList().size());
    case Value::Type::kMap:
      return static_cast<int64_t>(value.AsMap().size());
    default:
      args.WrongType(0, "a string, bytes, list or map");
  }
}

// The whole text as a number of type T, or nothing.
template <typename T>
std::optional<T> ParseNumber(std::string_view text) {
  T number{};
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return {};
  return number;
}

// Truncates toward zero; ValueError outside int64.
Value DoubleToInt(Args& args, double value) {
  if (!std::isfinite(value) || value >= 9223372036854775808.0 || value < -9223372036854775808.0) {
    args.BadValue(fmt::format("{} is out of the integer range", FormatDouble(value)));
  }
  return static_cast<int64_t>(std::trunc(value));
}

Value Int(Args& args) {
  const Value& value = args[0];
  if (value.is_int()) return value;
  if (value.is_double()) return DoubleToInt(args, value.AsDouble());
  if (!value.is_string()) args.WrongType(0, "a string, integer or double");

  if (std::optional<int64_t> number = ParseNumber<int64_t>(value.AsString())) return *number;
  args.BadValue(fmt::format("cannot convert \"{}\" to an integer", value.AsString()));
}

Value Double(Args& args) {
  const Value& value = args[0];
  if (value.is_number()) return value.AsNumber();
  if (!value.is_string()) args.WrongType(0, "a string, integer or double");

  std::optional<double> number = ParseNumber<double>(value.AsString());
  // from_chars also reads "inf" and "nan", which are not numbers of the language.
  if (number && std::isfinite(*number)) return *number;
  args.BadValue(fmt::format("cannot convert \"{}\" to a double", value.AsString()));
}

Value String(Args& args) {
  const Value& value = args[0];
  switch (value.type()) {
    case Value::Type::kString:
      return value;
    case Value::Type::kInt:
      return std::to_string(value.AsInt());
    case Value::Type::kDouble:
      return FormatDouble(value.AsDouble());
    case Value::Type::kBool:
      return value.AsBool() ? "true" : "false";
    default:
      args.WrongType(0, "a string, integer, double or boolean");
  }
}

Value GetType(Args& args) { return args[0].TypeName(); }

Value ListConcat(Args& args) {
  args.ListArg(0);
  Value list = args.Take(0);
  list.MutableList().push_back(args.Take(1));
  return list;
}

Value ListPrepend(Args& args) {
  args.ListArg(0);
  Value list = args.Take(0);
  List& items = list.MutableList();
  items.insert(items.begin(), args.Take(1));
  return list;
}

// map.get(map, key) or map.get(map, [k1, k2, ...]): null when any key is absent.
Value MapGet(Args& args) {
  if (args[0].is_null()) return Value();
  const Value* current = &args[0];
  if (!current->is_map()) args.WrongType(0, "a map");

  const Value& keys = args[1];
  List single;
  if (keys.is_string()) single.push_back(keys);
  if (!keys.is_string() && !keys.is_list()) args.WrongType(1, "a string or a list of strings");
  for (const Value& key : keys.is_list() ? keys.AsList() : single) {
    if (!key.is_string()) args.WrongType(1, "a string or a list of strings");
    if (!current->is_map()) return Value();
    current = current->AsMap().Find(key.AsString());
    if (current == nullptr) return Value();
  }
  return *current;
}

Value MapDelete(Args& args) {
  args.MapArg(0);
  const std::string& key = args.String(1);
  Value map = args.Take(0);
  if (map.AsMap().Contains(key)) map.MutableMap().Erase(key);
  return map;
}

Value MapMerge(Args& args) {
  args.MapArg(0);
  args.MapArg(1);
  Value merged = args.Take(0);
  Map& target = merged.MutableMap();
  for (const auto& [key, value] : args[1].AsMap()) target.Set(key, value);
  return merged;
}

// Maps present on both sides merge recursively; anything else from the second wins.
Value MergeNested(Value first, const Value& second) {
  if (!first.is_map() || !second.is_map()) return second;
  Map& target = first.MutableMap();
  for (const auto& [key, value] : second.AsMap()) {
    Value* existing = target.Find(key);
    if (existing == nullptr) {
      target.Set(key, value);
    } else {
      *existing = MergeNested(std::move(*existing), value);
    }
  }
  return first;
}

Value MapMergeNested(Args& args) {
  args.MapArg(0);
  args.MapArg(1);
  return MergeNested(args.Take(0), args[1]);
}

Value MathAbs(Args& args) {
  args.Number(0);
  if (args[0].is_double()) return std::fabs(args[0].AsDouble());
  int64_t value = args[0].AsInt();
  if (value == INT64_MIN) args.BadValue("integer overflow");
  return value < 0 ? -value : value;
}

Value MathFloor(Args& args) {
  args.Number(0);
  if (args[0].is_int()) return args[0];
  return DoubleToInt(args, std::floor(args[0].AsDouble()));
}

Value MathMax(Args& args) {
  bool first = args.Number(0) >= args.Number(1);
  if (args[0].is_int() && args[1].is_int()) first = args[0].AsInt() >= args[1].AsInt();
  return args.Take(first ? 0 : 1);
}

Value MathMin(Args& args) {
  bool first = args.Number(0) <= args.Number(1);
  if (args[0].is_int() && args[1].is_int()) first = args[0].AsInt() <= args[1].AsInt();
  return args.Take(first ? 0 : 1);
}

// True when the error is an HttpError with one of codes, or carries one of tags.
bool ErrorMatches(const Value& error, std::initializer_list<int64_t> codes,
                  std::initializer_list<std::string_view> tags) {
  if (!error.is_map()) return false;
  const Value* code = error.AsMap().Find("code");
  if (code != nullptr && code->is_int() && HasTag(error, "HttpError")) {
    for (int64_t retried : codes) {
      if (code->AsInt() == retried) return true;
    }
  }
  for (std::string_view tag : tags) {
    if (HasTag(error, tag)) return true;
  }
  return false;
}

Value DefaultRetryPredicate(Args& args) {
  return ErrorMatches(args[0], {429, 502, 503, 504},
                      {"ConnectionError", "ConnectionFailedError", "TimeoutError"});
}

Value DefaultRetryPredicateNonIdempotent(Args& args) {
  return ErrorMatches(args[0], {429, 503}, {"ConnectionFailedError"});
}

Value RetryAlways(Args&) { return true; }
Value RetryNever(Args&) { return false; }

}  // namespace

const std::vector<LibraryFunction>& CoreFunctions() {
  static const std::vector<LibraryFunction> table = {
      Pure("default", {"value", "default_value"}, 2, Default),
      Pure("if", {"condition", "if_true", "if_false"}, 3, If),
      Pure("keys", {"map"}, 1, Keys),
      Pure("len", {"value"}, 1, Len),
      Pure("int", {"value"}, 1, Int),
      Pure("double", {"value"}, 1, Double),
      Pure("string", {"value"}, 1, String),
      Pure("get_type", {"value"}, 1, GetType),
      Pure("list.concat", {"objs", "val"}, 2, ListConcat),
      Pure("list.prepend", {"objs", "val"}, 2, ListPrepend),
      Pure("map.get", {"map", "keys"}, 2, MapGet),
      Pure("map.delete", {"map", "key"}, 2, MapDelete),
      Pure("map.merge", {"first", "second"}, 2, MapMerge),
      Pure("map.merge_nested", {"first", "second"}, 2, MapMergeNested),
      Pure("math.abs", {"x"}, 1, MathAbs),
      Pure("math.floor", {"x"}, 1, MathFloor),
      Pure("math.max", {"x", "y"}, 2, MathMax),
      Pure("math.min", {"x", "y"}, 2, MathMin),
      Pure("http.default_retry_predicate", {"e"}, 1, DefaultRetryPredicate),
      Pure("http.default_retry_predicate_non_idempotent", {"e"}, 1,
           DefaultRetryPredicateNonIdempotent),
      Pure("retry.always", {"e"}, 1, RetryAlways),
      Pure("retry.never", {"e"}, 1, RetryNever),
  };
  return table;
}

}  // namespace atomflow::lang
