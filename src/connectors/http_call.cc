// http.* arguments to HttpRequest, and HttpReply to the values a workflow sees.
#include "connectors/http_call.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lang/error.h"

namespace atomflow::connectors {

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr std::array<std::string_view, 7> kKnownArguments = {"url",  "method",  "headers", "query",
                                                             "body", "timeout", "auth"};

std::string Lower(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

std::string Upper(std::string_view text) {
  std::string upper(text);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return upper;
}

Status WrongType(std::string_view function, std::string_view what, std::string_view expected,
                 const Value& got) {
  return Status::Error(std::string(function) + ": " + std::string(what) + " must be " +
                       std::string(expected) + ", got " + got.TypeName());
}

// The method implied by the function's name; empty for http.request, which takes it as an
// argument.
std::string MethodOf(std::string_view function) {
  std::string_view verb = function.substr(function.find('.') + 1);
  return verb == "request" ? std::string() : Upper(verb);
}

// Text of a scalar as it appears in a header, a query or a form; nullopt for null, bytes,
// lists and maps, which have no single obvious text.
std::optional<std::string> ScalarText(const Value& value) {
  switch (value.type()) {
    case Value::Type::kString:
      return value.AsString();
    case Value::Type::kBool:
      return value.AsBool() ? "true" : "false";
    case Value::Type::kInt:
      return std::to_string(value.AsInt());
    case Value::Type::kDouble:
      return DebugString(value);
    default:
      return std::nullopt;
  }
}

// RFC 3986 percent-encoding: everything but the unreserved characters.
std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      encoded += '%';
      encoded += kHex[c >> 4];
      encoded += kHex[c & 15];
    }
  }
  return encoded;
}

// "k1=v1&k2=v2" from a map, as both query strings and forms are written. A list value
// repeats its key once per item.
Result<std::string> EncodePairs(std::string_view function, std::string_view what,
                                const Map& pairs) {
  std::string encoded;
  auto append = [&](const std::string& key, const Value& value) -> Status {
    std::optional<std::string> text = ScalarText(value);
    if (!text) return WrongType(function, std::string(what) + " '" + key + "'", "a scalar", value);
    if (!encoded.empty()) encoded += '&';
    encoded += PercentEncode(key) + "=" + PercentEncode(*text);
    return Status::Ok();
  };

  for (const auto& [key, value] : pairs) {
    const List single = {value};
    for (const Value& item : value.is_list() ? value.AsList() : single) {
      if (Status status = append(key, item); !status.ok()) return status;
    }
  }
  return encoded;
}

// Inserts the query before any fragment, after an existing query if there is one.
Result<std::string> UrlWithQuery(std::string_view function, std::string url, const Value& query) {
  if (query.is_null()) return url;
  if (!query.is_map()) return WrongType(function, "'query'", "a map", query);
  Result<std::string> encoded = EncodePairs(function, "query value", query.AsMap());
  if (!encoded.ok()) return encoded.status();
  if (encoded->empty()) return url;

  size_t fragment = std::min(url.find('#'), url.size());
  char separator = url.substr(0, fragment).find('?') == std::string::npos ? '?' : '&';
  url.insert(fragment, separator + *encoded);
  return url;
}

Result<Headers> HeadersOf(std::string_view function, const Value& headers) {
  Headers result;
  if (headers.is_null()) return result;
  if (!headers.is_map()) return WrongType(function, "'headers'", "a map", headers);

  for (const auto& [name, value] : headers.AsMap()) {
    std::optional<std::string> text = ScalarText(value);
    if (!text) return WrongType(function, "header '" + name + "'", "a scalar", value);
    result.emplace_back(name, std::move(*text));
  }
  return result;
}

const std::string* FindHeader(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (Lower(key) == Lower(name)) return &value;
  }
  return nullptr;
}

// The media type of a Content-Type value, lower-cased, without parameters.
std::string MediaType(std::string_view content_type) {
  std::string type = Lower(content_type.substr(0, content_type.find(';')));
  type.erase(0, type.find_first_not_of(" \t"));
  type.erase(type.find_last_not_of(" \t") + 1);
  return type;
}

// Encodes a body that is not already a string or bytes: as a form when the workflow asked
// for one, else as JSON (adding the Content-Type when none was given).
Status EncodeStructuredBody(std::string_view function, const Value& body, HttpRequest& request) {
  const std::string* content_type = FindHeader(request.headers, "Content-Type");
  if (content_type && MediaType(*content_type) == "application/x-www-form-urlencoded" &&
      body.is_map()) {
    Result<std::string> form = EncodePairs(function, "form field", body.AsMap());
    if (!form.ok()) return form.status();
    request.body = std::move(*form);
    return Status::Ok();
  }

  Result<Json> json = ToJson(body);
  if (!json.ok()) return Status::Error(std::string(function) + ": 'body': " + json.message());
  request.body = json->dump();
  if (!content_type) request.headers.emplace_back("Content-Type", "application/json");
  return Status::Ok();
}

