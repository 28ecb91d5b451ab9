// The atomflow subcommands: run, validate, executions list|describe|resume, recover.
#include "cli/commands.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <thread>

#include "cli/output.h"
#include "cli/progress.h"
#include "cli/remote_commands.h"
#include "connectors/connectors.h"
#include "connectors/databases.h"
#include "connectors/sql_recovery.h"
#include "engine/engine.h"
#include "engine/step_history.h"
#include "lang/ast.h"
#include "lang/error.h"
#include "lang/validate.h"

namespace atomflow::cli {

Json Outcome(const store::ExecutionRecord& record) {
  Json out = {{"id", record.id}, {"name", record.workflow_name}, {"state", record.state}};
  if (record.state == "SUCCEEDED") {
    out["result"] = ParseOrNull(record.result);
  } else if (!record.error.empty()) {
    out["error"] = ParseOrNull(record.error);
  }
  return out;
}

int PrintOutcome(const CommonOptions& options, const store::ExecutionRecord& record) {
  Json out = Outcome(record);
  double seconds = (record.end_time_ms - record.start_time_ms) / 1000.0;
  if (options.json) {
    std::cout << out.dump() << std::endl;
  } else {
    fprintf(stderr, "execution %s %s in %.2fs\n", record.id.c_str(), record.state.c_str(), seconds);
    if (out.contains("result")) std::cout << out["result"].dump(2) << std::endl;
    if (out.contains("error")) {
      const Json& error = out["error"];
      std::string message = error.is_object() ? error.value("message", error.dump()) : error.dump();
      // A failed execution's map error carries its stack trace as text (see docs/language).
      if (error.is_object() && error.contains("context") && error["context"].is_string()) {
        message = error["context"].get<std::string>();
      }
      fprintf(stderr, "error: %s\n", message.c_str());
    }
  }
  return record.state == "SUCCEEDED" ? kExitSucceeded : kExitFailed;
}

namespace {

// Turns SIGINT and SIGTERM into cancellation of every execution; a second signal exits.
void HandleSignals(engine::Engine* engine) {
  std::thread([engine] {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    int received = 0;
    sigwait(&signals, &received);
    fprintf(stderr, "atomflow: cancelling (signal %d); send it again to quit at once\n", received);
    engine->CancelAll();
    // The cancellation is journaled: once it is durable, quitting leaves it to `resume`.
    Status flushed = engine->store()->Flush();
    (void)flushed;  // a failed journal write aborts the process by itself
    sigwait(&signals, &received);
    _exit(130);
  }).detach();
}

void BlockSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

}  // namespace

Status CheckStoreExists(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) return Status::InvalidArgument("no store at " + path);
  return Status::Ok();
}

Result<std::unique_ptr<store::Store>> OpenExistingStore(const std::string& path) {
  if (Status exists = CheckStoreExists(path); !exists.ok()) return exists;
  return store::OpenSqliteStore(path);
}

Status CheckStoreSchema(const std::string& path) {
  Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(path);
  return store.ok() ? Status::Ok() : store.status();
}

Status CheckConfigFile(const std::string& path, bool required) {
  // Its databases and identities need no store (only its secrets do): read without one.
  Result<connectors::ConnectorsConfig> config =
      connectors::LoadConnectorsConfig(path, required, /*store_path=*/"");
  return config.ok() ? Status::Ok() : config.status();
}

Result<std::unique_ptr<engine::Engine>> OpenEngine(const CommonOptions& options,
                                                   engine::ProgressSink* progress) {
  BlockSignals();  // before any thread starts, so every thread inherits the mask
  // A mistake in atomflow.yaml must leave no store file behind: it is read first.
  if (Status config = CheckConfigFile(options.config, options.config_required); !config.ok()) {
    return config;
  }
  // The secret store's table goes into the same file: check the schema before it is added.
  if (Status schema = CheckStoreSchema(options.store); !schema.ok()) return schema;
  Result<connectors::ConnectorsConfig> connectors_config =
      connectors::LoadConnectorsConfig(options.config, options.config_required, options.store);
  if (!connectors_config.ok()) return connectors_config.status();
  engine::EngineOptions engine_options;
  engine_options.store_path = options.store;
  Result<std::unique_ptr<engine::Engine>> engine = engine::Engine::Open(
      engine_options, connectors::ConnectorsFactory(std::move(connectors_config).value()),
      progress);
  if (engine.ok()) HandleSignals(engine->get());
  return engine;
}

int ValidateCommand(const CommonOptions& options, const std::string& file) {
  Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflowFile(file);
  if (!workflow.ok()) return Invalid(options, workflow.message());
  std::vector<std::string> warnings = lang::TransactionWarnings(**workflow);
  for (const std::string& warning : warnings) fprintf(stderr, "%s\n", warning.c_str());
  if (options.json) {
    Json out = {{"state", "VALID"}, {"file", file}};
    if (!warnings.empty()) out["warnings"] = warnings;
    std::cout << out.dump() << std::endl;
  } else {
    size_t routines = (*workflow)->routines.size();
    fprintf(stderr, "%s: valid (%zu routine%s)\n", file.c_str(), routines,
            routines == 1 ? "" : "s");
  }
  return kExitSucceeded;
}

