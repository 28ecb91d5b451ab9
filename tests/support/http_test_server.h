// A real HTTP server on a loopback ephemeral port, for tests of code that makes HTTP calls.
#pragma once

#include <httplib.h>

#include <string>
#include <string_view>
#include <thread>

namespace atomflow::testing {

// Serves the routes a test registers on routes() (cpp-httplib's Server) at
// http://127.0.0.1:<port>. Register routes, then Start(); the destructor stops the server
// and joins its thread. Handlers run on the server's worker threads (up to 64 at once, so
// concurrent requests are not queued behind each other); a handler that blocks must be
// released before the server is destroyed. Not copyable.
class HttpTestServer {
 public:
  HttpTestServer();
  ~HttpTestServer();
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  httplib::Server& routes() { return server_; }

  // Binds an ephemeral port and serves on a background thread; returns once it accepts.
  void Start();

  int port() const { return port_; }
  // "http://127.0.0.1:<port>" + path.
  std::string Url(std::string_view path) const;

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  int listen_fd_ = -1;  // owned by server_
};

// A loopback port with nothing listening on it (bound, then closed), for connection-refused
// tests.
int ClosedLoopbackPort();

}  // namespace atomflow::testing
