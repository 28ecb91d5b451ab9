// Rendering a value template: evaluating the `${...}` expressions it holds, map keys included.
#include <fmt/format.h>

#include "lang/ast.h"
#include "lang/expr.h"

namespace atomflow::lang {

namespace {

// A list or a map template. Out of line: Render, which runs for every assignment and
// condition, keeps a small frame for the common literal and expression.
[[gnu::noinline]] Value RenderComposite(const Template& tmpl, EvalHost& host) {
  if (tmpl.kind == Template::Kind::kList) {
    List items;
    items.reserve(tmpl.items.size());
    for (const Template& item : tmpl.items) items.push_back(Render(item, host));
    return items;
  }
  Map map;
  for (const auto& [key_template, value_template] : tmpl.entries) {
    Value key = Render(key_template, host);
    if (!key.is_string()) {
      Raise("TypeError", fmt::format("a map key must be a string, got {}: {}", key.TypeName(),
                                     DebugString(key)));
    }
    map.Set(key.AsString(), Render(value_template, host));
  }
  return map;
}

}  // namespace

Value Render(const Template& tmpl, EvalHost& host) {
  if (tmpl.kind == Template::Kind::kLiteral) return tmpl.literal;
  if (tmpl.kind != Template::Kind::kExpression) return RenderComposite(tmpl, host);

  // Evaluate would try the scalar path first too; trying it here saves two calls on every
  // assignment and condition of a compute loop.
  const Expr& expr = *tmpl.expression;
  bool operation = expr.kind == Expr::Kind::kBinary || expr.kind == Expr::Kind::kUnary;
  Value result;
  if (operation && expr.scalar && EvalScalar(expr, host, &result)) return result;
  return Evaluate(expr, host);
}

bool IsPure(const Template& tmpl) {
  switch (tmpl.kind) {
    case Template::Kind::kLiteral:
      return true;
    case Template::Kind::kExpression:
      return !tmpl.calls_host;
    case Template::Kind::kList:
      for (const Template& item : tmpl.items) {
        if (!IsPure(item)) return false;
      }
      return true;
    case Template::Kind::kMap:
      for (const auto& [key, value] : tmpl.entries) {
        if (!IsPure(key) || !IsPure(value)) return false;
      }
      return true;
  }
  return false;
}

}  // namespace atomflow::lang
