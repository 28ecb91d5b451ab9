// Running a workflow to its end on a real engine, and comparing outcomes with expectations.
#include "support/workflow_check.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <future>
#include <sstream>

namespace atomflow::testing {

namespace fs = std::filesystem;

namespace {

// Guards the run against a hung execution; no case comes near it.
constexpr auto kHangGuard = std::chrono::seconds(30);

bool IsPlaceholder(const json& expected) {
  static const std::vector<std::string> kPlaceholders = {"$double", "$int", "$string", "$any"};
  return expected.is_string() && std::find(kPlaceholders.begin(), kPlaceholders.end(),
                                           expected.get<std::string>()) != kPlaceholders.end();
}

bool MatchesPlaceholder(const std::string& placeholder, const json& actual) {
  if (placeholder == "$double") return actual.is_number_float();
  if (placeholder == "$int") return actual.is_number_integer();
  if (placeholder == "$string") return actual.is_string();
  return true;
}

// The text a message check looks at: a raised string, or the error map's message.
std::string MessageOf(const json& error) {
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object() && error.contains("message") && error["message"].is_string()) {
    return error["message"].get<std::string>();
  }
  return error.dump();
}

// The error as raised: without the stack trace keys the engine adds at the top, unless the
// expected value asks for them.
json WithoutTrace(const json& expected, json actual) {
  if (!actual.is_object()) return actual;
  for (const char* key : {"context", "stack_trace"}) {
    if (!(expected.is_object() && expected.contains(key))) actual.erase(key);
  }
  return actual;
}

}  // namespace

json ReadJsonFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

json ParseOrNull(const std::string& text) {
  return text.empty() ? json(nullptr) : json::parse(text, nullptr, false);
}

bool Matches(const json& expected, const json& actual, std::string* where, std::string path) {
  if (IsPlaceholder(expected)) {
    if (MatchesPlaceholder(expected.get<std::string>(), actual)) return true;
  } else if (expected.is_number() && actual.is_number()) {
    if (expected.is_number_float() == actual.is_number_float() && expected == actual) {
      return true;
    }
  } else if (expected.is_array() && actual.is_array() && expected.size() == actual.size()) {
    for (size_t i = 0; i < expected.size(); ++i) {
      if (!Matches(expected[i], actual[i], where, path + "[" + std::to_string(i) + "]")) {
        return false;
      }
    }
    return true;
  } else if (expected.is_object() && actual.is_object() && expected.size() == actual.size()) {
    for (const auto& [key, value] : expected.items()) {
      json missing = "<missing>";
      const json& got = actual.contains(key) ? actual[key] : missing;
      if (!Matches(value, got, where, path + "." + key)) return false;
    }
    return true;
  } else if (expected.type() == actual.type() && expected == actual) {
    return true;
  }
  *where =
      (path.empty() ? "value" : path) + ": expected " + expected.dump() + ", got " + actual.dump();
  return false;
}

void ExpectMatches(const json& expected, const json& actual, const std::string& what) {
  std::string where;
  EXPECT_TRUE(Matches(expected, actual, &where, "")) << what << " differs at " << where;
}

void CheckError(const json& expected, const json& actual) {
  if (expected.contains("equals")) {
    ExpectMatches(expected["equals"], WithoutTrace(expected["equals"], actual), "error");
  }
  json parts = expected.value("message_contains", json::array());
  if (!parts.is_array()) parts = json::array({parts});
  for (const json& part : parts) {
    std::string message = MessageOf(actual);
    EXPECT_TRUE(message.find(part.get<std::string>()) != std::string::npos)
        << "error message lacks \"" << part.get<std::string>() << "\": " << message;
  }
  json tags = expected.value("tags", json::array());
  for (const json& tag : tags) {
    bool tagged =
        actual.is_object() && actual.contains("tags") && actual["tags"].is_array() &&
        std::find(actual["tags"].begin(), actual["tags"].end(), tag) != actual["tags"].end();
    EXPECT_TRUE(tagged) << "error lacks tag " << tag.dump() << ": " << actual.dump();
  }
  json fields = expected.value("fields", json::object());  // items() must not outlive it
  for (const auto& [key, value] : fields.items()) {
    ASSERT_TRUE(actual.is_object() && actual.contains(key))
        << "error lacks field '" << key << "': " << actual.dump();
    ExpectMatches(value, actual[key], "error field '" + key + "'");
  }
}

void RecordingProgress::OnLog(const std::string&, const std::string&, const std::string& severity,
                              const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  logs_.push_back(severity + ": " + text);
}

std::vector<std::string> RecordingProgress::logs() {
  std::lock_guard<std::mutex> lock(mutex_);
  return logs_;
}

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "atomflow_wf_XXXXXX").string();
  path_ = mkdtemp(pattern.data());
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

std::unique_ptr<engine::Engine> OpenEngineIn(const fs::path& folder, int workers,
                                             engine::Engine::HandlerFactory factory,
                                             engine::ProgressSink* progress) {
  engine::EngineOptions options;
  options.store_path = (folder / "atomflow.db").string();
  options.workers = workers;
  Result<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Open(options, std::move(factory), progress);
  EXPECT_TRUE(engine.ok()) << engine.message();
  return engine.ok() ? std::move(engine).value() : nullptr;
}

store::ExecutionRecord RunToEnd(std::shared_ptr<const lang::Workflow> workflow, Value argument,
                                const fs::path& folder, engine::Engine::HandlerFactory factory,
                                engine::ProgressSink* progress) {
  std::unique_ptr<engine::Engine> engine = OpenEngineIn(folder, 2, std::move(factory), progress);
  if (engine == nullptr) return {};

  Result<std::string> id = engine->Start(std::move(workflow), std::move(argument));
  EXPECT_TRUE(id.ok()) << id.message();
  if (!id.ok()) return {};
  std::future<store::ExecutionRecord> done =
      std::async(std::launch::async, [&] { return engine->Wait(*id); });
  if (done.wait_for(kHangGuard) == std::future_status::timeout) {
    ADD_FAILURE() << "the execution did not finish; cancelling it";
    engine->Cancel(*id);
  }
  return done.get();
}

}  // namespace atomflow::testing