Status SetBody(std::string_view function, const Value& body, HttpRequest& request) {
  if (body.is_null()) return Status::Ok();
  if (body.is_string()) {
    request.body = body.AsString();
    return Status::Ok();
  }
  if (body.is_bytes()) {
    request.body = body.AsBytes();
    return Status::Ok();
  }
  return EncodeStructuredBody(function, body, request);
}

Status SetTimeout(std::string_view function, const Value& timeout, HttpRequest& request) {
  if (timeout.is_null()) return Status::Ok();
  if (!timeout.is_number()) return WrongType(function, "'timeout'", "a number", timeout);
  double seconds = timeout.AsNumber();
  if (!(seconds > 0) || seconds > kMaxHttpTimeoutSeconds) {
    return Status::Error(std::string(function) +
                         ": 'timeout' must be more than 0 and at most 1800 seconds, got " +
                         DebugString(timeout));
  }
  request.timeout_seconds = seconds;
  return Status::Ok();
}

// Cloud Workflows' auth asks Google for a token as the workflow's service account. Atomflow
// has no such identity, so the argument is checked and then has no effect; credentials come
// from headers (filled from the secret store).
Status CheckAuth(std::string_view function, const Value& auth) {
  if (auth.is_null()) return Status::Ok();
  if (!auth.is_map()) return WrongType(function, "'auth'", "a map", auth);
  const Value* type = auth.AsMap().Find("type");
  if (type == nullptr || !type->is_string() ||
      (type->AsString() != "OIDC" && type->AsString() != "OAuth2")) {
    return Status::Error(std::string(function) + ": 'auth.type' must be \"OIDC\" or \"OAuth2\"");
  }
  return Status::Ok();
}

Status CheckArgumentNames(std::string_view function, const Map& args) {
  for (const auto& [name, value] : args) {
    bool known =
        std::find(kKnownArguments.begin(), kKnownArguments.end(), name) != kKnownArguments.end();
    if (name == "method" && function != "http.request") known = false;
    if (!known)
      return Status::Error(std::string(function) + ": unexpected argument '" + name + "'");
  }
  return Status::Ok();
}

// The method of an http.request call, upper-cased; it must be a non-empty token.
Result<std::string> RequestMethod(std::string_view function, const Map& args) {
  const Value* method = args.Find("method");
  if (method == nullptr || method->is_null()) {
    return Status::Error(std::string(function) + ": missing required argument 'method'");
  }
  if (!method->is_string()) return WrongType(function, "'method'", "a string", *method);
  const std::string& text = method->AsString();
  bool is_token = !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) {
    return std::isalpha(c) != 0;
  });
  if (!is_token) {
    return Status::Error(std::string(function) + ": 'method' is not an HTTP method: \"" + text +
                         "\"");
  }
  return Upper(text);
}

Result<std::string> Url(std::string_view function, const Map& args) {
  const Value* url = args.Find("url");
  if (url == nullptr || url->is_null()) {
    return Status::Error(std::string(function) + ": missing required argument 'url'");
  }
  if (!url->is_string()) return WrongType(function, "'url'", "a string", *url);
  if (url->AsString().empty()) return Status::Error(std::string(function) + ": 'url' is empty");
  return url->AsString();
}

// Fills method, url and headers: the parts every later step builds on.
Status SetTarget(std::string_view function, const Map& args, HttpRequest& request) {
  Result<std::string> method =
      function == "http.request" ? RequestMethod(function, args) : MethodOf(function);
  if (!method.ok()) return method.status();
  request.method = std::move(*method);

  Result<std::string> url = Url(function, args);
  if (!url.ok()) return url.status();
  const Value* query = args.Find("query");
  Result<std::string> full_url = UrlWithQuery(function, std::move(*url), query ? *query : Value());
  if (!full_url.ok()) return full_url.status();
  request.url = std::move(*full_url);

  const Value* headers = args.Find("headers");
  Result<Headers> header_list = HeadersOf(function, headers ? *headers : Value());
  if (!header_list.ok()) return header_list.status();
  request.headers = std::move(*header_list);
  return Status::Ok();
}

// How many continuation bytes follow a UTF-8 lead byte; -1 when it cannot lead a sequence.
int ContinuationBytes(unsigned char lead) {
  if (lead < 0x80) return 0;
  if ((lead & 0xE0) == 0xC0) return 1;
  if ((lead & 0xF0) == 0xE0) return 2;
  if ((lead & 0xF8) == 0xF0) return 3;
  return -1;
}

