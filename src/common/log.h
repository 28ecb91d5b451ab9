// The one logging facade: lifecycle events for operators, backed by spdlog.
#pragma once

#include <spdlog/spdlog.h>

namespace atomflow::log {

// Sends operator logs to stderr at the given level ("info", "warn", "debug", "off").
void Init(const std::string& level);

template <typename... Args>
void Info(fmt::format_string<Args...> format, Args&&... args) {
  spdlog::info(format, std::forward<Args>(args)...);
}

template <typename... Args>
void Warn(fmt::format_string<Args...> format, Args&&... args) {
  spdlog::warn(format, std::forward<Args>(args)...);
}

template <typename... Args>
void Error(fmt::format_string<Args...> format, Args&&... args) {
  spdlog::error(format, std::forward<Args>(args)...);
}

template <typename... Args>
void Debug(fmt::format_string<Args...> format, Args&&... args) {
  spdlog::debug(format, std::forward<Args>(args)...);
}

}  // namespace atomflow::log
