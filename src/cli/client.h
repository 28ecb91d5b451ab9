// ApiClient: the atomflow command's side of the REST API of `atomflow serve` (docs/api.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::cli {

// Query parameters of one call, in order; values are percent-encoded by the client.
using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Calls the API of one server over libcurl's easy interface, with the bearer token (when one
// is given) on every request. Answers are JSON documents; an answer that is not 2xx becomes a
// Status whose code follows the HTTP status (400 InvalidArgument, 401 Unauthenticated, 403
// PermissionDenied, 404 NotFound, 409 AlreadyExists or FailedPrecondition, 503 Unavailable)
// and whose message quotes the API's error message and the HTTP status. A server that cannot
// be reached gives Unavailable "cannot reach the server at URL: ...". The token never appears
// in a message. Owns one curl handle, reused across calls (keep-alive); not thread safe.
class ApiClient {
 public:
  // base_url: "http://host:port" (a bare "host:port" gets "http://"); token: empty for none.
  ApiClient(std::string base_url, std::string token);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // path starts with "/" ("/v1/workflows"); its segments must be encoded already (PathSegment).
  Result<Json> Get(const std::string& path, const QueryParams& query = {});
  Result<Json> Post(const std::string& path, const Json& body, const QueryParams& query = {});
  Result<Json> Patch(const std::string& path, const Json& body, const QueryParams& query = {});
  Result<Json> Delete(const std::string& path);

  // GETs every page of a list ("pageToken"/"nextPageToken") and concatenates the arrays under
  // field. limit > 0 stops once that many items arrived.
  Result<Json> GetAll(const std::string& path, const std::string& field, QueryParams query = {},
                      int limit = 0);

  const std::string& base_url() const { return base_url_; }

 private:
  Result<Json> Call(const std::string& method, const std::string& path, const QueryParams& query,
                    const Json* body);

  std::string base_url_;
  std::string token_;
  void* easy_ = nullptr;  // CURL*, kept opaque so that users of this header need no curl.h
};

// One path segment percent-encoded (a gid's ':' and '#', a name's '/').
std::string PathSegment(std::string_view text);

// The server the client commands talk to: the --server flag, else $ATOMFLOW_SERVER; empty
// when neither is set (the commands then work on the local store).
std::string ServerUrl(const std::string& flag);

// $ATOMFLOW_TOKEN, or empty.
std::string TokenFromEnvironment();

// RFC 3339 text ("2026-12-04T01:02:03.456Z", offsets allowed) as milliseconds since the epoch;
// 0 for empty or unreadable text.
int64_t ParseRfc3339(const std::string& text);

}  // namespace atomflow::cli
