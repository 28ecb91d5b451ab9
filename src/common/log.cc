// Logging setup: one stderr sink shared by every subsystem, as text or JSON lines.
#include "common/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

namespace atomflow::log {

namespace {

// The fields of the event being logged on this thread; spdlog's sinks run synchronously on the
// logging thread, so the sink reads them while Event is still on the stack.
thread_local const std::vector<Field>* current_fields = nullptr;

std::atomic<bool> json_format{false};

std::string Rfc3339(spdlog::log_clock::time_point time) {
  using namespace std::chrono;
  int64_t ms = duration_cast<milliseconds>(time.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(ms % 1000));
  return text;
}

// Writes each message as one JSON object on its own line of stderr.
class JsonSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    nlohmann::ordered_json line;
    line["time"] = Rfc3339(message.time);
    spdlog::string_view_t level = spdlog::level::to_string_view(message.level);
    line["level"] = std::string(level.data(), level.size());
    line["message"] = std::string(message.payload.data(), message.payload.size());
    if (current_fields != nullptr) {
      line["event"] = line["message"];
      for (const Field& field : *current_fields) {
        std::string key(field.key);
        if (field.is_number) {
          line[key] = nlohmann::ordered_json::parse(field.number, nullptr, false);
        } else {
          line[key] = std::string(field.value);
        }
      }
    }
    std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    text += '\n';
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

// `key=value`, the value quoted when it holds a space, a quote or is empty.
std::string TextField(const Field& field) {
  std::string_view text = field.text();
  bool quote = text.empty() || text.find_first_of(" \"=") != std::string_view::npos;
  std::string out(field.key);
  out += '=';
  if (!quote || field.is_number) return out.append(text);
  nlohmann::json quoted = std::string(text);
  return out + quoted.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void Init(const std::string& level, const std::string& format) {
  spdlog::drop("atomflow");
  std::shared_ptr<spdlog::logger> logger;
  json_format = format == "json";
  if (json_format) {
    logger = std::make_shared<spdlog::logger>("atomflow", std::make_shared<JsonSink>());
  } else {
    logger = spdlog::stderr_color_mt("atomflow");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

void Event(std::string_view name, std::initializer_list<Field> fields) {
  if (!spdlog::default_logger_raw()->should_log(spdlog::level::info)) return;
  if (json_format) {
    std::vector<Field> copy(fields);
    current_fields = &copy;
    spdlog::info("{}", name);
    current_fields = nullptr;
    return;
  }
  std::string text(name);
  for (const Field& field : fields) text += " " + TextField(field);
  spdlog::info("{}", text);
}

}  // namespace atomflow::log
