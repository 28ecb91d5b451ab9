// What the data-file tests of workflows share: running one workflow through a real engine,
// and checking its outcome against an expected outcome written as JSON.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "lang/ast.h"
#include "value/value.h"

namespace atomflow::testing {

using json = ::atomflow::Json;  // ordered, as the engine keeps JSON

json ReadJsonFile(const std::filesystem::path& path);

// The parsed text, or null for an empty one.
json ParseOrNull(const std::string& text);

// Deep comparison that keeps integers and doubles apart and honours the placeholders
// "$double", "$int", "$string" and "$any". On a mismatch, *where names the path of the first
// difference.
bool Matches(const json& expected, const json& actual, std::string* where, std::string path);

// A gtest failure naming the first difference, what being the thing compared.
void ExpectMatches(const json& expected, const json& actual, const std::string& what);

// Checks an error against an expected error: "tags", "message_contains" (a string or a list),
// "fields" and "equals" (the whole value; the stack trace keys the engine adds to a failed
// execution's error, context and stack_trace, are left out unless expected names them).
void CheckError(const json& expected, const json& actual);

// Records what a user would watch: the sys.log lines of executions, as "SEVERITY: text".
class RecordingProgress : public engine::ProgressSink {
 public:
  void OnStep(const engine::StepReport&) override {}
  void OnLog(const std::string&, const std::string&, const std::string& severity,
             const std::string& text) override;
  void OnJobLog(const std::string&, const std::string&, const std::string&) override {}
  void OnTransaction(const std::string&, const std::string&, const std::string&,
                     const std::string&) override {}

  std::vector<std::string> logs();

 private:
  std::mutex mutex_;
  std::vector<std::string> logs_;
};

// A fresh temporary folder, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// An engine with `workers` workers whose store lives in folder; null, with a gtest failure,
// when it does not open.
std::unique_ptr<engine::Engine> OpenEngineIn(const std::filesystem::path& folder, int workers,
                                             engine::Engine::HandlerFactory factory,
                                             engine::ProgressSink* progress);

// Runs workflow with argument on a fresh engine whose store lives in folder, and returns the
// execution's durable record. A hung execution is cancelled after a generous guard, with a
// gtest failure.
store::ExecutionRecord RunToEnd(std::shared_ptr<const lang::Workflow> workflow, Value argument,
                                const std::filesystem::path& folder,
                                engine::Engine::HandlerFactory factory,
                                engine::ProgressSink* progress);

}  // namespace atomflow::testing
