// The scalar path of the evaluator: arithmetic, comparison and logic on numbers and booleans,
// computed on plain machine values instead of a Value per node and the general operators'
// type dispatch. It handles the common case only and gives up on anything else; see
// EvalScalar in expr.h.
#include <cmath>

#include "lang/expr.h"

namespace atomflow::lang {
namespace {

// A number or a boolean while the scalar path computes.
struct Scalar {
  enum class Type { kBool, kInt, kDouble };
  Type type = Type::kInt;
  union {
    bool boolean;
    int64_t integer;
    double number;
  };

  bool is_number() const { return type != Type::kBool; }
  double AsNumber() const { return type == Type::kInt ? static_cast<double>(integer) : number; }
};

Scalar Bool(bool b) {
  Scalar s;
  s.type = Scalar::Type::kBool;
  s.boolean = b;
  return s;
}

Scalar Int(int64_t i) {
  Scalar s;
  s.type = Scalar::Type::kInt;
  s.integer = i;
  return s;
}

Scalar Double(double d) {
  Scalar s;
  s.type = Scalar::Type::kDouble;
  s.number = d;
  return s;
}

bool FromValue(const Value& value, Scalar* out) {
  switch (value.type()) {
    case Value::Type::kBool:
      *out = Bool(value.AsBool());
      return true;
    case Value::Type::kInt:
      *out = Int(value.AsInt());
      return true;
    case Value::Type::kDouble:
      *out = Double(value.AsDouble());
      return true;
    default:
      return false;
  }
}

// A variable's value; nullptr when there is none.
inline const Value* ReadVariable(const Expr& expr, const EvalHost& host) {
  const Map* variables = host.variables();
  if (variables != nullptr) return variables->Find(expr.name, expr.hint);
  return host.Lookup(expr.name, expr.hint);
}

// A variable, or a chain of fields of one (`args.n`). A name that is no variable may be a
// library value (`http.default_retry`), which the general path resolves.
const Value* ReadPlace(const Expr& expr, const EvalHost& host) {
  if (expr.kind == Expr::Kind::kName) return ReadVariable(expr, host);
  const Value* base = ReadPlace(*expr.operands[0], host);
  if (base == nullptr || !base->is_map()) return nullptr;
  return base->AsMap().Find(expr.name);
}

bool Divides(ExprOp op) {
  return op == ExprOp::kDiv || op == ExprOp::kFloorDiv || op == ExprOp::kMod;
}

// Integer arithmetic; false where the general path raises (overflow, division by zero).
bool IntArithmetic(ExprOp op, int64_t a, int64_t b, Scalar* out) {
  if (Divides(op) && b == 0) return false;
  if (op == ExprOp::kDiv) {  // `/` always gives a double
    *out = Double(static_cast<double>(a) / static_cast<double>(b));
    return true;
  }
  int64_t result = 0;
  if (!ComputeInt(op, a, b, &result)) return false;
  *out = Int(result);
  return true;
}

bool DoubleArithmetic(ExprOp op, double a, double b, Scalar* out) {
  if (Divides(op) && b == 0) return false;
  double result = ComputeDouble(op, a, b);
  // An overflow to infinity is a ValueError, which the general path raises.
  if (!std::isfinite(result)) return false;
  *out = Double(result);
  return true;
}

// `==` and `!=`: numbers compare by value (an int equals a double of the same value), booleans
// with booleans; a number never equals a boolean.
bool Equal(const Scalar& a, const Scalar& b) {
  if (a.is_number() && b.is_number()) {
    if (a.type == Scalar::Type::kInt && b.type == Scalar::Type::kInt) {
      return a.integer == b.integer;
    }
    return a.AsNumber() == b.AsNumber();
  }
  return a.type == b.type && a.boolean == b.boolean;
}

// `<`, `<=`, `>`, `>=` on numbers; false where the general path raises (booleans).
bool Order(ExprOp op, const Scalar& a, const Scalar& b, Scalar* out) {
  if (!a.is_number() || !b.is_number()) return false;
  int order;
  if (a.type == Scalar::Type::kInt && b.type == Scalar::Type::kInt) {
    order = a.integer < b.integer ? -1 : (a.integer > b.integer ? 1 : 0);
  } else {
    double x = a.AsNumber(), y = b.AsNumber();
    if (std::isnan(x) || std::isnan(y)) return false;
    order = x < y ? -1 : (x > y ? 1 : 0);
  }
  bool result = op == ExprOp::kLt   ? order < 0
                : op == ExprOp::kLe ? order <= 0
                : op == ExprOp::kGt ? order > 0
                                    : order >= 0;
  *out = Bool(result);
  return true;
}

// Out of line, as everything but two integers' arithmetic and comparison: EvalNode, which
// runs once per operator, stays small enough to keep its operands in registers.
[[gnu::noinline]] bool Binary(ExprOp op, const Scalar& a, const Scalar& b, Scalar* out) {
  switch (op) {
    case ExprOp::kEq:
      *out = Bool(Equal(a, b));
      return true;
    case ExprOp::kNe:
      *out = Bool(!Equal(a, b));
      return true;
    case ExprOp::kLt:
    case ExprOp::kLe:
    case ExprOp::kGt:
    case ExprOp::kGe:
      return Order(op, a, b, out);
    default:
      break;
  }
  if (!a.is_number() || !b.is_number()) return false;
  if (a.type == Scalar::Type::kInt && b.type == Scalar::Type::kInt) {
    return IntArithmetic(op, a.integer, b.integer, out);
  }
  return DoubleArithmetic(op, a.AsNumber(), b.AsNumber(), out);
}

bool Unary(ExprOp op, const Scalar& operand, Scalar* out) {
  if (op == ExprOp::kNot) {
    if (operand.type != Scalar::Type::kBool) return false;
    *out = Bool(!operand.boolean);
    return true;
  }
  if (operand.type == Scalar::Type::kInt && operand.integer != INT64_MIN) {
    *out = Int(-operand.integer);
    return true;
  }
  if (operand.type != Scalar::Type::kDouble) return false;
  *out = Double(-operand.number);
  return true;
}

// Two integers: the operators a compute loop uses most, each a machine operation and a
// check; `/` (a double) and the rest go through Binary.
inline bool IntBinary(ExprOp op, int64_t a, int64_t b, Scalar* out) {
  int64_t result = 0;
  switch (op) {
    case ExprOp::kAdd:
      if (__builtin_add_overflow(a, b, &result)) return false;
      break;
    case ExprOp::kSub:
      if (__builtin_sub_overflow(a, b, &result)) return false;
      break;
    case ExprOp::kMul:
      if (__builtin_mul_overflow(a, b, &result)) return false;
      break;
    case ExprOp::kFloorDiv:
    case ExprOp::kMod:
      if (b == 0 || !ComputeInt(op, a, b, &result)) return false;
      break;
    case ExprOp::kEq:
      *out = Bool(a == b);
      return true;
    case ExprOp::kNe:
      *out = Bool(a != b);
      return true;
    case ExprOp::kLt:
      *out = Bool(a < b);
      return true;
    case ExprOp::kGt:
      *out = Bool(a > b);
      return true;
    case ExprOp::kLe:
      *out = Bool(a <= b);
      return true;
    case ExprOp::kGe:
      *out = Bool(a >= b);
      return true;
    default:
      return Binary(op, Int(a), Int(b), out);
  }
  *out = Int(result);
  return true;
}

bool EvalNode(const Expr& expr, const EvalHost& host, Scalar* out);

// An operand: most are variables and literals, read here without a call of EvalNode.
inline bool EvalOperand(const Expr& expr, const EvalHost& host, Scalar* out) {
  if (expr.kind == Expr::Kind::kLiteral) return FromValue(expr.literal, out);
  if (expr.kind == Expr::Kind::kName) {
    const Value* value = ReadVariable(expr, host);
    return value != nullptr && FromValue(*value, out);
  }
  return EvalNode(expr, host, out);
}

// `and` / `or` on booleans; the right side runs only when the left does not decide.
bool Logical(const Expr& expr, const EvalHost& host, Scalar* out) {
  bool is_and = expr.op == ExprOp::kAnd;
  for (const auto& operand : expr.operands) {
    if (!EvalOperand(*operand, host, out) || out->type != Scalar::Type::kBool) return false;
    if (out->boolean != is_and) return true;
  }
  return true;
}

[[gnu::noinline]] bool EvalOtherNode(const Expr& expr, const EvalHost& host, Scalar* out);

// A binary operator other than `and` and `or`, the common node, here; the rest in
// EvalOtherNode.
bool EvalNode(const Expr& expr, const EvalHost& host, Scalar* out) {
  if (expr.kind != Expr::Kind::kBinary || expr.op == ExprOp::kAnd || expr.op == ExprOp::kOr) {
    return EvalOtherNode(expr, host, out);
  }
  Scalar left, right;
  if (!EvalOperand(*expr.operands[0], host, &left)) return false;
  if (!EvalOperand(*expr.operands[1], host, &right)) return false;
  if (left.type == Scalar::Type::kInt && right.type == Scalar::Type::kInt) {
    return IntBinary(expr.op, left.integer, right.integer, out);
  }
  return Binary(expr.op, left, right, out);
}

bool EvalOtherNode(const Expr& expr, const EvalHost& host, Scalar* out) {
  switch (expr.kind) {
    case Expr::Kind::kField: {
      const Value* value = ReadPlace(expr, host);
      return value != nullptr && FromValue(*value, out);
    }
    case Expr::Kind::kUnary: {
      Scalar operand;
      return EvalOperand(*expr.operands[0], host, &operand) && Unary(expr.op, operand, out);
    }
    case Expr::Kind::kBinary: {
      if (expr.op == ExprOp::kAnd || expr.op == ExprOp::kOr) return Logical(expr, host, out);
      Scalar left, right;
      return EvalOperand(*expr.operands[0], host, &left) &&
             EvalOperand(*expr.operands[1], host, &right) && Binary(expr.op, left, right, out);
    }
    default:
      return EvalOperand(expr, host, out);
  }
}

}  // namespace

bool EvalScalar(const Expr& expr, const EvalHost& host, Value* result) {
  Scalar scalar;
  if (!EvalNode(expr, host, &scalar)) return false;
  switch (scalar.type) {
    case Scalar::Type::kBool:
      *result = scalar.boolean;
      break;
    case Scalar::Type::kInt:
      *result = scalar.integer;
      break;
    case Scalar::Type::kDouble:
      *result = scalar.number;
      break;
  }
  return true;
}

}  // namespace atomflow::lang
