// The REST API of `atomflow serve` over real HTTP: a real engine on a temporary SQLite store,
// the real server on a loopback port, and httplib's client.
#include "server/server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "connectors/connectors.h"
#include "engine/engine.h"
#include "server/auth.h"
#include "support/workflow_check.h"

namespace atomflow::server {
namespace {

using testing::json;

constexpr char kAddOne[] = R"(main:
  params: [args]
  steps:
    - add:
        assign:
          - n: ${args.n + 1}
    - done:
        return: ${n}
)";

constexpr char kFails[] = R"(main:
  steps:
    - fail:
        raise:
          code: 7
          message: boom
)";

constexpr char kSleeps[] = R"(main:
  steps:
    - wait:
        call: sys.sleep
        args:
          seconds: 3600
)";

constexpr char kAwaitsCallback[] = R"(main:
  steps:
    - create:
        call: events.create_callback_endpoint
        args:
          http_callback_method: POST
        result: callback
    - await:
        call: events.await_callback
        args:
          callback: ${callback}
          timeout: 3600
        result: request
    - done:
        return: ${request.http_request.body}
)";

// An answer: HTTP status and parsed body (null when none or not JSON).
struct Answer {
  int status = 0;
  json body;
  std::string message() const {
    return body.contains("error") ? body["error"].value("message", "") : "";
  }
};

// The engine and the API server on a temporary store; auth off unless a test restarts it on.
class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(/*auth=*/false); }
  void TearDown() override { StopServer(); }

  std::string StorePath() const { return (temp_.path() / "atomflow.db").string(); }

  void StartServer(bool auth) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.auth = auth;
    options.store_path = StorePath();
    options.threads = 8;
    api_ = std::make_unique<ApiServer>(options);
    Result<int> port = api_->Bind();
    ASSERT_TRUE(port.ok()) << port.message();

    engine::EngineOptions engine_options;
    engine_options.store_path = StorePath();
    engine_options.workers = 2;
    engine_options.public_url = api_->Url();
    Result<std::unique_ptr<engine::Engine>> engine =
        engine::Engine::Open(engine_options, connectors::MakeConnectors, &progress_);
    ASSERT_TRUE(engine.ok()) << engine.message();
    engine_ = std::move(engine).value();
    api_->Start(engine_.get());
    api_->SetReady(true);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", *port);
  }

  void StopServer() {
    client_.reset();
    api_.reset();  // before the engine it serves
    engine_.reset();
  }

  httplib::Headers Headers() const {
    if (token_.empty()) return {};
    return {{"Authorization", "Bearer " + token_}};
  }

  static Answer Parse(const httplib::Result& res) {
    if (!res) return {};
    return {res->status, testing::ParseOrNull(res->body)};
  }
  Answer Get(const std::string& path) { return Parse(client_->Get(path, Headers())); }
  Answer PostText(const std::string& path, const std::string& body) {
    return Parse(client_->Post(path, Headers(), body, "application/json"));
  }
  Answer Post(const std::string& path, const json& body) { return PostText(path, body.dump()); }
  Answer Patch(const std::string& path, const json& body) {
    return Parse(client_->Patch(path, Headers(), body.dump(), "application/json"));
  }
  Answer Delete(const std::string& path) { return Parse(client_->Delete(path, Headers())); }

  Answer Deploy(const std::string& id, const std::string& source, json extra = json::object()) {
    extra["sourceContents"] = source;
    return Post("/v1/workflows?workflowId=" + id, extra);
  }

  // Starts an execution of workflow; returns its id (the last segment of its name).
  std::string Run(const std::string& workflow, const json& argument = nullptr) {
    json body = json::object();
    if (!argument.is_null()) body["argument"] = argument.dump();
    Answer started = Post("/v1/workflows/" + workflow + "/executions", body);
    EXPECT_EQ(started.status, 200) << started.body.dump();
    std::string name = started.body.value("name", "");
    return name.substr(name.rfind('/') + 1);
  }

  // The execution once it left ACTIVE; a bounded poll, not a timing check.
  json WaitDone(const std::string& workflow, const std::string& id) {
    json execution;
    for (int i = 0; i < 3000; ++i) {
      execution = Get("/v1/workflows/" + workflow + "/executions/" + id).body;
      if (execution.value("state", "") != "ACTIVE") return execution;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "execution " << id << " did not finish: " << execution.dump();
    return execution;
  }

  // Every workflow, revision and execution in the store, to check a rejection changed nothing.
  json StoreContents() {
    store::Store& store = *engine_->store();
    json out = {{"workflows", json::array()}, {"executions", json::array()}};
    Result<std::vector<store::WorkflowRecord>> workflows = store.ListWorkflows("", 0);
    EXPECT_TRUE(workflows.ok());
    for (const store::WorkflowRecord& w : *workflows) {
      Result<std::vector<store::WorkflowRecord>> revisions = store.ListRevisions(w.name, 0, 0);
      EXPECT_TRUE(revisions.ok());
      for (const store::WorkflowRecord& r : *revisions) {
        out["workflows"].push_back({w.name, r.revision_id, r.source, r.description, r.labels});
      }
    }
    Result<std::vector<store::ExecutionRecord>> executions = store.ListExecutions("", 0);
    EXPECT_TRUE(executions.ok());
    for (const store::ExecutionRecord& e : *executions) {
      out["executions"].push_back({e.id, e.state, e.argument});
    }
    return out;
  }

  testing::TempDir temp_;
  testing::RecordingProgress progress_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<httplib::Client> client_;
  std::string token_;
};