std::function<std::string(const std::string&)> NonEmptyData() {
  return [](const std::string& data) -> std::string {
    if (!data.empty()) return "";
    return "is empty: give JSON text, such as '{}' or 'null', or leave --data out";
  };
}

// The execution argument; a parse error names the byte where the text stops being JSON.
Result<Json> ParseData(const std::string& data) {
  Result<Json> parsed = ParseJsonText(data);
  if (!parsed.ok()) return Status::Error("--data " + parsed.message());
  return parsed;
}

int RunCommand(const CommonOptions& options, const std::string& file, const std::string& data,
               const std::string& service_account) {
  Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflowFile(file);
  if (!workflow.ok()) return Invalid(options, workflow.message());
  Value argument;
  if (!data.empty()) {
    Result<Json> parsed = ParseData(data);
    if (!parsed.ok()) return Invalid(options, parsed.message());
    argument = FromJson(*parsed);
  }

  StderrProgress progress(false, "started");
  Result<std::unique_ptr<engine::Engine>> engine = OpenEngine(options, &progress);
  if (!engine.ok()) return Invalid(options, engine.message());
  engine::StartOptions start;
  start.service_account = service_account;
  Result<std::string> id =
      (*engine)->Start(std::move(workflow).value(), std::move(argument), start);
  if (!id.ok()) return Invalid(options, id.message());
  progress.Announce(*id);
  return PrintOutcome(options, (*engine)->Wait(*id));
}

int ResumeCommand(const CommonOptions& options, const std::string& execution_id) {
  if (Status exists = CheckStoreExists(options.store); !exists.ok()) {
    return Invalid(options, exists.message());
  }
  StderrProgress progress(false, "resumed");
  Result<std::unique_ptr<engine::Engine>> engine = OpenEngine(options, &progress);
  if (!engine.ok()) return Invalid(options, engine.message());
  Result<store::ExecutionRecord> record = (*engine)->store()->GetExecution(execution_id);
  if (!record.ok()) return Invalid(options, record.message());
  if (record->state != "ACTIVE") return PrintOutcome(options, *record);

  Result<std::string> id = (*engine)->Resume(execution_id);
  if (!id.ok()) return Invalid(options, id.message());
  progress.Announce(*id);
  return PrintOutcome(options, (*engine)->Wait(*id));
}

namespace {

// Finishes the prepared SQL branches of executions that no longer run (after the resumed ones
// finished their own), as the journal decided; a failure makes the exit status 1.
Json ResolvePrepared(const CommonOptions& options, engine::Engine& engine, int* status) {
  // Databases given as {secret: NAME} resolve through the secret store, as the engine's do.
  Result<connectors::ConnectorsConfig> config =
      connectors::LoadConnectorsConfig(options.config, options.config_required, options.store);
  Json out = Json::array();
  if (!config.ok()) {
    fprintf(stderr, "atomflow: %s\n", config.message().c_str());
    *status = kExitFailed;
    return out;
  }
  for (const connectors::PreparedResolution& resolution : connectors::ResolvePreparedTransactions(
           *engine.store(), config->databases, options.roll_back_unknown)) {
    out.push_back({{"database", resolution.database},
                   {"xid", resolution.xid},
                   {"outcome", resolution.outcome}});
    if (resolution.outcome.rfind("failed", 0) == 0) *status = kExitFailed;
    if (!options.json) {
      if (resolution.xid.empty()) {  // the database could not be asked at all
        fprintf(stderr, "cannot list the prepared transactions of database %s: %s\n",
                resolution.database.c_str(), resolution.outcome.c_str());
      } else {
        fprintf(stderr, "prepared transaction %s on %s: %s\n", resolution.xid.c_str(),
                resolution.database.c_str(), resolution.outcome.c_str());
      }
    }
  }
  return out;
}

}  // namespace

int RecoverCommand(const CommonOptions& options) {
  // Without a store there are no executions to resume; with --roll-back-unknown there may
  // still be prepared transactions in the configured databases that no store knows. Otherwise
  // there is nothing to recover: say so rather than create a store.
  if (Status exists = CheckStoreExists(options.store); !exists.ok()) {
    if (!options.roll_back_unknown) return Invalid(options, exists.message());
    Result<connectors::DatabaseCatalog> databases =
        connectors::DatabaseCatalog::Load(options.config, options.config_required);
    if (!databases.ok()) return Invalid(options, databases.message());
    if (databases->Names().empty()) return Invalid(options, exists.message());
  }
  StderrProgress progress(false, "resumed");
  Result<std::unique_ptr<engine::Engine>> engine = OpenEngine(options, &progress);
  if (!engine.ok()) return Invalid(options, engine.message());
  Result<std::vector<std::string>> ids = (*engine)->Recover();
  if (!ids.ok()) return Invalid(options, ids.message());
  for (const std::string& id : *ids) progress.Announce(id);

  int status = kExitSucceeded;
  Json outcomes = Json::array();
  for (const std::string& id : *ids) {
    store::ExecutionRecord record = (*engine)->Wait(id);
    if (record.state != "SUCCEEDED") status = kExitFailed;
    outcomes.push_back(Outcome(record));
    if (!options.json) fprintf(stderr, "execution %s %s\n", id.c_str(), record.state.c_str());
  }
  Json prepared = ResolvePrepared(options, **engine, &status);
  if (options.json)
    std::cout << Json{{"executions", outcomes}, {"prepared", prepared}}.dump() << std::endl;
  if (!options.json) {
    fprintf(stderr, "recovered %zu execution%s\n", ids->size(), ids->size() == 1 ? "" : "s");
  }
  return status;
}

