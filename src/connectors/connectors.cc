// Connectors: turns effect requests into HTTP calls, jobs, staged-file and SQL operations.
#include "connectors/connectors.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>

#include "connectors/http_call.h"
#include "connectors/sql_recovery.h"
#include "connectors/staged_files.h"
#include "lang/error.h"

namespace atomflow::connectors {

namespace {

constexpr auto kJobCancelGrace = std::chrono::milliseconds(10000);

using engine::EffectOutcome;

EffectOutcome ValueErrorOutcome(const std::string& message) {
  return EffectOutcome::Failure(lang::MakeError("ValueError", message));
}

EffectOutcome SystemErrorOutcome(const std::string& message) {
  return EffectOutcome::Failure(lang::MakeError("SystemError", message));
}

// Folder-safe form of a name: letters, digits, '-' and '_'.
std::string Sanitize(const std::string& text) {
  std::string safe;
  for (char c : text) safe.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return safe;
}

std::string StringArg(const Value& args, const char* name) {
  const Value* value = args.is_map() ? args.AsMap().Find(name) : nullptr;
  return value != nullptr && value->is_string() ? value->AsString() : "";
}

// Content for atomflow.files.write: strings and bytes as they are, anything else as JSON.
Result<std::string> FileContent(const Value& args) {
  const Value* content = args.AsMap().Find("content");
  if (content == nullptr) return Status::Error("atomflow.files.write: 'content' is required");
  if (content->is_string()) return content->AsString();
  if (content->is_bytes()) return content->AsBytes();
  Result<Json> json = ToJson(*content);
  if (!json.ok()) return Status::Error("atomflow.files.write: " + json.message());
  return json->dump(2);
}

}  // namespace

Connectors::Connectors(engine::IoLoop* loop, HttpHostMap host_map, ConnectorsConfig config)
    : identities_(std::move(config.identities)),
      secrets_(std::move(config.secrets)),
      http_(loop, std::move(host_map)),
      jobs_(loop),
      sql_(std::move(config.databases)) {}

std::string Connectors::JobId(const std::string& execution_id,
                              const engine::EffectRequest& request) {
  return execution_id + "-" + request.key + "-" + Sanitize(request.step);
}

void Connectors::Perform(const engine::EffectRequest& request, engine::EffectContext context,
                         std::function<void(EffectOutcome)> done) {
  // An execution that claims an identity this process does not know runs nothing outside:
  // running it with no credentials, or someone else's, would be worse than failing.
  if (!context.service_account.empty() && identities_.Find(context.service_account) == nullptr) {
    Result<ResolvedHeaders> unknown = IdentityHeaders(context.service_account, "");
    done(SystemErrorOutcome(request.function + ": " + unknown.message()));
    return;
  }
  if (request.function.rfind("http.", 0) == 0) {
    PerformHttp(request, context, std::move(done));
  } else if (request.function == "atomflow.jobs.run") {
    PerformJob(request, std::move(context), std::move(done));
  } else if (request.function.rfind("atomflow.files.", 0) == 0) {
    done(PerformFile(request, context));
  } else if (request.function.rfind("atomflow.sql.", 0) == 0) {
    PerformSql(request, context, std::move(done));
  } else {
    done(SystemErrorOutcome(request.function +
                            " cannot be used here: compensations and branch operations must "
                            "call http.* or atomflow.jobs.run"));
  }
}

void Connectors::PerformHttp(const engine::EffectRequest& request,
                             const engine::EffectContext& context,
                             std::function<void(EffectOutcome)> done) {
  Result<HttpRequest> built = BuildHttpRequest(request.function, request.args);
  if (!built.ok()) {
    done(EffectOutcome::Failure(lang::MakeError("TypeError", built.message())));
    return;
  }
  // A participant deduplicates on the idempotency key: the same key on every retry of this
  // effect, including retries by a resumed process.
  built->headers.emplace_back("Idempotency-Key", context.execution_id + "/" + request.key);
  if (!request.gid.empty()) {
    built->headers.emplace_back("Atomflow-Gid", request.gid);
    built->headers.emplace_back("Atomflow-Branch",
                                request.branch.empty() ? request.key : request.branch);
    built->headers.emplace_back("Atomflow-Op", request.op);
  }
  // The identity's credentials join the request only here, after the engine journaled the
  // intent from request.args: neither the journal nor any message sees them. A header the
  // workflow set itself is sent as the workflow set it.
  if (!context.service_account.empty()) {
    Result<ResolvedHeaders> identity = IdentityHeaders(context.service_account, built->url);
    if (!identity.ok()) {
      done(SystemErrorOutcome(request.function + ": " + identity.message()));
      return;
    }
    for (auto& [name, value] : *identity) {
      if (!HasHeader(built->headers, name)) built->headers.emplace_back(name, std::move(value));
    }
  }
  http_.Send(std::move(built).value(),
             [done = std::move(done)](HttpReply reply) { done(HttpOutcome(reply)); });
}

Result<ResolvedHeaders> Connectors::IdentityHeaders(const std::string& service_account,
                                                    const std::string& url) {
  return identities_.HeadersFor(service_account, url, secrets_.get());
}

void Connectors::PerformJob(const engine::EffectRequest& request, engine::EffectContext context,
                            std::function<void(EffectOutcome)> done) {
  std::string job_id = JobId(context.execution_id, request);
  Result<JobSpec> spec = BuildJobSpec(request.args, job_id, context.jobs_root);
  if (!spec.ok()) {
    done(EffectOutcome::Failure(lang::MakeError("TypeError", spec.message())));
    return;
  }
  JobCallbacks callbacks;
  callbacks.on_log = context.on_log;
  callbacks.on_restart = [on_log = context.on_log, job_id] {
    on_log("(job " + job_id + " was lost with the previous process: running it again)");
  };
  callbacks.on_done = [done = std::move(done)](JobResult result) { done(JobOutcome(result)); };
  if (context.resumed) {
    jobs_.Attach(std::move(spec).value(), std::move(callbacks));
  } else {
    jobs_.Start(std::move(spec).value(), std::move(callbacks));
  }
  if (context.on_started) context.on_started();
}

// SQL blocks in libpq, so it runs on the SQL executor's threads. atomflow.sql.exec commits at
// once (op "exec") or prepares the branch's gid (op "prepare"); phase two finishes it.
void Connectors::PerformSql(const engine::EffectRequest& request,
                            const engine::EffectContext& context,
                            std::function<void(EffectOutcome)> done) {
  Result<SqlTask> task = Status::Error("unknown SQL function " + request.function);
  if (request.function == "atomflow.sql.exec") {
    task = SqlExecutor::ParseExecArgs(request.args);
    if (task.ok() && request.op == "prepare") task->kind = SqlTask::Kind::kPrepare;
  } else if (request.function == "atomflow.sql.commit_prepared" ||
             request.function == "atomflow.sql.rollback_prepared") {
    task = SqlTask{};
    task->database = StringArg(request.args, "database");
    task->kind = request.function == "atomflow.sql.commit_prepared"
                     ? SqlTask::Kind::kCommitPrepared
                     : SqlTask::Kind::kRollbackPrepared;
  }
  if (!task.ok()) {
    done(EffectOutcome::Failure(lang::MakeError("TypeError", task.message())));
    return;
  }
  task->xid = StringArg(request.args, "xid");
  task->resumed = context.resumed;
  sql_.Submit(std::move(task).value(), std::move(done));
}

// A database that could not be reached is not visited again for a minute: a recovery resumes
// its executions a thousand at a time, and each would otherwise wait for it again.
void Connectors::Resuming(const std::vector<engine::ResumingExecution>& executions) {
  constexpr auto kRetryAfter = std::chrono::minutes(1);
  auto now = std::chrono::steady_clock::now();
  std::set<std::string> skipped;
  {
    std::lock_guard<std::mutex> lock(sweep_mutex_);
    for (const auto& [database, failed_at] : sweep_failures_) {
      if (now - failed_at < kRetryAfter) skipped.insert(database);
    }
  }
  std::vector<PreparedResolution> resolved =
      RollBackUnjournaledPrepares(sql_.catalog(), executions, skipped);

  std::lock_guard<std::mutex> lock(sweep_mutex_);
  for (const PreparedResolution& resolution : resolved) {
    if (resolution.xid.empty()) sweep_failures_[resolution.database] = now;  // not reached
  }
}

Status Connectors::CanResume(const engine::ResumingExecution& execution) {
  for (const auto& [database, xid] : execution.prepared) {
    Result<std::string> conninfo = sql_.catalog().ConnectionString(database);
    if (!conninfo.ok()) {
      return Status::Error("its journal has a prepared branch on database '" + database +
                           "', which cannot be used here: " + conninfo.message());
    }
  }
  return Status::Ok();
}

void Connectors::Forget(const std::string& execution_id) {
  if (staging_root_.empty()) return;
  std::string prefix = Sanitize(execution_id + "-");
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(staging_root_, error)) {
    if (entry.path().filename().string().rfind(prefix, 0) != 0) continue;
    std::filesystem::remove_all(entry.path(), error);  // best effort: it is garbage either way
  }
}