TEST_F(ServerTest, DeployGetPatchAndListRevisions) {
  Answer deployed = Deploy("hello", kAddOne, {{"labels", {{"team", "ml"}}}});
  ASSERT_EQ(deployed.status, 200) << deployed.body.dump();
  EXPECT_TRUE(deployed.body.value("done", false));
  json workflow = deployed.body["response"];
  EXPECT_EQ(workflow["name"], "workflows/hello");
  EXPECT_EQ(workflow["sourceContents"], kAddOne);
  EXPECT_EQ(workflow["labels"], json({{"team", "ml"}}));
  std::string first = workflow.value("revisionId", "");
  EXPECT_EQ(first.substr(0, 7), "000001-");

  Answer got = Get("/v1/workflows/hello");
  ASSERT_EQ(got.status, 200) << got.body.dump();
  EXPECT_EQ(got.body["revisionId"], first);
  Answer prefixed = Get("/v1/projects/p1/locations/us-central1/workflows/hello");
  ASSERT_EQ(prefixed.status, 200) << prefixed.body.dump();
  EXPECT_EQ(prefixed.body["name"], "projects/p1/locations/us-central1/workflows/hello");

  // A new source is a new revision; a new description alone is not.
  Answer patched = Patch("/v1/workflows/hello", {{"sourceContents", kFails}});
  ASSERT_EQ(patched.status, 200) << patched.body.dump();
  std::string second = patched.body["response"].value("revisionId", "");
  EXPECT_EQ(second.substr(0, 7), "000002-");
  Answer described =
      Patch("/v1/workflows/hello?updateMask=description", {{"description", "adds one"}});
  ASSERT_EQ(described.status, 200) << described.body.dump();
  EXPECT_EQ(described.body["response"]["revisionId"], second);
  EXPECT_EQ(described.body["response"]["description"], "adds one");

  Answer revisions = Get("/v1/workflows/hello:listRevisions");
  ASSERT_EQ(revisions.status, 200) << revisions.body.dump();
  ASSERT_EQ(revisions.body["workflows"].size(), 2u);
  EXPECT_EQ(revisions.body["workflows"][0]["revisionId"], second);
  EXPECT_EQ(revisions.body["workflows"][1]["revisionId"], first);
  Answer old = Get("/v1/workflows/hello?revisionId=" + first);
  ASSERT_EQ(old.status, 200) << old.body.dump();
  EXPECT_EQ(old.body["sourceContents"], kAddOne);

  EXPECT_EQ(Delete("/v1/workflows/hello").status, 200);
  Answer gone = Get("/v1/workflows/hello");
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.body["error"]["status"], "NOT_FOUND");
}

