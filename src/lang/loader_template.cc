// Loading values: YAML scalars to language values, `${...}` expressions, and templates that
// collapse to one literal when they hold no expression.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "lang/loader.h"

namespace atomflow::lang {
namespace {

constexpr std::string_view kSpace = " \t\r\n";

std::string_view Trim(std::string_view text) {
  size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  size_t last = text.find_last_not_of(kSpace);
  return text.substr(first, last - first + 1);
}

// A quoted scalar is always a string; only plain ones can be numbers, booleans or null.
bool IsPlain(const YAML::Node& node) { return node.Tag() == "?"; }

std::optional<Value> ParseBool(std::string_view text) {
  if (text == "true" || text == "True" || text == "TRUE") return Value(true);
  if (text == "false" || text == "False" || text == "FALSE") return Value(false);
  return std::nullopt;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A variable, param or step name: letters, digits and '_', not starting with a digit.
bool IsName(std::string_view text) {
  if (text.empty() || IsDigit(text[0])) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return IsDigit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  });
}

// Skips digits from position i; returns how many there were.
size_t SkipDigits(std::string_view text, size_t& i) {
  size_t start = i;
  while (i < text.size() && IsDigit(text[i])) ++i;
  return i - start;
}

std::optional<Value> ParseInt(std::string_view text) {
  int base = 10;
  size_t prefix = 0;
  if (text.size() > 2 && text.substr(0, 2) == "0x") {
    prefix = 2;
    base = 16;
  } else if (!text.empty() && text[0] == '+') {
    prefix = 1;
  }
  text.remove_prefix(prefix);
  // from_chars takes a minus sign itself; after "+" or "0x" it would be a second sign.
  if (prefix != 0 && !text.empty() && text[0] == '-') return std::nullopt;

  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (end != text.data() + text.size() || text.empty()) return std::nullopt;
  // Too large for int64: the number is still a number, as a double.
  if (error == std::errc::result_out_of_range && base == 10) {
    return Value(std::strtod(std::string(text).c_str(), nullptr));
  }
  if (error != std::errc()) return std::nullopt;
  return Value(value);
}

// [-+]? (digits [. digits?] | . digits) ([eE] [-+]? digits)?
bool IsDecimalNumber(std::string_view text) {
  size_t i = 0;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
  size_t digits = SkipDigits(text, i);
  if (i < text.size() && text[i] == '.') {
    ++i;
    digits += SkipDigits(text, i);
  }
  if (digits == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    if (SkipDigits(text, i) == 0) return false;
  }
  return i == text.size();
}

std::optional<Value> ParseDouble(std::string_view text) {
  if (IsDecimalNumber(text)) return Value(std::strtod(std::string(text).c_str(), nullptr));

  constexpr double kInfinity = std::numeric_limits<double>::infinity();
  if (text == ".inf" || text == ".Inf" || text == ".INF" || text == "+.inf") {
    return Value(kInfinity);
  }
  if (text == "-.inf" || text == "-.Inf" || text == "-.INF") return Value(-kInfinity);
  if (text == ".nan" || text == ".NaN" || text == ".NAN") {
    return Value(std::numeric_limits<double>::quiet_NaN());
  }
  return std::nullopt;
}

// The value of a plain scalar under the YAML 1.2 core schema: yes/no/on/off stay strings, as
// Cloud Workflows keeps them.
Value PlainScalarValue(const std::string& text) {
  if (auto value = ParseBool(text)) return *value;
  if (auto value = ParseInt(text)) return *value;
  if (auto value = ParseDouble(text)) return *value;
  return Value(text);
}

Template Literal(Value value, SourcePos pos) {
  Template literal;
  literal.kind = Template::Kind::kLiteral;
  literal.literal = std::move(value);
  literal.pos = pos;
  return literal;
}

bool IsLiteral(const Template& tmpl) { return tmpl.kind == Template::Kind::kLiteral; }

}  // namespace

Template WorkflowLoader::LoadTemplate(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return LoadScalarTemplate(node);
    case YAML::NodeType::Sequence:
      return LoadListTemplate(node);
    case YAML::NodeType::Map:
      return LoadMapTemplate(node);
    default:
      return Literal(Value(), PosOf(node));
  }
}

Template WorkflowLoader::LoadScalarTemplate(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  std::string_view trimmed = Trim(text);
  if (trimmed.size() >= 3 && trimmed.substr(0, 2) == "${" && trimmed.back() == '}') {
    return LoadExpression(node, trimmed.substr(2, trimmed.size() - 3));
  }
  Value value = IsPlain(node) ? PlainScalarValue(text) : Value(text);
  // Infinity and NaN are no numbers of the language (nor of JSON): `.inf`, `.nan` and a
  // literal past a double's range are refused where they are written, as `${1e999}` is.
  if (value.is_double() && !std::isfinite(value.AsDouble())) {
    Error(node, "the number '" + text + "' is not finite" + InStep() +
                    ": infinities and NaN cannot be values");
  }
  return Literal(std::move(value), PosOf(node));
}

Template WorkflowLoader::LoadExpression(const YAML::Node& node, std::string_view body) {
  Template expression;
  expression.kind = Template::Kind::kExpression;
  expression.expression_text = std::string(Trim(body));
  expression.pos = PosOf(node);

  Result<std::shared_ptr<const Expr>> parsed = ParseExpression(expression.expression_text);
  if (!parsed.ok()) {
    // A long expression is cut in the message; the column in parsed.message() locates it.
    constexpr size_t kQuoted = 60;
    std::string quoted = expression.expression_text.size() <= kQuoted
                             ? expression.expression_text
                             : expression.expression_text.substr(0, kQuoted) + "...";
    Error(node, "bad expression '${" + quoted + "}'" + InStep() + ": " + parsed.message());
    return expression;
  }
  expression.expression = std::move(parsed.value());
  expression.calls_host = NeedsHost(*expression.expression);
  return expression;
}

