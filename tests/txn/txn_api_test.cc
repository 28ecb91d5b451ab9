// The self-coordinated transaction API over real HTTP: transactions registered by a client run
// on the real engine against a participant that records every call it receives.
#include "txn/txn_api.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "connectors/connectors.h"
#include "engine/engine.h"
#include "support/http_test_server.h"
#include "support/txn_api_server.h"
#include "support/workflow_check.h"

namespace atomflow::txn {
namespace {

using testing::json;

// A participant: /ok/<name> answers 200, /refuse/<name> answers 409; both record
// "<path> <body>" in order of arrival.
class RecordingParticipant {
 public:
  RecordingParticipant() {
    auto record = [this](const httplib::Request& req, httplib::Response& res, int status) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        calls_.push_back(req.path + " " + req.body);
      }
      res.status = status;
      res.set_content(R"({"done": true})", "application/json");
    };
    server_.routes().Post(R"(/ok/.*)", [record](const httplib::Request& req,
                                                httplib::Response& res) { record(req, res, 200); });
    server_.routes().Post(
        R"(/refuse/.*)",
        [record](const httplib::Request& req, httplib::Response& res) { record(req, res, 409); });
    server_.Start();
  }

  std::string Url(const std::string& path) const { return server_.Url(path); }
  std::vector<std::string> calls() {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }

 private:
  testing::HttpTestServer server_;
  std::mutex mutex_;
  std::vector<std::string> calls_;
};

