// The value model: construction, copy-on-write access, equality and JSON conversion.
#include "value/value.h"

#include <cmath>
#include <stdexcept>

namespace atomflow {

template <typename T>
struct Value::Boxed : Box {
  explicit Boxed(T initial) : payload(std::move(initial)) {}
  T payload;
};

Value::Value(std::string s) : type_(Type::kString) {
  rep_.box = new Boxed<std::string>(std::move(s));
}

Value::Value(List list) : type_(Type::kList) { rep_.box = new Boxed<List>(std::move(list)); }

Value::Value(Map map) : type_(Type::kMap) { rep_.box = new Boxed<Map>(std::move(map)); }

Value Value::Bytes(std::string bytes) {
  Value value;
  value.type_ = Type::kBytes;
  value.rep_.box = new Boxed<std::string>(std::move(bytes));
  return value;
}

void Value::WrongType(Type wanted) const {
  throw std::logic_error(std::string("a value of type ") + TypeName() + " read as " +
                         TypeName(wanted));
}

// The last Value to let go of a heap part deletes it. acq_rel: the deleting thread must see
// every write that other holders made before they let go.
void Value::Release() {
  if (rep_.box->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  switch (type_) {
    case Type::kString:
    case Type::kBytes:
      delete static_cast<Boxed<std::string>*>(rep_.box);
      break;
    case Type::kList:
      delete static_cast<Boxed<List>*>(rep_.box);
      break;
    case Type::kMap:
      delete static_cast<Boxed<Map>*>(rep_.box);
      break;
    default:
      break;
  }
}

template <typename T>
T& Value::Payload() const {
  return static_cast<Boxed<T>*>(rep_.box)->payload;
}

// Copy on write: a heap part that another Value shares is copied before it changes.
template <typename T>
T& Value::Unshare() {
  if (rep_.box->refs.load(std::memory_order_acquire) != 1) {
    Box* copy = new Boxed<T>(Payload<T>());
    Release();
    rep_.box = copy;
  }
  return Payload<T>();
}

const std::string& Value::AsString() const {
  Expect(Type::kString);
  return Payload<std::string>();
}

const std::string& Value::AsBytes() const {
  Expect(Type::kBytes);
  return Payload<std::string>();
}

const List& Value::AsList() const {
  Expect(Type::kList);
  return Payload<List>();
}

const Map& Value::AsMap() const {
  Expect(Type::kMap);
  return Payload<Map>();
}

std::string& Value::MutableString() {
  Expect(Type::kString);
  return Unshare<std::string>();
}

List& Value::MutableList() {
  Expect(Type::kList);
  return Unshare<List>();
}

Map& Value::MutableMap() {
  Expect(Type::kMap);
  return Unshare<Map>();
}

bool Value::operator==(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (is_int() && other.is_int()) return AsInt() == other.AsInt();
    return AsNumber() == other.AsNumber();
  }
  if (type() != other.type()) return false;
  switch (type()) {
    case Type::kNull:
      return true;
    case Type::kBool:
      return AsBool() == other.AsBool();
    case Type::kString:
      return AsString() == other.AsString();
    case Type::kBytes:
      return AsBytes() == other.AsBytes();
    case Type::kList:
      return AsList() == other.AsList();
    case Type::kMap:
      return AsMap() == other.AsMap();
    default:
      return false;  // numbers were handled above
  }
}

const char* Value::TypeName(Type type) {
  switch (type) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "boolean";
    case Type::kInt:
      return "integer";
    case Type::kDouble:
      return "double";
    case Type::kString:
      return "string";
    case Type::kBytes:
      return "bytes";
    case Type::kList:
      return "list";
    case Type::kMap:
      return "map";
  }
  return "unknown";
}

Map::Map(std::initializer_list<Entry> entries) {
  for (const Entry& entry : entries) Set(entry.first, entry.second);
}

const Value* Map::Find(std::string_view key) const {
  for (const Entry& entry : entries_) {
    if (SameKey(entry.first, key)) return &entry.second;
  }
  return nullptr;
}

Value* Map::Find(std::string_view key) {
  for (Entry& entry : entries_) {
    if (SameKey(entry.first, key)) return &entry.second;
  }
  return nullptr;
}