int ListCommand(const CommonOptions& options, const std::string& state) {
  Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
  if (!store.ok()) return Invalid(options, store.message());
  Result<std::vector<store::ExecutionRecord>> records = (*store)->ListExecutions(state, 1000);
  if (!records.ok()) return Invalid(options, records.message());

  Json out = Json::array();
  for (const store::ExecutionRecord& record : *records) {
    out.push_back({{"id", record.id},
                   {"name", record.workflow_name},
                   {"state", record.state},
                   {"start_time", Rfc3339(record.start_time_ms)},
                   {"end_time", Rfc3339(record.end_time_ms)}});
    if (!options.json) {
      printf("%-36s  %-10s  %-24s  %s\n", record.id.c_str(), record.state.c_str(),
             Rfc3339(record.start_time_ms).c_str(), record.workflow_name.c_str());
    }
  }
  if (options.json) std::cout << out.dump() << std::endl;
  return kExitSucceeded;
}

namespace {

// The journal's step records and transaction records, shaped for `describe`.
Json Describe(const store::ExecutionRecord& record,
              const std::vector<store::JournalEntry>& journal) {
  Json out = Outcome(record);
  out["start_time"] = Rfc3339(record.start_time_ms);
  out["end_time"] = Rfc3339(record.end_time_ms);
  out["duration_ms"] = record.end_time_ms ? record.end_time_ms - record.start_time_ms : 0;
  out["argument"] = ParseOrNull(record.argument);
  out["revision_id"] = record.revision_id;
  out["labels"] = ParseOrNull(record.labels);
  Json steps = Json::array();
  std::vector<engine::StepEntry> entries;
  for (const store::JournalEntry& entry : journal) engine::AppendStepEntries(entry, entries);
  for (const engine::StepEntry& entry : entries) {
    const Json& p = entry.payload;
    int64_t start = p.value("start_ms", int64_t{0});
    int64_t end = p.value("end_ms", int64_t{0});
    steps.push_back({{"step", p.value("step", "")},
                     {"routine", p.value("routine", "")},
                     {"state", p.value("state", "")},
                     {"start_time", Rfc3339(start)},
                     {"end_time", Rfc3339(end)},
                     {"duration_ms", end - start}});
  }
  out["steps"] = steps;
  out["transactions"] = TransactionsJson(record, journal);  // as `atomflow txn` sees them
  return out;
}

}  // namespace

int DescribeCommand(const CommonOptions& options, const std::string& execution_id) {
  Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
  if (!store.ok()) return Invalid(options, store.message());
  Result<store::ExecutionRecord> record = (*store)->GetExecution(execution_id);
  if (!record.ok()) return Invalid(options, record.message());
  Result<std::vector<store::JournalEntry>> journal = (*store)->ReadJournal(execution_id);
  if (!journal.ok()) return Invalid(options, journal.message());

  Json out = Describe(*record, *journal);
  if (options.json) {
    std::cout << out.dump() << std::endl;
  } else {
    PrintDescription(out);
  }
  return kExitSucceeded;
}

void PrintDescription(const Json& out) {
  printf("execution  %s\nworkflow   %s\n", out.value("id", "").c_str(),
         out.value("name", "").c_str());
  if (!out.value("revision_id", "").empty()) {
    printf("revision   %s\n", out.value("revision_id", "").c_str());
  }
  printf("state      %s\nstarted    %s\nended      %s\n", out.value("state", "").c_str(),
         out.value("start_time", "").c_str(), out.value("end_time", "").c_str());
  printf("steps:\n");
  for (const Json& step : out.value("steps", Json::array())) {
    printf("  %-9s %-30s %8.2fs\n", step.value("state", "").c_str(), step.value("step", "").c_str(),
           step.value("duration_ms", int64_t{0}) / 1000.0);
  }
  for (const Json& txn : out.value("transactions", Json::array())) {
    printf("transaction %s: %s (%zu branches)\n", txn.value("gid", "").c_str(),
           txn.value("state", "").c_str(), txn.contains("branches") ? txn["branches"].size() : 0);
  }
  if (out.contains("result")) printf("result:\n%s\n", out["result"].dump(2).c_str());
  if (out.contains("error")) printf("error:\n%s\n", out["error"].dump(2).c_str());
}

}  // namespace atomflow::cli