// An engine on a temporary SQLite store, the API on a loopback server, and a client of it.
class TxnApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("ATOMFLOW_SLEEP_SCALE", "0", 1);  // retry backoff runs at once
    engine::EngineOptions options;
    options.store_path = (temp_.path() / "atomflow.db").string();
    options.workers = 2;
    Result<std::unique_ptr<engine::Engine>> engine =
        engine::Engine::Open(options, connectors::MakeConnectors, &progress_);
    ASSERT_TRUE(engine.ok()) << engine.message();
    engine_ = std::move(engine).value();
    api_ = std::make_unique<TxnApi>(engine_.get());
    testing::RegisterTxnApiRoutes(*api_, api_server_.routes());
    api_server_.Start();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", api_server_.port());
  }

  // POSTs body to path; returns {status, parsed body}.
  std::pair<int, json> Post(const std::string& path, const json& body) {
    return PostText(path, body.dump());
  }
  std::pair<int, json> PostText(const std::string& path, const std::string& body) {
    httplib::Result res = client_->Post(path, body, "application/json");
    EXPECT_TRUE(res) << "POST " << path << " got no answer";
    if (!res) return {0, json()};
    return {res->status, testing::ParseOrNull(res->body)};
  }
  std::pair<int, json> Get(const std::string& path) {
    httplib::Result res = client_->Get(path);
    EXPECT_TRUE(res) << "GET " << path << " got no answer";
    if (!res) return {0, json()};
    return {res->status, testing::ParseOrNull(res->body)};
  }

  std::string Begin() {
    auto [status, body] = Post("/v1/transactions", json::object());
    EXPECT_EQ(status, 200) << body.dump();
    return body.value("gid", "");
  }

  json Call(const std::string& path, const json& body = nullptr) {
    json call = {{"url", participant_.Url(path)}};
    if (!body.is_null()) call["body"] = body;
    return call;
  }

  json Saga(const std::string& action, const std::string& compensate, const json& body) {
    return {{"kind", "saga"}, {"action", Call(action, body)}, {"compensate", Call(compensate)}};
  }

  // The transaction's view once it left OPEN and ACTIVE; a bounded poll, not a timing check.
  json WaitTerminal(const std::string& gid) {
    json view;
    for (int i = 0; i < 3000; ++i) {
      view = Get("/v1/transactions/" + gid).second;
      std::string state = view.value("state", "");
      if (state != "ACTIVE" && state != "OPEN") return view;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "transaction " << gid << " did not finish: " << view.dump();
    return view;
  }

  static std::string ErrorMessage(const json& body) {
    return body.contains("error") ? body["error"].value("message", "") : "";
  }

  testing::TempDir temp_;
  testing::RecordingProgress progress_;
  // Outlives the engine, whose HTTP client keeps connections to it open until it closes.
  RecordingParticipant participant_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<TxnApi> api_;
  testing::HttpTestServer api_server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(TxnApiTest, SagaOfTwoBranchesCommits) {
  std::string gid = Begin();
  ASSERT_FALSE(gid.empty());
  auto [first, first_body] = Post("/v1/transactions/" + gid + "/branches",
                                  Saga("/ok/debit", "/ok/undo-debit", {{"amount", 30}}));
  EXPECT_EQ(first, 200);
  EXPECT_EQ(first_body, json({{"branch", 1}}));
  auto [second, second_body] = Post("/v1/transactions/" + gid + "/branches",
                                    Saga("/ok/credit", "/ok/undo-credit", {{"note", "${x}"}}));
  EXPECT_EQ(second, 200);
  EXPECT_EQ(second_body, json({{"branch", 2}}));
  EXPECT_EQ(Get("/v1/transactions/" + gid).second.value("state", ""), "OPEN");

  auto [submitted, submit_body] = Post("/v1/transactions/" + gid + ":submit", json::object());
  EXPECT_EQ(submitted, 202) << submit_body.dump();
  json view = WaitTerminal(gid);
  EXPECT_EQ(view.value("state", ""), "COMMITTED") << view.dump();
  EXPECT_EQ(view.value("branches", 0), 2);
  EXPECT_EQ(view.value("execution", ""), submit_body.value("execution", "?"));
  // Each action once, no compensation; a "${...}" in a body is sent as text, not evaluated.
  EXPECT_EQ(participant_.calls(), (std::vector<std::string>{R"(/ok/debit {"amount":30})",
                                                            R"(/ok/credit {"note":"${x}"})"}));
}

TEST_F(TxnApiTest, RefusedSecondActionCompensatesTheFirst) {
  std::string gid = Begin();
  Post("/v1/transactions/" + gid + "/branches", Saga("/ok/debit", "/ok/undo-debit", nullptr));
  Post("/v1/transactions/" + gid + "/branches", Saga("/refuse/credit", "/ok/undo-credit", nullptr));
  EXPECT_EQ(PostText("/v1/transactions/" + gid + ":submit", "").first, 202);
  json view = WaitTerminal(gid);
  EXPECT_EQ(view.value("state", ""), "ABORTED") << view.dump();
  // The refused action did not happen: only the first is compensated.
  std::vector<std::string> calls = participant_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].rfind("/ok/debit", 0), 0u);
  EXPECT_EQ(calls[1].rfind("/refuse/credit", 0), 0u);
  EXPECT_EQ(calls[2].rfind("/ok/undo-debit", 0), 0u);
}

TEST_F(TxnApiTest, TccBranchTriesThenConfirms) {
  std::string gid = Begin();
  json tcc = {{"kind", "tcc"},
              {"try", Call("/ok/try", {{"gpus", 2}})},
              {"confirm", Call("/ok/confirm")},
              {"cancel", Call("/ok/cancel")}};
  EXPECT_EQ(Post("/v1/transactions/" + gid + "/branches", tcc).first, 200);
  EXPECT_EQ(PostText("/v1/transactions/" + gid + ":submit", "").first, 202);
  json view = WaitTerminal(gid);
  EXPECT_EQ(view.value("state", ""), "COMMITTED") << view.dump();
  std::vector<std::string> calls = participant_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0], R"(/ok/try {"gpus":2})");
  EXPECT_EQ(calls[1].rfind("/ok/confirm", 0), 0u);
}

