// The standard library's encodings: json.*, hash.* (OpenSSL) and time.* (RFC 3339).
#include <date/tz.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>

#include "lang/stdlib.h"

namespace atomflow::lang {
namespace {

Value JsonDecode(Args& args) {
  const std::string& text = args.StringOrBytes(0);
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) args.BadValue("the data is not valid JSON");
  return FromJson(json);
}

// How json.encode lays out its text. Compact unless enabled; when enabled, every element starts
// on a new line holding prefix and one indent per level of nesting, as Google documents.
struct JsonLayout {
  bool enabled = false;
  std::string prefix;
  std::string indent = "    ";
};

// indent: absent, null or false for compact text; true for the defaults; or a map with the
// optional strings "prefix" and "indent".
JsonLayout LayoutOf(Args& args) {
  JsonLayout layout;
  if (!args.Has(1)) return layout;
  if (args[1].is_bool()) {
    layout.enabled = args[1].AsBool();
    return layout;
  }
  if (!args[1].is_map()) args.WrongType(1, "a boolean or a map");
  layout.enabled = true;
  for (const auto& [key, value] : args[1].AsMap()) {
    if (key != "prefix" && key != "indent") {
      args.BadValue(fmt::format("unknown indent option '{}' (prefix, indent)", key));
    }
    if (!value.is_string()) {
      Raise("TypeError", fmt::format("{}: indent option '{}' must be a string, got {}",
                                     args.function(), key, value.TypeName()));
    }
    (key == "prefix" ? layout.prefix : layout.indent) = value.AsString();
  }
  return layout;
}

// Writes JSON text of values; raises ValueError for what JSON cannot hold (bytes, NaN, inf).
class JsonWriter {
 public:
  JsonWriter(const Args& args, JsonLayout layout) : args_(args), layout_(std::move(layout)) {}

  std::string Write(const Value& value) {
    Append(value, 0);
    return std::move(out_);
  }

 private:
  void Append(const Value& value, int depth) {
    switch (value.type()) {
      case Value::Type::kList:
        return AppendList(value.AsList(), depth);
      case Value::Type::kMap:
        return AppendMap(value.AsMap(), depth);
      case Value::Type::kBytes:
        args_.BadValue("bytes cannot be JSON-encoded (base64.encode them first)");
      case Value::Type::kDouble:
        if (!std::isfinite(value.AsDouble())) {
          args_.BadValue(fmt::format("{} cannot be JSON-encoded", FormatDouble(value.AsDouble())));
        }
        out_ += Json(value.AsDouble()).dump();
        return;
      case Value::Type::kString:
        out_ += Json(value.AsString()).dump(-1, ' ', false, Json::error_handler_t::replace);
        return;
      default:
        out_ += ToJson(value)->dump();
    }
  }

  void AppendList(const List& items, int depth) {
    out_ += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out_ += ',';
      NewLine(depth + 1);
      Append(items[i], depth + 1);
    }
    if (!items.empty()) NewLine(depth);
    out_ += ']';
  }

  void AppendMap(const Map& map, int depth) {
    out_ += '{';
    bool first = true;
    for (const auto& [key, value] : map) {
      if (!first) out_ += ',';
      first = false;
      NewLine(depth + 1);
      out_ += Json(key).dump(-1, ' ', false, Json::error_handler_t::replace);
      out_ += layout_.enabled ? ": " : ":";
      Append(value, depth + 1);
    }
    if (!map.empty()) NewLine(depth);
    out_ += '}';
  }

  void NewLine(int depth) {
    if (!layout_.enabled) return;
    out_ += '\n';
    out_ += layout_.prefix;
    for (int i = 0; i < depth; ++i) out_ += layout_.indent;
  }

  const Args& args_;
  JsonLayout layout_;
  std::string out_;
};

std::string JsonText(Args& args) { return JsonWriter(args, LayoutOf(args)).Write(args[0]); }

Value JsonEncode(Args& args) { return Value::Bytes(JsonText(args)); }
Value JsonEncodeToString(Args& args) { return JsonText(args); }

const EVP_MD* Digest(Args& args, size_t i) {
  std::string name = args.String(i);
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name == "MD5") return EVP_md5();
  if (name == "SHA1") return EVP_sha1();
  if (name == "SHA256") return EVP_sha256();
  if (name == "SHA384") return EVP_sha384();
  if (name == "SHA512") return EVP_sha512();
  args.BadValue(fmt::format("unsupported algorithm '{}' (MD5, SHA1, SHA256, SHA384, SHA512)",
                            args.String(i)));
}

Value ComputeChecksum(Args& args) {
  const std::string& data = args.StringOrBytes(0);
  const EVP_MD* digest = Digest(args, 1);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), out, &size, digest, nullptr) != 1) {
    Raise("SystemError", "hash.compute_checksum: the digest failed");
  }
  return Value::Bytes(std::string(reinterpret_cast<char*>(out), size));
}

Value ComputeHmac(Args& args) {
  const std::string& key = args.StringOrBytes(0);
  const std::string& data = args.StringOrBytes(1);
  const EVP_MD* digest = Digest(args, 2);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (HMAC(digest, key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
           &size) == nullptr) {
    Raise("SystemError", "hash.compute_hmac: the HMAC failed");
  }
  return Value::Bytes(std::string(reinterpret_cast<char*>(out), size));
}

