// Callbacks on a real engine and SQLite store: requests delivered before and after the await,
// in order, timeouts, refusals, and a restart between a delivery and the await that takes it.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "connectors/connectors.h"
#include "engine/engine.h"
#include "lang/ast.h"
#include "support/workflow_check.h"

namespace atomflow::engine {
namespace {

using testing::json;

constexpr const char* kPublicUrl = "http://127.0.0.1:8080";

// create; wait for a request; return its body.
constexpr const char* kAwaitOne = R"(
main:
  steps:
    - create:
        call: events.create_callback_endpoint
        result: callback
    - wait:
        call: events.await_callback
        args:
          callback: ${callback}
          timeout: 600
        result: request
    - done:
        return: ${request.http_request.body}
)";

// Two endpoints: `data` (made first) and `gate`. Waits on gate first, so that requests to data
// can be sent before anyone awaits them; then takes two requests from data.
constexpr const char* kGated = R"(
main:
  steps:
    - create_data:
        call: events.create_callback_endpoint
        args:
          http_callback_method: PUT
        result: data
    - create_gate:
        call: events.create_callback_endpoint
        result: gate
    - first:
        call: events.await_callback
        args:
          callback: ${data}
        result: one
    - wait_gate:
        call: events.await_callback
        args:
          callback: ${gate}
          timeout: 600
    - second:
        call: events.await_callback
        args:
          callback: ${data}
          timeout: 600
        result: two
    - done:
        return:
          - ${one.http_request.body}
          - ${two.http_request.body}
          - ${two.type}
)";

constexpr const char* kTimeout = R"(
main:
  steps:
    - create:
        call: events.create_callback_endpoint
        result: callback
    - wait:
        try:
          call: events.await_callback
          args:
            callback: ${callback}
            timeout: 0.01
        except:
          as: error
          steps:
            - caught:
                return: ${error}
)";

class CallbacksTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenEngine(); }

  void OpenEngine(std::string public_url = kPublicUrl) {
    EngineOptions options;
    options.store_path = (temp_.path() / "atomflow.db").string();
    options.workers = 2;
    options.public_url = std::move(public_url);
    Result<std::unique_ptr<Engine>> engine =
        Engine::Open(options, connectors::MakeConnectors, &progress_);
    ASSERT_TRUE(engine.ok()) << engine.message();
    engine_ = std::move(engine).value();
  }

  std::string Start(const char* source) {
    Result<std::shared_ptr<const lang::Workflow>> workflow =
        lang::LoadWorkflow("callbacks.yaml", source);
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    if (!workflow.ok()) return "";
    Result<std::string> id = engine_->Start(std::move(workflow).value(), Value());
    EXPECT_TRUE(id.ok()) << id.message();
    return id.ok() ? *id : "";
  }

  // The execution's callbacks once `ready` holds for them; a bounded poll.
  json WaitForCallbacks(const std::string& id, const std::function<bool(const json&)>& ready) {
    json callbacks;
    for (int i = 0; i < 3000; ++i) {
      Result<Json> listed = engine_->ListCallbacks(id);
      EXPECT_TRUE(listed.ok()) << listed.message();
      if (listed.ok()) callbacks = json::parse(listed->dump());
      if (ready(callbacks)) return callbacks;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "callbacks of " << id << " never got ready: " << callbacks.dump();
    return callbacks;
  }

  static Json Request(const std::string& method, json body) {
    return {{"body", Json::parse(body.dump())},
            {"headers", {{"Content-Type", "application/json"}, {"Authorization", "Bearer s3"}}},
            {"method", method},
            {"query", Json::object()},
            {"url", "/callbacks"}};
  }

  json ResultOf(const std::string& id) {
    store::ExecutionRecord record = engine_->Wait(id);
    EXPECT_EQ(record.state, "SUCCEEDED") << record.error;
    return testing::ParseOrNull(record.result);
  }

  testing::TempDir temp_;
  testing::RecordingProgress progress_;
  std::unique_ptr<Engine> engine_;
};

bool OneWaiter(const json& callbacks) {
  return callbacks.size() == 1 && callbacks[0].value("waiters", 0) == 1;
}

TEST_F(CallbacksTest, RequestSentWhileTheAwaitWaitsIsReturnedWithItsBody) {
  std::string id = Start(kAwaitOne);
  json callbacks = WaitForCallbacks(id, OneWaiter);
  ASSERT_EQ(callbacks.size(), 1u);
  std::string name = callbacks[0]["name"];
  EXPECT_EQ(callbacks[0]["method"], "POST");
  EXPECT_EQ(callbacks[0]["url"], std::string(kPublicUrl) + "/v1/workflows/callbacks/executions/" +
                                     id + "/callbacks/" + name);

  Status delivered = engine_->DeliverCallback(id, name, "POST", Request("POST", {{"ok", 1}}));
  ASSERT_TRUE(delivered.ok()) << delivered.message();

  EXPECT_EQ(ResultOf(id), json({{"ok", 1}}));
}