TEST_F(TxnApiTest, MalformedBodiesNameTheWrongField) {
  std::string gid = Begin();
  std::string path = "/v1/transactions/" + gid + "/branches";
  struct Case {
    std::string body;
    std::string field;
  };
  std::vector<Case> cases = {
      {"not json", "the body is not valid JSON (at byte 2)"},
      {"[1, 2]", "the body must be a JSON object"},
      {"{\"kind\": \"\xff\"}", "the body is not valid UTF-8 (at byte 11)"},
      {R"({"kind": "xa"})", "'kind'"},
      {R"({"kind": "saga", "compensate": {"url": "http://x"}})", "'action'"},
      {R"({"kind": "saga", "action": {"url": 7}, "compensate": {"url": "http://x"}})",
       "'action.url'"},
      {R"({"kind": "saga", "action": {"url": "http://x"}, "compensate": {"url": "ftp://x"}})",
       "'compensate.url'"},
      {R"({"kind": "tcc", "try": {"url": "http://x"}, "confirm": {"url": "http://x"}})",
       "'cancel'"},
  };
  for (const Case& c : cases) {
    auto [status, body] = PostText(path, c.body);
    EXPECT_EQ(status, 400) << c.body;
    EXPECT_EQ(body["error"].value("status", ""), "INVALID_ARGUMENT") << c.body;
    EXPECT_NE(ErrorMessage(body).find(c.field), std::string::npos) << ErrorMessage(body);
  }
  auto [status, body] = PostText("/v1/transactions", R"({"timeout": -1})");
  EXPECT_EQ(status, 400);
  EXPECT_NE(ErrorMessage(body).find("'timeout'"), std::string::npos) << body.dump();
  // Regression: a number past a double's range was reported as "must be a JSON object".
  auto [huge_status, huge] = PostText("/v1/transactions", R"({"timeout": 1e999})");
  EXPECT_EQ(huge_status, 400);
  EXPECT_EQ(ErrorMessage(huge), "the body has a number too large for a double: '1e999'");
  EXPECT_EQ(Get("/v1/transactions/" + gid).second.value("branches", -1), 0);
}

TEST_F(TxnApiTest, UnknownGidAndBranchAfterSubmit) {
  auto [unknown, unknown_body] = Get("/v1/transactions/api-nope");
  EXPECT_EQ(unknown, 404);
  EXPECT_EQ(unknown_body["error"].value("code", 0), 404);
  EXPECT_EQ(Post("/v1/transactions/api-nope/branches", Saga("/ok/a", "/ok/b", nullptr)).first, 404);
  EXPECT_EQ(PostText("/v1/transactions/api-nope:submit", "").first, 404);

  std::string gid = Begin();
  Post("/v1/transactions/" + gid + "/branches", Saga("/ok/a", "/ok/undo-a", nullptr));
  EXPECT_EQ(PostText("/v1/transactions/" + gid + ":submit", "").first, 202);
  auto [late, late_body] =
      Post("/v1/transactions/" + gid + "/branches", Saga("/ok/b", "/ok/undo-b", nullptr));
  EXPECT_EQ(late, 409);
  EXPECT_EQ(late_body["error"].value("status", ""), "FAILED_PRECONDITION");
  EXPECT_EQ(PostText("/v1/transactions/" + gid + ":submit", "").first, 409);
  EXPECT_EQ(WaitTerminal(gid).value("state", ""), "COMMITTED");
}

TEST_F(TxnApiTest, AbortBeforeSubmitDropsAndSendsNothing) {
  std::string gid = Begin();
  Post("/v1/transactions/" + gid + "/branches", Saga("/ok/a", "/ok/undo-a", nullptr));
  EXPECT_EQ(PostText("/v1/transactions/" + gid + ":abort", "").first, 200);
  json view = Get("/v1/transactions/" + gid).second;
  EXPECT_EQ(view.value("state", ""), "DROPPED");
  EXPECT_FALSE(view.contains("execution"));
  EXPECT_EQ(PostText("/v1/transactions/" + gid + ":submit", "").first, 409);
  EXPECT_TRUE(participant_.calls().empty());
}

}  // namespace
}  // namespace atomflow::txn
