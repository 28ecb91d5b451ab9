// Output helpers shared by the subcommands.
#include "cli/output.h"

#include <cstdio>
#include <ctime>
#include <iostream>

namespace atomflow::cli {

std::string Rfc3339(int64_t ms) {
  if (ms == 0) return "";
  time_t seconds = ms / 1000;
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char text[40];
  strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  char full[48];
  snprintf(full, sizeof(full), "%s.%03dZ", text, static_cast<int>(ms % 1000));
  return full;
}

Json ParseOrNull(const std::string& text) {
  if (text.empty()) return nullptr;
  return Json::parse(text, nullptr, false);
}

int Invalid(const CommonOptions& options, const std::string& message) {
  fprintf(stderr, "atomflow: %s\n", message.c_str());
  if (options.json) {
    Json out = {{"state", "INVALID"},
                {"error", {{"message", message}, {"tags", {"ValidationError"}}}}};
    // The message may quote the user's bad input, bytes that are not UTF-8 included.
    std::cout << out.dump(-1, ' ', false, Json::error_handler_t::replace) << std::endl;
  }
  return kExitInvalid;
}

}  // namespace atomflow::cli