void Connectors::Cancel(const std::string& execution_id, const engine::EffectRequest& request) {
  if (request.function == "atomflow.jobs.run") {
    jobs_.Cancel(JobId(execution_id, request), kJobCancelGrace);
  }
  if (request.function == "atomflow.sql.exec" && request.op == "prepare") {
    sql_.Cancel(StringArg(request.args, "xid"));
  }
}

// Staged files are local and fast: done inline. Stage writes under the transaction's staging
// folder; commit publishes by atomic rename; discard removes. All three are idempotent, so a
// resumed execution can repeat them.
EffectOutcome Connectors::PerformFile(const engine::EffectRequest& request,
                                      const engine::EffectContext& context) {
  const std::string& function = request.function;
  if (function == "atomflow.files.commit" || function == "atomflow.files.discard") {
    Result<StagedFile> file = StagedFile::FromValue(request.args);
    if (!file.ok()) return SystemErrorOutcome(file.message());
    Status status = function == "atomflow.files.commit" ? StagedFiles::Publish(*file)
                                                        : StagedFiles::Discard(*file);
    if (!status.ok()) return SystemErrorOutcome(status.message());
    return EffectOutcome::Success(file->ToValue());
  }

  std::string path = StringArg(request.args, "path");
  if (path.empty()) return ValueErrorOutcome(function + ": 'path' must be a non-empty string");
  path = std::filesystem::absolute(path).string();
  std::string staging_dir = (std::filesystem::path(context.staging_root) /
                             Sanitize(context.execution_id + "-" + request.key))
                                .string();
  Result<StagedFile> staged = Status::Error("unknown file function " + function);
  if (function == "atomflow.files.write") {
    Result<std::string> content = FileContent(request.args);
    if (!content.ok()) return ValueErrorOutcome(content.message());
    staged = StagedFiles::Stage(staging_dir, path, *content);
  } else if (function == "atomflow.files.publish") {
    std::string source = StringArg(request.args, "source");
    if (source.empty()) return ValueErrorOutcome(function + ": 'source' must be a string");
    staged = StagedFiles::StageCopy(staging_dir, path, source);
  }
  if (!staged.ok()) return ValueErrorOutcome(function + ": " + staged.message());

  Status prepared = StagedFiles::Prepare(*staged);
  if (prepared.ok() && request.op == "put") prepared = StagedFiles::Publish(*staged);
  if (!prepared.ok()) return SystemErrorOutcome(function + ": " + prepared.message());
  return EffectOutcome::Success(staged->ToValue());
}