const Value* Map::FindAndHint(std::string_view key, const KeyHint& hint) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (SameKey(entries_[i].first, key)) {
      hint.set(static_cast<uint32_t>(i));
      return &entries_[i].second;
    }
  }
  return nullptr;
}

Value& Map::InsertAndHint(std::string_view key, const KeyHint& hint) {
  if (Value* existing = const_cast<Value*>(FindAndHint(key, hint))) return *existing;
  hint.set(static_cast<uint32_t>(entries_.size()));
  entries_.emplace_back(std::string(key), Value());
  return entries_.back().second;
}

void Map::Set(std::string key, Value value) {
  if (Value* existing = Find(key)) {
    *existing = std::move(value);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(value));
}

Value& Map::operator[](std::string_view key) {
  if (Value* existing = Find(key)) return *existing;
  entries_.emplace_back(std::string(key), Value());
  return entries_.back().second;
}

bool Map::Erase(std::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

bool Map::operator==(const Map& other) const {
  if (size() != other.size()) return false;
  for (const Entry& entry : entries_) {
    const Value* theirs = other.Find(entry.first);
    if (theirs == nullptr || !(*theirs == entry.second)) return false;
  }
  return true;
}

namespace {

constexpr const char* kBytesKey = "$bytes";
// A string whose bytes are not UTF-8 (a job's output, a file's content): JSON cannot hold it,
// so the journal keeps its bytes in base64 to give the same string back.
constexpr const char* kRawTextKey = "$text";

bool Invalid(size_t offset, size_t* bad_offset) {
  if (bad_offset != nullptr) *bad_offset = offset;
  return false;
}

}  // namespace

bool IsValidUtf8(std::string_view text, size_t* bad_offset) {
  size_t i = 0;
  while (i < text.size()) {
    auto byte = static_cast<unsigned char>(text[i]);
    size_t length = byte < 0x80           ? 1
                    : (byte >> 5) == 0x6  ? 2
                    : (byte >> 4) == 0xE  ? 3
                    : (byte >> 3) == 0x1E ? 4
                                          : 0;
    if (length == 0 || i + length > text.size()) return Invalid(i, bad_offset);
    uint32_t code = length == 1 ? byte : byte & (0x7F >> length);
    for (size_t k = 1; k < length; ++k) {
      auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return Invalid(i, bad_offset);
      code = (code << 6) | (next & 0x3F);
    }
    static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kSmallest[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return Invalid(i, bad_offset);
    }
    i += length;
  }
  return true;
}

Result<Json> ParseJsonText(std::string_view text) {
  size_t bad = 0;
  if (!IsValidUtf8(text, &bad)) {
    // Counted from 1, as the JSON parser counts the bytes it names.
    return Status::InvalidArgument("is not valid UTF-8 (at byte " + std::to_string(bad + 1) + ")");
  }
  bool too_deep = false;
  auto check_depth = [&too_deep](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxJsonTextDepth) too_deep = true;
    return !too_deep;
  };
  try {
    Json parsed = Json::parse(text, check_depth);
    if (too_deep) {
      return Status::InvalidArgument("nests deeper than " + std::to_string(kMaxJsonTextDepth) +
                                     " levels");
    }
    return parsed;
  } catch (const Json::parse_error& error) {
    return Status::InvalidArgument("is not valid JSON (at byte " + std::to_string(error.byte) +
                                   ")");
  } catch (const Json::out_of_range& error) {
    // A number past a double's range: the parser's message quotes the number after its tag.
    std::string_view what = error.what();
    size_t quote = what.find('\'');
    std::string number = quote == std::string_view::npos ? "" : std::string(what.substr(quote));
    return Status::InvalidArgument("has a number too large for a double" +
                                   (number.empty() ? "" : ": " + number));
  }
}

