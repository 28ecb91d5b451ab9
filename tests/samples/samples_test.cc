// Google's public Cloud Workflows samples, run unchanged: every core-language and http.*
// sample in shared/samples/cloud-workflows (read in place, never copied) runs on a real engine
// whose HTTP requests are routed, by the testing host map (ATOMFLOW_HTTP_HOST_MAP), to one
// loopback server that fakes the hosts the samples call.
//
// Each sample has tests/samples/expected/<name>.json, in the format of the tests/workflows
// cases (see tests/engine/workflow_cases_test.cc: argument, state, result, error, logs,
// requests), plus:
//   "sample":   the file, relative to shared/samples/cloud-workflows
//   "hosts":    scripted answers, {"METHOD host/path": [answer, ...]}, served in order, the last
//               one repeated; an answer is {"status": 200, "json": value} or {"status": 200,
//               "text": "...", "content_type": "text/html"}. Hosts without a script that the
//               samples call for real (timeapi.io, en.wikipedia.org, ...) have built-in fakes
//               answering with the JSON shapes of the real APIs.
//   "env":      environment variables the execution sees (sys.get_env)
//   "requests": every request the fake hosts received, as "METHOD host/path?query", in order;
//               "requests_any_order": true compares them as a set (parallel branches)
//   "skip":     a reason to skip the sample (GTEST_SKIP), e.g. "parallel not implemented"
// Sleeps and retry backoff are scaled to zero (ATOMFLOW_SLEEP_SCALE), so no sample waits and
// none depends on timing.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "connectors/connectors.h"
#include "connectors/http_client.h"
#include "lang/ast.h"
#include "support/http_test_server.h"
#include "support/workflow_check.h"
#include "value/value.h"

