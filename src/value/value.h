// The value model of the workflow language: null, bool, int64, double, string, bytes, list and
// an insertion-ordered map.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/status.h"

namespace atomflow {

// JSON objects keep their keys in insertion order, as language maps do, so a value that goes
// through the journal or the CLI comes back with its keys in the same order.
using Json = nlohmann::ordered_json;

class Value;
class Map;
using List = std::vector<Value>;

// A language value. Strings, bytes, lists and maps are shared between copies and copied only
// when a copy is mutated (copy on write), so passing a large value around costs a pointer.
// A Value is not thread safe for mutation; const access from several threads is safe.
class Value {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kBytes, kList, kMap };

  Value() = default;
  Value(std::nullptr_t) {}                              // NOLINT: implicit by design
  Value(bool b) : rep_(b) {}                            // NOLINT
  Value(int i) : rep_(static_cast<int64_t>(i)) {}       // NOLINT
  Value(int64_t i) : rep_(i) {}                         // NOLINT
  Value(double d) : rep_(d) {}                          // NOLINT
  Value(std::string s);                                 // NOLINT
  Value(std::string_view s) : Value(std::string(s)) {}  // NOLINT
  Value(const char* s) : Value(std::string(s)) {}       // NOLINT
  Value(List list);                                     // NOLINT
  Value(Map map);                                       // NOLINT

  static Value Bytes(std::string bytes);

  // The variant's alternatives are declared in Type's order.
  Type type() const { return static_cast<Type>(rep_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_double() const { return type() == Type::kDouble; }
  bool is_number() const { return is_int() || is_double(); }
  bool is_string() const { return type() == Type::kString; }
  bool is_bytes() const { return type() == Type::kBytes; }
  bool is_list() const { return type() == Type::kList; }
  bool is_map() const { return type() == Type::kMap; }

  // Accessors assert the type; check it first.
  bool AsBool() const { return std::get<bool>(rep_); }
  int64_t AsInt() const { return std::get<int64_t>(rep_); }
  double AsDouble() const { return std::get<double>(rep_); }
  // An int or a double as a double.
  double AsNumber() const { return is_int() ? static_cast<double>(AsInt()) : AsDouble(); }
  const std::string& AsString() const;
  const std::string& AsBytes() const;
  const List& AsList() const;
  const Map& AsMap() const;

  // Mutable access unshares the value first.
  std::string& MutableString();
  List& MutableList();
  Map& MutableMap();

  // Deep equality; an int equals a double of the same numeric value.
  bool operator==(const Value& other) const;
  bool operator!=(const Value& other) const { return !(*this == other); }

  // The language's type name: "null", "boolean", "integer", "double", "string", "bytes",
  // "list", "map".
  static const char* TypeName(Type type);
  const char* TypeName() const { return TypeName(type()); }

 private:
  struct StringBox {
    std::string text;
  };
  struct BytesBox {
    std::string data;
  };

  std::variant<std::monostate, bool, int64_t, double, std::shared_ptr<StringBox>,
               std::shared_ptr<BytesBox>, std::shared_ptr<List>, std::shared_ptr<Map>>
      rep_;
};

// A map from string keys to values that keeps insertion order, as the language's maps and
// JSON objects do. Small maps search linearly; lookups are O(n), which is fine for the maps a
// workflow holds (an index can be added here without changing callers).
class Map {
 public:
  using Entry = std::pair<std::string, Value>;

  Map() = default;
  Map(std::initializer_list<Entry> entries);

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  bool Contains(std::string_view key) const { return Find(key) != nullptr; }

  // Returns nullptr when the key is absent.
  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);

  // Inserts or replaces; a replaced key keeps its position.
  void Set(std::string key, Value value);
  // Returns the value under key, inserting null first when it is absent.
  Value& operator[](std::string_view key);
  bool Erase(std::string_view key);

  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }
  std::vector<Entry>::iterator begin() { return entries_.begin(); }
  std::vector<Entry>::iterator end() { return entries_.end(); }

  bool operator==(const Map& other) const;

 private:
  std::vector<Entry> entries_;
};

// JSON as the language sees it: objects become maps, integers stay int64, other numbers
// become doubles. Bytes cannot be encoded (an error says so).
Result<Json> ToJson(const Value& value);
Value FromJson(const Json& json);

// A lossless encoding for the journal: like ToJson, but bytes become {"$bytes": base64}, a
// string that is not UTF-8 {"$text": base64}, and a map key starting with '$' is escaped, so
// FromJournalJson(ToJournalJson(v)) == v for every v.
Json ToJournalJson(const Value& value);
Value FromJournalJson(const Json& json);

// Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. When it is not,
// *bad_offset (if given) is the byte offset of the first sequence that is wrong.
bool IsValidUtf8(std::string_view text, size_t* bad_offset = nullptr);

// How deep JSON text from outside (--data, a request body, an execution's argument) may nest:
// values are converted recursively, and the bound keeps a hostile text from exhausting the
// stack. Cloud Workflows itself limits nesting far below it.
constexpr int kMaxJsonTextDepth = 256;

// Parses JSON text from outside. The error completes a sentence whose subject the caller names
// ("--data", "the request body"): "is not valid JSON (at byte 7)", "is not valid UTF-8 (at
// byte 3)", "nests deeper than 256 levels", "has a number too large for a double: 1e999". It
// never quotes the text, which may hold secrets.
Result<Json> ParseJsonText(std::string_view text);

// Compact JSON text of a value; bytes appear as base64 strings. For logs and messages.
std::string DebugString(const Value& value);

std::string Base64Encode(std::string_view data);
Result<std::string> Base64Decode(std::string_view text);

}  // namespace atomflow
