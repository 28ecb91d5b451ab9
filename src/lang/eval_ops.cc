// The operators of the expression language on values: arithmetic with the official `+` table,
// comparisons, membership, field and index access.
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <optional>

#include "lang/expr.h"
#include "lang/stdlib.h"

namespace atomflow::lang {
namespace {

[[noreturn]] void OperandError(ExprOp op, const Value& left, const Value& right) {
  Raise("TypeError", fmt::format("unsupported operand types for {}: {} and {}", OpSymbol(op),
                                 left.TypeName(), right.TypeName()));
}

// "an integer", "a list": a type name as a message's noun.
std::string WithArticle(const char* type_name) {
  bool vowel = std::string_view("aeiou").find(type_name[0]) != std::string_view::npos;
  return std::string(vowel ? "an " : "a ") + type_name;
}

[[noreturn]] void Overflow(ExprOp op) {
  Raise("ValueError", fmt::format("integer overflow in {}", OpSymbol(op)));
}

// A double result that left the finite range although both operands were finite. Raised as a
// ValueError, like integer overflow: an infinity could not be returned or JSON-encoded anyway.
double CheckFinite(ExprOp op, double a, double b, double result) {
  if (std::isfinite(result) || !std::isfinite(a) || !std::isfinite(b)) return result;
  Raise("ValueError", fmt::format("double overflow in {}", OpSymbol(op)));
}

// The text a scalar contributes to a string concatenation; nullopt for other types.
std::optional<std::string> ConcatText(const Value& value) {
  switch (value.type()) {
    case Value::Type::kString:
      return value.AsString();
    case Value::Type::kInt:
      return std::to_string(value.AsInt());
    case Value::Type::kDouble:
      return FormatDouble(value.AsDouble());
    case Value::Type::kBool:
      return value.AsBool() ? "true" : "false";
    default:
      return std::nullopt;
  }
}

// `+`: numbers add (int + int stays int and overflow is a ValueError); when either side is a
// string, an int, double, bool or string on the other side is converted and concatenated.
Value Add(const Value& left, const Value& right) {
  if (left.is_int() && right.is_int()) {
    int64_t sum;
    if (__builtin_add_overflow(left.AsInt(), right.AsInt(), &sum)) Overflow(ExprOp::kAdd);
    return sum;
  }
  if (left.is_number() && right.is_number()) {
    double a = left.AsNumber(), b = right.AsNumber();
    return CheckFinite(ExprOp::kAdd, a, b, a + b);
  }
  if (left.is_string() || right.is_string()) {
    std::optional<std::string> a = ConcatText(left);
    std::optional<std::string> b = ConcatText(right);
    if (a && b) return *a + *b;
  }
  OperandError(ExprOp::kAdd, left, right);
}

Value IntArithmetic(ExprOp op, int64_t a, int64_t b) {
  int64_t result = 0;
  if (!ComputeInt(op, a, b, &result)) Overflow(op);
  return result;
}

// `- * / // %` on numbers. `/` always gives a double; the others stay int for two ints.
Value Arithmetic(ExprOp op, const Value& left, const Value& right) {
  if (!left.is_number() || !right.is_number()) OperandError(op, left, right);

  bool divides = op == ExprOp::kDiv || op == ExprOp::kFloorDiv || op == ExprOp::kMod;
  if (divides && right.AsNumber() == 0) {
    Raise("ZeroDivisionError", fmt::format("division by zero in {}", OpSymbol(op)));
  }
  if (left.is_int() && right.is_int() && op != ExprOp::kDiv) {
    return IntArithmetic(op, left.AsInt(), right.AsInt());
  }
  double a = left.AsNumber(), b = right.AsNumber();
  return CheckFinite(op, a, b, ComputeDouble(op, a, b));
}

// Ordering: numbers with numbers, strings with strings (bytewise, which for UTF-8 is code
// point order).
Value Compare(ExprOp op, const Value& left, const Value& right) {
  int order;
  if (left.is_number() && right.is_number()) {
    double a = left.AsNumber(), b = right.AsNumber();
    if (left.is_int() && right.is_int()) {
      order = left.AsInt() < right.AsInt() ? -1 : (left.AsInt() > right.AsInt() ? 1 : 0);
    } else {
      if (std::isnan(a) || std::isnan(b)) return false;
      order = a < b ? -1 : (a > b ? 1 : 0);
    }
  } else if (left.is_string() && right.is_string()) {
    order = left.AsString().compare(right.AsString());
  } else {
    OperandError(op, left, right);
  }
  switch (op) {
    case ExprOp::kLt:
      return order < 0;
    case ExprOp::kLe:
      return order <= 0;
    case ExprOp::kGt:
      return order > 0;
    default:
      return order >= 0;
  }
}

Value Contains(const Value& item, const Value& container) {
  if (container.is_list()) {
    for (const Value& element : container.AsList()) {
      if (element == item) return true;
    }
    return false;
  }
  if (container.is_map()) return item.is_string() && container.AsMap().Contains(item.AsString());
  Raise("TypeError", fmt::format("The argument of 'in' must be a dict or an array; got: {}",
                                 container.TypeName()));
}

}  // namespace

const char* OpSymbol(ExprOp op) {
  switch (op) {
    case ExprOp::kNeg:
      return "unary -";
    case ExprOp::kNot:
      return "not";
    case ExprOp::kAdd:
      return "+";
    case ExprOp::kSub:
      return "-";
    case ExprOp::kMul:
      return "*";
    case ExprOp::kDiv:
      return "/";
    case ExprOp::kFloorDiv:
      return "//";
    case ExprOp::kMod:
      return "%";
    case ExprOp::kEq:
      return "==";
    case ExprOp::kNe:
      return "!=";
    case ExprOp::kLt:
      return "<";
    case ExprOp::kLe:
      return "<=";
    case ExprOp::kGt:
      return ">";
    case ExprOp::kGe:
      return ">=";
    case ExprOp::kIn:
      return "in";
    case ExprOp::kAnd:
      return "and";
    case ExprOp::kOr:
      return "or";
  }
  return "?";
}

Value ApplyUnary(ExprOp op, const Value& operand) {
  if (op == ExprOp::kNot) {
    if (!operand.is_bool()) {
      Raise("TypeError", fmt::format("'not' needs a boolean, got {}", operand.TypeName()));
    }
    return !operand.AsBool();
  }
  if (operand.is_int()) {
    if (operand.AsInt() == INT64_MIN) Overflow(op);
    return -operand.AsInt();
  }
  if (operand.is_double()) return -operand.AsDouble();
  Raise("TypeError", fmt::format("unary '-' needs a number, got {}", operand.TypeName()));
}

namespace {

// Two integers, the commonest operands of a compute loop, compared or computed without the
// conversions and type dispatch of the general paths; nullopt leaves the rest to those.
std::optional<Value> IntBinary(ExprOp op, int64_t a, int64_t b) {
  switch (op) {
    case ExprOp::kEq:
      return a == b;
    case ExprOp::kNe:
      return a != b;
    case ExprOp::kLt:
      return a < b;
    case ExprOp::kLe:
      return a <= b;
    case ExprOp::kGt:
      return a > b;
    case ExprOp::kGe:
      return a >= b;
    case ExprOp::kSub:
    case ExprOp::kMul:
      return IntArithmetic(op, a, b);
    case ExprOp::kFloorDiv:
    case ExprOp::kMod:
      if (b == 0) return std::nullopt;  // the general path raises ZeroDivisionError
      return IntArithmetic(op, a, b);
    default:
      return std::nullopt;
  }
}

}  // namespace

Value ApplyBinary(ExprOp op, const Value& left, const Value& right) {
  if (left.is_int() && right.is_int()) {
    if (std::optional<Value> result = IntBinary(op, left.AsInt(), right.AsInt())) {
      return std::move(*result);
    }
  }
  switch (op) {
    case ExprOp::kAdd:
      return Add(left, right);
    case ExprOp::kEq:
      return left == right;
    case ExprOp::kNe:
      return left != right;
    case ExprOp::kLt:
    case ExprOp::kLe:
    case ExprOp::kGt:
    case ExprOp::kGe:
      return Compare(op, left, right);
    case ExprOp::kIn:
      return Contains(left, right);
    case ExprOp::kAnd:
    case ExprOp::kOr:
    case ExprOp::kNeg:
    case ExprOp::kNot:
      Raise("SystemError", fmt::format("{} is not a plain binary operator", OpSymbol(op)));
    default:
      return Arithmetic(op, left, right);
  }
}

const Value& GetField(const Value& base, std::string_view field) {
  if (!base.is_map()) {
    Raise("TypeError", fmt::format("cannot read field '{}' of {}: only maps have fields", field,
                                   WithArticle(base.TypeName())));
  }
  const Value* value = base.AsMap().Find(field);
  if (value == nullptr) Raise("KeyError", fmt::format("key '{}' not found in map", field));
  return *value;
}

const Value& GetIndex(const Value& base, const Value& index) {
  if (base.is_map()) {
    if (!index.is_string()) {
      Raise("TypeError", fmt::format("a map key must be a string, got {}", index.TypeName()));
    }
    return GetField(base, index.AsString());
  }
  if (!base.is_list()) {
    Raise("TypeError",
          fmt::format("cannot index {}: only lists and maps", WithArticle(base.TypeName())));
  }
  if (!index.is_int()) {
    Raise("TypeError", fmt::format("a list index must be an integer, got {}", index.TypeName()));
  }
  const List& list = base.AsList();
  int64_t i = index.AsInt();
  if (i < 0 || static_cast<uint64_t>(i) >= list.size()) {
    Raise("IndexError",
          fmt::format("list index {} out of range (the list has {} items)", i, list.size()));
  }
  return list[static_cast<size_t>(i)];
}

}  // namespace atomflow::lang
