// The effect handler that routes an execution's effects to the connectors: HTTP, jobs, staged
// files and SQL.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "connectors/databases.h"
#include "connectors/http_client.h"
#include "connectors/identities.h"
#include "connectors/job_runner.h"
#include "connectors/sql_executor.h"
#include "engine/effect.h"
#include "engine/engine.h"
#include "engine/io_loop.h"
#include "store/secret_store.h"

namespace atomflow::connectors {

// What the connectors take from atomflow.yaml and the store: the named databases, the service
// identities, and the secret store both resolve their `{secret: NAME}` values from (null when
// there is none). Copies share the secret store.
struct ConnectorsConfig {
  DatabaseCatalog databases;
  IdentityCatalog identities;
  std::shared_ptr<store::SecretStore> secrets;
};

// Reads `databases:` and `identities:` from config_path (a missing file is empty unless
// required) and opens the secret store of the store file at store_path (none when store_path
// is empty). The one call `atomflow serve` and the CLI's OpenEngine share.
Result<ConnectorsConfig> LoadConnectorsConfig(const std::string& config_path, bool required,
                                              const std::string& store_path);

// Carries out effects for the engine. An execution with a service account runs as that
// identity: its HTTP requests under the identity's URL prefixes get the identity's headers at
// send time (never in the journaled request, which the engine wrote before); an execution
// whose service account is not in the catalog has every effect fail. Thread safe: Perform and
// Cancel may be called from any thread; completions run on the I/O loop thread.
class Connectors : public engine::EffectHandler {
 public:
  // host_map routes HTTP requests to test servers (see HttpHostMap); empty in production.
  // config names the databases atomflow.sql.* may use and the service identities.
  explicit Connectors(engine::IoLoop* loop, HttpHostMap host_map = {},
                      ConnectorsConfig config = {});

  void Perform(const engine::EffectRequest& request, engine::EffectContext context,
               std::function<void(engine::EffectOutcome)> done) override;
  void Cancel(const std::string& execution_id, const engine::EffectRequest& request) override;
  // Removes the execution's staging folders: every staged file of a finished execution was
  // published or discarded, so what is left there is what a killed process never journaled.
  void Forget(const std::string& execution_id) override;
  // Rolls back the resuming executions' prepared gids that no branch record names
  // (RollBackUnjournaledPrepares).
  void Resuming(const std::vector<engine::ResumingExecution>& executions) override;
  // Refuses an execution whose journal names a database this catalog does not configure.
  Status CanResume(const engine::ResumingExecution& execution) override;
  void set_staging_root(std::string root) { staging_root_ = std::move(root); }

  // The job id of a job effect: stable across replays, readable in folder listings.
  static std::string JobId(const std::string& execution_id, const engine::EffectRequest& request);

 private:
  void PerformHttp(const engine::EffectRequest& request, const engine::EffectContext& context,
                   std::function<void(engine::EffectOutcome)> done);
  void PerformJob(const engine::EffectRequest& request, engine::EffectContext context,
                  std::function<void(engine::EffectOutcome)> done);
  void PerformSql(const engine::EffectRequest& request, const engine::EffectContext& context,
                  std::function<void(engine::EffectOutcome)> done);
  engine::EffectOutcome PerformFile(const engine::EffectRequest& request,
                                    const engine::EffectContext& context);

  // The identity headers of an execution's request to url; an error (no secret in it) when
  // the service account is unknown or a secret cannot be read.
  Result<ResolvedHeaders> IdentityHeaders(const std::string& service_account,
                                          const std::string& url);

  IdentityCatalog identities_;
  std::shared_ptr<store::SecretStore> secrets_;
  HttpClient http_;
  JobRunner jobs_;
  SqlExecutor sql_;
  std::string staging_root_;  // where staged files wait (EngineOptions::staging_root)
  // When Resuming last failed to reach each database (see Resuming).
  std::mutex sweep_mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point> sweep_failures_;
};

// The factory the engine takes. It reads the testing host map from ATOMFLOW_HTTP_HOST_MAP
// (see HttpHostMap); a malformed map is reported on stderr and ignored (the atomflow command
// refuses one before it opens an engine).
std::unique_ptr<engine::EffectHandler> MakeConnectors(engine::IoLoop* loop,
                                                      const engine::EngineOptions& options);

// The same, with the databases, identities and secrets of config.
engine::Engine::HandlerFactory ConnectorsFactory(ConnectorsConfig config);
// The same, with named databases only.
engine::Engine::HandlerFactory ConnectorsFactory(DatabaseCatalog databases);

}  // namespace atomflow::connectors
