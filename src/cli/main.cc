// The atomflow command: argument parsing and dispatch to the subcommands.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using atomflow::cli::CommonOptions;
  CLI::App app{"Atomflow: Cloud Workflows with global transactions"};
  app.require_subcommand(1);
  CommonOptions options;
  app.add_option("--store", options.store, "the SQLite store file")->capture_default_str();
  app.add_option("--log-level", options.log_level, "operator log level")->capture_default_str();
  CLI::Option* config =
      app.add_option("--config", options.config, "configuration file (named databases)")
          ->capture_default_str();

  std::string file;
  std::string data;
  CLI::App* run = app.add_subcommand("run", "run a workflow file to its end");
  run->add_option("file", file, "workflow file (YAML or JSON)")->required();
  run->add_option("--data", data, "the execution argument, as JSON");
  run->add_flag("--json", options.json, "print the outcome as one JSON object on stdout");
  run->add_option("--store", options.store, "the SQLite store file");

  CLI::App* validate = app.add_subcommand("validate", "check a workflow file without running it");
  validate->add_option("file", file, "workflow file")->required();
  validate->add_flag("--json", options.json, "print the outcome as JSON");

  std::string execution_id;
  std::string state;
  CLI::App* executions = app.add_subcommand("executions", "inspect and resume executions");
  executions->require_subcommand(1);
  CLI::App* list = executions->add_subcommand("list", "list executions, newest first");
  list->add_option("--state", state, "only executions in this state");
  CLI::App* describe = executions->add_subcommand("describe", "show one execution");
  describe->add_option("id", execution_id, "execution id")->required();
  CLI::App* resume = executions->add_subcommand("resume", "finish an interrupted execution");
  resume->add_option("id", execution_id, "execution id")->required();
  for (CLI::App* sub : {list, describe, resume}) {
    sub->add_flag("--json", options.json, "print JSON");
    sub->add_option("--store", options.store, "the SQLite store file");
  }
  CLI::App* recover = app.add_subcommand("recover", "resume every interrupted execution");
  recover->add_option("--store", options.store, "the SQLite store file");
  recover->add_flag("--json", options.json, "print JSON");

  std::string gid;
  bool retry = false;
  bool mark_compensated = false;
  CLI::App* txn = app.add_subcommand("txn", "inspect and resolve global transactions");
  txn->require_subcommand(1);
  CLI::App* txn_list = txn->add_subcommand("list", "list transactions");
  txn_list->add_option("--state", state,
                       "only transactions in this state (e.g. COMPENSATION_FAILED)");
  CLI::App* txn_describe = txn->add_subcommand("describe", "show one transaction");
  txn_describe->add_option("gid", gid, "transaction id")->required();
  CLI::App* txn_resolve = txn->add_subcommand("resolve", "end a COMPENSATION_FAILED transaction");
  txn_resolve->add_option("gid", gid, "transaction id")->required();
  txn_resolve->add_flag("--retry", retry, "run the compensations that did not land again");
  txn_resolve->add_flag("--mark-compensated", mark_compensated,
                        "record that an operator undid them by hand");
  for (CLI::App* sub : {txn_list, txn_describe, txn_resolve}) {
    sub->add_flag("--json", options.json, "print JSON");
    sub->add_option("--store", options.store, "the SQLite store file");
  }

  // Command groups that live in their own files add their subcommands here.
  atomflow::cli::CommandHandlers handlers;

  std::vector<CLI::Option*> sub_configs;
  for (CLI::App* sub : {run, resume, recover, txn_resolve}) {
    sub_configs.push_back(sub->add_option("--config", options.config, "configuration file"));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  options.config_required = config->count() > 0;
  for (CLI::Option* sub_config : sub_configs) {
    options.config_required = options.config_required || sub_config->count() > 0;
  }
  atomflow::log::Init(options.log_level);

  if (run->parsed()) return atomflow::cli::RunCommand(options, file, data);
  if (validate->parsed()) return atomflow::cli::ValidateCommand(options, file);
  if (list->parsed()) return atomflow::cli::ListCommand(options, state);
  if (describe->parsed()) return atomflow::cli::DescribeCommand(options, execution_id);
  if (resume->parsed()) return atomflow::cli::ResumeCommand(options, execution_id);
  if (recover->parsed()) return atomflow::cli::RecoverCommand(options);
  if (txn_list->parsed()) return atomflow::cli::TxnListCommand(options, state);
  if (txn_describe->parsed()) return atomflow::cli::TxnDescribeCommand(options, gid);
  if (txn_resolve->parsed()) {
    return atomflow::cli::TxnResolveCommand(options, gid, retry, mark_compensated);
  }
  for (const auto& [command, handler] : handlers) {
    if (command->parsed()) return handler();
  }
  return 2;
}
