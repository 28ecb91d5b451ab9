// The transaction routes: listing and resolving the store's transactions, and TxnApi over HTTP.
#include "server/txn_routes.h"

#include <chrono>
#include <set>

#include "common/log.h"
#include "server/api_support.h"
#include "server/server.h"
#include "txn/txn_view.h"

namespace atomflow::server {

namespace {

using Method = ApiServer::Method;

// A gid of the API is one path segment without ':' (the custom-method separator).
constexpr char kApiGid[] = "([^/:]+)";

void Reply(const txn::ApiResponse& response, httplib::Response& res) {
  ReplyJson(res, response.body, response.status);
}

// One route of the self-coordinated API: method, path after /v1/transactions, handler.
struct ApiRoute {
  Method method;
  std::string path;
  std::function<txn::ApiResponse(txn::TxnApi&, const httplib::Request&)> call;
};

std::vector<ApiRoute> ApiRoutes() {
  return {
      {Method::kPost, "",
       [](txn::TxnApi& api, const httplib::Request& req) { return api.Begin(req.body); }},
      {Method::kPost, std::string("/") + kApiGid + "/branches",
       [](txn::TxnApi& api, const httplib::Request& req) {
         return api.AddBranch(req.matches[1], req.body);
       }},
      {Method::kPost, std::string("/") + kApiGid + ":submit",
       [](txn::TxnApi& api, const httplib::Request& req) { return api.Submit(req.matches[1]); }},
      {Method::kPost, std::string("/") + kApiGid + ":abort",
       [](txn::TxnApi& api, const httplib::Request& req) { return api.Abort(req.matches[1]); }},
  };
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status AppendDurably(store::Store& store, const std::string& execution_id, std::string kind,
                     std::string key, Json payload) {
  store::JournalEntry entry;
  entry.kind = std::move(kind);
  entry.key = std::move(key);
  entry.payload = std::move(payload);
  entry.time_ms = NowMs();
  Status appended;
  store.Append(execution_id, std::move(entry), [&appended](Status status) { appended = status; });
  Status flushed = store.Flush();
  return appended.ok() ? flushed : appended;
}

// Issues each compensation that has not landed again, newest branch first, journaling intent
// and outcome under keys of their own. True when every one of them succeeded.
bool RetryCompensations(engine::Engine& engine, const Json& txn) {
  bool all_landed = true;
  const Json& branches = txn["branches"];
  for (auto it = branches.rbegin(); it != branches.rend(); ++it) {
    const Json& branch = *it;
    if (branch.value("kind", "") != "compensable" || branch.value("compensated", false)) continue;
    std::string branch_id = branch.value("branch", "");
    Json undo = branch.value("undo", Json::object());

    engine::EffectRequest request;
    // A key of its own per attempt: a participant that remembers answers by key must not
    // hand back the failure of an earlier attempt.
    request.key = "operator/" + branch_id + "/" + std::to_string(NowMs());
    request.step = branch.value("step", "");
    request.function = undo.value("function", "");
    request.args = FromJournalJson(undo.value("args", Json::object()));
    request.gid = txn.value("gid", "");
    request.branch = branch_id;
    request.op = "compensate";
    engine::EffectOutcome outcome = engine.PerformNow(txn.value("execution", ""), request);
    all_landed = all_landed && outcome.ok;
  }
  return all_landed;
}

void ListTransactions(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  static const std::set<std::string> kStates = {"ACTIVE", "DECIDED", "COMMITTED", "ABORTED",
                                                "COMPENSATION_FAILED"};
  Status query = CheckQuery(req, {"state", "pageSize", "pageToken"});
  if (!query.ok()) return ReplyError(res, query);
  std::string state = QueryParam(req, "state");
  if (!state.empty() && kStates.count(state) == 0) {
    return ReplyError(res, Status::InvalidArgument(
                               "unknown transaction state '" + state +
                               "' (ACTIVE, DECIDED, COMMITTED, ABORTED, COMPENSATION_FAILED)"));
  }
  Result<int> size = PageSize(req);
  if (!size.ok()) return ReplyError(res, size.status());
  int offset = 0;
  if (std::string token = QueryParam(req, "pageToken"); !token.empty()) {
    Result<std::string> cursor = DecodePageToken(token, "transactions");
    if (!cursor.ok()) return ReplyError(res, cursor.status());
    offset = std::atoi(cursor->c_str());
  }

  Result<Json> listed = txn::ListTransactions(server.store(), state, offset, *size + 1);
  if (!listed.ok()) return ReplyError(res, listed.status());
  Json all = listed->is_object() ? listed->value("transactions", Json::array()) : *listed;
  Json out = {{"transactions", Json::array()}};
  for (int i = 0; i < static_cast<int>(all.size()) && i < *size; ++i) {
    out["transactions"].push_back(all[i]);
  }
  if (static_cast<int>(all.size()) > *size) {
    out["nextPageToken"] = EncodePageToken("transactions", std::to_string(offset + *size));
  }
  ReplyJson(res, out);
}

// GET /v1/transactions/GID: a transaction of the API (its gid has no ':'), or one of the
// store's ("<execution id>:<step>#<n>", percent-encoded in the path).
void GetTransaction(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {});
  if (!query.ok()) return ReplyError(res, query);
  std::string gid = req.matches[1];
  if (gid.find(':') == std::string::npos) return Reply(server.txn_api().Get(gid), res);
  Result<Json> txn = txn::FindTransaction(server.store(), gid);
  if (!txn.ok()) return ReplyError(res, txn.status());
  ReplyJson(res, *txn);
}

void Resolve(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {});
  if (!query.ok()) return ReplyError(res, query);
  Result<Json> body = ParseBody(req.body, {"gid", "action"});
  if (!body.ok()) return ReplyError(res, body.status());
  Result<std::string> gid = StringField(*body, "gid");
  if (!gid.ok()) return ReplyError(res, gid.status());
  Result<std::string> action = StringField(*body, "action");
  if (!action.ok()) return ReplyError(res, action.status());
  if (gid->empty()) return ReplyError(res, Status::InvalidArgument("gid is required"));