// Strict UTF-8 (no overlong forms, no surrogates): a body that is not is returned as bytes.
bool IsUtf8(std::string_view text) {
  static constexpr uint32_t kSmallest[] = {0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < text.size()) {
    int extra = ContinuationBytes(text[i]);
    if (extra < 0 || text.size() - i <= static_cast<size_t>(extra)) return false;

    uint32_t code_point =
        static_cast<unsigned char>(text[i]) & (0xFF >> (extra == 0 ? 1 : extra + 2));
    for (int k = 1; k <= extra; ++k) {
      unsigned char next = text[i + k];
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }

    bool surrogate = code_point >= 0xD800 && code_point <= 0xDFFF;
    if (code_point < kSmallest[extra] || code_point > 0x10FFFF || surrogate) return false;
    i += extra + 1;
  }
  return true;
}

// Header names lower-cased; a repeated header's values joined with ", " as HTTP allows.
Map HeadersValue(const Headers& headers) {
  Map map;
  for (const auto& [name, value] : headers) {
    std::string key = Lower(name);
    if (Value* existing = map.Find(key)) {
      existing->MutableString() += ", " + value;
    } else {
      map.Set(std::move(key), Value(value));
    }
  }
  return map;
}

bool IsJsonMediaType(const std::string& type) {
  return type == "application/json" || type.ends_with("+json");
}

Value BodyValue(const Headers& headers, const std::string& body) {
  const std::string* content_type = FindHeader(headers, "Content-Type");
  if (content_type && IsJsonMediaType(MediaType(*content_type))) {
    Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!json.is_discarded()) return FromJson(json);
  }
  return IsUtf8(body) ? Value(body) : Value::Bytes(body);
}

engine::EffectOutcome ResponseOutcome(const HttpResponse& response) {
  Value headers(HeadersValue(response.headers));
  Value body = BodyValue(response.headers, response.body);
  if (response.code >= 200 && response.code < 300) {
    return engine::EffectOutcome::Success(
        Map{{"code", Value(response.code)}, {"headers", headers}, {"body", body}});
  }

  std::string message = "HTTP server responded with error code " + std::to_string(response.code);
  return engine::EffectOutcome::Failure(Map{{"message", Value(std::move(message))},
                                            {"code", Value(response.code)},
                                            {"headers", headers},
                                            {"body", body},
                                            {"tags", Value(List{Value("HttpError")})}});
}

std::string_view FailureTag(HttpFailureKind kind) {
  switch (kind) {
    case HttpFailureKind::kConnectionFailed:
      return "ConnectionFailedError";
    case HttpFailureKind::kConnection:
      return "ConnectionError";
    case HttpFailureKind::kTimeout:
      return "TimeoutError";
    case HttpFailureKind::kTooLarge:
      return "ValueError";
  }
  return "ConnectionError";
}

}  // namespace

bool IsHttpFunction(std::string_view function) {
  static constexpr std::array<std::string_view, 6> kFunctions = {
      "http.get", "http.post", "http.put", "http.patch", "http.delete", "http.request"};
  return std::find(kFunctions.begin(), kFunctions.end(), function) != kFunctions.end();
}

Result<HttpRequest> BuildHttpRequest(std::string_view function, const Value& args) {
  if (!IsHttpFunction(function)) {
    return Status::Error("not an HTTP function: " + std::string(function));
  }
  if (args.is_null())
    return Status::Error(std::string(function) + ": missing required argument 'url'");
  if (!args.is_map()) return WrongType(function, "its arguments", "a map", args);
  const Map& arguments = args.AsMap();

  HttpRequest request;
  Status status = CheckArgumentNames(function, arguments);
  if (status.ok()) status = SetTarget(function, arguments, request);
  const Value* body = arguments.Find("body");
  if (status.ok() && body) status = SetBody(function, *body, request);
  const Value* timeout = arguments.Find("timeout");
  if (status.ok() && timeout) status = SetTimeout(function, *timeout, request);
  const Value* auth = arguments.Find("auth");
  if (status.ok() && auth) status = CheckAuth(function, *auth);

  if (!status.ok()) return status;
  return request;
}

engine::EffectOutcome HttpOutcome(const HttpReply& reply) {
  if (const auto* response = std::get_if<HttpResponse>(&reply)) return ResponseOutcome(*response);

  const auto& failure = std::get<HttpFailure>(reply);
  if (failure.kind == HttpFailureKind::kTooLarge) {
    return engine::EffectOutcome::Failure(lang::MakeError(
        "ValueError",
        "HTTP response exceeded the limit of " + std::to_string(kMaxHttpResponseBytes) + " bytes"));
  }
  return engine::EffectOutcome::Failure(lang::MakeError(FailureTag(failure.kind), failure.message));
}

}  // namespace atomflow::connectors
