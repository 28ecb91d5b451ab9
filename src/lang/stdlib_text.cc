// The standard library's text and base64 functions. Positions and lengths count Unicode code
// points; regular expressions are RE2.
#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <clocale>
#include <cwctype>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lang/limits.h"
#include "lang/stdlib.h"

namespace atomflow::lang {
namespace {

std::string AsciiCase(std::string text, int (*convert)(int)) {
  for (char& c : text) c = static_cast<char>(convert(static_cast<unsigned char>(c)));
  return text;
}

// The character sets text.encode and text.decode know. A name matches in any case.
enum class Charset { kUtf8, kLatin1, kAscii };

Charset CharsetOf(Args& args, size_t i) {
  if (!args.Has(i)) return Charset::kUtf8;
  std::string name = AsciiCase(args.String(i), std::toupper);
  if (name == "UTF-8" || name == "UTF8") return Charset::kUtf8;
  if (name == "ISO-8859-1" || name == "LATIN1" || name == "LATIN-1") return Charset::kLatin1;
  if (name == "US-ASCII" || name == "ASCII") return Charset::kAscii;
  args.BadValue(
      fmt::format("unsupported charset '{}' (UTF-8, ISO-8859-1, US-ASCII)", args.String(i)));
}

// The code point starting at text[i] (valid UTF-8), advancing i past it.
uint32_t NextCodePoint(std::string_view text, size_t& i) {
  auto lead = static_cast<unsigned char>(text[i++]);
  if (lead < 0x80) return lead;
  int trailing = lead >= 0xF0 ? 3 : (lead >= 0xE0 ? 2 : 1);
  uint32_t cp = lead & (0x3F >> trailing);
  for (int k = 0; k < trailing && i < text.size(); ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(text[i++]) & 0x3F);
  }
  return cp;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
    return;
  }
  int trailing = cp < 0x800 ? 1 : (cp < 0x10000 ? 2 : 3);
  static constexpr unsigned char kLead[] = {0, 0xC0, 0xE0, 0xF0};
  out += static_cast<char>(kLead[trailing] | (cp >> (6 * trailing)));
  for (int k = trailing - 1; k >= 0; --k) out += static_cast<char>(0x80 | ((cp >> (6 * k)) & 0x3F));
}

// The C.UTF-8 locale for Unicode case mapping, made once; null when the C library lacks it,
// and case mapping then covers ASCII only. Reading a locale_t from several threads is safe.
locale_t Utf8Locale() {
  static const locale_t locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
  return locale;
}

// Maps every code point through convert; text that is not valid UTF-8 changes only in ASCII.
std::string UnicodeCase(const std::string& text, bool upper) {
  locale_t locale = Utf8Locale();
  if (locale == locale_t{} || !IsValidUtf8(text)) {
    return AsciiCase(text, upper ? ::toupper : ::tolower);
  }
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto cp = static_cast<wint_t>(NextCodePoint(text, i));
    AppendUtf8(static_cast<uint32_t>(upper ? towupper_l(cp, locale) : towlower_l(cp, locale)), out);
  }
  return out;
}

Value ToLower(Args& args) { return UnicodeCase(args.String(0), false); }
Value ToUpper(Args& args) { return UnicodeCase(args.String(0), true); }

Value Encode(Args& args) {
  const std::string& text = args.String(0);
  Charset charset = CharsetOf(args, 1);
  if (charset == Charset::kUtf8) return Value::Bytes(text);

  uint32_t limit = charset == Charset::kAscii ? 0x80 : 0x100;
  std::string bytes;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = NextCodePoint(text, i);
    if (cp >= limit) {
      args.BadValue(fmt::format("U+{:04X} cannot be encoded in {}", cp, args.String(1)));
    }
    bytes += static_cast<char>(cp);
  }
  return Value::Bytes(std::move(bytes));
}

Value Decode(Args& args) {
  if (!args[0].is_bytes()) args.WrongType(0, "bytes");
  const std::string& bytes = args[0].AsBytes();
  Charset charset = CharsetOf(args, 1);
  if (charset == Charset::kUtf8) {
    if (!IsValidUtf8(bytes)) args.BadValue("the data is not valid UTF-8");
    return bytes;
  }
  std::string text;
  for (char c : bytes) {
    auto byte = static_cast<unsigned char>(c);
    if (charset == Charset::kAscii && byte >= 0x80) {
      args.BadValue(fmt::format("byte 0x{:02X} is not US-ASCII", byte));
    }
    if (byte < 0x80) {
      text += c;
    } else {
      text += static_cast<char>(0xC0 | (byte >> 6));
      text += static_cast<char>(0x80 | (byte & 0x3F));
    }
  }
  return text;
}

