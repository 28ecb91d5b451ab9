// Drain (SIGTERM) on a real engine: executions sleeping and executions in a slow HTTP call
// are handed to a second engine on the same store, which finishes every one of them with each
// HTTP call's effect applied once.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "connectors/connectors.h"
#include "engine/engine.h"
#include "lang/ast.h"
#include "support/http_test_server.h"
#include "support/workflow_check.h"

namespace atomflow::engine {
namespace {

using testing::json;

// Sleeps, then reports.
constexpr const char* kSleeper = R"(
main:
  params: [args]
  steps:
    - nap:
        call: sys.sleep
        args:
          seconds: 2
    - report:
        call: http.post
        args:
          url: ${args.after}
          body: {from: sleeper}
        result: reply
    - done:
        return: ${reply.body}
)";

// A slow call, then another one.
constexpr const char* kCaller = R"(
main:
  params: [args]
  steps:
    - slow:
        call: http.post
        args:
          url: ${args.work}
          body: {from: caller}
        result: first
    - report:
        call: http.post
        args:
          url: ${args.after}
          body: {from: caller}
        result: second
    - done:
        return:
          - ${first.body}
          - ${second.body}
)";

// A participant that applies each request once per Idempotency-Key, as the engine's contract
// with participants asks. /work holds its answer until Release(); /after answers at once.
class Participant {
 public:
  Participant() {
    server_.routes().Post("/work", [this](const httplib::Request& req, httplib::Response& res) {
      Arrive(req);
      std::unique_lock<std::mutex> lock(mutex_);
      released_cv_.wait(lock, [this] { return released_; });
      Apply(req, res);
    });
    server_.routes().Post("/after", [this](const httplib::Request& req, httplib::Response& res) {
      Arrive(req);
      std::lock_guard<std::mutex> lock(mutex_);
      Apply(req, res);
    });
    server_.Start();
  }
  ~Participant() { Release(); }

  std::string Url(const std::string& path) const { return server_.Url(path); }

  void Release() {
    std::lock_guard<std::mutex> lock(mutex_);
    released_ = true;
    released_cv_.notify_all();
  }

  // Requests received and effects applied, by path and Idempotency-Key.
  std::map<std::string, int> arrivals() {
    std::lock_guard<std::mutex> lock(mutex_);
    return arrivals_;
  }
  std::map<std::string, int> applied() {
    std::lock_guard<std::mutex> lock(mutex_);
    return applied_;
  }
  int ArrivalsAt(const std::string& path) {
    int count = 0;
    for (const auto& [key, n] : arrivals()) count += key.rfind(path, 0) == 0 ? n : 0;
    return count;
  }

 private:
  static std::string KeyOf(const httplib::Request& req) {
    return req.path + " " + req.get_header_value("Idempotency-Key");
  }
  void Arrive(const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++arrivals_[KeyOf(req)];
  }
  void Apply(const httplib::Request& req, httplib::Response& res) {
    int& applied = applied_[KeyOf(req)];
    if (applied == 0) ++applied;
    res.set_content(R"({"done": true})", "application/json");
  }

  testing::HttpTestServer server_;
  std::mutex mutex_;
  std::condition_variable released_cv_;
  bool released_ = false;
  std::map<std::string, int> arrivals_;
  std::map<std::string, int> applied_;
};

class DrainTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> OpenEngine() {
    return testing::OpenEngineIn(temp_.path(), 2, connectors::MakeConnectors, &progress_);
  }

  std::string Start(Engine& engine, const char* source) {
    Result<std::shared_ptr<const lang::Workflow>> workflow =
        lang::LoadWorkflow("drain.yaml", source);
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    if (!workflow.ok()) return "";
    Value argument =
        FromJson(Json{{"work", participant_.Url("/work")}, {"after", participant_.Url("/after")}});
    Result<std::string> id = engine.Start(std::move(workflow).value(), argument);
    EXPECT_TRUE(id.ok()) << id.message();
    return id.ok() ? *id : "";
  }

  // Two sleepers in their sleep and two callers in their slow call.
  std::vector<std::string> StartAll(Engine& engine) {
    std::vector<std::string> ids;
    for (int i = 0; i < 2; ++i) ids.push_back(Start(engine, kSleeper));
    for (int i = 0; i < 2; ++i) ids.push_back(Start(engine, kCaller));
    Poll([&] { return participant_.ArrivalsAt("/work") == 2; }, "the slow calls to arrive");
    return ids;
  }

  static void Poll(const std::function<bool()>& done, const std::string& what) {
    for (int i = 0; i < 3000; ++i) {
      if (done()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "timed out waiting for " << what;
  }

  // The second process: recovers everything the first left ACTIVE and runs it to its end.
  void RecoverAndFinish(const std::vector<std::string>& ids) {
    std::unique_ptr<Engine> engine = OpenEngine();
    ASSERT_NE(engine, nullptr);
    Result<std::vector<std::string>> resumed = engine->Recover();
    ASSERT_TRUE(resumed.ok()) << resumed.message();
    EXPECT_EQ(resumed->size(), ids.size());
    for (const std::string& id : ids) {
      store::ExecutionRecord record = engine->Wait(id);
      EXPECT_EQ(record.state, "SUCCEEDED") << id << ": " << record.error;
    }
  }

  void ExpectEachEffectAppliedOnce(size_t calls) {
    std::map<std::string, int> applied = participant_.applied();
    EXPECT_EQ(applied.size(), calls);
    for (const auto& [key, count] : applied) EXPECT_EQ(count, 1) << key;
  }

  testing::TempDir temp_;
  testing::RecordingProgress progress_;
  Participant participant_;
};

// Drain lets the slow calls come back and journals them; the next call is not issued. The
// second engine answers the slow calls from the journal and sends each other call once.
TEST_F(DrainTest, EffectsInFlightFinishBeforeReleaseAndNoCompletedCallIsSentAgain) {
  std::unique_ptr<Engine> engine = OpenEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<std::string> ids = StartAll(*engine);

  std::thread drain([&] { engine->Drain(60); });
  // Draining shows to users as refusals; then the held answers may go.
  Poll(
      [&] {
        return engine->DeliverCallback("x", "y", "POST", Json::object()).code() ==
               StatusCode::kUnavailable;
      },
      "the drain to start");
  participant_.Release();
  drain.join();

  EXPECT_EQ(engine->ActiveCount(), 0u);
  Result<std::string> refused = engine->Start(
      lang::LoadWorkflow("late.yaml", "main:\n  steps:\n    - x:\n        return: 1\n").value(),
      Value());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  engine.reset();

  RecoverAndFinish(ids);
  for (const auto& [key, count] : participant_.arrivals()) EXPECT_EQ(count, 1) << key;
  ExpectEachEffectAppliedOnce(6);  // 2 slow calls, and 4 reports
}

// Drain gives up on calls that outlive its timeout: the second engine sends them again with
// the same Idempotency-Key, so the participant applies each once.
TEST_F(DrainTest, CallsOutlivingTheTimeoutAreSentAgainWithTheSameKey) {
  std::unique_ptr<Engine> engine = OpenEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<std::string> ids = StartAll(*engine);

  engine->Drain(0.05);
  engine.reset();
  participant_.Release();
  Poll([&] { return participant_.applied().size() >= 2 && participant_.ArrivalsAt("/work") == 2; },
       "the first slow calls to apply");

  RecoverAndFinish(ids);
  ExpectEachEffectAppliedOnce(6);
  // Each slow call came twice under one key; everything else once.
  for (const auto& [key, count] : participant_.arrivals()) {
    EXPECT_EQ(count, key.rfind("/work", 0) == 0 ? 2 : 1) << key;
  }
}

}  // namespace
}  // namespace atomflow::engine
