// What every route of the REST API shares: Google's error shape, request-body and query checks,
// page tokens, and Google's spelling of times and durations.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::server {

// The largest request body the server reads, and the largest execution argument.
inline constexpr size_t kMaxBodyBytes = 256 * 1024;
inline constexpr size_t kMaxArgumentBytes = 32 * 1024;
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

// The HTTP status and Google status name of a Status code (kError is 500 INTERNAL).
int HttpStatusOf(StatusCode code);
std::string GoogleStatusOf(StatusCode code);

// Writes {"error": {"code", "message", "status"}} with the matching HTTP status.
void ReplyError(httplib::Response& res, const Status& status);
// Writes body as JSON with status 200.
void ReplyJson(httplib::Response& res, const Json& body, int http_status = 200);

// The request body as a JSON object whose keys are all among allowed. An empty body is {}.
// InvalidArgument naming the problem: not JSON, not an object, or the first unknown field.
Result<Json> ParseBody(const std::string& body, const std::vector<std::string_view>& allowed);

// The parameters of the request's query string, percent-decoded. (httplib's req.params also
// holds the fields of a form-encoded body, which are no query parameters.)
std::multimap<std::string, std::string> QueryParams(const httplib::Request& req);
// The first value of query parameter name, "" when absent.
std::string QueryParam(const httplib::Request& req, const std::string& name);

// InvalidArgument naming the first query parameter not among allowed.
Status CheckQuery(const httplib::Request& req, const std::vector<std::string_view>& allowed);

// The value of a string field of body ("" when absent); InvalidArgument when it is no string.
Result<std::string> StringField(const Json& body, const std::string& field);

// InvalidArgument unless body's "labels", when present, is a map of strings.
Status CheckLabelsField(const Json& body);

// pageSize from the query: kDefaultPageSize when absent, InvalidArgument unless 1..1000
// (0 means the default, as in Google's APIs; more than the maximum is capped).
Result<int> PageSize(const httplib::Request& req);

// Opaque page tokens: the base64 of "<kind>|<cursor>". DecodePageToken returns the cursor,
// InvalidArgument when the token is malformed or belongs to another kind of list.
// The list a page token belongs to: kind, path (which workflow or execution) and the
// query that selects and orders it, so that a token is refused by any other list or filter.
std::string PageScope(const httplib::Request& req, const std::string& kind);
std::string EncodePageToken(const std::string& kind, const std::string& cursor);
Result<std::string> DecodePageToken(const std::string& token, const std::string& kind);

// Milliseconds since the epoch as RFC 3339 UTC with milliseconds ("" for 0), and back
// (InvalidArgument for text that is not such a time; a zone offset is allowed).
std::string FormatTime(int64_t ms);
Result<int64_t> ParseTime(std::string_view text);
// Milliseconds as Google's duration text: "1.250s".
std::string FormatDuration(int64_t ms);

// "projects/P/locations/L/" when the request's path carried Google's prefix, else "".
std::string NamePrefix(const httplib::Request& req);

// The regular expression of a route: "/v1", Google's optional project and location, then rest.
std::string V1(const std::string& rest);

}  // namespace atomflow::server
