// ApiClient over libcurl's easy interface: requests, the API's error shape, and RFC 3339 times.
#include "cli/client.h"

#include <curl/curl.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace atomflow::cli {

namespace {

constexpr long kConnectTimeoutSeconds = 10;
// Long enough for the slowest call (a transaction resolve retrying its compensations).
constexpr long kRequestTimeoutSeconds = 600;
constexpr size_t kMaxQuotedBody = 300;

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t CollectBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

std::string Encode(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    bool plain = isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string WithQuery(std::string url, const QueryParams& query) {
  char separator = '?';
  for (const auto& [name, value] : query) {
    url += separator + Encode(name) + "=" + Encode(value);
    separator = '&';
  }
  return url;
}

// The Status a non-2xx answer stands for.
Status HttpError(long http_status, const std::string& body, bool has_token) {
  Json parsed = Json::parse(body, nullptr, false);
  std::string message;
  std::string status_word;
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) {
    message = parsed["error"].value("message", "");
    status_word = parsed["error"].value("status", "");
  } else {
    message = body.substr(0, kMaxQuotedBody);
    while (!message.empty() && isspace(static_cast<unsigned char>(message.back()))) {
      message.pop_back();
    }
  }
  std::string text = message + " (HTTP " + std::to_string(http_status) +
                     (status_word.empty() ? "" : " " + status_word) + ")";
  switch (http_status) {
    case 400:
      return Status::InvalidArgument(text);
    case 401:
      if (!has_token) text += "; set ATOMFLOW_TOKEN to an API token";
      return Status::Unauthenticated(text);
    case 403:
      return Status::PermissionDenied(text);
    case 404:
      return Status::NotFound(text);
    case 409:
      if (status_word == "ALREADY_EXISTS") return Status::AlreadyExists(text);
      return Status::FailedPrecondition(text);
    case 503:
      return Status::Unavailable(text);
    default:
      return Status::Error(text);
  }
}

}  // namespace

ApiClient::ApiClient(std::string base_url, std::string token)
    : base_url_(std::move(base_url)), token_(std::move(token)) {
  if (base_url_.find("://") == std::string::npos) base_url_ = "http://" + base_url_;
  while (base_url_.ends_with("/")) base_url_.pop_back();
  InitCurlOnce();
  easy_ = curl_easy_init();
}

ApiClient::~ApiClient() {
  if (easy_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(easy_));
}

Result<Json> ApiClient::Get(const std::string& path, const QueryParams& query) {
  return Call("GET", path, query, nullptr);
}

Result<Json> ApiClient::Post(const std::string& path, const Json& body, const QueryParams& query) {
  return Call("POST", path, query, &body);
}

Result<Json> ApiClient::Patch(const std::string& path, const Json& body, const QueryParams& query) {
  return Call("PATCH", path, query, &body);
}

Result<Json> ApiClient::Delete(const std::string& path) {
  return Call("DELETE", path, {}, nullptr);
}

Result<Json> ApiClient::GetAll(const std::string& path, const std::string& field, QueryParams query,
                               int limit) {
  Json all = Json::array();
  std::string page_token;
  while (true) {
    QueryParams page = query;
    if (!page_token.empty()) page.emplace_back("pageToken", page_token);
    Result<Json> answer = Get(path, page);
    if (!answer.ok()) return answer.status();

    if (answer->contains(field) && (*answer)[field].is_array()) {
      for (Json& item : (*answer)[field]) all.push_back(std::move(item));
    }
    page_token = answer->value("nextPageToken", "");
    if (page_token.empty()) break;
    if (limit > 0 && static_cast<int>(all.size()) >= limit) break;
  }
  if (limit > 0 && static_cast<int>(all.size()) > limit) all.erase(all.begin() + limit, all.end());
  return all;
}

Result<Json> ApiClient::Call(const std::string& method, const std::string& path,
                             const QueryParams& query, const Json* body) {
  CURL* easy = static_cast<CURL*>(easy_);
  if (easy == nullptr) return Status::Error("cannot start an HTTP client (curl_easy_init)");
  curl_easy_reset(easy);

  std::string url = WithQuery(base_url_ + path, query);
  std::string request_body = body != nullptr ? body->dump() : "";
  std::string response;
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
  if (body != nullptr) headers = curl_slist_append(headers, "Content-Type: application/json");
  std::string authorization = "Authorization: Bearer " + token_;
  if (!token_.empty()) headers = curl_slist_append(headers, authorization.c_str());

  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (body != nullptr) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request_body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(request_body.size()));
  }
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSeconds);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT, kRequestTimeoutSeconds);
  CURLcode code = curl_easy_perform(easy);
  curl_slist_free_all(headers);

  if (code != CURLE_OK) {
    std::string detail = error[0] != '\0' ? error : curl_easy_strerror(code);
    return Status::Unavailable("cannot reach the server at " + base_url_ + ": " + detail);
  }
  long http_status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
  if (http_status < 200 || http_status >= 300) {
    return HttpError(http_status, response, !token_.empty());
  }
  if (response.empty()) return Json::object();
  Json parsed = Json::parse(response, nullptr, false);
  if (parsed.is_discarded()) {
    return Status::Error(
        method + " " + path + ": the server at " + base_url_ +
        " answered with text that is not JSON: " + response.substr(0, kMaxQuotedBody));
  }
  return parsed;
}

std::string PathSegment(std::string_view text) { return Encode(text); }

std::string ServerUrl(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = getenv("ATOMFLOW_SERVER");
  return env != nullptr ? env : "";
}

std::string TokenFromEnvironment() {
  const char* env = getenv("ATOMFLOW_TOKEN");
  return env != nullptr ? env : "";
}

int64_t ParseRfc3339(const std::string& text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0;
  double seconds = 0;
  int consumed = 0;
  if (sscanf(text.c_str(), "%d-%d-%dT%d:%d:%lf%n", &year, &month, &day, &hour, &minute, &seconds,
             &consumed) < 6) {
    return 0;
  }
  struct tm utc = {};
  utc.tm_year = year - 1900;
  utc.tm_mon = month - 1;
  utc.tm_mday = day;
  utc.tm_hour = hour;
  utc.tm_min = minute;
  int64_t ms =
      static_cast<int64_t>(timegm(&utc)) * 1000 + static_cast<int64_t>(seconds * 1000 + 0.5);

  // "Z", or an offset "+hh:mm" / "-hh:mm" to subtract.
  std::string zone = text.substr(consumed);
  int offset_hours = 0, offset_minutes = 0;
  if (zone.size() >= 6 && (zone[0] == '+' || zone[0] == '-') &&
      sscanf(zone.c_str() + 1, "%d:%d", &offset_hours, &offset_minutes) == 2) {
    int64_t offset_ms = (offset_hours * 60 + offset_minutes) * 60 * 1000;
    ms += zone[0] == '+' ? -offset_ms : offset_ms;
  }
  return ms;
}

}  // namespace atomflow::cli