namespace atomflow::samples {
namespace {

namespace fs = std::filesystem;
using testing::json;

// One sample and its expected outcome.
struct SampleCase {
  std::string name;  // a valid gtest name
  fs::path expected;
};

void PrintTo(const SampleCase& sample, std::ostream* out) { *out << sample.expected.string(); }

fs::path SamplesDir() { return fs::path(ATOMFLOW_SAMPLES_DIR); }

std::vector<SampleCase> DiscoverSamples() {
  std::vector<SampleCase> samples;
  fs::path root = fs::path(ATOMFLOW_SOURCE_DIR) / "tests" / "samples" / "expected";
  for (const fs::directory_entry& file : fs::directory_iterator(root)) {
    if (file.path().extension() != ".json") continue;
    std::string name = file.path().stem().string();
    std::replace_if(
        name.begin(), name.end(), [](unsigned char c) { return !std::isalnum(c); }, '_');
    samples.push_back({name, file.path()});
  }
  std::sort(samples.begin(), samples.end(),
            [](const SampleCase& a, const SampleCase& b) { return a.name < b.name; });
  return samples;
}

// One answer of a fake host.
struct Answer {
  int status = 200;
  std::string body;
  std::string content_type;
};

Answer JsonAnswer(const json& body, int status = 200) {
  return {status, body.dump(), "application/json; charset=utf-8"};
}

Answer TextAnswer(std::string body, std::string content_type = "text/plain; charset=utf-8") {
  return {200, std::move(body), std::move(content_type)};
}

Answer ScriptedAnswer(const json& script) {
  int status = script.value("status", 200);
  if (script.contains("json")) return JsonAnswer(script["json"], status);
  Answer answer = TextAnswer(script.value("text", ""), script.value("content_type", "text/plain"));
  answer.status = status;
  return answer;
}

std::string HostOf(const httplib::Request& request) {
  std::string host = request.get_header_value("Host");
  return host.substr(0, host.find(':'));
}

// timeapi.io's GET /api/Time/current/zone, at a fixed instant: Friday 17 May 2024, 10:30 in
// Amsterdam, so the samples that branch on the day of the week are deterministic.
Answer TimeApi(const httplib::Request& request) {
  if (request.path != "/api/Time/current/zone") return JsonAnswer({{"error", "not found"}}, 404);
  return JsonAnswer({{"year", 2024},
                     {"month", 5},
                     {"day", 17},
                     {"hour", 10},
                     {"minute", 30},
                     {"seconds", 0},
                     {"milliSeconds", 0},
                     {"dateTime", "2024-05-17T10:30:00"},
                     {"date", "05/17/2024"},
                     {"time", "10:30"},
                     {"timeZone", request.get_param_value("timeZone")},
                     {"dayOfWeek", "Friday"},
                     {"dstActive", true}});
}

// Wikipedia's opensearch API: [term, [titles], [descriptions], [urls]].
Answer Wikipedia(const httplib::Request& request) {
  static const std::map<std::string, std::vector<std::string>> kTitles = {
      {"Friday", {"Friday", "Friday the 13th", "Friday Night Lights (TV series)"}},
      {"us", {"US", "USA Today", "USB"}},
      {"Cat", {"Cat", "Caterpillar", "Catalonia"}}};
  std::string term = request.get_param_value("search");
  if (request.path != "/w/api.php" || request.get_param_value("action") != "opensearch") {
    return JsonAnswer({{"error", {{"code", "badvalue"}}}}, 400);
  }
  auto titles = kTitles.find(term);
  json names = titles == kTitles.end() ? json::array() : json(titles->second);
  json descriptions = json::array();
  json urls = json::array();
  for (const json& name : names) {
    descriptions.push_back("");
    std::string page = name.get<std::string>();
    std::replace(page.begin(), page.end(), ' ', '_');
    urls.push_back("https://en.wikipedia.org/wiki/" + page);
  }
  return JsonAnswer(json::array({term, names, descriptions, urls}));
}

// The service-chaining demo's services: randomgen (a fixed "random" number), multiply (twice
// the input), math.js's GET /v4/?expr= (plain text) and floor (plain text).
Answer ServiceChaining(const std::string& host, const httplib::Request& request) {
  if (host == "api.mathjs.org") {
    std::string expr = request.get_param_value("expr");
    double argument = std::stod(expr.substr(expr.find('(') + 1));
    char text[64];
    snprintf(text, sizeof(text), "%.14g", std::log(argument));
    return TextAnswer(text);
  }
  json body = json::parse(request.body, nullptr, false);
  if (request.path == "/randomgen") return JsonAnswer({{"random", 42}});
  if (request.path == "/multiply")
    return JsonAnswer({{"multiplied", 2 * body["input"].get<int>()}});
  double input = std::stod(body["input"].get<std::string>());
  return TextAnswer(std::to_string(static_cast<int64_t>(std::floor(input))));
}

// The fake hosts: one loopback server answering for every host the samples call, by the Host
// header the host map keeps.
class FakeHosts {
 public:
  explicit FakeHosts(const json& scripts) : scripts_(scripts) {
    httplib::Server& routes = server_.routes();
    auto handler = [this](const httplib::Request& request, httplib::Response& response) {
      Answer answer = Respond(request);
      response.status = answer.status;
      response.set_content(answer.body, answer.content_type.c_str());
    };
    routes.Get(".*", handler);
    routes.Post(".*", handler);
    routes.Put(".*", handler);
    routes.Patch(".*", handler);
    routes.Delete(".*", handler);
    server_.Start();
  }

  std::string BaseUrl() const { return server_.Url(""); }

  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  Answer Respond(const httplib::Request& request) {
    std::string host = HostOf(request);
    std::string key = request.method + " " + host + request.path;
    size_t served = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(request.method + " " + host + request.target);
      served = served_[key]++;
    }
    if (scripts_.contains(key)) {
      const json& answers = scripts_[key];
      return ScriptedAnswer(answers[std::min(served, answers.size() - 1)]);
    }
    if (host == "timeapi.io") return TimeApi(request);
    if (host == "en.wikipedia.org") return Wikipedia(request);
    if (host == "api.mathjs.org" || host.ends_with("cloudfunctions.net") ||
        host.starts_with("floor-")) {
      return ServiceChaining(host, request);
    }
    return JsonAnswer({{"error", "no fake for " + key}}, 404);
  }

