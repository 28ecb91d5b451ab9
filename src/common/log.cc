// Logging setup: one stderr sink shared by every subsystem.
#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace atomflow::log {

void Init(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("atomflow");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

}  // namespace atomflow::log