// The UTC offset in seconds of a timezone at an instant: "UTC", "Z", "GMT", a fixed offset
// "+HH:MM"/"-HH:MM", or an IANA name ("Europe/Paris"), looked up in the system's tz database
// so that daylight saving time applies as it did at that instant.
int64_t TimezoneOffset(Args& args, size_t i, int64_t at_seconds) {
  if (!args.Has(i)) return 0;
  const std::string& zone = args.String(i);
  if (zone == "UTC" || zone == "Z" || zone == "GMT") return 0;
  int hours = 0, minutes = 0;
  char sign = 0, end = 0;
  if (std::sscanf(zone.c_str(), "%c%2d:%2d%c", &sign, &hours, &minutes, &end) == 3 &&
      (sign == '+' || sign == '-') && zone.size() == 6 && hours < 24 && minutes < 60) {
    return (sign == '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
  }
  try {
    const date::time_zone* found = date::locate_zone(zone);
    auto instant = date::sys_seconds(std::chrono::seconds(at_seconds));
    return found->get_info(instant).offset.count();
  } catch (const std::runtime_error&) {
    args.BadValue(
        fmt::format("unknown timezone '{}' (an IANA name such as Europe/Paris, UTC, "
                    "or a fixed offset like +02:00)",
                    zone));
  }
}

std::string OffsetSuffix(int64_t offset) {
  if (offset == 0) return "Z";
  int64_t magnitude = offset < 0 ? -offset : offset;
  return fmt::format("{}{:02}:{:02}", offset < 0 ? '-' : '+', magnitude / 3600,
                     magnitude / 60 % 60);
}

// Nanoseconds as ".123456789" without trailing zeros; empty for zero.
std::string Fraction(int64_t nanos) {
  if (nanos == 0) return "";
  std::string digits = fmt::format("{:09}", nanos);
  while (digits.back() == '0') digits.pop_back();
  return "." + digits;
}

Value TimeFormat(Args& args) {
  double seconds = args.Number(0);
  if (!std::isfinite(seconds) || std::fabs(seconds) > 253402300799.0) {
    args.BadValue(fmt::format("{} seconds is outside the years 0001-9999", seconds));
  }
  int64_t offset = TimezoneOffset(args, 1, static_cast<int64_t>(std::floor(seconds)));
  double whole = std::floor(seconds);
  auto nanos = static_cast<int64_t>(std::llround((seconds - whole) * 1e9));
  auto local = static_cast<time_t>(whole) + offset;
  if (nanos >= 1000000000) {
    nanos -= 1000000000;
    ++local;
  }
  std::tm parts{};
  gmtime_r(&local, &parts);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}", parts.tm_year + 1900,
                     parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec,
                     Fraction(nanos), OffsetSuffix(offset));
}

// Reads "[.fraction](Z|+HH:MM|-HH:MM)" after the seconds; false when malformed.
bool ParseZoneAndFraction(std::string_view rest, double& fraction, int64_t& offset) {
  fraction = 0;
  if (!rest.empty() && rest.front() == '.') {
    double scale = 0.1;
    rest.remove_prefix(1);
    if (rest.empty() || !std::isdigit(static_cast<unsigned char>(rest.front()))) return false;
    while (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest.front()))) {
      fraction += (rest.front() - '0') * scale;
      scale /= 10;
      rest.remove_prefix(1);
    }
  }
  if (rest == "Z" || rest == "z") {
    offset = 0;
    return true;
  }
  int hours = 0, minutes = 0;
  if (rest.size() != 6 || (rest[0] != '+' && rest[0] != '-') || rest[3] != ':' ||
      std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &hours, &minutes) != 2) {
    return false;
  }
  offset = (rest[0] == '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
  return true;
}

Value TimeParse(Args& args) {
  const std::string& text = args.String(0);
  std::tm parts{};
  int consumed = 0;
  int matched =
      std::sscanf(text.c_str(), "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &parts.tm_year, &parts.tm_mon,
                  &parts.tm_mday, &parts.tm_hour, &parts.tm_min, &parts.tm_sec, &consumed);
  double fraction = 0;
  int64_t offset = 0;
  if (matched != 6 || consumed == 0 || parts.tm_mon < 1 || parts.tm_mon > 12 || parts.tm_mday < 1 ||
      parts.tm_mday > 31 || parts.tm_hour > 23 || parts.tm_min > 59 || parts.tm_sec > 60 ||
      !ParseZoneAndFraction(std::string_view(text).substr(consumed), fraction, offset)) {
    args.BadValue(fmt::format("'{}' is not an RFC 3339 timestamp", text));
  }
  parts.tm_year -= 1900;
  parts.tm_mon -= 1;
  time_t utc = timegm(&parts) - offset;
  return static_cast<double>(utc) + fraction;
}

}  // namespace

const std::vector<LibraryFunction>& CodecFunctions() {
  static const std::vector<LibraryFunction> table = {
      Pure("json.decode", {"data"}, 1, JsonDecode),
      Pure("json.encode", {"data", "indent"}, 1, JsonEncode),
      Pure("json.encode_to_string", {"data", "indent"}, 1, JsonEncodeToString),
      Pure("hash.compute_checksum", {"data", "algorithm"}, 2, ComputeChecksum),
      Pure("hash.compute_hmac", {"key", "data", "algorithm"}, 3, ComputeHmac),
      Pure("time.format", {"seconds", "timezone"}, 1, TimeFormat),
      Pure("time.parse", {"value"}, 1, TimeParse),
  };
  return table;
}

}  // namespace atomflow::lang
