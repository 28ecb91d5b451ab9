// The loopback HTTP test server.
#include "support/http_test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace atomflow::testing {

namespace {

constexpr int kWorkerThreads = 64;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "HttpTestServer: %s\n", what);
  std::abort();
}

}  // namespace

HttpTestServer::HttpTestServer() {
  server_.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  server_.set_socket_options([this](int fd) {
    httplib::default_socket_options(fd);
    listen_fd_ = fd;
  });
}

HttpTestServer::~HttpTestServer() {
  if (!thread_.joinable()) return;
  server_.stop();
  thread_.join();
}

void HttpTestServer::Start() {
  port_ = server_.bind_to_any_port("127.0.0.1");
  if (port_ <= 0) Fail("cannot bind a loopback port");
  // cpp-httplib listens with a backlog of 5; a burst of concurrent connects beyond it has its
  // SYNs dropped and retried a second or more later. Listening again raises the backlog.
  if (listen(listen_fd_, SOMAXCONN) != 0) Fail("cannot raise the listen backlog");
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  // Connections queue in the listen backlog from bind on; waiting for the accept loop only
  // makes stop() in the destructor reliable.
  while (!server_.is_running()) std::this_thread::yield();
}

std::string HttpTestServer::Url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

int ClosedLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) Fail("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    Fail("cannot bind a loopback port");
  }
  close(fd);
  return ntohs(address.sin_port);
}

}  // namespace atomflow::testing
