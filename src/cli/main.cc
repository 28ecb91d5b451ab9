// The atomflow command: argument parsing and dispatch to the subcommands.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "cli/admin_commands.h"
#include "cli/commands.h"
#include "cli/remote_commands.h"
#include "cli/serve_command.h"
#include "cli/workflow_commands.h"
#include "common/log.h"
#include "connectors/http_client.h"

namespace {

// The parser's messages in the form of the command's own: "atomflow: what went wrong".
std::string FailureMessage(const CLI::App* app, const CLI::Error& error) {
  return "atomflow: " + std::string(error.what()) + "\nRun '" + app->get_name() +
         " --help' for more information.\n";
}

// Options of the top-level command that take a value, so that the value is not taken for a
// command's name.
bool TakesValue(const std::string& arg) {
  return arg == "--store" || arg == "--log-level" || arg == "--config";
}

// The name of a command that does not exist ("atomflow bogus"), or empty. The parser would only
// say that a command is required, without naming what it was given.
std::string UnknownCommand(CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("-", 0) == 0) {
      if (TakesValue(arg)) ++i;
      continue;
    }
    for (const CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
      if (command->check_name(arg)) return "";
    }
    return arg;
  }
  return "";
}

std::string CommandNames(CLI::App& app) {
  std::string names;
  for (const CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
    names += (names.empty() ? "" : ", ") + command->get_name();
  }
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  using atomflow::cli::CommonOptions;
  CLI::App app{"Atomflow: Cloud Workflows with global transactions", "atomflow"};
  app.set_version_flag("--version", std::string("atomflow ") + ATOMFLOW_VERSION);
  app.require_subcommand(1);
  app.failure_message(FailureMessage);
  // --log-level, --store and --config work after the command too (atomflow run f.yaml
  // --log-level debug): a command passes the options it does not know to the top level.
  app.fallthrough();
  CommonOptions options;
  app.add_option("--store", options.store, "the SQLite store file")->capture_default_str();
  const std::vector<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "off"};
  app.add_option("--log-level", options.log_level, "operator log level (serve: info unless given)")
      ->capture_default_str()
      ->check(CLI::IsMember(kLogLevels));
  CLI::Option* config =
      app.add_option("--config", options.config, "configuration file (named databases)")
          ->capture_default_str();

  std::string file;
  std::string data;
  CLI::App* run = app.add_subcommand("run", "run a workflow file to its end");
  run->add_option("file", file, "workflow file (YAML or JSON)")->required();
  run->add_option("--data", data, "the execution argument, as JSON")
      ->check(atomflow::cli::NonEmptyData());
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
  recover->add_flag("--roll-back-unknown", options.roll_back_unknown,
                    "also roll back prepared transactions of executions this store does not "
                    "know (only when no other store uses the databases)");

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

  if (std::string unknown = UnknownCommand(app, argc, argv); !unknown.empty()) {
    fprintf(stderr, "atomflow: unknown command '%s' (the commands are %s)\n", unknown.c_str(),
            CommandNames(app).c_str());
    return 2;
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
  if (options.store.empty()) {
    fprintf(stderr, "atomflow: --store is empty: give the path of the store file\n");
    return 2;
  }
  // A testing feature (connectors/http_client.h), but a malformed map must not let a workflow
  // call the real hosts it was meant to keep away from.
  if (const char* host_map = std::getenv(atomflow::connectors::kHttpHostMapVariable);
      host_map != nullptr && *host_map != '\0') {
    auto parsed = atomflow::connectors::ParseHttpHostMap(host_map);
    if (!parsed.ok()) {
      fprintf(stderr, "atomflow: %s: %s\n", atomflow::connectors::kHttpHostMapVariable,
              parsed.message().c_str());
      return 2;
    }
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
