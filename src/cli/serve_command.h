// `atomflow serve`: the engine as a shared service behind the REST API of docs/api.md.
#pragma once

#include "cli/commands.h"

namespace atomflow::cli {

// Adds `atomflow serve --listen HOST:PORT --store PATH --auth token|none --log-format text|json
// --public-url URL --config FILE`.
void AddServeCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers);

}  // namespace atomflow::cli
