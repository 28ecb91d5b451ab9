// Language behaviour as data: runs every tests/workflows/<feature>/<case>.yaml through the real
// engine (SQLite store, real connectors, a loopback HTTP server) and compares the outcome with
// the expected outcome in <case>.json beside it.
//
// The expected outcome is a JSON object:
//   "argument": the execution argument (optional, default null)
//   "state":    "SUCCEEDED", "FAILED" or "INVALID" (the loader or validator rejects the file)
//   "result":   the value main returns (SUCCEEDED)
//   "error":    for FAILED, checks of the raised value; for INVALID, of the load message:
//               "tags": tags the error map must carry; "message_contains": a string, or a
//               list of strings, that the message (or a raised string) must contain;
//               "fields": a map whose entries must match the error map's; "equals": the
//               whole raised value
//   "logs":     every sys.log line of the execution, as "SEVERITY: text", in order (optional)
//   "requests": every request the test server received, as "METHOD /path", in order (optional)
// Expected values compare exactly, integers and doubles apart; the string "$double",
// "$int", "$string" or "$any" matches any value of that kind.
//
// Workflows reach the server through sys.get_env("TEST_SERVER_URL"); TEST_CLOSED_URL names a
// loopback port nobody listens on. A case whose file name starts with `known_gap_` asserts
// Google's documented behaviour that the engine does not match yet: it is disabled.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "connectors/connectors.h"
#include "engine/engine.h"
#include "lang/ast.h"
#include "support/http_test_server.h"
#include "value/value.h"

namespace atomflow::engine {
namespace {

namespace fs = std::filesystem;
using json = ::atomflow::Json;  // ordered, as the engine keeps JSON

constexpr char kGapPrefix[] = "known_gap_";
// Guards the run against a hung execution; no case comes near it.
constexpr auto kHangGuard = std::chrono::seconds(30);

// One workflow file and its expected outcome.
struct WorkflowCase {
  std::string name;  // feature_case, a valid gtest name
  fs::path workflow;
  fs::path expected;
};

// gtest prints a failing case's parameter: its file, not its bytes.
void PrintTo(const WorkflowCase& test_case, std::ostream* out) {
  *out << test_case.workflow.string();
}

std::string TestNameOf(const std::string& feature, const std::string& stem) {
  std::string name = feature + "_" + stem;
  std::replace_if(
      name.begin(), name.end(), [](unsigned char c) { return !std::isalnum(c); }, '_');
  return name;
}

// Every <feature>/<case>.yaml with a <case>.json beside it, sorted by name.
std::vector<WorkflowCase> DiscoverCases() {
  fs::path root = fs::path(ATOMFLOW_SOURCE_DIR) / "tests" / "workflows";
  std::vector<WorkflowCase> cases;
  for (const fs::directory_entry& feature : fs::directory_iterator(root)) {
    if (!feature.is_directory()) continue;
    for (const fs::directory_entry& file : fs::directory_iterator(feature.path())) {
      fs::path expected = fs::path(file.path()).replace_extension(".json");
      if (file.path().extension() != ".yaml" || !fs::exists(expected)) continue;
      std::string stem = file.path().stem().string();
      bool gap = stem.rfind(kGapPrefix, 0) == 0;
      std::string name = TestNameOf(feature.path().filename().string(), stem);
      cases.push_back({gap ? "DISABLED_" + name : name, file.path(), expected});
    }
  }
  std::sort(cases.begin(), cases.end(),
            [](const WorkflowCase& a, const WorkflowCase& b) { return a.name < b.name; });
  return cases;
}

json ReadJsonFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

// Records what a user would watch: the sys.log lines of executions.
class RecordingProgress : public ProgressSink {
 public:
  void OnStep(const StepReport&) override {}
  void OnLog(const std::string&, const std::string&, const std::string& severity,
             const std::string& text) override {
    std::lock_guard<std::mutex> lock(mutex_);
    logs_.push_back(severity + ": " + text);
  }
  void OnJobLog(const std::string&, const std::string&, const std::string&) override {}
  void OnTransaction(const std::string&, const std::string&, const std::string&,
                     const std::string&) override {}

  std::vector<std::string> logs() {
    std::lock_guard<std::mutex> lock(mutex_);
    return logs_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> logs_;
};

// The loopback server the HTTP cases call, and the requests it received.
class CaseServer {
 public:
  CaseServer() {
    httplib::Server& routes = server_.routes();
    routes.Get("/json", [this](const httplib::Request& request, httplib::Response& response) {
      Record(request);
      response.set_content(R"({"greeting": "hello", "items": [1, 2, 3]})", "application/json");
    });
    routes.Get("/text", [this](const httplib::Request& request, httplib::Response& response) {
      Record(request);
      response.set_content("plain text", "text/plain");
    });
    routes.Get("/echo", [this](const auto& request, auto& response) { Echo(request, response); });
    routes.Post("/echo", [this](const auto& request, auto& response) { Echo(request, response); });
    routes.Get(R"(/status/(\d+))",
               [this](const auto& request, auto& response) { StatusRoute(request, response); });
    routes.Post(R"(/status/(\d+))",
                [this](const auto& request, auto& response) { StatusRoute(request, response); });
    routes.Get(R"(/flaky/(\w+)/(\d+))",
               [this](const auto& request, auto& response) { Flaky(request, response); });
    for (const char* path : {"/deploy", "/undeploy", "/register", "/unregister"}) {
      routes.Post(path, [this](const auto& request, auto& response) { Echo(request, response); });
    }
    server_.Start();
  }

