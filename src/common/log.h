// The one logging facade: lifecycle events for operators, backed by spdlog.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace atomflow::log {

// Sends operator logs to stderr at the given level ("info", "warn", "debug", "off"). format
// "text" writes `time level message`; "json" writes one JSON object per line with "time",
// "level", "message" and, for events, their fields. May be called again to change either.
void Init(const std::string& level, const std::string& format = "text");

// One field of a lifecycle event: an id, a state or a count. Never a payload, an argument, a
// result or a header value. It only refers to the key and a text value (both outlive the
// Event call they are given to), so an event that is filtered out costs no copy.
struct Field {
  Field(std::string_view key, std::string_view value) : key(key), value(value) {}
  Field(std::string_view key, const char* value) : key(key), value(value) {}
  Field(std::string_view key, const std::string& value) : key(key), value(value) {}
  template <typename Number, typename = std::enable_if_t<std::is_arithmetic_v<Number>>>
  Field(std::string_view key, Number value)
      : key(key), number(std::to_string(value)), is_number(true) {}

  // The value as it is written: the number's digits, or the text.
  std::string_view text() const { return is_number ? std::string_view(number) : value; }

  std::string_view key;
  std::string_view value;  // a text value
  std::string number;      // a number's digits (short: held inline by the string)
  bool is_number = false;
};

// A lifecycle event at info level: `log::Event("execution.finished", {{"execution", id},
// {"workflow", name}, {"state", state}})`. Text: `execution.finished execution=... state=...`.
void Event(std::string_view name, std::initializer_list<Field> fields);

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
