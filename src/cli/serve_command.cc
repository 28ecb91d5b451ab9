// `atomflow serve`: opens the engine and the API server, recovers what a previous process left,
// and drains on SIGTERM.
#include "cli/serve_command.h"

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "common/log.h"
#include "connectors/connectors.h"
#include "connectors/sql_recovery.h"
#include "engine/engine.h"
#include "server/server.h"

namespace atomflow::cli {

namespace {

// What `serve` takes besides the common options.
struct ServeOptions {
  std::string listen = "127.0.0.1:8080";
  std::string auth = "token";
  std::string log_format = "text";
  std::string log_level;  // empty: info, unless the global --log-level says otherwise
  std::string public_url;
  double drain_seconds = 30;
  int workers = 0;
  CLI::Option* config = nullptr;
};

// Operator log lines for what the engine reports while the server runs; steps and workflow
// logs are journaled and read through the API, so only transactions' ends are logged here (and
// make the next /metrics scrape recount transactions). Thread safe; api outlives it.
class LifecycleLog : public engine::ProgressSink {
 public:
  explicit LifecycleLog(server::ApiServer* api) : api_(api) {}

  void OnStep(const engine::StepReport&) override {}
  void OnLog(const std::string&, const std::string&, const std::string&,
             const std::string&) override {}
  void OnJobLog(const std::string&, const std::string&, const std::string&) override {}
  void OnTransaction(const std::string& execution_id, const std::string& gid,
                     const std::string& step, const std::string& state) override {
    // The engine logs the transaction's end itself (transaction.committed, ...).
    (void)execution_id;
    (void)gid;
    (void)step;
    (void)state;
    api_->TransactionEnded();
  }

 private:
  server::ApiServer* api_;
};

// "HOST:PORT" or "[V6]:PORT" split; InvalidArgument otherwise.
Status ParseListen(const std::string& listen, std::string* host, int* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return Status::InvalidArgument("--listen wants HOST:PORT, e.g. 127.0.0.1:8080, not '" + listen +
                                   "'");
  }
  *host = listen.substr(0, colon);
  if (host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  std::string digits = listen.substr(colon + 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 5 ||
      std::stoi(digits) > 65535) {
    return Status::InvalidArgument("--listen: '" + digits + "' is not a port number");
  }
  *port = std::stoi(digits);
  return Status::Ok();
}

void BlockTermination() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int WaitForTermination() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int received = 0;
  sigwait(&signals, &received);
  // A second signal while draining ends the process at once; the journal stays consistent.
  std::thread([signals] {
    int again = 0;
    sigwait(&signals, &again);
    _exit(130);
  }).detach();
  return received;
}

// Resumes every ACTIVE execution no live process owns, then finishes the prepared SQL
// branches of executions that no longer run, as `atomflow recover` does; then the server is
// ready.
void Recover(engine::Engine& engine, const connectors::DatabaseCatalog& databases,
             server::ApiServer& api) {
  Result<std::vector<std::string>> resumed = engine.Recover();
  if (!resumed.ok()) {
    log::Error("recovery failed: {}", resumed.message());
    return;
  }
  int prepared = 0;
  int failed = 0;
  for (const connectors::PreparedResolution& resolution :
       connectors::ResolvePreparedTransactions(*engine.store(), databases)) {
    ++prepared;
    if (resolution.outcome.rfind("failed", 0) == 0) ++failed;
  }
  log::Event("server.ready", {{"resumed", resumed->size()},
                              {"prepared_transactions", prepared},
                              {"prepared_failed", failed}});
  api.SetReady(true);
}

// Rejects the command before it serves anything: the message on stderr, exit status 2.
int Refuse(const std::string& message) {
  fprintf(stderr, "atomflow serve: %s\n", message.c_str());
  return 2;
}

// "http://HOST[...]" or "https://HOST[...]": the base the engine gives callback URLs.
Status CheckPublicUrl(const std::string& url) {
  size_t scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  bool has_host = scheme_end != std::string::npos && scheme_end + 3 < url.size() &&
                  url[scheme_end + 3] != '/' && url[scheme_end + 3] != ':';
  if ((scheme != "http" && scheme != "https") || !has_host) {
    return Status::InvalidArgument(
        "--public-url wants an http:// or https:// URL with a host, "
        "e.g. https://atomflow.example.com, not '" +
        url + "'");
  }
  return Status::Ok();
}

// The options' mistakes that need no store and no socket to be seen.
Status CheckServeOptions(const ServeOptions& serve) {
  if (serve.workers < 0) {
    return Status::InvalidArgument("--workers must be 0 (one per core) or more, not " +
                                   std::to_string(serve.workers));
  }
  if (!serve.public_url.empty()) return CheckPublicUrl(serve.public_url);
  return Status::Ok();
}

// A refusal after the store file was made by this very command: the file (and SQLite's WAL
// and shared-memory files) are removed, so a refused start leaves the directory as it was.
int RefuseAndRemove(const std::string& message, const std::string& store, bool created) {
  if (created) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((store + suffix).c_str());
  }
  return Refuse(message);
}