  std::string BaseUrl() const { return server_.Url(""); }

  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  void Record(const httplib::Request& request) {
    std::lock_guard<std::mutex> lock(mutex_);
    requests_.push_back(request.method + " " + request.path);
  }

  // Answers with what the server saw: method, path, query, content type and the body (parsed
  // when it is JSON).
  void Echo(const httplib::Request& request, httplib::Response& response) {
    Record(request);
    json seen = {{"method", request.method},
                 {"path", request.path},
                 {"content_type", request.get_header_value("Content-Type")}};
    seen["query"] = json::object();
    for (const auto& [name, value] : request.params) seen["query"][name] = value;
    json body = json::parse(request.body, nullptr, false);
    seen["body"] = body.is_discarded() ? json(request.body) : body;
    response.set_content(seen.dump(), "application/json");
  }

  void StatusRoute(const httplib::Request& request, httplib::Response& response) {
    Record(request);
    response.status = std::stoi(request.matches[1].str());
    response.set_content(json{{"error", "status " + request.matches[1].str()}}.dump(),
                         "application/json");
  }

  // /flaky/<key>/<n>: 503 for the first n requests with that key, then 200 with the count.
  void Flaky(const httplib::Request& request, httplib::Response& response) {
    Record(request);
    int count = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      count = ++flaky_counts_[request.matches[1].str()];
    }
    bool fail = count <= std::stoi(request.matches[2].str());
    response.status = fail ? 503 : 200;
    response.set_content(json{{"attempt", count}}.dump(), "application/json");
  }

  testing::HttpTestServer server_;
  std::mutex mutex_;
  std::vector<std::string> requests_;
  std::map<std::string, int> flaky_counts_;
};

// A fresh temporary folder, removed with its contents at the end of the case.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "atomflow_wf_XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

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

// Deep comparison that keeps integers and doubles apart and honours placeholders. On a
// mismatch, *where names the path of the first difference.
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

// The text a message check looks at: a raised string, or the error map's message.
std::string MessageOf(const json& error) {
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object() && error.contains("message") && error["message"].is_string()) {
    return error["message"].get<std::string>();
  }
  return error.dump();
}

void CheckError(const json& expected, const json& actual) {
  if (expected.contains("equals")) ExpectMatches(expected["equals"], actual, "error");
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

json ParseOrNull(const std::string& text) {
  return text.empty() ? json(nullptr) : json::parse(text, nullptr, false);
}

class WorkflowCaseTest : public ::testing::TestWithParam<WorkflowCase> {
 protected:
  void SetUp() override {
    setenv("TEST_SERVER_URL", server_.BaseUrl().c_str(), 1);
    std::string closed = "http://127.0.0.1:" + std::to_string(testing::ClosedLoopbackPort());
    setenv("TEST_CLOSED_URL", closed.c_str(), 1);
  }

  // Runs the loaded workflow to its end and returns its durable record.
  store::ExecutionRecord RunToEnd(std::shared_ptr<const lang::Workflow> workflow, Value argument) {
    EngineOptions options;
    options.store_path = (temp_.path() / "atomflow.db").string();
    options.workers = 2;
    Result<std::unique_ptr<Engine>> engine =
        Engine::Open(options, connectors::MakeConnectors, &progress_);
    EXPECT_TRUE(engine.ok()) << engine.message();
    if (!engine.ok()) return {};

    Result<std::string> id = (*engine)->Start(std::move(workflow), std::move(argument));
    EXPECT_TRUE(id.ok()) << id.message();
    if (!id.ok()) return {};
    std::future<store::ExecutionRecord> done =
        std::async(std::launch::async, [&] { return (*engine)->Wait(*id); });
    if (done.wait_for(kHangGuard) == std::future_status::timeout) {
      ADD_FAILURE() << "the execution did not finish; cancelling it";
      (*engine)->Cancel(*id);
    }
    return done.get();
  }

  TempDir temp_;
  CaseServer server_;
  RecordingProgress progress_;
};

TEST_P(WorkflowCaseTest, Run) {
  const WorkflowCase& test_case = GetParam();
  json expected = ReadJsonFile(test_case.expected);
  std::string state = expected.at("state").get<std::string>();

  Result<std::shared_ptr<const lang::Workflow>> workflow =
      lang::LoadWorkflowFile(test_case.workflow.string());
  if (state == "INVALID") {
    ASSERT_FALSE(workflow.ok()) << "the workflow loaded, but the case expects it rejected";
    CheckError(expected.value("error", json::object()), json(workflow.message()));
    return;
  }
  ASSERT_TRUE(workflow.ok()) << workflow.message();

  Value argument = FromJson(expected.value("argument", json(nullptr)));
  store::ExecutionRecord record = RunToEnd(std::move(workflow).value(), std::move(argument));
  json error = ParseOrNull(record.error);
  ASSERT_EQ(record.state, state) << "result: " << record.result << "\nerror: " << record.error;

  if (state == "SUCCEEDED") ExpectMatches(expected["result"], ParseOrNull(record.result), "result");
  if (state == "FAILED") CheckError(expected.value("error", json::object()), error);
  if (expected.contains("logs")) ExpectMatches(expected["logs"], json(progress_.logs()), "logs");
  if (expected.contains("requests")) {
    ExpectMatches(expected["requests"], json(server_.requests()), "requests");
  }
}

INSTANTIATE_TEST_SUITE_P(Workflows, WorkflowCaseTest, ::testing::ValuesIn(DiscoverCases()),
                         [](const ::testing::TestParamInfo<WorkflowCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace atomflow::engine
