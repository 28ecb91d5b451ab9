// Rendering a value template: evaluating the `${...}` expressions it holds, map keys included.
#include <fmt/format.h>

#include "lang/ast.h"

namespace atomflow::lang {

Value Render(const Template& tmpl, EvalHost& host) {
  switch (tmpl.kind) {
    case Template::Kind::kLiteral:
      return tmpl.literal;
    case Template::Kind::kExpression:
      return Evaluate(*tmpl.expression, host);
    case Template::Kind::kList: {
      List items;
      items.reserve(tmpl.items.size());
      for (const Template& item : tmpl.items) items.push_back(Render(item, host));
      return items;
    }
    case Template::Kind::kMap: {
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
  }
  return Value();
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