int Serve(const CommonOptions& options, const ServeOptions& serve) {
  std::string level = !serve.log_level.empty()      ? serve.log_level
                      : options.log_level == "warn" ? std::string("info")
                                                    : options.log_level;
  log::Init(level, serve.log_format);
  server::ServerOptions server_options;
  Status listen = ParseListen(serve.listen, &server_options.host, &server_options.port);
  if (!listen.ok()) return Refuse(listen.message());
  if (Status checked = CheckServeOptions(serve); !checked.ok()) return Refuse(checked.message());
  server_options.auth = serve.auth == "token";
  server_options.store_path = options.store;

  // A mistake in atomflow.yaml must leave no store file behind: it is read first.
  bool config_required = options.config_required || serve.config->count() > 0;
  if (Status config = CheckConfigFile(options.config, config_required); !config.ok()) {
    return Refuse(config.message());
  }
  // The store's schema is checked (or created) before anything else writes to the file: the
  // token and secret tables must not be added to a store this atomflow cannot read.
  bool created = !CheckStoreExists(options.store).ok();
  if (Status schema = CheckStoreSchema(options.store); !schema.ok()) {
    return RefuseAndRemove(schema.message(), options.store, created);
  }

  BlockTermination();  // before any thread starts, so every thread inherits the mask
  server::ApiServer api(server_options);
  Result<int> port = api.Bind();
  if (!port.ok()) return RefuseAndRemove(port.message(), options.store, created);

  Result<connectors::ConnectorsConfig> config =
      connectors::LoadConnectorsConfig(options.config, config_required, options.store);
  if (!config.ok()) return RefuseAndRemove(config.message(), options.store, created);
  connectors::DatabaseCatalog databases = config->databases;
  engine::EngineOptions engine_options;
  engine_options.store_path = options.store;
  engine_options.workers = serve.workers;
  engine_options.public_url = serve.public_url.empty() ? api.Url() : serve.public_url;
  LifecycleLog lifecycle(&api);
  Result<std::unique_ptr<engine::Engine>> engine = engine::Engine::Open(
      engine_options, connectors::ConnectorsFactory(std::move(config).value()), &lifecycle);
  if (!engine.ok()) return RefuseAndRemove(engine.message(), options.store, created);

  api.Start(engine->get());
  fprintf(stderr, "atomflow serve: listening on %s\n", api.Url().c_str());
  log::Event("server.listening", {{"url", api.Url()},
                                  {"public_url", engine_options.public_url},
                                  {"store", options.store},
                                  {"auth", serve.auth}});
  std::thread recovery([&] { Recover(**engine, databases, api); });
  recovery.detach();

  int received = WaitForTermination();
  log::Event("server.draining", {{"signal", received}});
  api.Stop();
  (*engine)->Drain(serve.drain_seconds);
  log::Event("server.stopped", {});
  spdlog::default_logger()->flush();
  // Drain flushed the journal and released every execution: nothing is left to write, and
  // tearing down threads that may still be recovering would only risk hanging here.
  fflush(stderr);
  _exit(0);
}

}  // namespace

void AddServeCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers) {
  auto serve = std::make_shared<ServeOptions>();
  CLI::App* command = app.add_subcommand("serve", "run the engine behind the REST API");
  command->add_option("--listen", serve->listen, "HOST:PORT to listen on (port 0: any free)")
      ->capture_default_str();
  command->add_option("--store", options.store, "the SQLite store file");
  command->add_option("--auth", serve->auth, "token: Bearer tokens; none: loopback only")
      ->check(CLI::IsMember({"token", "none"}))
      ->capture_default_str();
  command->add_option("--log-format", serve->log_format, "operator log lines: text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  command->add_option("--log-level", serve->log_level, "operator log level (default info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  command->add_option("--public-url", serve->public_url,
                      "base URL of callback endpoints (default http://<listen address>)");
  command
      ->add_option("--drain-timeout", serve->drain_seconds,
                   "seconds SIGTERM waits for effects in flight")
      ->capture_default_str();
  command->add_option("--workers", serve->workers, "engine worker threads (0: one per core)");
  serve->config = command->add_option("--config", options.config, "configuration file");
  handlers.emplace_back(command, [&options, serve] { return Serve(options, *serve); });
}

}  // namespace atomflow::cli
