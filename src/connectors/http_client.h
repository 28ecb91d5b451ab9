// An asynchronous HTTP client: one libcurl multi handle driven by the engine's I/O loop.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

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
  explicit HttpClient(engine::IoLoop* loop);
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
