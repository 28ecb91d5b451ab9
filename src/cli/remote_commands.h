// `atomflow executions ...` and `atomflow txn ...` on a server (--server, $ATOMFLOW_SERVER) or
// on the local store, and what the client commands share.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli/client.h"
#include "cli/commands.h"
#include "common/status.h"
#include "store/store.h"
#include "value/value.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace atomflow::cli {

// executions list|describe|run|cancel|wait|logs|resume.
void AddExecutionCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers);
// txn list|describe|resolve.
void AddTxnCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers);

// Where one client command works, as its flags chose: a server, or the local store.
// --server (or $ATOMFLOW_SERVER) selects the server; an explicit --store wins over
// $ATOMFLOW_SERVER, and --store with --server is rejected.
struct Target {
  std::string server;  // empty: the local store (options.store)
  std::unique_ptr<ApiClient> client;
  bool remote() const { return client != nullptr; }
};

// The flags of a client subcommand that choose its target (--server, --store, --json).
struct TargetFlags {
  std::string server;
  CLI::Option* server_option = nullptr;
  CLI::Option* store_option = nullptr;
  CLI::Option* top_store_option = nullptr;
};

// Adds --server, --store and --json to sub, bound to flags and options.
void AddTargetFlags(CLI::App& app, CLI::App* sub, TargetFlags& flags, CommonOptions& options);

// The target the parsed flags name; InvalidArgument for --store with --server.
Result<Target> ResolveTarget(const TargetFlags& flags);

// A failed command: the message on stderr (and the INVALID object with --json). Returns 2.
int Failed(const CommonOptions& options, const Status& status);

// Prints rows under header in columns as wide as their widest cell, two spaces apart.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

// "k=v" flags as a JSON map of strings; InvalidArgument for an item without '='.
Result<Json> ParseLabels(const std::vector<std::string>& labels);

// Defined in commands.cc, shared with `atomflow run`:
// The outcome object of a finished execution ({"id", "name", "state", "result"|"error"}).
Json Outcome(const store::ExecutionRecord& record);
// Prints it as `atomflow run` does; returns 0 when SUCCEEDED, else 1.
int PrintOutcome(const CommonOptions& options, const store::ExecutionRecord& record);
// The execution argument given by --data.
Result<Json> ParseData(const std::string& data);
// The check on --data: an empty value is a mistake (a shell variable that was not set, say),
// not "no argument", which is what leaving --data out means.
std::function<std::string(const std::string&)> NonEmptyData();
// Prints an execution description (the JSON of `executions describe`) for people.
void PrintDescription(const Json& description);

}  // namespace atomflow::cli