Value Match(size_t byte_offset, std::string_view source, std::string_view match) {
  auto index = static_cast<int64_t>(Utf8Length(source.substr(0, byte_offset)));
  return Map{{"index", index}, {"match", Value(match)}};
}

Value FindAll(Args& args) {
  const std::string& source = args.String(0);
  const std::string& needle = args.String(1);
  List matches;
  if (needle.empty()) return matches;
  for (size_t at = source.find(needle); at != std::string::npos;
       at = source.find(needle, at + needle.size())) {
    matches.push_back(Match(at, source, needle));
  }
  return matches;
}

// Compiled patterns by their text. Workflows call the regex functions in loops with a few
// fixed patterns, and compiling is the costly part. Bounded: emptied when full. Thread safe;
// compiled RE2 objects are immutable and shared by every caller.
class RegexCache {
 public:
  std::shared_ptr<const RE2> Get(const std::string& pattern) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = patterns_.find(pattern);
      if (it != patterns_.end()) return it->second;
    }
    auto regex = std::make_shared<const RE2>(pattern, RE2::Quiet);
    std::lock_guard<std::mutex> lock(mutex_);
    if (patterns_.size() >= kMaxPatterns) patterns_.clear();
    patterns_.emplace(pattern, regex);
    return regex;
  }

  static RegexCache& Instance() {
    static RegexCache cache;
    return cache;
  }

 private:
  static constexpr size_t kMaxPatterns = 256;

  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const RE2>> patterns_;
};

std::shared_ptr<const RE2> Compile(Args& args, size_t i) {
  std::shared_ptr<const RE2> regex = RegexCache::Instance().Get(args.String(i));
  if (!regex->ok()) {
    args.BadValue(
        fmt::format("invalid regular expression '{}': {}", args.String(i), regex->error()));
  }
  return regex;
}

Value FindAllRegex(Args& args) {
  const std::string& source = args.String(0);
  std::shared_ptr<const RE2> regex = Compile(args, 1);
  List matches;
  size_t at = 0;
  re2::StringPiece match;
  while (at <= source.size() &&
         regex->Match(source, at, source.size(), RE2::UNANCHORED, &match, 1)) {
    size_t begin = static_cast<size_t>(match.data() - source.data());
    matches.push_back(Match(begin, source, std::string_view(match.data(), match.size())));
    // An empty match must not repeat: step over one code point.
    at = begin + match.size();
    if (match.empty()) at = begin + Utf8Offset(std::string_view(source).substr(begin), 1);
    if (match.empty() && begin == source.size()) break;
  }
  return matches;
}

Value MatchRegex(Args& args) {
  std::shared_ptr<const RE2> regex = Compile(args, 1);
  return RE2::PartialMatch(args.String(0), *regex);
}

// Replacements can grow a string without bound in one call (every character replaced by a
// 256 KiB string): the result is built piece by piece and refused past the string limit.
void AppendBounded(Args& args, std::string& out, std::string_view piece) {
  if (out.size() + piece.size() > kMaxStringBytes) {
    Raise("ResourceLimitError",
          fmt::format("{}: the result would exceed the limit of {} bytes for a string",
                      args.function(), kMaxStringBytes));
  }
  out.append(piece);
}

Value ReplaceAll(Args& args) {
  const std::string& text = args.String(0);
  const std::string& needle = args.String(1);
  const std::string& replacement = args.String(2);
  if (needle.empty()) return text;
  std::string out;
  size_t from = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, from)) {
    AppendBounded(args, out, std::string_view(text).substr(from, at - from));
    AppendBounded(args, out, replacement);
    from = at + needle.size();
  }
  AppendBounded(args, out, std::string_view(text).substr(from));
  return out;
}

Value ReplaceAllRegex(Args& args) {
  const std::string& text = args.String(0);
  std::shared_ptr<const RE2> regex = Compile(args, 1);
  const std::string& rewrite = args.String(2);
  std::string error;
  if (!regex->CheckRewriteString(rewrite, &error)) {
    args.BadValue(fmt::format("invalid replacement '{}': {}", rewrite, error));
  }

  int groups = regex->NumberOfCapturingGroups() + 1;
  std::vector<re2::StringPiece> match(groups);
  std::string out;
  size_t from = 0;
  size_t search = 0;
  while (search <= text.size() &&
         regex->Match(text, search, text.size(), RE2::UNANCHORED, match.data(), groups)) {
    size_t begin = match[0].data() - text.data();
    size_t end = begin + match[0].size();
    AppendBounded(args, out, std::string_view(text).substr(from, begin - from));
    std::string expanded;
    regex->Rewrite(&expanded, rewrite, match.data(), groups);
    AppendBounded(args, out, expanded);
    from = end;
    // An empty match moves on by one character, so the loop ends and keeps the text whole.
    search = end;
    if (match[0].empty()) {
      if (end >= text.size()) break;
      size_t step = Utf8Offset(std::string_view(text).substr(end), 1);
      AppendBounded(args, out, std::string_view(text).substr(end, step));
      from = search = end + step;
    }
  }
  if (from < text.size()) AppendBounded(args, out, std::string_view(text).substr(from));
  return out;
}