namespace {

// How Encode treats what plain JSON cannot hold: refuse it (ToJson), keep it losslessly
// (the journal), or show it to people (a non-UTF-8 string dumped with replacement bytes).
enum class Encoding { kStrict, kJournal, kDisplay };

Result<Json> Encode(const Value& value, Encoding encoding) {
  bool journal = encoding != Encoding::kStrict;
  switch (value.type()) {
    case Value::Type::kNull:
      return Json(nullptr);
    case Value::Type::kBool:
      return Json(value.AsBool());
    case Value::Type::kInt:
      return Json(value.AsInt());
    case Value::Type::kDouble:
      if (!std::isfinite(value.AsDouble())) return Status::Error("cannot encode NaN/inf as JSON");
      return Json(value.AsDouble());
    case Value::Type::kString:
      if (encoding == Encoding::kDisplay || IsValidUtf8(value.AsString())) {
        return Json(value.AsString());
      }
      if (!journal) return Status::Error("a string that is not valid UTF-8 cannot be JSON");
      return Json{{kRawTextKey, Base64Encode(value.AsString())}};
    case Value::Type::kBytes:
      if (!journal) return Status::Error("bytes cannot be encoded as JSON");
      return Json{{kBytesKey, Base64Encode(value.AsBytes())}};
    case Value::Type::kList: {
      Json array = Json::array();
      for (const Value& item : value.AsList()) {
        Result<Json> encoded = Encode(item, encoding);
        if (!encoded.ok()) return encoded.status();
        array.push_back(std::move(encoded).value());
      }
      return array;
    }
    case Value::Type::kMap: {
      Json object = Json::object();
      for (const auto& [key, item] : value.AsMap()) {
        Result<Json> encoded = Encode(item, encoding);
        if (!encoded.ok()) return encoded.status();
        // A user map that happens to use "$bytes" as a key is escaped by doubling the '$'.
        std::string stored = journal && key.rfind("$", 0) == 0 ? "$" + key : key;
        object[stored] = std::move(encoded).value();
      }
      return object;
    }
  }
  return Status::Error("unknown value type");
}

Value Decode(const Json& json, bool journal) {
  switch (json.type()) {
    case Json::value_t::null:
      return Value();
    case Json::value_t::boolean:
      return Value(json.get<bool>());
    case Json::value_t::number_integer:
      return Value(json.get<int64_t>());
    case Json::value_t::number_unsigned: {
      uint64_t u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case Json::value_t::number_float:
      return Value(json.get<double>());
    case Json::value_t::string:
      return Value(json.get<std::string>());
    case Json::value_t::array: {
      List list;
      list.reserve(json.size());
      for (const Json& item : json) list.push_back(Decode(item, journal));
      return Value(std::move(list));
    }
    case Json::value_t::object: {
      if (journal && json.size() == 1 && json.contains(kBytesKey)) {
        Result<std::string> bytes = Base64Decode(json[kBytesKey].get<std::string>());
        return Value::Bytes(bytes.ok() ? std::move(bytes).value() : std::string());
      }
      if (journal && json.size() == 1 && json.contains(kRawTextKey)) {
        Result<std::string> text = Base64Decode(json[kRawTextKey].get<std::string>());
        return Value(text.ok() ? std::move(text).value() : std::string());
      }
      Map map;
      for (const auto& [key, item] : json.items()) {
        std::string stored = journal && key.rfind("$$", 0) == 0 ? key.substr(1) : key;
        map.Set(std::move(stored), Decode(item, journal));
      }
      return Value(std::move(map));
    }
    default:
      return Value();
  }
}

}  // namespace

Result<Json> ToJson(const Value& value) { return Encode(value, Encoding::kStrict); }

Value FromJson(const Json& json) { return Decode(json, false); }

Json ToJournalJson(const Value& value) {
  Result<Json> encoded = Encode(value, Encoding::kJournal);
  return encoded.ok() ? std::move(encoded).value() : Json(nullptr);
}

Value FromJournalJson(const Json& json) { return Decode(json, true); }

std::string DebugString(const Value& value) {
  Result<Json> encoded = Encode(value, Encoding::kDisplay);
  if (!encoded.ok()) return "<" + encoded.message() + ">";
  return encoded->dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Base64Index(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t n = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    for (int shift : {18, 12, 6, 0}) out.push_back(kBase64Alphabet[(n >> shift) & 63]);
  }
  size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t n = uint8_t(data[i]) << 16;
    if (rest == 2) n |= uint8_t(data[i + 1]) << 8;
    out.push_back(kBase64Alphabet[(n >> 18) & 63]);
    out.push_back(kBase64Alphabet[(n >> 12) & 63]);
    out.push_back(rest == 2 ? kBase64Alphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '=') break;
    if (c == '\n' || c == '\r') continue;
    int index = Base64Index(c);
    if (index < 0) {
      return Status::Error("invalid base64 character at position " + std::to_string(i));
    }
    buffer = (buffer << 6) | static_cast<uint32_t>(index);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace atomflow
