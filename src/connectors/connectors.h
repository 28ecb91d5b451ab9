// The effect handler that routes an execution's effects to the connectors: HTTP, jobs, staged
// files and SQL.
#pragma once

#include <memory>

#include "connectors/databases.h"
#include "connectors/http_client.h"
#include "connectors/job_runner.h"
#include "connectors/sql_executor.h"
#include "engine/effect.h"
#include "engine/engine.h"
#include "engine/io_loop.h"

namespace atomflow::connectors {

// Carries out effects for the engine. Thread safe: Perform and Cancel may be called from any
// thread; completions run on the I/O loop thread.
class Connectors : public engine::EffectHandler {
 public:
  // host_map routes HTTP requests to test servers (see HttpHostMap); empty in production.
  // databases names the databases atomflow.sql.* may use.
  explicit Connectors(engine::IoLoop* loop, HttpHostMap host_map = {},
                      DatabaseCatalog databases = {});

  void Perform(const engine::EffectRequest& request, engine::EffectContext context,
               std::function<void(engine::EffectOutcome)> done) override;
  void Cancel(const std::string& execution_id, const engine::EffectRequest& request) override;
  // Removes the execution's staging folders: every staged file of a finished execution was
  // published or discarded, so what is left there is what a killed process never journaled.
  void Forget(const std::string& execution_id) override;
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

  HttpClient http_;
  JobRunner jobs_;
  SqlExecutor sql_;
  std::string staging_root_;  // where staged files wait (EngineOptions::staging_root)
};

// The factory the engine takes. It reads the testing host map from ATOMFLOW_HTTP_HOST_MAP
// (see HttpHostMap); a malformed map is reported on stderr and ignored.
std::unique_ptr<engine::EffectHandler> MakeConnectors(engine::IoLoop* loop,
                                                      const engine::EngineOptions& options);

// The same, with the named databases of atomflow.yaml (see DatabaseCatalog).
engine::Engine::HandlerFactory ConnectorsFactory(DatabaseCatalog databases);

}  // namespace atomflow::connectors
