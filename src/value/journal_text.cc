// JSON text for journal payloads, equal once parsed to what ToJournalJson and dump would write.
#include "value/journal_text.h"

#include <charconv>
#include <cmath>
#include <utility>

namespace atomflow {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// The escape nlohmann's dump writes for a byte below 0x20 or for '"' and '\\'; none for
// the others.
void AppendEscaped(char c, std::string& out) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default:
      break;
  }
  unsigned char byte = static_cast<unsigned char>(c);
  if (byte >= 0x20) {
    out.push_back(c);
    return;
  }
  out += "\\u00";
  out.push_back(kHex[byte >> 4]);
  out.push_back(kHex[byte & 15]);
}

void AppendDouble(double number, std::string& out) {
  char buffer[32];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), number);
  (void)error;  // 32 characters hold the shortest form of any double
  std::string_view text(buffer, end - buffer);
  out += text;
  // "1" would read back as an integer: a double keeps its fraction, as dump writes "1.0".
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

void AppendInt(int64_t number, std::string& out) {
  char buffer[24];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), number);
  (void)error;  // 24 characters hold any int64
  out.append(buffer, end - buffer);
}

// {"<key>": "<base64>"}: how the journal keeps bytes and text that is not UTF-8.
void AppendTagged(const char* key, std::string_view data, std::string& out) {
  out += "{\"";
  out += key;
  out += "\":\"";
  out += Base64Encode(data);
  out += "\"}";
}

// False when the value holds a NaN or an infinity, which the journal encoding refuses.
bool AppendValue(const Value& value, std::string& out) {
  switch (value.type()) {
    case Value::Type::kNull:
      out += "null";
      return true;
    case Value::Type::kBool:
      out += value.AsBool() ? "true" : "false";
      return true;
    case Value::Type::kInt:
      AppendInt(value.AsInt(), out);
      return true;
    case Value::Type::kDouble:
      if (!std::isfinite(value.AsDouble())) return false;
      AppendDouble(value.AsDouble(), out);
      return true;
    case Value::Type::kString:
      if (!IsValidUtf8(value.AsString())) {
        AppendTagged("$text", value.AsString(), out);
      } else {
        AppendJsonString(value.AsString(), out);
      }
      return true;
    case Value::Type::kBytes:
      AppendTagged("$bytes", value.AsBytes(), out);
      return true;
    case Value::Type::kList: {
      out.push_back('[');
      bool first = true;
      for (const Value& item : value.AsList()) {
        if (!std::exchange(first, false)) out.push_back(',');
        if (!AppendValue(item, out)) return false;
      }
      out.push_back(']');
      return true;
    }
    case Value::Type::kMap: {
      out.push_back('{');
      bool first = true;
      for (const auto& [key, item] : value.AsMap()) {
        if (!std::exchange(first, false)) out.push_back(',');
        // A key starting with '$' is escaped by doubling it, as ToJournalJson does.
        if (!key.empty() && key[0] == '$') {
          AppendJsonString("$" + key, out);
        } else {
          AppendJsonString(key, out);
        }
        out.push_back(':');
        if (!AppendValue(item, out)) return false;
      }
      out.push_back('}');
      return true;
    }
  }
  return false;
}

}  // namespace

void AppendJsonString(std::string_view text, std::string& out) {
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (!ascii && !IsValidUtf8(text)) {
    // Rare (map keys only: values that are not UTF-8 are tagged): the replacement is dump's.
    out += Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
    return;
  }
  // Runs of characters that need no escape are copied whole: most strings are one run.
  out.push_back('"');
  size_t run = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte != '"' && byte != '\\') continue;
    out.append(text.data() + run, i - run);
    AppendEscaped(text[i], out);
    run = i + 1;
  }
  out.append(text.data() + run, text.size() - run);
  out.push_back('"');
}

void AppendJournalText(const Value& value, std::string& out) {
  size_t start = out.size();
  if (AppendValue(value, out)) return;
  out.resize(start);
  out += "null";
}

JsonObjectText& JsonObjectText::String(std::string_view name, std::string_view text) {
  Name(name);
  AppendJsonString(text, text_);
  return *this;
}

JsonObjectText& JsonObjectText::Int(std::string_view name, int64_t number) {
  Name(name);
  AppendInt(number, text_);
  return *this;
}

JsonObjectText& JsonObjectText::Bool(std::string_view name, bool flag) {
  Name(name);
  text_ += flag ? "true" : "false";
  return *this;
}

JsonObjectText& JsonObjectText::Null(std::string_view name) {
  Name(name);
  text_ += "null";
  return *this;
}

JsonObjectText& JsonObjectText::JournalValue(std::string_view name, const Value& value) {
  Name(name);
  AppendJournalText(value, text_);
  return *this;
}

JsonObjectText& JsonObjectText::Raw(std::string_view name, std::string_view json) {
  Name(name);
  text_ += json;
  return *this;
}

std::string JsonObjectText::Take() {
  text_.push_back('}');
  std::string text = std::move(text_);
  text_ = "{";
  return text;
}

void JsonObjectText::Name(std::string_view name) {
  if (text_.size() > 1) text_.push_back(',');
  text_.push_back('"');
  text_ += name;
  text_ += "\":";
}

}  // namespace atomflow
