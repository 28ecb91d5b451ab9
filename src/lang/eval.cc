// The evaluator: walks an expression tree against the variables an EvalHost provides, resolves
// names (variable, then library name, then subworkflow) and dispatches function calls.
#include "lang/eval.h"

#include <fmt/format.h>

#include "lang/expr.h"
#include "lang/stdlib.h"

namespace atomflow::lang {
namespace {

Value Eval(const Expr& expr, EvalHost& host);

// Evaluates a node whose parent is not on the scalar path (the root, a call's argument, a list
// item): arithmetic and logic try the scalar path first (EvalScalar). Below such a node the
// general path never tries it again, so a node that falls back is not retried once per level.
Value EvalTop(const Expr& expr, EvalHost& host) {
  bool operation = expr.kind == Expr::Kind::kBinary || expr.kind == Expr::Kind::kUnary;
  Value result;
  if (operation && expr.scalar && EvalScalar(expr, host, &result)) return result;
  return Eval(expr, host);
}

std::string_view RootOf(std::string_view dotted) { return dotted.substr(0, dotted.find('.')); }

[[noreturn]] void Undefined(std::string_view name) {
  Raise("KeyError", fmt::format("variable '{}' is not defined", name));
}

// A name that is not a variable: a library value or function, or a subworkflow.
const Value* FindGlobal(std::string_view dotted, EvalHost& host, Value& storage) {
  if (const Value* value = FindLibraryValue(dotted)) return value;
  if (dotted.find('.') == std::string_view::npos && host.IsSubworkflow(dotted)) {
    storage = FunctionRef(std::string(dotted));
    return &storage;
  }
  return nullptr;
}

Value EvalName(const Expr& expr, EvalHost& host) {
  if (const Value* value = host.Lookup(expr.name, expr.hint)) return *value;
  Value storage;
  if (const Value* global = FindGlobal(expr.name, host, storage)) return *global;
  Undefined(expr.name);
}

// `a.b.c` where every link is a name: read the root variable once and walk the fields, or,
// when there is no such variable, find the longest prefix that names a library value
// (`http.default_retry.max_retries`) and walk the rest.
Value EvalNameChain(const Expr& expr, EvalHost& host) {
  std::vector<const Expr*> chain;  // outermost first, down to the kName root
  for (const Expr* node = &expr; node->kind == Expr::Kind::kField;) {
    chain.push_back(node);
    node = node->operands[0].get();
  }

  size_t start = chain.size();  // fields chain[start - 1] .. chain[0] remain to be read
  const Expr& root = *chain.back()->operands[0];
  const Value* current = host.Lookup(root.name, root.hint);
  Value storage;
  for (size_t i = 0; current == nullptr && i < chain.size(); ++i) {
    current = FindGlobal(chain[i]->dotted, host, storage);
    start = i;
  }
  if (current == nullptr) Undefined(RootOf(expr.dotted));

  for (size_t i = start; i-- > 0;) current = &GetField(*current, chain[i]->name);
  return *current;
}

const Value& EvalOperand(const Expr& expr, EvalHost& host, Value& storage,
                         bool parent_scalar = true);

Value EvalField(const Expr& expr, EvalHost& host) {
  if (!expr.dotted.empty()) return EvalNameChain(expr, host);
  Value storage;
  return GetField(EvalOperand(*expr.operands[0], host, storage, false), expr.name);
}

Value EvalIndex(const Expr& expr, EvalHost& host) {
  Value base_storage, index_storage;
  const Value& base = EvalOperand(*expr.operands[0], host, base_storage, false);
  const Value& index = EvalOperand(*expr.operands[1], host, index_storage, false);
  return GetIndex(base, index);
}

// `if(condition, a, b)` evaluates only the branch it returns, so `if(x != null, x.f, 0)` works.
Value EvalIf(const Expr& expr, EvalHost& host) {
  if (expr.operands.size() != 3) {
    Raise("TypeError", fmt::format("if takes 3 arguments, got {}", expr.operands.size()));
  }
  Value condition = EvalTop(*expr.operands[0], host);
  if (!condition.is_bool() && !condition.is_null()) {
    Raise("TypeError",
          fmt::format("if: argument 'condition' must be a boolean, got {}", condition.TypeName()));
  }
  bool taken = condition.is_bool() && condition.AsBool();
  return EvalTop(*expr.operands[taken ? 1 : 2], host);
}

void CheckArity(const FunctionSignature& signature, size_t count) {
  if (count >= signature.required && count <= signature.params.size()) return;
  std::string expected = signature.required == signature.params.size()
                             ? std::to_string(signature.required)
                             : fmt::format("{} to {}", signature.required, signature.params.size());
  Raise("TypeError", fmt::format("{} takes {} arguments, got {}", signature.name, expected, count));
}

Value CallFunction(const std::string& name, std::vector<Value> args, EvalHost& host) {
  const FunctionSignature* signature = FindFunction(name);
  if (signature == nullptr) {
    if (host.IsSubworkflow(name)) return host.CallHost(name, std::move(args));
    Raise("KeyError", fmt::format("function '{}' is not defined", name));
  }
  CheckArity(*signature, args.size());
  if (signature->blocking) {
    Raise("TypeError", fmt::format("{} is blocking: call it from a call step, not inside an "
                                   "expression",
                                   name));
  }
  if (signature->effect) return host.CallHost(name, std::move(args));
  return CallPureFunction(name, std::move(args));
}

Value EvalCall(const Expr& expr, EvalHost& host) {
  if (expr.name == "if") return EvalIf(expr, host);
  std::vector<Value> args;
  args.reserve(expr.operands.size());
  for (const auto& operand : expr.operands) args.push_back(EvalTop(*operand, host));
  return CallFunction(expr.name, std::move(args), host);
}

Value EvalList(const Expr& expr, EvalHost& host) {
  List items;
  items.reserve(expr.operands.size());
  for (const auto& operand : expr.operands) items.push_back(EvalTop(*operand, host));
  return items;
}

Value EvalMap(const Expr& expr, EvalHost& host) {
  Map map;
  for (size_t i = 0; i < expr.keys.size(); ++i)
    map.Set(expr.keys[i], EvalTop(*expr.operands[i], host));
  return map;
}

// `and` / `or`: the right side runs only when the left does not decide; both must be booleans.
Value EvalLogical(const Expr& expr, EvalHost& host) {
  bool is_and = expr.op == ExprOp::kAnd;
  for (const auto& operand : expr.operands) {
    Value value = expr.scalar ? Eval(*operand, host) : EvalTop(*operand, host);
    if (!value.is_bool()) {
      Raise("TypeError",
            fmt::format("'{}' needs booleans, got {}", OpSymbol(expr.op), value.TypeName()));
    }
    if (value.AsBool() != is_and) return value;
  }
  return is_and;
}

// An operand's value: a literal or a variable is read where it is, without a copy (a copy of
// a string, list or map costs an atomic reference count update each way); anything else is
// evaluated into storage, on the scalar path when the parent is not on it (see EvalTop).
const Value& EvalOperand(const Expr& expr, EvalHost& host, Value& storage, bool parent_scalar) {
  if (expr.kind == Expr::Kind::kLiteral) return expr.literal;
  if (expr.kind == Expr::Kind::kName) {
    if (const Value* value = host.Lookup(expr.name, expr.hint)) return *value;
  }
  storage = parent_scalar ? Eval(expr, host) : EvalTop(expr, host);
  return storage;
}

Value EvalBinary(const Expr& expr, EvalHost& host) {
  if (expr.op == ExprOp::kAnd || expr.op == ExprOp::kOr) return EvalLogical(expr, host);
  Value left_storage, right_storage;
  const Value& left = EvalOperand(*expr.operands[0], host, left_storage, expr.scalar);
  const Value& right = EvalOperand(*expr.operands[1], host, right_storage, expr.scalar);
  return ApplyBinary(expr.op, left, right);
}

Value Eval(const Expr& expr, EvalHost& host) {
  switch (expr.kind) {
    case Expr::Kind::kLiteral:
      return expr.literal;
    case Expr::Kind::kName:
      return EvalName(expr, host);
    case Expr::Kind::kField:
      return EvalField(expr, host);
    case Expr::Kind::kIndex:
      return EvalIndex(expr, host);
    case Expr::Kind::kCall:
      return EvalCall(expr, host);
    case Expr::Kind::kList:
      return EvalList(expr, host);
    case Expr::Kind::kMap:
      return EvalMap(expr, host);
    case Expr::Kind::kUnary: {
      Value storage;
      return ApplyUnary(expr.op, EvalOperand(*expr.operands[0], host, storage, expr.scalar));
    }
    case Expr::Kind::kBinary:
      return EvalBinary(expr, host);
  }
  return Value();
}

void AddUnique(std::vector<std::string>& names, const std::string& name) {
  for (const std::string& existing : names) {
    if (existing == name) return;
  }
  names.push_back(name);
}

// A names-only chain that is (or starts with) a library name, e.g. `http.default_retry` or
// `retry.always`: its longest such prefix; empty when none.
std::string LibraryPrefix(const Expr& expr) {
  for (const Expr* node = &expr; !node->dotted.empty(); node = node->operands[0].get()) {
    if (FindLibraryValue(node->dotted) != nullptr) return node->dotted;
    if (node->kind == Expr::Kind::kName) break;
  }
  return "";
}

void Collect(const Expr& expr, ExprNames& names) {
  if (!expr.dotted.empty()) {
    std::string library = LibraryPrefix(expr);
    if (!library.empty()) {
      AddUnique(names.functions, library);
    } else {
      AddUnique(names.variables, std::string(RootOf(expr.dotted)));
    }
    return;
  }
  if (expr.kind == Expr::Kind::kCall) AddUnique(names.functions, expr.name);
  for (const auto& operand : expr.operands) Collect(*operand, names);
}

}  // namespace

Value Evaluate(const Expr& expr, EvalHost& host) { return EvalTop(expr, host); }

bool NeedsHost(const Expr& expr) {
  if (expr.kind == Expr::Kind::kCall && expr.name != "if") {
    const FunctionSignature* signature = FindFunction(expr.name);
    if (signature == nullptr || signature->effect || signature->blocking) return true;
  }
  for (const auto& operand : expr.operands) {
    if (NeedsHost(*operand)) return true;
  }
  return false;
}

ExprNames CollectNames(const Expr& expr) {
  ExprNames names;
  Collect(expr, names);
  return names;
}

}  // namespace atomflow::lang
