// The atomflow command: argument parsing and dispatch to the subcommands.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/admin_commands.h"
#include "cli/commands.h"
#include "cli/remote_commands.h"
#include "cli/serve_command.h"
#include "cli/workflow_commands.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using atomflow::cli::CommonOptions;
  CLI::App app{"Atomflow: Cloud Workflows with global transactions"};
  app.require_subcommand(1);
  CommonOptions options;
  app.add_option("--store", options.store, "the SQLite store file")->capture_default_str();
  const std::vector<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "off"};
  app.add_option("--log-level", options.log_level, "operator log level")
      ->capture_default_str()
      ->check(CLI::IsMember(kLogLevels));
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
  std::string service_account;
  run->add_option("--service-account", service_account,
                  "the identity (atomflow.yaml) whose secrets the workflow's calls may use");

  CLI::App* validate = app.add_subcommand("validate", "check a workflow file without running it");
  validate->add_option("file", file, "workflow file")->required();
  validate->add_flag("--json", options.json, "print the outcome as JSON");

  CLI::App* recover = app.add_subcommand("recover", "resume every interrupted execution");
  recover->add_option("--store", options.store, "the SQLite store file");
  recover->add_flag("--json", options.json, "print JSON");

  // Command groups that live in their own files add their subcommands here.
  atomflow::cli::CommandHandlers handlers;
  atomflow::cli::AddAdminCommands(app, options, handlers);
  atomflow::cli::AddServeCommands(app, options, handlers);
  atomflow::cli::AddWorkflowCommands(app, options, handlers);
  atomflow::cli::AddExecutionCommands(app, options, handlers);
  atomflow::cli::AddTxnCommands(app, options, handlers);

  std::vector<CLI::Option*> sub_configs;
  for (CLI::App* sub : {run, recover}) {
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

  if (run->parsed()) return atomflow::cli::RunCommand(options, file, data, service_account);
  if (validate->parsed()) return atomflow::cli::ValidateCommand(options, file);
  if (recover->parsed()) return atomflow::cli::RecoverCommand(options);
  for (const auto& [command, handler] : handlers) {
    if (!command->parsed()) continue;
    // A reply of an unexpected shape (a server that is not atomflow's) must end in a message,
    // not an abort.
    try {
      return handler();
    } catch (const std::exception& error) {
      fprintf(stderr, "atomflow: %s\n", error.what());
      return 2;
    }
  }
  return 2;
}
