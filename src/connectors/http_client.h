// An asynchronous HTTP client: one libcurl multi handle driven by the engine's I/O loop.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/status.h"
#include "engine/io_loop.h"

namespace atomflow::connectors {

// Response bodies larger than this fail with HttpFailureKind::kTooLarge, as on Cloud Workflows.
inline constexpr size_t kMaxHttpResponseBytes = 2097152;

struct HttpRequest {
  std::string method;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  double timeout_seconds = 300;
};

struct HttpResponse {
  int code = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
  std::string body;
};

// A testing feature: sends requests for some hosts to another server, typically a loopback
// fake, so a workflow that calls real hosts runs unchanged in a test. Keys are host names as
// they appear in URLs ("timeapi.io", "www.example.com"), or "*" for every host not listed;
// values are base URLs ("http://127.0.0.1:8080"). A routed request's scheme, host and port
// are the base URL's (so https becomes plain http), its path and query are kept, and it
// carries the original Host header, so one fake can answer for several hosts.
using HttpHostMap = std::map<std::string, std::string>;

// The environment variable a process reads its host map from (see MakeConnectors).
inline constexpr char kHttpHostMapVariable[] = "ATOMFLOW_HTTP_HOST_MAP";

// Parses "host=base_url,host2=base_url2" (spaces around items ignored; "->" may replace "=").
Result<HttpHostMap> ParseHttpHostMap(std::string_view text);

// Where a request for url goes under host_map: the rewritten URL and the original host (with
// its port, as a Host header carries it); nullopt when the host is not routed.
struct RoutedUrl {
  std::string url;
  std::string host_header;
};
std::optional<RoutedUrl> RouteUrl(const HttpHostMap& host_map, const std::string& url);

enum class HttpFailureKind {
  kConnectionFailed,  // never connected (refused, unresolvable host): the request was not sent
  kConnection,        // the connection broke mid-transfer: the request may have been applied
  kTimeout,
  kTooLarge,  // the response body exceeded kMaxHttpResponseBytes
};

struct HttpFailure {
  HttpFailureKind kind;
  std::string message;
};

using HttpReply = std::variant<HttpResponse, HttpFailure>;

// Sends HTTP requests concurrently without a thread per request: libcurl's sockets are watched
// by the IoLoop and its timeouts are IoLoop timers. Redirects are not followed (a 3xx is
// returned as it is). The loop must outlive the client.
//
// Thread safety: Send() may be called from any thread. The client must be destroyed on the
// loop thread or while the loop is not running; requests still in flight are then dropped
// without calling their callbacks. It must not be destroyed from inside a done callback.
class HttpClient {
 public:
  explicit HttpClient(engine::IoLoop* loop, HttpHostMap host_map = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts request; done runs once on the loop thread with the response or the failure.
  void Send(HttpRequest request, std::function<void(HttpReply)> done);

 private:
  struct Core;
  std::shared_ptr<Core> core_;
};

}  // namespace atomflow::connectors