TEST_F(CallbacksTest, RequestsSentBeforeTheAwaitWaitInOrderAndCarryNoCredentials) {
  std::string id = Start(kGated);
  json callbacks = WaitForCallbacks(
      id, [](const json& list) { return list.size() == 2 && list[0].value("waiters", 0) == 1; });
  ASSERT_EQ(callbacks.size(), 2u);
  std::string data = callbacks[0]["name"];
  std::string gate = callbacks[1]["name"];
  EXPECT_EQ(callbacks[0]["method"], "PUT");

  // `first` takes "a"; the next two queue up in order while nothing awaits data.
  ASSERT_TRUE(engine_->DeliverCallback(id, data, "put", Request("PUT", "a")).ok());
  WaitForCallbacks(id, [](const json& list) { return list[1].value("waiters", 0) == 1; });
  ASSERT_TRUE(engine_->DeliverCallback(id, data, "PUT", Request("PUT", "b")).ok());
  ASSERT_TRUE(engine_->DeliverCallback(id, data, "PUT", Request("PUT", "c")).ok());
  EXPECT_EQ(
      WaitForCallbacks(
          id, [](const json& list) { return list[0].value("pending", 0) == 2; })[0]["pending"],
      2);
  ASSERT_TRUE(engine_->DeliverCallback(id, gate, "POST", Request("POST", nullptr)).ok());

  EXPECT_EQ(ResultOf(id), json({"a", "b", "HTTP"}));
  std::vector<store::JournalEntry> journal = engine_->store()->ReadJournal(id).value();
  for (const store::JournalEntry& entry : journal) {
    EXPECT_EQ(entry.payload.dump().find("s3"), std::string::npos) << entry.payload.dump();
  }
}

TEST_F(CallbacksTest, AwaitWithoutARequestRaisesTimeoutErrorAfterItsTimeout) {
  std::string id = Start(kTimeout);
  json error = ResultOf(id);
  EXPECT_EQ(error["tags"], json({"TimeoutError"})) << error.dump();
  EXPECT_NE(error.value("message", "").find("timeout"), std::string::npos) << error.dump();
}

TEST_F(CallbacksTest, RefusesWrongMethodUnknownCallbackAndFinishedExecution) {
  std::string id = Start(kAwaitOne);
  std::string name = WaitForCallbacks(id, OneWaiter)[0]["name"];

  EXPECT_EQ(engine_->DeliverCallback(id, name, "GET", Request("GET", 1)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->DeliverCallback(id, "0000000000000000", "POST", Request("POST", 1)).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(engine_->DeliverCallback("no-such-execution", name, "POST", Request("POST", 1)).code(),
            StatusCode::kNotFound);

  ASSERT_TRUE(engine_->DeliverCallback(id, name, "POST", Request("POST", 1)).ok());
  ResultOf(id);
  EXPECT_EQ(engine_->DeliverCallback(id, name, "POST", Request("POST", 2)).code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(CallbacksTest, WithoutPublicUrlCreatingAnEndpointSaysCallbacksNeedServe) {
  engine_.reset();
  OpenEngine("");
  std::string id = Start(kAwaitOne);
  store::ExecutionRecord record = engine_->Wait(id);
  EXPECT_EQ(record.state, "FAILED");
  EXPECT_NE(record.error.find("atomflow serve"), std::string::npos) << record.error;
}

// A restart must neither lose a request that was durable but not yet taken, nor hand a taken
// one to a second await.
TEST_F(CallbacksTest, RestartBetweenDeliveryAndAwaitKeepsEachRequestForExactlyOneAwait) {
  std::string id = Start(kGated);
  json callbacks = WaitForCallbacks(
      id, [](const json& list) { return list.size() == 2 && list[0].value("waiters", 0) == 1; });
  std::string data = callbacks[0]["name"];
  std::string gate = callbacks[1]["name"];
  ASSERT_TRUE(engine_->DeliverCallback(id, data, "PUT", Request("PUT", "taken")).ok());
  WaitForCallbacks(id, [](const json& list) { return list[1].value("waiters", 0) == 1; });
  ASSERT_TRUE(engine_->DeliverCallback(id, data, "PUT", Request("PUT", "queued")).ok());

  engine_.reset();  // the process stops with the execution ACTIVE
  OpenEngine();
  Result<std::vector<std::string>> resumed = engine_->Recover();
  ASSERT_TRUE(resumed.ok()) << resumed.message();
  ASSERT_EQ(resumed->size(), 1u);
  callbacks = WaitForCallbacks(
      id, [](const json& list) { return list.size() == 2 && list[1].value("waiters", 0) == 1; });
  EXPECT_EQ(callbacks[0]["pending"], 1);
  ASSERT_TRUE(engine_->DeliverCallback(id, gate, "POST", Request("POST", nullptr)).ok());

  EXPECT_EQ(ResultOf(id), json({"taken", "queued", "HTTP"}));
}

}  // namespace
}  // namespace atomflow::engine
