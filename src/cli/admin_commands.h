// `atomflow tokens ...` and `atomflow secrets ...`: API tokens and service secrets of a store.
#pragma once

#include "cli/commands.h"

namespace atomflow::cli {

// Adds `tokens create NAME --role ROLE`, `tokens list`, `tokens revoke NAME`, `secrets set NAME
// [--value V | --from-file F]` (else the value is read from stdin), `secrets list` and
// `secrets delete NAME`, each with --store and --json. They work on the store file directly,
// so they run on the server's machine, beside or without a running server.
void AddAdminCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers);

}  // namespace atomflow::cli
