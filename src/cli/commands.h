// The atomflow command's subcommands.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"
#include "store/store.h"

namespace CLI {
class App;
}  // namespace CLI

namespace atomflow::cli {

// Subcommands a file adds to the command line, each with what runs when it was the one given.
// A file that owns a group of commands exposes `void AddXxxCommands(CLI::App&, CommonOptions&,
// CommandHandlers&)`; main() calls each and runs the handler of the parsed subcommand.
struct CommonOptions;
using CommandHandlers = std::vector<std::pair<CLI::App*, std::function<int()>>>;

// Options shared by every subcommand.
struct CommonOptions {
  std::string store = "atomflow.db";
  bool json = false;
  std::string log_level = "warn";
  // atomflow.yaml: the named databases. An explicit --config must exist.
  std::string config = "atomflow.yaml";
  bool config_required = false;
  // recover: prepared gids of executions unknown to the store are rolled back, not skipped.
  bool roll_back_unknown = false;
};

// Exit statuses: 0 SUCCEEDED (or the command worked), 1 FAILED or CANCELLED, 2 rejected
// before running (bad workflow, bad input, unknown execution).
// service_account names the identity (atomflow.yaml) whose secrets the effects may use.
int RunCommand(const CommonOptions& options, const std::string& file, const std::string& data,
               const std::string& service_account);
int ValidateCommand(const CommonOptions& options, const std::string& file);
int ResumeCommand(const CommonOptions& options, const std::string& execution_id);
int RecoverCommand(const CommonOptions& options);
int ListCommand(const CommonOptions& options, const std::string& state);
int DescribeCommand(const CommonOptions& options, const std::string& execution_id);

// txn_commands.cc: global transactions across the store's executions.
// The transactions of one execution as its journal records them, resolutions included.
Json TransactionsJson(const store::ExecutionRecord& record,
                      const std::vector<store::JournalEntry>& journal);
int TxnListCommand(const CommonOptions& options, const std::string& state);
int TxnDescribeCommand(const CommonOptions& options, const std::string& gid);
int TxnResolveCommand(const CommonOptions& options, const std::string& gid, bool retry,
                      bool mark_compensated);

// Ok when a store file exists at path, else "no store at <path>". A command that only reads
// (list, describe, logs, wait, ...) checks it first, so that it never creates a store file.
[[nodiscard]] Status CheckStoreExists(const std::string& path);

// The store at path for a command that only reads, or one that acts on what a store already
// holds: CheckStoreExists, then OpenSqliteStore.
Result<std::unique_ptr<store::Store>> OpenExistingStore(const std::string& path);

// Opens the store at path once, which creates its schema or refuses one this atomflow cannot
// read, before other parts (tokens, secrets) add their tables to the file.
Status CheckStoreSchema(const std::string& path);

// Reads the configuration file (atomflow.yaml or --config) without a store: its first mistake,
// or Ok. Commands call it before they create a store file, so that a bad file leaves none.
Status CheckConfigFile(const std::string& path, bool required);

// The engine over options.store with the configured connectors; SIGINT/SIGTERM cancel its
// executions. progress receives the executions' progress.
Result<std::unique_ptr<engine::Engine>> OpenEngine(const CommonOptions& options,
                                                   engine::ProgressSink* progress);

}  // namespace atomflow::cli