TEST_F(ServerTest, ListsWorkflowsInPages) {
  for (const char* id : {"e", "b", "d", "a", "c"}) ASSERT_EQ(Deploy(id, kAddOne).status, 200);
  std::vector<std::string> names;
  std::string token;
  int pages = 0;
  do {
    std::string path = "/v1/workflows?pageSize=2";
    if (!token.empty()) path += "&pageToken=" + token;
    Answer page = Get(path);
    ASSERT_EQ(page.status, 200) << page.body.dump();
    for (const json& w : page.body["workflows"]) names.push_back(w["name"]);
    token = page.body.value("nextPageToken", "");
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(names, (std::vector<std::string>{"workflows/a", "workflows/b", "workflows/c",
                                             "workflows/d", "workflows/e"}));
}

TEST_F(ServerTest, RunsToSucceededWithStepEntries) {
  ASSERT_EQ(Deploy("add", kAddOne).status, 200);
  std::string id = Run("add", {{"n", 41}});
  json execution = WaitDone("add", id);
  EXPECT_EQ(execution["state"], "SUCCEEDED") << execution.dump();
  EXPECT_EQ(execution["result"], "42");
  EXPECT_EQ(execution["argument"], R"({"n":41})");
  EXPECT_EQ(execution.value("workflowRevisionId", "").substr(0, 7), "000001-");
  EXPECT_FALSE(execution.value("duration", "").empty());

  Answer steps = Get("/v1/workflows/add/executions/" + id + "/stepEntries");
  ASSERT_EQ(steps.status, 200) << steps.body.dump();
  ASSERT_EQ(steps.body["stepEntries"].size(), 2u) << steps.body.dump();
  EXPECT_EQ(steps.body["stepEntries"][0]["step"], "add");
  EXPECT_EQ(steps.body["stepEntries"][0]["routine"], "main");
  EXPECT_EQ(steps.body["stepEntries"][0]["state"], "STATE_SUCCEEDED");
  EXPECT_EQ(steps.body["stepEntries"][1]["entryId"], "2");

  Answer paged = Get("/v1/workflows/add/executions/" + id + "/stepEntries?pageSize=1");
  ASSERT_EQ(paged.status, 200);
  ASSERT_EQ(paged.body["stepEntries"].size(), 1u);
  std::string token = paged.body.value("nextPageToken", "");
  Answer rest =
      Get("/v1/workflows/add/executions/" + id + "/stepEntries?pageSize=1&pageToken=" + token);
  ASSERT_EQ(rest.status, 200) << rest.body.dump();
  EXPECT_EQ(rest.body["stepEntries"][0]["step"], "done");
  EXPECT_EQ(rest.body["stepEntries"][0]["entryId"], "2");
  Answer one = Get("/v1/workflows/add/executions/" + id + "/stepEntries/2");
  ASSERT_EQ(one.status, 200) << one.body.dump();
  EXPECT_EQ(one.body["step"], "done");
  EXPECT_EQ(Get("/v1/workflows/add/executions/" + id + "/stepEntries/3").status, 404);
}

// Steps are journaled in batches of StepHistory::kBatch: pages that cross a batch keep every
// entry once, numbered from 1, in the order the steps ended.
TEST_F(ServerTest, StepEntryPagesCrossJournalBatches) {
  constexpr char kLoop[] = R"(main:
  steps:
    - init:
        assign:
          - n: 0
    - loop:
        for:
          value: i
          range: [1, 300]
          steps:
            - tick:
                assign:
                  - n: ${i}
    - done:
        return: ${n}
)";
  ASSERT_EQ(Deploy("loop", kLoop).status, 200);
  std::string id = Run("loop");
  EXPECT_EQ(WaitDone("loop", id)["state"], "SUCCEEDED");

  std::string base = "/v1/workflows/loop/executions/" + id + "/stepEntries";
  std::vector<std::string> steps;
  std::string token;
  int pages = 0;
  do {
    Answer page = Get(base + "?pageSize=100" + (token.empty() ? "" : "&pageToken=" + token));
    ASSERT_EQ(page.status, 200) << page.body.dump();
    for (const json& entry : page.body["stepEntries"]) {
      EXPECT_EQ(entry["entryId"], std::to_string(steps.size() + 1));
      steps.push_back(entry["step"]);
    }
    token = page.body.value("nextPageToken", "");
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 4);  // 303 entries
  std::vector<std::string> expected = {"init"};
  expected.insert(expected.end(), 300, "tick");
  expected.push_back("loop");
  expected.push_back("done");
  EXPECT_EQ(steps, expected);

  Answer late = Get(base + "/302");
  ASSERT_EQ(late.status, 200) << late.body.dump();
  EXPECT_EQ(late.body["step"], "loop");
  EXPECT_EQ(Get(base + "/257").body["step"], "tick");
  EXPECT_EQ(Get(base + "/303").body["step"], "done");
  EXPECT_EQ(Get(base + "/304").status, 404);
}

