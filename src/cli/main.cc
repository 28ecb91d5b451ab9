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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  atomflow::log::Init(options.log_level);

  if (run->parsed()) return atomflow::cli::RunCommand(options, file, data);
  if (validate->parsed()) return atomflow::cli::ValidateCommand(options, file);
  if (list->parsed()) return atomflow::cli::ListCommand(options, state);
  if (describe->parsed()) return atomflow::cli::DescribeCommand(options, execution_id);
  if (resume->parsed()) return atomflow::cli::ResumeCommand(options, execution_id);
  if (recover->parsed()) return atomflow::cli::RecoverCommand(options);
  return 2;
}
