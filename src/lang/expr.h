// The syntax tree of one `${...}` expression, and the operations the evaluator applies to
// values. Internal to src/lang: other modules use the API of eval.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lang/eval.h"
#include "value/value.h"

namespace atomflow::lang {

// An operator. Unary: kNeg, kNot. Arithmetic: kAdd .. kMod. Comparison: kEq .. kIn.
// Logical, short-circuit: kAnd, kOr.
// clang-format off
enum class ExprOp {
  kNeg, kNot,
  kAdd, kSub, kMul, kDiv, kFloorDiv, kMod,
  kEq, kNe, kLt, kLe, kGt, kGe, kIn,
  kAnd, kOr
};
// clang-format on

// One node of a parsed expression. Built by ParseExpression, never changed afterwards, so a
// tree is shared read-only between threads; children are shared_ptr so that an assignment
// target can keep its index expressions.
class Expr {
 public:
  enum class Kind { kLiteral, kName, kField, kIndex, kCall, kList, kMap, kUnary, kBinary };

  Kind kind = Kind::kLiteral;
  int column = 0;    // 1-based column of the node's first character in the expression
  Value literal;     // kLiteral: the value (constant lists and maps are folded into one)
  std::string name;  // kName: the name; kField: the field; kCall: the dotted function name
  // kName and kField: the whole dotted name (`http.default_retry`) when the node is a chain
  // of names only; empty otherwise. Such a chain is a variable's field or a library name.
  std::string dotted;
  KeyHint hint;              // kName: where the variable was last found among the host's variables
  ExprOp op = ExprOp::kAdd;  // kUnary, kBinary
  // kField: {base}; kIndex: {base, index}; kCall: args; kList: items; kMap: values;
  // kUnary: {operand}; kBinary: {left, right}.
  std::vector<std::shared_ptr<const Expr>> operands;
  std::vector<std::string> keys;  // kMap: the keys, parallel to operands
  // Nodes on the longest path down from this one, itself included. The parser bounds it, so
  // the recursive evaluator and destructor cannot exhaust a thread's stack.
  int height = 1;
  // True when the node is arithmetic, comparison or logic whose leaves are variables, chains
  // of fields of them, or number and boolean literals: it may evaluate on the scalar path
  // (EvalScalar), which builds no Value per node. Set by the parser.
  bool scalar = false;
};

// The scalar path (eval_scalar.cc): evaluates a node with Expr::scalar set on numbers and
// booleans without building a Value per node. False, having raised nothing, when an operand is
// of another type or an operation would raise (overflow, division by zero): the general path
// then gives the value or the documented error. Scalar nodes have no effects, so evaluating
// one again on the general path changes nothing.
bool EvalScalar(const Expr& expr, const EvalHost& host, Value* result);

// Arithmetic as the language defines it, shared by the general and the scalar paths: `//`
// rounds down, `%` takes the divisor's sign. ComputeInt handles `+ - * // %` and is false on
// overflow; ComputeDouble handles `+ - * / // %` and may give an infinity, which its callers
// refuse. Neither checks for a zero divisor: the callers do, first.
// Inline: both are on the evaluator's hottest path.
inline bool ComputeInt(ExprOp op, int64_t a, int64_t b, int64_t* result) {
  switch (op) {
    case ExprOp::kAdd:
      return !__builtin_add_overflow(a, b, result);
    case ExprOp::kSub:
      return !__builtin_sub_overflow(a, b, result);
    case ExprOp::kMul:
      return !__builtin_mul_overflow(a, b, result);
    case ExprOp::kFloorDiv:
      if (a == INT64_MIN && b == -1) return false;
      *result = a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
      return true;
    case ExprOp::kMod:
      if (b == -1) {  // a % -1 of INT64_MIN would trap
        *result = 0;
        return true;
      }
      *result = a % b;
      if (*result != 0 && ((*result < 0) != (b < 0))) *result += b;
      return true;
    default:
      *result = 0;
      return true;
  }
}

inline double ComputeDouble(ExprOp op, double a, double b) {
  switch (op) {
    case ExprOp::kAdd:
      return a + b;
    case ExprOp::kSub:
      return a - b;
    case ExprOp::kMul:
      return a * b;
    case ExprOp::kDiv:
      return a / b;
    case ExprOp::kFloorDiv:
      return std::floor(a / b);
    case ExprOp::kMod: {
      double result = std::fmod(a, b);
      if (result != 0 && ((result < 0) != (b < 0))) result += b;
      return result;
    }
    default:
      return 0;
  }
}

// The language's operators on values. Each throws RaisedError (TypeError, ValueError,
// ZeroDivisionError) as the language reference documents.
Value ApplyUnary(ExprOp op, const Value& operand);
Value ApplyBinary(ExprOp op, const Value& left, const Value& right);

// `base.field`: KeyError when the map lacks the field, TypeError when base is not a map.
const Value& GetField(const Value& base, std::string_view field);
// `base[index]`: a list with an integer or a map with a string key.
const Value& GetIndex(const Value& base, const Value& index);

// A library value or function reachable by a dotted name without a call
// (`http.default_retry`, `retry.always`); nullptr when the name is not one.
const Value* FindLibraryValue(std::string_view dotted);

// The symbol an operator is written with, for messages.
const char* OpSymbol(ExprOp op);

}  // namespace atomflow::lang