Value Split(Args& args) {
  std::string_view source = args.String(0);
  std::string_view separator = args.String(1);
  List parts;
  if (separator.empty()) {
    for (size_t i = 0; i < source.size();) {
      size_t next = i + Utf8Offset(source.substr(i), 1);
      parts.push_back(Value(source.substr(i, next - i)));
      i = next;
    }
    return parts;
  }
  size_t start = 0;
  for (size_t at = source.find(separator); at != std::string_view::npos;
       at = source.find(separator, start)) {
    parts.push_back(Value(source.substr(start, at - start)));
    start = at + separator.size();
  }
  parts.push_back(Value(source.substr(start)));
  return parts;
}

// Code point positions [start, end), clamped to the text.
Value Substring(Args& args) {
  std::string_view source = args.String(0);
  int64_t length = static_cast<int64_t>(Utf8Length(source));
  int64_t start = std::clamp<int64_t>(args.Int(1), 0, length);
  int64_t end = std::clamp<int64_t>(args.Int(2), start, length);
  size_t begin_byte = Utf8Offset(source, static_cast<size_t>(start));
  size_t end_byte = Utf8Offset(source, static_cast<size_t>(end));
  return Value(source.substr(begin_byte, end_byte - begin_byte));
}

bool IsUnreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

std::string UrlEncode(std::string_view text, bool plus_for_space) {
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (IsUnreserved(byte)) {
      out += c;
    } else if (byte == ' ' && plus_for_space) {
      out += '+';
    } else {
      out += fmt::format("%{:02X}", byte);
    }
  }
  return out;
}

Value UrlEncodeValue(Args& args) { return UrlEncode(args.String(0), false); }
Value UrlEncodePlus(Args& args) { return UrlEncode(args.String(0), true); }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX sequences and '+' (a space in query strings) decode; the result must be UTF-8.
Value UrlDecode(Args& args) {
  std::string_view text = args.String(0);
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] != '%') {
      out += text[i];
    } else if (i + 2 < text.size() && HexDigit(text[i + 1]) >= 0 && HexDigit(text[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(text[i + 1]) * 16 + HexDigit(text[i + 2]));
      i += 2;
    } else {
      args.BadValue(fmt::format("invalid escape at position {} of '{}'", i, text));
    }
  }
  if (!IsValidUtf8(out)) args.BadValue("the decoded text is not valid UTF-8");
  return out;
}

Value Base64EncodeValue(Args& args) {
  std::string text = Base64Encode(args.StringOrBytes(0));
  if (args.Has(1) && !args.Bool(1)) {
    while (!text.empty() && text.back() == '=') text.pop_back();
  }
  return text;
}

Value Base64DecodeValue(Args& args) {
  std::string text = args.String(0);
  if (args.Has(1) && !args.Bool(1)) {
    while (text.size() % 4 != 0) text += '=';
  }
  Result<std::string> bytes = Base64Decode(text);
  if (!bytes.ok()) args.BadValue(fmt::format("invalid base64: {}", bytes.message()));
  return Value::Bytes(std::move(bytes.value()));
}

}  // namespace

const std::vector<LibraryFunction>& TextFunctions() {
  static const std::vector<LibraryFunction> table = {
      Pure("text.decode", {"data", "charset"}, 1, Decode),
      Pure("text.encode", {"text", "charset"}, 1, Encode),
      Pure("text.find_all", {"source", "substr"}, 2, FindAll),
      Pure("text.find_all_regex", {"source", "regexp"}, 2, FindAllRegex),
      Pure("text.match_regex", {"source", "regexp"}, 2, MatchRegex),
      Pure("text.replace_all", {"source", "substr", "repl"}, 3, ReplaceAll),
      Pure("text.replace_all_regex", {"source", "regexp", "repl"}, 3, ReplaceAllRegex),
      Pure("text.split", {"source", "separator"}, 2, Split),
      Pure("text.substring", {"source", "start", "end"}, 3, Substring),
      Pure("text.to_lower", {"source"}, 1, ToLower),
      Pure("text.to_upper", {"source"}, 1, ToUpper),
      Pure("text.url_decode", {"source"}, 1, UrlDecode),
      Pure("text.url_encode", {"source"}, 1, UrlEncodeValue),
      Pure("text.url_encode_plus", {"source"}, 1, UrlEncodePlus),
      Pure("base64.encode", {"data", "padding"}, 1, Base64EncodeValue),
      Pure("base64.decode", {"data", "padding"}, 1, Base64DecodeValue),
  };
  return table;
}

}  // namespace atomflow::lang
