// `atomflow workflows deploy|list|describe|delete`: deployed workflows on a server or on the
// local store.
#pragma once

#include "cli/commands.h"

namespace CLI {
class App;
}  // namespace CLI

namespace atomflow::cli {

// Adds the `workflows` group. With --server (or $ATOMFLOW_SERVER) the commands call the
// server's API; without, they use server::WorkflowRegistry on the local store, with the same
// validation, revisions and output.
void AddWorkflowCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers);

}  // namespace atomflow::cli
