// ApiServer: the REST API of `atomflow serve` (docs/api.md) on one cpp-httplib server.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"
#include "server/auth.h"
#include "server/workflow_registry.h"
#include "txn/txn_api.h"

namespace atomflow::server {

// A kept-alive connection is closed after this many requests, so that a client that never
// lets go cannot hold a request thread forever while others queue for one; reconnecting once
// per hundred requests costs about 1% of a loopback client's time.
inline constexpr int kKeepAliveMaxRequests = 100;
// Request threads by default. cpp-httplib gives each connection a thread for as long as it
// stays open (idle between kept-alive requests included), and a start holds its thread until
// the execution's row is durable, so the pool must be larger than the clients that keep
// connections open: past it, a new connection waits for one to close. Idle threads cost a
// stack mapping each, little resident memory.
inline constexpr int kDefaultRequestThreads = 64;

// How an ApiServer listens, authenticates and how many requests it serves at once.
struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  // false: every caller is admin (`--auth none`, loopback only). true: Bearer tokens of the
  // TokenStore in store_path.
  bool auth = true;
  std::string store_path = "atomflow.db";
  // Request threads (see kDefaultRequestThreads); a handler waits for durable writes, never for
  // an execution to make progress.
  int threads = kDefaultRequestThreads;
};

// Serves the API of one engine. Lifecycle: construct, Bind (the port is known and the token
// store open; nothing is served yet), Start with the engine (serves on a thread of its own),
// Stop (stops accepting, finishes the requests under way). Handlers run on the server's thread
// pool and never wait for an execution to make progress: they read the store, start or cancel
// executions and deliver callbacks, each of which returns once its write is durable. Thread
// safe; the engine must outlive the server.
class ApiServer {
 public:
  explicit ApiServer(ServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds host:port; returns the port (the real one when options.port is 0). FailedPrecondition
  // when --auth none is asked for on an address that is not loopback.
  Result<int> Bind();
  // Serves engine's API on a background thread; returns at once.
  void Start(engine::Engine* engine);
  // Stops accepting connections and waits for the requests under way; /readyz turns 503 first.
  void Stop();

  // /readyz answers 200 once set (recovery finished) and until Stop.
  void SetReady(bool ready) { ready_ = ready; }
  // Makes the next /metrics scrape recount transactions (a ProgressSink calls it from
  // OnTransaction). Thread safe.
  void TransactionEnded();
  int port() const { return port_; }
  // "http://HOST:PORT" of the bound address.
  std::string Url() const;

  // Used by the route files.
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  enum class Method { kGet, kPost, kPatch, kDelete, kPut };
  // Registers pattern (a regular expression over the decoded path) for method, callable by
  // callers of at least role; handler errors (exceptions included) become Google errors.
  void Route(Method method, const std::string& pattern, Role role, Handler handler);

  engine::Engine& engine() { return *engine_; }
  store::Store& store() { return *engine_->store(); }
  WorkflowRegistry& registry() { return *registry_; }
  txn::TxnApi& txn_api() { return *txn_api_; }

 private:
  void RegisterRoutes();
  void RegisterHealthRoutes();
  void RegisterCollectors();
  Status Authorize(const httplib::Request& req, Role role);
  void CountRequest(int status);
  // The methods some route answers on path ("GET, POST"); empty when none does.
  std::string AllowedMethods(const std::string& path) const;

  ServerOptions options_;
  httplib::Server http_;
  std::unique_ptr<TokenStore> tokens_;
  engine::Engine* engine_ = nullptr;
  std::unique_ptr<WorkflowRegistry> registry_;
  std::unique_ptr<txn::TxnApi> txn_api_;
  std::thread thread_;
  int port_ = -1;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopping_{false};
  std::vector<int> collectors_;  // ids in metrics::Registry::Global()
  // Every route's pattern and method, so that a path known under another method is answered
  // 405 with Allow instead of 404. Written only before the server starts.
  std::vector<std::pair<std::regex, std::string>> route_methods_;

  std::mutex txn_cache_mutex_;  // guards the transaction metrics cache below
  int64_t txn_cache_ms_ = 0;
  Json txn_cache_ = Json::array();
};

// True when host names the loopback interface (127.0.0.0/8, ::1, localhost).
bool IsLoopback(const std::string& host);

// Registers the routes of each part of the API (workflow_routes.cc, execution_routes.cc,
// txn_routes.cc, callback routes in execution_routes.cc).
void RegisterWorkflowRoutes(ApiServer& server);
void RegisterExecutionRoutes(ApiServer& server);
void RegisterTransactionRoutes(ApiServer& server);

}  // namespace atomflow::server