TEST_F(ServerTest, FailedExecutionCarriesTheErrorPayload) {
  ASSERT_EQ(Deploy("fails", kFails).status, 200);
  std::string id = Run("fails");
  json execution = WaitDone("fails", id);
  EXPECT_EQ(execution["state"], "FAILED") << execution.dump();
  json payload = testing::ParseOrNull(execution["error"].value("payload", ""));
  EXPECT_EQ(payload.value("message", ""), "boom") << execution.dump();
  EXPECT_EQ(payload.value("code", 0), 7);
  EXPECT_FALSE(execution.contains("result"));
}

TEST_F(ServerTest, CancelEndsAnActiveExecution) {
  ASSERT_EQ(Deploy("sleeps", kSleeps).status, 200);
  std::string id = Run("sleeps");
  Answer cancelled = Post("/v1/workflows/sleeps/executions/" + id + ":cancel", json::object());
  ASSERT_EQ(cancelled.status, 200) << cancelled.body.dump();
  EXPECT_EQ(WaitDone("sleeps", id)["state"], "CANCELLED");

  Answer again = Post("/v1/workflows/sleeps/executions/" + id + ":cancel", json::object());
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.body["error"]["status"], "FAILED_PRECONDITION");
}

TEST_F(ServerTest, ListsExecutionsNewestFirstWithFilters) {
  ASSERT_EQ(Deploy("add", kAddOne).status, 200);
  std::vector<std::string> ids;
  for (int n = 0; n < 3; ++n) {
    ids.push_back(Run("add", {{"n", n}}));
    WaitDone("add", ids.back());
  }
  ASSERT_EQ(Deploy("fails", kFails).status, 200);

  Answer all = Get("/v1/workflows/add/executions?pageSize=2");
  ASSERT_EQ(all.status, 200) << all.body.dump();
  ASSERT_EQ(all.body["executions"].size(), 2u);
  std::string newest = all.body["executions"][0]["name"];
  EXPECT_EQ(newest.substr(newest.rfind('/') + 1), ids[2]);
  Answer rest = Get("/v1/workflows/add/executions?pageSize=2&pageToken=" +
                    all.body.value("nextPageToken", ""));
  ASSERT_EQ(rest.status, 200) << rest.body.dump();
  ASSERT_EQ(rest.body["executions"].size(), 1u);
  std::string oldest = rest.body["executions"][0]["name"];
  EXPECT_EQ(oldest.substr(oldest.rfind('/') + 1), ids[0]);
  EXPECT_FALSE(rest.body.contains("nextPageToken"));

  httplib::Params failed = {{"filter", "state=\"FAILED\""}};
  Answer none = Parse(client_->Get("/v1/workflows/add/executions", failed, Headers()));
  ASSERT_EQ(none.status, 200) << none.body.dump();
  EXPECT_TRUE(none.body["executions"].empty());
  httplib::Params recent = {
      {"filter", "state=\"SUCCEEDED\" AND startTime>\"2000-01-01T00:00:00Z\""}};
  Answer three = Parse(client_->Get("/v1/workflows/add/executions", recent, Headers()));
  ASSERT_EQ(three.status, 200) << three.body.dump();
  EXPECT_EQ(three.body["executions"].size(), 3u);

  // A token continues its own list only: another workflow or another filter refuses it.
  std::string token = all.body.value("nextPageToken", "");
  Answer elsewhere = Get("/v1/workflows/fails/executions?pageToken=" + token);
  EXPECT_EQ(elsewhere.status, 400) << elsewhere.body.dump();
  httplib::Params refiltered = {{"filter", "state=\"FAILED\""}, {"pageToken", token}};
  EXPECT_EQ(Parse(client_->Get("/v1/workflows/add/executions", refiltered, Headers())).status, 400);
}

