// HTTP API: execution starts per second through `atomflow serve` from a load generator on
// loopback (32 client threads on kept-alive connections, each waiting for its answer before it
// sends the next start), against the same load generator hitting a bare cpp-httplib server,
// configured like atomflow's (threads, keep-alive), that answers the same route with a fixed
// body: the cost of HTTP on this machine without the engine.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "server/server.h"

namespace atomflow::bench {
namespace {

// Clients at once (ATOMFLOW_BENCH_API_CLIENTS overrides): a realistic front end keeps a few
// dozen connections open; fewer than the server's request threads, which each kept-alive
// connection holds for as long as it is open.
constexpr int kClients = 32;
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

int Clients() {
  const char* text = std::getenv("ATOMFLOW_BENCH_API_CLIENTS");
  int clients = text != nullptr ? std::atoi(text) : 0;
  return clients > 0 ? clients : kClients;
}

std::unique_ptr<httplib::Client> NewClient(int port) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);
  client->set_connection_timeout(5);
  client->set_read_timeout(30);
  return client;
}

// What one load run measured.
struct LoadResult {
  double seconds = -1;  // -1 when a start failed
  double p50_ms = 0;
  double p99_ms = 0;
};

// Sends `count` starts from `clients` threads, each on a kept-alive connection.
LoadResult Load(int port, int64_t count, int clients, std::string* failure) {
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  std::vector<std::vector<double>> latencies(clients);
  std::mutex mutex;
  double start = Now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::unique_ptr<httplib::Client> client = NewClient(port);
      for (int64_t i = next++; i < count && !failed; i = next++) {
        double sent = Now();
        httplib::Result result = client->Post(kStartPath, kStartBody, "application/json");
        if (!result) {
          // The connection broke between requests (the server closes a kept-alive one after
          // its request cap and when idle): one retry on a fresh one.
          client = NewClient(port);
          result = client->Post(kStartPath, kStartBody, "application/json");
        }
        latencies[c].push_back((Now() - sent) * 1000);
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
  LoadResult measured;
  if (failed) return measured;
  measured.seconds = Now() - start;
  std::vector<double> all;
  for (const std::vector<double>& each : latencies) all.insert(all.end(), each.begin(), each.end());
  measured.p50_ms = Percentile(all, 50);
  measured.p99_ms = Percentile(all, 99);
  return measured;
}

// The baseline server: the same route, a fixed answer shaped like an execution, with
// atomflow's request threads and keep-alive settings.
LoadResult Baseline(int64_t count, int clients) {
  httplib::Server server;
  server.new_task_queue = [] { return new httplib::ThreadPool(server::kDefaultRequestThreads); };
  server.set_tcp_nodelay(true);
  server.set_keep_alive_timeout(2);
  server.set_keep_alive_max_count(server::kKeepAliveMaxRequests);
  server.Post(kStartPath, [](const httplib::Request&, httplib::Response& response) {
    response.set_content(R"({"name": "workflows/bench/executions/x", "state": "ACTIVE"})",
                         "application/json");
  });
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread listener([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::string failure;
  LoadResult measured = Load(port, count, clients, &failure);
  server.stop();
  listener.join();
  if (measured.seconds < 0) Fail("baseline: " + failure);
  return measured;
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
  int clients = Clients();
  LoadResult baseline = Baseline(count, clients);
  TempDir temp;
  int port = FreePort();
  std::string failure;
  LoadResult engine;
  pid_t server = StartServer(binary, temp.path(), port, &failure);
  if (server > 0 && Deploy(port, &failure)) {
    std::string warm_failure;
    Load(port, count / 10, clients, &warm_failure);
    engine = Load(port, count, clients, &failure);
  }
  if (server > 0) {
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
  }
  double value = engine.seconds > 0 ? count / engine.seconds : 0;
  Json details = {{"starts", count},
                  {"clients", clients},
                  {"keep_alive", true},
                  {"keep_alive_max_requests", server::kKeepAliveMaxRequests},
                  {"server_threads", server::kDefaultRequestThreads},
                  {"p50_ms", engine.p50_ms},
                  {"p99_ms", engine.p99_ms},
                  {"baseline_p50_ms", baseline.p50_ms},
                  {"baseline_p99_ms", baseline.p99_ms}};
  if (value == 0) details["note"] = failure + LastLogLine(temp.path() + "/serve.log");
  PrintFigure("api_starts", value, count / baseline.seconds, "starts/s", details);
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