Template WorkflowLoader::LoadListTemplate(const YAML::Node& node) {
  Template list;
  list.kind = Template::Kind::kList;
  list.pos = PosOf(node);
  bool all_literal = true;
  for (const YAML::Node& item : node) {
    list.items.push_back(LoadTemplate(item));
    all_literal = all_literal && IsLiteral(list.items.back());
  }
  if (!all_literal) return list;

  // Nothing to evaluate: the whole list is one value, built once here.
  List values;
  values.reserve(list.items.size());
  for (Template& item : list.items) values.push_back(std::move(item.literal));
  return Literal(Value(std::move(values)), list.pos);
}

Template WorkflowLoader::LoadMapTemplate(const YAML::Node& node) {
  Template map;
  map.kind = Template::Kind::kMap;
  map.pos = PosOf(node);
  bool all_literal = true;
  for (auto it = node.begin(); it != node.end(); ++it) {
    Template key;
    if (it->first.IsScalar()) {
      std::string_view trimmed = Trim(it->first.Scalar());
      bool is_expression =
          trimmed.size() >= 3 && trimmed.substr(0, 2) == "${" && trimmed.back() == '}';
      // A literal key is its text: `1: x` has the key "1", as in a JSON object.
      key = is_expression ? LoadScalarTemplate(it->first)
                          : Literal(Value(it->first.Scalar()), PosOf(it->first));
    } else {
      Error(it->first, "a map key must be a string" + InStep());
      key = Literal(Value(""), PosOf(it->first));
    }
    Template value = LoadTemplate(it->second);
    all_literal = all_literal && IsLiteral(key) && IsLiteral(value);
    map.entries.emplace_back(std::move(key), std::move(value));
  }
  if (!all_literal) return map;

  Map values;
  for (auto& [key, value] : map.entries) {
    values.Set(key.literal.AsString(), std::move(value.literal));
  }
  return Literal(Value(std::move(values)), map.pos);
}

std::string WorkflowLoader::LoadString(const YAML::Node& node, std::string_view what) {
  if (!node.IsScalar()) {
    Error(node, "expected " + std::string(what) + InStep() + "; got " +
                    (node.IsNull() ? "nothing" : "a list or map"));
    return "";
  }
  return node.Scalar();
}

std::string WorkflowLoader::LoadName(const YAML::Node& node, std::string_view what) {
  std::string name = LoadString(node, what);
  if (name.empty()) return name;
  if (!IsName(name)) {
    Error(node, "'" + name + "' is not a valid name for " + std::string(what) + InStep() +
                    " (letters, digits and '_', not starting with a digit)");
    return "";
  }
  return name;
}

std::string WorkflowLoader::LoadString(const KeyedMap::Entry& entry, std::string_view what) {
  if (!entry.value.IsNull()) return LoadString(entry.value, what);
  Error(entry.key_node, "expected " + std::string(what) + " after '" + entry.key + "'" + InStep() +
                            "; got nothing");
  return "";
}

std::string WorkflowLoader::LoadName(const KeyedMap::Entry& entry, std::string_view what) {
  if (!entry.value.IsNull()) return LoadName(entry.value, what);
  return LoadString(entry, what);
}

std::vector<std::string> WorkflowLoader::LoadNameList(const YAML::Node& node,
                                                      std::string_view what) {
  std::vector<std::string> names;
  if (!node.IsSequence()) {
    Error(node, "expected a list of " + std::string(what) + InStep());
    return names;
  }
  for (const YAML::Node& item : node) {
    std::string name = LoadName(item, what);
    if (!name.empty()) names.push_back(std::move(name));
  }
  return names;
}

KeyedMap WorkflowLoader::LoadKeyedMap(const YAML::Node& node, std::string_view what) {
  KeyedMap map;
  if (!node.IsMap()) {
    Error(node, "expected " + std::string(what) + " to be a map");
    return map;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string key = LoadString(it->first, "a key");
    if (const KeyedMap::Entry* first = map.Find(key)) {
      Error(it->first, "duplicate key '" + key + "' in " + std::string(what) + " (first at line " +
                           std::to_string(PosOf(first->key_node).line) + ")");
      continue;
    }
    map.Add({std::move(key), it->first, it->second});
  }
  return map;
}

void WorkflowLoader::CheckKeys(const KeyedMap& map, const std::vector<std::string_view>& allowed,
                               std::string_view what) {
  for (const KeyedMap::Entry& entry : map.entries()) {
    if (std::find(allowed.begin(), allowed.end(), entry.key) != allowed.end()) continue;
    std::string message = "unknown key '" + entry.key + "' in " + std::string(what);
    std::string suggestion = SuggestKey(entry.key, allowed);
    if (!suggestion.empty()) message += " (did you mean '" + suggestion + "'?)";
    Error(entry.key_node, std::move(message));
  }
}

bool WorkflowLoader::Require(const KeyedMap& map, std::string_view key, const YAML::Node& at,
                             std::string_view what) {
  if (map.Has(key)) return true;
  Error(at, std::string(what) + " needs '" + std::string(key) + "'");
  return false;
}

std::string WorkflowLoader::InStep() const {
  return step_name_.empty() ? "" : " in step '" + step_name_ + "'";
}

void WorkflowLoader::Error(const YAML::Node& at, std::string message) {
  diagnostics_.Error(PosOf(at), std::move(message));
}

void WorkflowLoader::Error(SourcePos pos, std::string message) {
  diagnostics_.Error(pos, std::move(message));
}

}  // namespace atomflow::lang
