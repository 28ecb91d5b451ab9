// ApiServer: binding, the route wrapper (authorization, errors), health, readiness and metrics.
#include "server/server.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <set>

#include "common/log.h"
#include "common/metrics.h"
#include "server/api_support.h"
#include "txn/txn_view.h"

namespace atomflow::server {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How long transaction gauges are reused unless a transaction ended meanwhile: computing them
// reads every journal.
constexpr int64_t kTxnMetricsTtlMs = 1000;

// The body of an error httplib answered itself (no route, a body over the limit, bad HTTP).
Status HttplibError(const httplib::Request& req, int status) {
  switch (status) {
    case 404:
      return Status::NotFound("no such resource: " + req.method + " " + req.path);
    case 413:
      // Debian's cpp-httplib is a compiled library whose cap on form-encoded bodies (curl -d's
      // default Content-Type) is fixed at 8 KiB, below the API's own limit.
      if (req.get_header_value("Content-Type") == "application/x-www-form-urlencoded") {
        return Status::InvalidArgument(
            "a form-encoded request body is limited to 8 KiB; send the JSON with "
            "Content-Type: application/json (up to " +
            std::to_string(kMaxBodyBytes / 1024) + " KiB)");
      }
      return Status::InvalidArgument("the request body is larger than " +
                                     std::to_string(kMaxBodyBytes / 1024) + " KiB");
    case 400:
      return Status::InvalidArgument("malformed HTTP request");
    default:
      return Status::Error("HTTP status " + std::to_string(status));
  }
}

}  // namespace

bool IsLoopback(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr address{};
  if (inet_pton(AF_INET, host.c_str(), &address) != 1) return false;
  return (ntohl(address.s_addr) >> 24) == 127;
}

ApiServer::ApiServer(ServerOptions options) : options_(std::move(options)) {
  int threads = options_.threads;
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_.set_payload_max_length(kMaxBodyBytes);
  // httplib's default socket options add SO_REUSEPORT, which would let a second server bind
  // this port and take a share of its connections (and its clients' tokens). SO_REUSEADDR
  // alone still allows a restart over connections in TIME_WAIT.
  http_.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // This httplib applies the body limit to bodies with a Content-Length only: a chunked one
  // would be read into memory whatever its size, so it is refused before it is read.
  http_.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    std::string encoding = req.get_header_value("Transfer-Encoding");
    if (encoding.find("chunked") == std::string::npos) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    ReplyError(res, Status::InvalidArgument(
                        "a chunked request body is not accepted: send it with a Content-Length "
                        "(at most " +
                        std::to_string(kMaxBodyBytes / 1024) + " KiB)"));
    res.set_header("Connection", "close");  // the unread body must not pass for a request
    return httplib::Server::HandlerResponse::Handled;
  });
  // A keep-alive connection holds a pool thread while idle: keep idle ones short, and close
  // busy ones now and then so that queued connections get a thread.
  http_.set_keep_alive_timeout(2);
  http_.set_keep_alive_max_count(kKeepAliveMaxRequests);
  // httplib writes a response's headers and body separately: with Nagle's algorithm the body
  // waits for the client's delayed ACK of the headers, 40 ms per request on a kept-alive
  // connection (accepted sockets inherit the option from the listening one).
  http_.set_tcp_nodelay(true);
  http_.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a route answered already
    std::string allowed = res.status == 404 ? AllowedMethods(req.path) : "";
    if (!allowed.empty()) {
      res.set_header("Allow", allowed);
      Json body = {{"error",
                    {{"code", 405},
                     {"message", req.method + " is not allowed on " + req.path +
                                     " (allowed: " + allowed + ")"},
                     {"status", "INVALID_ARGUMENT"}}}};
      return ReplyJson(res, body, 405);
    }
    Status error = HttplibError(req, res.status);
    ReplyError(res, error);
  });
  http_.set_logger(
      [this](const httplib::Request&, const httplib::Response& res) { CountRequest(res.status); });
  RegisterRoutes();
}