TEST_F(ServerTest, RejectedRequestsChangeNothing) {
  ASSERT_EQ(Deploy("add", kAddOne).status, 200);
  WaitDone("add", Run("add", {{"n", 1}}));
  json before = StoreContents();

  struct Case {
    std::string what;
    Answer answer;
    int status;
    std::string says;
  };
  std::string big_argument = json({{"x", std::string(33 * 1024, 'a')}}).dump();
  std::string big_source = std::string(kAddOne) + "# " + std::string(129 * 1024, 'x') + "\n";
  std::vector<Case> cases = {
      {"malformed JSON", PostText("/v1/workflows?workflowId=new", "{\"sourceContents\": "), 400,
       "not valid JSON"},
      {"unknown field",
       Post("/v1/workflows?workflowId=new", json{{"sourceContents", kAddOne}, {"sauce", 1}}), 400,
       "unknown field 'sauce'"},
      {"unknown execution field",
       Post("/v1/workflows/add/executions", json{{"argument", "{}"}, {"argumnet", "{}"}}), 400,
       "unknown field 'argumnet'"},
      {"big argument", Post("/v1/workflows/add/executions", json{{"argument", big_argument}}), 400,
       "argument is"},
      {"argument not JSON", Post("/v1/workflows/add/executions", json{{"argument", "{n:"}}), 400,
       "argument is not valid JSON (at byte 3)"},
      // Regression: the message read "argument nests deeper than 128 levels text".
      {"argument too deep",
       Post("/v1/workflows/add/executions",
            json{{"argument", std::string(300, '[') + std::string(300, ']')}}),
       400, "argument nests deeper than 256 levels"},
      {"body not UTF-8", PostText("/v1/workflows?workflowId=new", "{\"sourceContents\": \"\xc3\"}"),
       400, "the request body is not valid UTF-8 (at byte 21)"},
      {"big source", Deploy("big", big_source), 400, "sourceContents is"},
      {"big source patch", Patch("/v1/workflows/add", {{"sourceContents", big_source}}), 400,
       "sourceContents is"},
      {"invalid source", Deploy("broken", "main:\n  steps:\n    - a:\n        nope: 1\n"), 400, ""},
      {"bad workflowId", Deploy("1-bad!", kAddOne), 400, ""},
      {"existing workflowId", Deploy("add", kFails), 409, ""},
      {"unknown workflow", Post("/v1/workflows/missing/executions", json::object()), 404, ""},
      {"bad filter", Get("/v1/workflows/add/executions?filter=colour%3D%22red%22"), 400, "filter"},
      {"bad page token", Get("/v1/workflows/add/executions?pageToken=bm9wZQ"), 400, "pageToken"},
      {"bad workflows page token", Get("/v1/workflows?pageToken=%21%21"), 400, "pageToken"},
      {"unknown query parameter", Get("/v1/workflows?colour=red"), 400, "colour"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.answer.status, c.status) << c.what << ": " << c.answer.body.dump();
    EXPECT_EQ(c.answer.body["error"].value("code", 0), c.status) << c.what;
    EXPECT_NE(c.answer.message().find(c.says), std::string::npos)
        << c.what << ": " << c.answer.message();
  }
  EXPECT_EQ(StoreContents(), before);
}

