// The shared pieces of the REST API: errors, body and query checks, page tokens and times.
#include "server/api_support.h"

#include <ctime>
#include <regex>

namespace atomflow::server {

namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// URL-safe base64 without padding, so tokens need no escaping in a query string.
std::string Base64Encode(std::string_view bytes) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char byte : bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kBase64[(buffer >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kBase64[(buffer << (6 - bits)) & 0x3f]);
  return out;
}

bool Base64Decode(std::string_view text, std::string* out) {
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const char* found = std::char_traits<char>::find(kBase64, 64, c);
    if (found == nullptr) return false;
    buffer = (buffer << 6) | static_cast<uint32_t>(found - kBase64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return true;
}

std::string JoinNames(const std::vector<std::string_view>& names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out.empty() ? "none" : out;
}

bool Allowed(const std::vector<std::string_view>& allowed, std::string_view name) {
  for (std::string_view known : allowed) {
    if (known == name) return true;
  }
  return false;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && HexDigit(text[i + 1]) >= 0 &&
               HexDigit(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexDigit(text[i + 1]) * 16 + HexDigit(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

std::multimap<std::string, std::string> QueryParams(const httplib::Request& req) {
  std::multimap<std::string, std::string> params;
  size_t question = req.target.find('?');
  if (question == std::string::npos) return params;
  std::string_view query = std::string_view(req.target).substr(question + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    params.emplace(PercentDecode(key), PercentDecode(value));
  }
  return params;
}

std::string QueryParam(const httplib::Request& req, const std::string& name) {
  std::multimap<std::string, std::string> params = QueryParams(req);
  auto found = params.find(name);
  return found == params.end() ? "" : found->second;
}

int HttpStatusOf(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kError:
      break;
  }
  return 500;
}

std::string GoogleStatusOf(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kError:
      break;
  }
  return "INTERNAL";
}

void ReplyError(httplib::Response& res, const Status& status) {
  int code = HttpStatusOf(status.code());
  Json body = {
      {"error",
       {{"code", code}, {"message", status.message()}, {"status", GoogleStatusOf(status.code())}}}};
  ReplyJson(res, body, code);
}

void ReplyJson(httplib::Response& res, const Json& body, int http_status) {
  res.status = http_status;
  // Bodies may quote what a caller sent, bytes that are not UTF-8 included.
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

Result<Json> ParseBody(const std::string& body, const std::vector<std::string_view>& allowed) {
  if (body.empty()) return Json::object();
  Result<Json> parsed = ParseJsonText(body);
  if (!parsed.ok()) return Status::InvalidArgument("the request body " + parsed.message());
  if (!parsed->is_object()) return Status::InvalidArgument("the request body is not a JSON object");
  for (const auto& [key, value] : parsed->items()) {
    if (!Allowed(allowed, key)) {
      return Status::InvalidArgument("unknown field '" + key +
                                     "' in the request body (known: " + JoinNames(allowed) + ")");
    }
  }
  return parsed;
}

Status CheckQuery(const httplib::Request& req, const std::vector<std::string_view>& allowed) {
  for (const auto& [name, value] : QueryParams(req)) {
    if (!Allowed(allowed, name)) {
      return Status::InvalidArgument("unknown query parameter '" + name +
                                     "' (known: " + JoinNames(allowed) + ")");
    }
  }
  return Status::Ok();
}

Result<std::string> StringField(const Json& body, const std::string& field) {
  if (!body.contains(field)) return std::string();
  if (!body[field].is_string()) return Status::InvalidArgument("'" + field + "' must be a string");
  return body[field].get<std::string>();
}

Status CheckLabelsField(const Json& body) {
  if (!body.contains("labels")) return Status::Ok();
  const Json& labels = body["labels"];
  if (!labels.is_object()) return Status::InvalidArgument("labels must be a map of strings");
  for (const auto& [key, value] : labels.items()) {
    if (!value.is_string()) {
      return Status::InvalidArgument("labels must be a map of strings; label '" + key +
                                     "' is not a string");
    }
  }
  return Status::Ok();
}

Result<int> PageSize(const httplib::Request& req) {
  std::string text = QueryParam(req, "pageSize");
  if (text.empty()) return kDefaultPageSize;
  static const std::regex kNumber("[0-9]{1,9}");
  if (!std::regex_match(text, kNumber)) {
    // As in Google's APIs: 0 means the default, and a larger number is capped.
    return Status::InvalidArgument("pageSize must be a whole number (0 for the default of " +
                                   std::to_string(kDefaultPageSize) + ", at most " +
                                   std::to_string(kMaxPageSize) + " are returned), not '" + text +
                                   "'");
  }
  int size = std::stoi(text);
  if (size == 0) return kDefaultPageSize;
  return std::min(size, kMaxPageSize);
}

std::string PageScope(const httplib::Request& req, const std::string& kind) {
  std::string scope = kind + " " + req.path;
  for (const char* name : {"filter", "orderBy", "state"}) {
    scope += " " + QueryParam(req, name);
  }
  return scope;
}

std::string EncodePageToken(const std::string& kind, const std::string& cursor) {
  return Base64Encode(kind + "|" + cursor);
}

Result<std::string> DecodePageToken(const std::string& token, const std::string& kind) {
  std::string decoded;
  std::string expected = kind + "|";
  if (!Base64Decode(token, &decoded) || decoded.rfind(expected, 0) != 0) {
    return Status::InvalidArgument(
        "invalid pageToken: pass the nextPageToken of the previous "
        "page of this list");
  }
  return decoded.substr(expected.size());
}

std::string FormatTime(int64_t ms) {
  if (ms == 0) return "";
  time_t seconds = ms / 1000;
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char text[40];
  strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  char full[48];
  snprintf(full, sizeof(full), "%s.%03dZ", text, static_cast<int>(ms % 1000));
  return full;
}

Result<int64_t> ParseTime(std::string_view text) {
  // Groups: 1-6 date and time, 8 the fraction, 10-12 the zone offset's sign, hours, minutes.
  static const std::regex kTime(std::string(R"((\d{4})-(\d{2})-(\d{2})[Tt ])") +
                                R"((\d{2}):(\d{2}):(\d{2})(\.(\d{1,9}))?)" +
                                R"(([Zz]|([+-])(\d{2}):(\d{2})))");
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_match(text.begin(), text.end(), m, kTime)) {
    return Status::InvalidArgument("'" + std::string(text) +
                                   "' is not an RFC 3339 time such as 2026-12-01T00:00:00Z");
  }
  struct tm fields = {};
  fields.tm_year = std::stoi(m[1].str()) - 1900;
  fields.tm_mon = std::stoi(m[2].str()) - 1;
  fields.tm_mday = std::stoi(m[3].str());
  fields.tm_hour = std::stoi(m[4].str());
  fields.tm_min = std::stoi(m[5].str());
  fields.tm_sec = std::stoi(m[6].str());
  int64_t ms = static_cast<int64_t>(timegm(&fields)) * 1000;
  if (m[8].matched) ms += std::stoi((m[8].str() + "00").substr(0, 3));
  if (m[10].matched) {
    int64_t offset = (std::stoi(m[11].str()) * 60 + std::stoi(m[12].str())) * 60000;
    ms += m[10].str() == "+" ? -offset : offset;
  }
  return ms;
}

std::string FormatDuration(int64_t ms) {
  char text[40];
  snprintf(text, sizeof(text), "%lld.%03llds", static_cast<long long>(ms / 1000),
           static_cast<long long>(ms % 1000));
  return text;
}

std::string NamePrefix(const httplib::Request& req) {
  static const std::regex kPrefix("/v1/(projects/[^/]+/locations/[^/]+/).*");
  std::smatch m;
  if (std::regex_match(req.path, m, kPrefix)) return m[1].str();
  return "";
}

std::string V1(const std::string& rest) { return "/v1(?:/projects/[^/]+/locations/[^/]+)?" + rest; }

}  // namespace atomflow::server