ApiServer::~ApiServer() {
  Stop();
  for (int id : collectors_) metrics::Registry::Global().RemoveCollector(id);
}

Result<int> ApiServer::Bind() {
  if (!options_.auth && !IsLoopback(options_.host)) {
    return Status::FailedPrecondition(
        "--auth none is allowed only on a loopback address (127.0.0.1, ::1, localhost), not "
        "on " +
        options_.host +
        ": listen on loopback, or use --auth token with tokens from "
        "`atomflow tokens create`");
  }
  if (options_.auth) {
    Result<std::unique_ptr<TokenStore>> tokens = TokenStore::Open(options_.store_path);
    if (!tokens.ok()) return tokens.status();
    tokens_ = std::move(tokens).value();
  }
  std::string host = options_.host == "localhost" ? "127.0.0.1" : options_.host;
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (options_.port == 0) {
    port_ = http_.bind_to_any_port(host);
  } else if (http_.bind_to_port(host, options_.port)) {
    port_ = options_.port;
  }
  if (port_ <= 0) {
    return Status::Unavailable("cannot listen on " + options_.host + ":" +
                               std::to_string(options_.port) +
                               " (address in use, or not an address of this host)");
  }
  return port_;
}

void ApiServer::Start(engine::Engine* engine) {
  engine_ = engine;
  registry_ = std::make_unique<WorkflowRegistry>(engine->store());
  txn_api_ = std::make_unique<txn::TxnApi>(engine);
  RegisterCollectors();
  thread_ = std::thread([this] { http_.listen_after_bind(); });
  // Stop must find the server running, or it could not end listen_after_bind.
  for (int i = 0; i < 10000 && !http_.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void ApiServer::Stop() {
  stopping_ = true;
  ready_ = false;
  http_.stop();
  if (thread_.joinable()) thread_.join();
}

std::string ApiServer::Url() const {
  bool v6 = options_.host.find(':') != std::string::npos && options_.host.front() != '[';
  std::string host = v6 ? "[" + options_.host + "]" : options_.host;
  return "http://" + host + ":" + std::to_string(port_);
}

std::string ApiServer::AllowedMethods(const std::string& path) const {
  std::set<std::string> methods;
  for (const auto& [pattern, method] : route_methods_) {
    if (std::regex_match(path, pattern)) methods.insert(method);
  }
  std::string allowed;
  for (const std::string& method : methods) allowed += (allowed.empty() ? "" : ", ") + method;
  return allowed;
}

void ApiServer::Route(Method method, const std::string& pattern, Role role, Handler handler) {
  static constexpr const char* kMethodNames[] = {"GET", "POST", "PATCH", "DELETE", "PUT"};
  route_methods_.emplace_back(std::regex(pattern), kMethodNames[static_cast<int>(method)]);
  auto wrapped = [this, role, handler = std::move(handler)](const httplib::Request& req,
                                                            httplib::Response& res) {
    Status allowed = Authorize(req, role);
    if (!allowed.ok()) return ReplyError(res, allowed);
    try {
      handler(req, res);
    } catch (const std::exception& error) {
      log::Error("request {} {} failed: {}", req.method, req.path, error.what());
      ReplyError(res, Status::Error("internal error"));
    }
  };
  switch (method) {
    case Method::kGet:
      http_.Get(pattern, wrapped);
      break;
    case Method::kPost:
      http_.Post(pattern, wrapped);
      break;
    case Method::kPatch:
      http_.Patch(pattern, wrapped);
      break;
    case Method::kDelete:
      http_.Delete(pattern, wrapped);
      break;
    case Method::kPut:
      http_.Put(pattern, wrapped);
      break;
  }
}

Status ApiServer::Authorize(const httplib::Request& req, Role role) {
  if (!options_.auth) return Status::Ok();
  Result<Role> caller = tokens_->Authenticate(req.get_header_value("Authorization"));
  if (!caller.ok()) return caller.status();
  if (*caller < role) {
    return Status::PermissionDenied("this call needs the " + RoleName(role) +
                                    " role; the token has " + RoleName(*caller));
  }
  return Status::Ok();
}

void ApiServer::TransactionEnded() {
  std::lock_guard<std::mutex> lock(txn_cache_mutex_);
  txn_cache_ms_ = 0;
}

void ApiServer::CountRequest(int status) {
  metrics::Registry::Global()
      .GetCounter("atomflow_http_requests_total", "HTTP requests answered, by status code",
                  {{"code", std::to_string(status)}})
      ->Add();
}

void ApiServer::RegisterRoutes() {
  RegisterHealthRoutes();
  RegisterWorkflowRoutes(*this);
  RegisterExecutionRoutes(*this);
  RegisterTransactionRoutes(*this);
}

void ApiServer::RegisterHealthRoutes() {
  http_.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, {{"status", "SERVING"}});
  });
  http_.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (ready_ && !stopping_) return ReplyJson(res, {{"status", "READY"}});
    std::string why = stopping_ ? "draining" : "recovering the executions of the store";
    ReplyError(res, Status::Unavailable("not ready: " + why));
  });
  Route(Method::kGet, "/metrics", Role::kViewer,
        [](const httplib::Request&, httplib::Response& res) {
          res.set_content(metrics::Registry::Global().RenderText(),
                          "text/plain; version=0.0.4; charset=utf-8");
        });
}

