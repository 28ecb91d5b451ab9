// The atomflow command's subcommands.
#pragma once

#include <string>

namespace atomflow::cli {

// Options shared by every subcommand.
struct CommonOptions {
  std::string store = "atomflow.db";
  bool json = false;
  std::string log_level = "warn";
};

// Exit statuses: 0 SUCCEEDED (or the command worked), 1 FAILED or CANCELLED, 2 rejected
// before running (bad workflow, bad input, unknown execution).
int RunCommand(const CommonOptions& options, const std::string& file, const std::string& data);
int ValidateCommand(const CommonOptions& options, const std::string& file);
int ResumeCommand(const CommonOptions& options, const std::string& execution_id);
int RecoverCommand(const CommonOptions& options);
int ListCommand(const CommonOptions& options, const std::string& state);
int DescribeCommand(const CommonOptions& options, const std::string& execution_id);

}  // namespace atomflow::cli