std::unique_ptr<engine::EffectHandler> MakeConnectors(engine::IoLoop* loop,
                                                      const engine::EngineOptions& options) {
  return ConnectorsFactory(DatabaseCatalog())(loop, options);
}

Result<ConnectorsConfig> LoadConnectorsConfig(const std::string& config_path, bool required,
                                              const std::string& store_path) {
  ConnectorsConfig config;
  Result<DatabaseCatalog> databases = DatabaseCatalog::Load(config_path, required);
  if (!databases.ok()) return databases.status();
  config.databases = std::move(databases).value();
  Result<IdentityCatalog> identities = IdentityCatalog::Load(config_path, required);
  if (!identities.ok()) return identities.status();
  config.identities = std::move(identities).value();

  if (!store_path.empty()) {
    Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(store_path);
    if (!secrets.ok()) return secrets.status();
    config.secrets = std::move(secrets).value();
  }
  config.databases.set_secrets(config.secrets);
  return config;
}

engine::Engine::HandlerFactory ConnectorsFactory(DatabaseCatalog databases) {
  ConnectorsConfig config;
  config.databases = std::move(databases);
  return ConnectorsFactory(std::move(config));
}

engine::Engine::HandlerFactory ConnectorsFactory(ConnectorsConfig config) {
  return [config = std::move(config)](engine::IoLoop* loop, const engine::EngineOptions& options) {
    const char* text = std::getenv(kHttpHostMapVariable);
    Result<HttpHostMap> host_map = ParseHttpHostMap(text ? text : "");
    if (!host_map.ok()) {
      fprintf(stderr, "atomflow: %s: %s\n", kHttpHostMapVariable, host_map.message().c_str());
    }
    auto connectors = std::make_unique<Connectors>(
        loop, host_map.ok() ? std::move(host_map).value() : HttpHostMap{}, config);
    connectors->set_staging_root(options.staging_root);
    return connectors;
  };
}

}  // namespace atomflow::connectors
