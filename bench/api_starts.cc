// HTTP API: execution starts per second through `atomflow serve` from a load generator on
// loopback (four client threads, a connection per request), against the same load generator
// hitting a bare cpp-httplib server that answers the same route with a fixed body: the cost of
// HTTP on this machine without the engine.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"

namespace atomflow::bench {
namespace {

// Fewer clients than cpp-httplib's default pool of 8 threads (a thread per connection).
constexpr int kClients = 4;
constexpr char kWorkflow[] = "main:\n  steps:\n    - done:\n        return: \"ok\"\n";
constexpr char kStartPath[] = "/v1/workflows/bench/executions";

// A port nobody listens on. A plain socket, closed at once: a cpp-httplib server that never
// ran keeps its listening socket open after stop(), and with SO_REUSEPORT the kernel would
// then hand some of the load generator's connections to that dead socket.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

constexpr char kStartBody[] = R"({"argument": "{}"})";

std::unique_ptr<httplib::Client> NewClient(int port) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  client->set_keep_alive(false);
  client->set_tcp_nodelay(true);
  client->set_connection_timeout(5);
  client->set_read_timeout(30);
  return client;
}

// Sends `count` starts from kClients threads; returns seconds, or -1 if any start failed.
double Load(int port, int64_t count, std::string* failure) {
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  std::mutex mutex;
  double start = Now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      std::unique_ptr<httplib::Client> client = NewClient(port);
      for (int64_t i = next++; i < count && !failed; i = next++) {
        httplib::Result result = client->Post(kStartPath, kStartBody, "application/json");
        if (!result) {
          // The server closed the kept-alive connection (it caps requests per connection):
          // one retry on a fresh one.
          client = NewClient(port);
          result = client->Post(kStartPath, kStartBody, "application/json");
        }
        if (!result || result->status != 200) {
          std::lock_guard<std::mutex> lock(mutex);
          *failure = result ? "HTTP " + std::to_string(result->status) + ": " + result->body
                            : "no answer: " + httplib::to_string(result.error());
          failed = true;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return failed ? -1 : Now() - start;
}

// The baseline server: the same route, a fixed answer shaped like an execution.
double BaselineSeconds(int64_t count) {
  httplib::Server server;
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1 << 30);
  server.Post(kStartPath, [](const httplib::Request&, httplib::Response& response) {
    response.set_content(R"({"name": "workflows/bench/executions/x", "state": "ACTIVE"})",
                         "application/json");
  });
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread listener([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::string failure;
  double seconds = Load(port, count, &failure);
  server.stop();
  listener.join();
  if (seconds < 0) Fail("baseline: " + failure);
  return seconds;
}

// Starts `atomflow serve` on a fresh store; returns its pid, or -1 with the reason.
pid_t StartServer(const std::string& binary, const std::string& folder, int port,
                  std::string* failure) {
  pid_t pid = fork();
  if (pid == 0) {
    std::string log = folder + "/serve.log";
    if (freopen(log.c_str(), "w", stdout) == nullptr) _exit(125);
    if (freopen(log.c_str(), "a", stderr) == nullptr) _exit(125);
    std::string listen = "127.0.0.1:" + std::to_string(port);
    std::string store = folder + "/atomflow.db";
    execl(binary.c_str(), binary.c_str(), "serve", "--listen", listen.c_str(), "--store",
          store.c_str(), "--auth", "none", static_cast<char*>(nullptr));
    _exit(127);
  }
  httplib::Client client("127.0.0.1", port);
  for (int attempt = 0; attempt < 150; ++attempt) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      *failure = "atomflow serve exited at once (not built yet?)";
      return -1;
    }
    httplib::Result ready = client.Get("/readyz");
    if (ready && ready->status == 200) return pid;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  *failure = "atomflow serve did not become ready in 15 s";
  return -1;
}

bool Deploy(int port, std::string* failure) {
  httplib::Client client("127.0.0.1", port);
  Json body = {{"sourceContents", kWorkflow}};
  httplib::Result result =
      client.Post("/v1/workflows?workflowId=bench", body.dump(), "application/json");
  if (result && result->status == 200) return true;
  *failure = result ? "deploy: HTTP " + std::to_string(result->status) + ": " + result->body
                    : "deploy: no answer";
  return false;
}

// What the server's log says: how many executions it started and its last line.
std::string LastLogLine(const std::string& path) {
  std::ifstream log(path);
  std::string line;
  std::string last;
  int64_t started = 0;
  while (std::getline(log, line)) {
    if (line.find("execution.started") != std::string::npos) ++started;
    if (!line.empty()) last = line;
  }
  if (last.empty()) return "";
  return "; the server logged " + std::to_string(started) + " starts, last: " + last.substr(0, 200);
}

void Run(const std::string& binary) {
  int64_t count = Scaled(20000, 2000);
  double baseline = count / BaselineSeconds(count);
  TempDir temp;
  int port = FreePort();
  std::string failure;
  double value = 0;
  pid_t server = StartServer(binary, temp.path(), port, &failure);
  if (server > 0 && Deploy(port, &failure)) {
    std::string warm_failure;
    Load(port, count / 10, &warm_failure);
    double seconds = Load(port, count, &failure);
    if (seconds > 0) value = count / seconds;
  }
  if (server > 0) {
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
  }
  Json details = {{"starts", count}, {"clients", kClients}, {"keep_alive", false}};
  if (value == 0) details["note"] = failure + LastLogLine(temp.path() + "/serve.log");
  PrintFigure("api_starts", value, baseline, "starts/s", details);
}

}  // namespace
}  // namespace atomflow::bench

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PATH_TO_ATOMFLOW\n", argv[0]);
    return 2;
  }
  atomflow::bench::Run(argv[1]);
  return 0;
}