void ApiServer::RegisterCollectors() {
  using GaugeSink = metrics::Registry::GaugeSink;
  collectors_.push_back(metrics::Registry::Global().AddCollector([this](const GaugeSink& sink) {
    std::map<std::string, int64_t> counts = {
        {"ACTIVE", 0}, {"SUCCEEDED", 0}, {"FAILED", 0}, {"CANCELLED", 0}};
    Result<std::vector<std::pair<std::string, int64_t>>> rows = store().CountExecutionsByState();
    if (!rows.ok()) return;
    for (const auto& [state, count] : *rows) counts[state] = count;
    for (const auto& [state, count] : counts) {
      sink("atomflow_executions", "Executions in the store, by state", {{"state", state}},
           static_cast<double>(count));
    }
  }));

  collectors_.push_back(metrics::Registry::Global().AddCollector([this](const GaugeSink& sink) {
    Json transactions;
    {
      std::lock_guard<std::mutex> lock(txn_cache_mutex_);
      if (NowMs() - txn_cache_ms_ > kTxnMetricsTtlMs) {
        Result<Json> listed = txn::ListTransactions(store(), "", 0, 1 << 30);
        if (listed.ok()) txn_cache_ = std::move(listed).value();
        txn_cache_ms_ = NowMs();
      }
      transactions = txn_cache_;
    }
    const std::set<std::string> kWaiting = {"ACTIVE", "DECIDED", "COMPENSATION_FAILED"};
    std::map<std::string, int64_t> counts = {{"ACTIVE", 0},
                                             {"DECIDED", 0},
                                             {"COMMITTED", 0},
                                             {"ABORTED", 0},
                                             {"COMPENSATION_FAILED", 0}};
    std::map<std::string, int64_t> oldest;  // state -> earliest begin, ms
    if (transactions.is_object() && transactions.contains("transactions")) {
      transactions = transactions["transactions"];
    }
    for (const Json& txn : transactions) {
      std::string state = txn.value("state", "");
      counts[state]++;
      Result<int64_t> begin = ParseTime(txn.value("begin_time", txn.value("beginTime", "")));
      if (kWaiting.count(state) == 0 || !begin.ok()) continue;
      if (oldest.count(state) == 0 || *begin < oldest[state]) oldest[state] = *begin;
    }
    for (const auto& [state, count] : counts) {
      sink("atomflow_transactions", "Global transactions in the store, by state",
           {{"state", state}}, static_cast<double>(count));
    }
    for (const std::string& state : kWaiting) {
      double age = oldest.count(state) ? (NowMs() - oldest[state]) / 1000.0 : 0;
      sink("atomflow_transaction_oldest_age_seconds",
           "Age of the oldest transaction in each non-terminal state", {{"state", state}}, age);
    }
  }));
}

}  // namespace atomflow::server