  Result<Json> resolved = ResolveTransaction(server.engine(), *gid, *action);
  if (!resolved.ok()) return ReplyError(res, resolved.status());
  ReplyJson(res, *resolved);
}

}  // namespace

void RegisterTxnApiRoutes(txn::TxnApi& api, httplib::Server& server) {
  const std::string prefix = "/v1/transactions";
  for (ApiRoute& route : ApiRoutes()) {
    server.Post(prefix + route.path,
                [&api, call = route.call](const httplib::Request& req, httplib::Response& res) {
                  Reply(call(api, req), res);
                });
  }
  server.Get(prefix + "/" + kApiGid, [&api](const httplib::Request& req, httplib::Response& res) {
    Reply(api.Get(req.matches[1]), res);
  });
}

Result<Json> ResolveTransaction(engine::Engine& engine, const std::string& gid,
                                const std::string& action) {
  if (action != "RETRY" && action != "MARK_COMPENSATED") {
    return Status::InvalidArgument("action must be RETRY or MARK_COMPENSATED, not '" + action +
                                   "'");
  }
  store::Store& store = *engine.store();
  Result<Json> txn = txn::FindTransaction(store, gid);
  if (!txn.ok()) return txn.status();
  std::string state = txn->value("state", "");
  if (state != "COMPENSATION_FAILED") {
    return Status::FailedPrecondition("transaction '" + gid + "' is " + state +
                                      "; only a COMPENSATION_FAILED transaction can be resolved");
  }
  // A commit never turns back: what is left of it is finishing, never undoing.
  bool committed = txn->value("decision", "") == "COMMIT";
  if (committed && action == "RETRY") {
    return Status::FailedPrecondition(
        "transaction '" + gid +
        "' was decided COMMIT: RETRY runs undo steps and would undo "
        "committed work; finish the branches that did not land by hand, then MARK_COMPENSATED");
  }

  std::string resolution =
      committed ? "finished by an operator" : "marked compensated by an operator";
  if (action == "RETRY") {
    if (!RetryCompensations(engine, *txn)) {
      return Status::FailedPrecondition("some compensations of '" + gid +
                                        "' failed again; it stays COMPENSATION_FAILED");
    }
    resolution = "compensations retried by an operator";
  }
  std::string end_state = committed ? "COMMITTED" : "ABORTED";
  Status written =
      AppendDurably(store, txn->value("execution", ""), "txn_resolved", "operator/" + gid,
                    {{"gid", gid}, {"state", end_state}, {"resolution", resolution}});
  if (!written.ok()) return written;
  log::Event("transaction.resolved", {{"gid", gid}, {"state", end_state}, {"action", action}});
  return txn::FindTransaction(store, gid);
}

void RegisterTransactionRoutes(ApiServer& server) {
  auto bind = [&server](void (*route)(ApiServer&, const httplib::Request&, httplib::Response&)) {
    return [&server, route](const httplib::Request& req, httplib::Response& res) {
      route(server, req, res);
    };
  };
  server.Route(Method::kGet, V1("/transactions"), Role::kViewer, bind(ListTransactions));
  server.Route(Method::kPost, V1("/transactions:resolve"), Role::kAdmin, bind(Resolve));
  server.Route(Method::kGet, V1("/transactions/(.+)"), Role::kViewer, bind(GetTransaction));
  for (ApiRoute& route : ApiRoutes()) {
    server.Route(route.method, V1("/transactions" + route.path), Role::kAdmin,
                 [&server, call = route.call](const httplib::Request& req, httplib::Response& res) {
                   Reply(call(server.txn_api(), req), res);
                 });
  }
}

}  // namespace atomflow::server
