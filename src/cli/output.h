// What every atomflow subcommand prints the same way: exit statuses, times, JSON text, and the
// rejection of bad input.
#pragma once

#include <cstdint>
#include <string>

#include "cli/commands.h"
#include "value/value.h"

namespace atomflow::cli {

inline constexpr int kExitSucceeded = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitInvalid = 2;

// Milliseconds since the epoch as RFC 3339 UTC with milliseconds; "" for 0.
std::string Rfc3339(int64_t ms);

// Parsed JSON text; null for empty or malformed text.
Json ParseOrNull(const std::string& text);

// Rejects a command before it changes anything: the message on stderr, and with --json the
// INVALID object on stdout. Returns kExitInvalid.
int Invalid(const CommonOptions& options, const std::string& message);

}  // namespace atomflow::cli