  json scripts_;
  testing::HttpTestServer server_;
  std::mutex mutex_;
  std::vector<std::string> requests_;
  std::map<std::string, size_t> served_;
};

class SampleTest : public ::testing::TestWithParam<SampleCase> {
 protected:
  void SetUp() override { expected_ = testing::ReadJsonFile(GetParam().expected); }

  void TearDown() override {
    unsetenv(connectors::kHttpHostMapVariable);
    unsetenv("ATOMFLOW_SLEEP_SCALE");
    json env = expected_.value("env", json::object());  // items() must not outlive it
    for (const auto& [name, value] : env.items()) unsetenv(name.c_str());
  }

  // Points every host at the fakes, and sets the sample's environment.
  void Route(const FakeHosts& hosts) {
    setenv(connectors::kHttpHostMapVariable, ("*=" + hosts.BaseUrl()).c_str(), 1);
    setenv("ATOMFLOW_SLEEP_SCALE", "0", 1);
    json env = expected_.value("env", json::object());  // items() must not outlive it
    for (const auto& [name, value] : env.items()) {
      setenv(name.c_str(), value.get<std::string>().c_str(), 1);
    }
  }

  json expected_;
  testing::TempDir temp_;
  testing::RecordingProgress progress_;
};

void CheckRequests(const json& expected, std::vector<std::string> actual, bool any_order) {
  json wanted = expected;
  if (any_order) {
    std::sort(actual.begin(), actual.end());
    std::sort(wanted.begin(), wanted.end());
  }
  testing::ExpectMatches(wanted, json(actual), "requests");
}

TEST_P(SampleTest, Run) {
  if (expected_.contains("skip")) GTEST_SKIP() << expected_["skip"].get<std::string>();
  fs::path file = SamplesDir() / expected_.at("sample").get<std::string>();
  ASSERT_TRUE(fs::exists(file)) << file << " is missing: is shared/ beside the source tree?";
  Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflowFile(file.string());
  ASSERT_TRUE(workflow.ok()) << workflow.message();

  FakeHosts hosts(expected_.value("hosts", json::object()));
  Route(hosts);
  Value argument = FromJson(expected_.value("argument", json(nullptr)));
  store::ExecutionRecord record =
      testing::RunToEnd(std::move(workflow).value(), std::move(argument), temp_.path(),
                        connectors::MakeConnectors, &progress_);

  std::string state = expected_.at("state").get<std::string>();
  ASSERT_EQ(record.state, state) << "result: " << record.result << "\nerror: " << record.error;
  if (state == "SUCCEEDED") {
    testing::ExpectMatches(expected_["result"], testing::ParseOrNull(record.result), "result");
  } else {
    testing::CheckError(expected_.value("error", json::object()),
                        testing::ParseOrNull(record.error));
  }
  if (expected_.contains("logs")) {
    testing::ExpectMatches(expected_["logs"], json(progress_.logs()), "logs");
  }
  if (expected_.contains("requests")) {
    CheckRequests(expected_["requests"], hosts.requests(),
                  expected_.value("requests_any_order", false));
  }
}

INSTANTIATE_TEST_SUITE_P(Samples, SampleTest, ::testing::ValuesIn(DiscoverSamples()),
                         [](const ::testing::TestParamInfo<SampleCase>& info) {
                           return info.param.name;
                         });

// Every sample in the shared folder has an expectation, so a sample added there is not
// silently left out.
TEST(SampleCoverage, EverySampleHasAnExpectation) {
  std::vector<std::string> covered;
  for (const SampleCase& sample : DiscoverSamples()) {
    covered.push_back(testing::ReadJsonFile(sample.expected).at("sample").get<std::string>());
  }
  for (const fs::directory_entry& file : fs::recursive_directory_iterator(SamplesDir())) {
    if (file.path().extension() != ".yaml") continue;
    std::string relative = fs::relative(file.path(), SamplesDir()).string();
    EXPECT_NE(std::find(covered.begin(), covered.end(), relative), covered.end())
        << relative << " has no tests/samples/expected/*.json";
  }
}

}  // namespace
}  // namespace atomflow::samples
