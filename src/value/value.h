// The value model of the workflow language: null, bool, int64, double, string, bytes, list and
// an insertion-ordered map.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
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
  Value(std::nullptr_t) {}                                     // NOLINT: implicit
  Value(bool b) : type_(Type::kBool) { rep_.boolean = b; }     // NOLINT
  Value(int i) : type_(Type::kInt) { rep_.integer = i; }       // NOLINT
  Value(int64_t i) : type_(Type::kInt) { rep_.integer = i; }   // NOLINT
  Value(double d) : type_(Type::kDouble) { rep_.number = d; }  // NOLINT
  Value(std::string s);                                        // NOLINT
  Value(std::string_view s) : Value(std::string(s)) {}         // NOLINT
  Value(const char* s) : Value(std::string(s)) {}              // NOLINT
  Value(List list);                                            // NOLINT
  Value(Map map);                                              // NOLINT

  static Value Bytes(std::string bytes);

  // A copy shares the heap part; a move leaves the source null.
  Value(const Value& other) : type_(other.type_), rep_(other.rep_) {
    if (boxed()) rep_.box->refs.fetch_add(1, std::memory_order_relaxed);
  }
  Value(Value&& other) noexcept : type_(other.type_), rep_(other.rep_) {
    other.type_ = Type::kNull;
  }
  // Both assignments take the new value before they let go of the old one, so that assigning
  // a part of a value to the value itself (`v = v.AsList()[0]`) reads nothing freed.
  Value& operator=(const Value& other) {
    Value copy(other);
    Swap(copy);
    return *this;
  }
  Value& operator=(Value&& other) noexcept {
    Value taken(std::move(other));
    Swap(taken);
    return *this;
  }
  ~Value() {
    if (boxed()) Release();
  }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_double() const { return type_ == Type::kDouble; }
  bool is_number() const { return is_int() || is_double(); }
  bool is_string() const { return type_ == Type::kString; }
  bool is_bytes() const { return type_ == Type::kBytes; }
  bool is_list() const { return type_ == Type::kList; }
  bool is_map() const { return type_ == Type::kMap; }

  // Accessors check the type and throw std::logic_error on a mismatch; check it first.
  bool AsBool() const {
    Expect(Type::kBool);
    return rep_.boolean;
  }
  int64_t AsInt() const {
    Expect(Type::kInt);
    return rep_.integer;
  }
  double AsDouble() const {
    Expect(Type::kDouble);
    return rep_.number;
  }
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
  // The heap part of a string, bytes, list or map, with the count of the Values sharing it.
  // The count is atomic because values are shared read-only between threads; the payload is
  // copied (Unshare) before a mutation while the count says another Value holds it.
  struct Box {
    std::atomic<uint32_t> refs{1};
  };
  template <typename T>
  struct Boxed;

  // A tagged union rather than std::variant: copying, moving and destroying a scalar are a
  // few inline instructions instead of a visit through a table of functions, which the
  // expression evaluator pays for every intermediate result.
  union Rep {
    bool boolean;
    int64_t integer;
    double number;
    Box* box;  // kString, kBytes, kList, kMap
  };

  bool boxed() const { return type_ >= Type::kString; }
  void Expect(Type type) const {
    if (type_ != type) [[unlikely]]
      WrongType(type);
  }
  [[noreturn]] void WrongType(Type wanted) const;
  void Release();
  void Swap(Value& other) noexcept {
    std::swap(type_, other.type_);
    std::swap(rep_, other.rep_);
  }
  template <typename T>
  T& Payload() const;
  template <typename T>
  T& Unshare();

  Type type_ = Type::kNull;
  Rep rep_ = {.integer = 0};
};

// Where a key was last found in a Map, for a caller that looks the same key up again and again
// (an expression's variable): Map::Find tries that position first. Threads that evaluate the
// same expression against different maps share it, so it is atomic; a stale hint costs only
// the ordinary search, and it is written only when it was wrong.
class KeyHint {
 public:
  KeyHint() = default;
  KeyHint(const KeyHint& other) : position_(other.get()) {}
  KeyHint& operator=(const KeyHint& other) {
    set(other.get());
    return *this;
  }

  uint32_t get() const { return position_.load(std::memory_order_relaxed); }
  void set(uint32_t position) const { position_.store(position, std::memory_order_relaxed); }

 private:
  mutable std::atomic<uint32_t> position_{0};
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
  // The same, trying the hinted position first and updating the hint.
  const Value* Find(std::string_view key, const KeyHint& hint) const {
    uint32_t at = hint.get();
    if (at < entries_.size() && SameKey(entries_[at].first, key)) return &entries_[at].second;
    return FindAndHint(key, hint);
  }
  Value* Find(std::string_view key, const KeyHint& hint) {
    return const_cast<Value*>(std::as_const(*this).Find(key, hint));
  }

  // Inserts or replaces; a replaced key keeps its position.
  void Set(std::string key, Value value);
  // Returns the value under key, inserting null first when it is absent.
  Value& operator[](std::string_view key);
  Value& FindOrInsert(std::string_view key, const KeyHint& hint) {
    uint32_t at = hint.get();
    if (at < entries_.size() && SameKey(entries_[at].first, key)) return entries_[at].second;
    return InsertAndHint(key, hint);
  }
  bool Erase(std::string_view key);

  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }
  std::vector<Entry>::iterator begin() { return entries_.begin(); }
  std::vector<Entry>::iterator end() { return entries_.end(); }

  bool operator==(const Map& other) const;

 private:
  // Keys (variable names, most of all) are short: a loop over their bytes beats a memcmp call
  // (comparing them as two overlapping words measured no better).
  static bool SameKey(const std::string& key, std::string_view wanted) {
    if (key.size() != wanted.size()) return false;
    for (size_t i = 0; i < wanted.size(); ++i) {
      if (key[i] != wanted[i]) return false;
    }
    return true;
  }
  const Value* FindAndHint(std::string_view key, const KeyHint& hint) const;
  // FindOrInsert where the hint missed.
  Value& InsertAndHint(std::string_view key, const KeyHint& hint);

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
