// The language's http.* calls mapped to HTTP requests and their replies mapped back to
// values: pure functions, no I/O.
#pragma once

#include <string_view>

#include "common/status.h"
#include "connectors/http_client.h"
#include "engine/effect.h"
#include "value/value.h"

namespace atomflow::connectors {

// The longest timeout a workflow may ask for, in seconds.
inline constexpr double kMaxHttpTimeoutSeconds = 1800;

// True for "http.get", "http.post", "http.put", "http.patch", "http.delete", "http.request".
bool IsHttpFunction(std::string_view function);

// Builds the request for a call of function with args, a map of: url (required), method
// (http.request only, required there), headers (map; values become strings), query (map;
// url-encoded and appended; a list value repeats the key), body (a string or bytes is sent
// as is; any other value becomes JSON with Content-Type application/json unless a
// Content-Type is given, or a form when that type is application/x-www-form-urlencoded),
// timeout (seconds, at most 1800) and auth (OIDC / OAuth2, accepted and checked for shape;
// no credentials are attached). Errors name the function and the argument, e.g.
// "http.post: 'url' must be a string, got integer".
Result<HttpRequest> BuildHttpRequest(std::string_view function, const Value& args);

// The workflow's view of a reply. 2xx: success {code, headers, body} with lower-case header
// names and the body JSON-decoded when the Content-Type is JSON (else a string, or bytes
// when it is not UTF-8). Non-2xx: failure {message, code, headers, body, tags: [HttpError]}.
// Failures become ConnectionFailedError, ConnectionError, TimeoutError or (too large)
// ValueError.
engine::EffectOutcome HttpOutcome(const HttpReply& reply);

}  // namespace atomflow::connectors