TEST_F(ServerTest, CallbackResumesTheExecutionThatAwaitsIt) {
  ASSERT_EQ(Deploy("waits", kAwaitsCallback).status, 200);
  std::string id = Run("waits");
  std::string url;
  for (int i = 0; i < 3000 && url.empty(); ++i) {
    Answer listed = Get("/v1/workflows/waits/executions/" + id + "/callbacks");
    ASSERT_EQ(listed.status, 200) << listed.body.dump();
    if (!listed.body["callbacks"].empty()) url = listed.body["callbacks"][0].value("url", "");
    if (url.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(url.find(api_->Url() + "/v1/workflows/waits/executions/" + id + "/callbacks/"),
            std::string::npos)
      << url;
  Answer delivered = Post(url.substr(api_->Url().size()), json{{"ok", true}});
  ASSERT_EQ(delivered.status, 200) << delivered.body.dump();
  json execution = WaitDone("waits", id);
  EXPECT_EQ(execution["state"], "SUCCEEDED") << execution.dump();
  EXPECT_EQ(testing::ParseOrNull(execution.value("result", "")), json({{"ok", true}}));
}

// Regression: bytes that are not UTF-8 in a callback were accepted, and then failed the
// execution that awaited them when its result could not be written as JSON.
TEST_F(ServerTest, ACallbackThatIsNotUtf8IsRefusedAndTheAwaitGoesOn) {
  ASSERT_EQ(Deploy("waits", kAwaitsCallback).status, 200);
  std::string id = Run("waits");
  std::string url;
  for (int i = 0; i < 3000 && url.empty(); ++i) {
    Answer listed = Get("/v1/workflows/waits/executions/" + id + "/callbacks");
    if (!listed.body["callbacks"].empty()) url = listed.body["callbacks"][0].value("url", "");
    if (url.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(url.empty());
  std::string path = url.substr(api_->Url().size());

  Answer refused = PostText(path, std::string("raw \xff\xfe body"));
  EXPECT_EQ(refused.status, 400);
  EXPECT_THAT(refused.body.dump(), ::testing::HasSubstr("not UTF-8"));
  ASSERT_EQ(Post(path, json{{"ok", true}}).status, 200);
  EXPECT_EQ(WaitDone("waits", id)["state"], "SUCCEEDED");
}

// Regression: this httplib reads a chunked body whole whatever its size, past the 256 KiB limit.
TEST_F(ServerTest, AChunkedBodyIsRefusedBeforeItIsRead) {
  ASSERT_EQ(Deploy("add", kAddOne).status, 200);
  // A small, valid body: before the fix it started an execution.
  bool sent = false;
  httplib::Result res = client_->Post(
      "/v1/workflows/add/executions",
      [&sent](size_t, httplib::DataSink& sink) {
        std::string body = R"({"argument": "{\"n\": 1}"})";
        if (!sent) sink.write(body.data(), body.size());
        if (sent) sink.done();
        sent = true;
        return true;
      },
      "application/json");
  // The server answers before reading and closes: the client may see the answer, or only the
  // closed connection while it still writes. Either way no execution started.
  if (res) {
    EXPECT_EQ(res->status, 400);
    EXPECT_THAT(res->body, ::testing::HasSubstr("chunked"));
  }
  EXPECT_TRUE(Get("/v1/workflows/add/executions").body["executions"].empty());
}

// Regression: httplib's default SO_REUSEPORT let a second server bind the same port and take
// a share of the first one's connections.
TEST_F(ServerTest, ASecondServerCannotListenOnATakenPort) {
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = api_->port();
  options.auth = false;
  options.store_path = (temp_.path() / "other.db").string();
  ApiServer second(options);
  Result<int> bound = second.Bind();
  ASSERT_FALSE(bound.ok());
  EXPECT_THAT(bound.message(), ::testing::HasSubstr("address in use"));
}

// A known path under a method it does not take was answered 404, as if it did not exist.
TEST_F(ServerTest, AKnownPathUnderAnotherMethodIsMethodNotAllowed) {
  httplib::Result wrong = client_->Delete("/v1/workflows", Headers());
  Answer unknown = Get("/v1/no-such-collection");

  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->get_header_value("Allow"), "GET, POST");
  EXPECT_EQ(Parse(wrong).message(), "DELETE is not allowed on /v1/workflows (allowed: GET, POST)");
  EXPECT_EQ(unknown.status, 404);
}

TEST_F(ServerTest, HealthReadinessAndMetrics) {
  ASSERT_EQ(Deploy("add", kAddOne).status, 200);
  WaitDone("add", Run("add", {{"n", 1}}));
  EXPECT_EQ(Get("/healthz").status, 200);
  EXPECT_EQ(Get("/readyz").status, 200);
  api_->SetReady(false);
  EXPECT_EQ(Get("/readyz").status, 503);
  api_->SetReady(true);

  httplib::Result metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("atomflow_executions{state=\"SUCCEEDED\"} 1"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("atomflow_http_requests_total{code=\"200\"}"), std::string::npos);
  EXPECT_NE(metrics->body.find("atomflow_transactions{state=\"COMMITTED\"} 0"), std::string::npos);
}

TEST_F(ServerTest, RolesLimitWhatATokenMayDo) {
  StopServer();
  Result<std::unique_ptr<TokenStore>> tokens = TokenStore::Open(StorePath());
  ASSERT_TRUE(tokens.ok()) << tokens.message();
  std::map<std::string, std::string> token;
  for (const char* role : {"viewer", "invoker", "deployer", "admin"}) {
    Result<std::string> made = (*tokens)->Create(role, *ParseRole(role));
    ASSERT_TRUE(made.ok()) << made.message();
    token[role] = *made;
  }
  StartServer(/*auth=*/true);

  EXPECT_EQ(Get("/healthz").status, 200);  // no token needed
  Answer anonymous = Get("/v1/workflows");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(anonymous.body["error"]["status"], "UNAUTHENTICATED");
  token_ = "afk_" + std::string(64, '0');
  EXPECT_EQ(Get("/v1/workflows").status, 401);

  token_ = token["viewer"];
  EXPECT_EQ(Get("/v1/workflows").status, 200);
  EXPECT_EQ(Get("/metrics").status, 200);
  Answer denied = Deploy("add", kAddOne);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.body["error"]["status"], "PERMISSION_DENIED");

  token_ = token["invoker"];
  EXPECT_EQ(Deploy("add", kAddOne).status, 403);
  token_ = token["deployer"];
  ASSERT_EQ(Deploy("add", kAddOne).status, 200);
  token_ = token["viewer"];
  EXPECT_EQ(Post("/v1/workflows/add/executions", json::object()).status, 403);
  token_ = token["invoker"];
  std::string id = Run("add", {{"n", 1}});
  EXPECT_EQ(WaitDone("add", id)["state"], "SUCCEEDED");
  EXPECT_EQ(Post("/v1/transactions:resolve", json{{"gid", "x:y#1"}, {"action", "RETRY"}}).status,
            403);
  token_ = token["admin"];
  EXPECT_EQ(Post("/v1/transactions:resolve", json{{"gid", "x:y#1"}, {"action", "RETRY"}}).status,
            404);
  EXPECT_EQ(Delete("/v1/workflows/add").status, 200);
}

TEST_F(ServerTest, LogsAndTransactionLists) {
  constexpr char kLogs[] = R"(main:
  steps:
    - say:
        call: sys.log
        args:
          text: hello
          severity: WARNING
)";
  ASSERT_EQ(Deploy("logs", kLogs).status, 200);
  std::string id = Run("logs");
  EXPECT_EQ(WaitDone("logs", id)["state"], "SUCCEEDED");
  Answer logs = Get("/v1/workflows/logs/executions/" + id + "/logs");
  ASSERT_EQ(logs.status, 200) << logs.body.dump();
  ASSERT_EQ(logs.body["entries"].size(), 1u) << logs.body.dump();
  EXPECT_EQ(logs.body["entries"][0]["text"], "hello");
  EXPECT_EQ(logs.body["entries"][0]["severity"], "WARNING");
  EXPECT_EQ(logs.body["entries"][0]["step"], "say");
  // An execution is found only under its own workflow.
  EXPECT_EQ(Get("/v1/workflows/other/executions/" + id).status, 404);

  Answer none = Get("/v1/workflows/logs/executions/" + id + "/transactions");
  ASSERT_EQ(none.status, 200) << none.body.dump();
  EXPECT_EQ(none.body["transactions"], json::array());
  Answer all = Get("/v1/transactions");
  ASSERT_EQ(all.status, 200) << all.body.dump();
  EXPECT_TRUE(all.body["transactions"].is_array());
  Answer bad = Get("/v1/transactions?state=SOMEWHAT");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.message().find("SOMEWHAT"), std::string::npos) << bad.message();
}

TEST(ServerOptionsTest, AuthNoneIsRefusedOffLoopback) {
  ServerOptions options;
  options.host = "0.0.0.0";
  options.port = 0;
  options.auth = false;
  ApiServer api(options);
  Result<int> port = api.Bind();
  ASSERT_FALSE(port.ok());
  EXPECT_NE(port.message().find("loopback"), std::string::npos) << port.message();
}

}  // namespace
}  // namespace atomflow::server
