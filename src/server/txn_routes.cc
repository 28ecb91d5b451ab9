// The transaction routes: listing and resolving the store's transactions, and TxnApi over HTTP.
#include "server/txn_routes.h"

#include <set>

#include "common/log.h"
#include "server/api_support.h"
#include "server/server.h"
#include "txn/txn_resolve.h"
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
    Result<std::string> cursor = DecodePageToken(token, PageScope(req, "transactions"));
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
    out["nextPageToken"] =
        EncodePageToken(PageScope(req, "transactions"), std::to_string(offset + *size));
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
  txn::Resolution resolution =
      action == "RETRY" ? txn::Resolution::kRetry : txn::Resolution::kMarkCompensated;
  txn::ResolveOutcome outcome = txn::ResolveTransaction(engine, gid, resolution);
  if (!outcome.status.ok()) return outcome.status;
  if (outcome.failed_again) {
    return Status::FailedPrecondition("some compensations of '" + gid +
                                      "' failed again; it stays COMPENSATION_FAILED");
  }
  return outcome.transaction;
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
