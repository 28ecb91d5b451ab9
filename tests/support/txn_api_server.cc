// RegisterTxnApiRoutes: TxnApi behind cpp-httplib routes.
#include "support/txn_api_server.h"

#include <string>

namespace atomflow::testing {
namespace {

// A gid is one path segment without ':' (the custom-method separator).
constexpr char kGid[] = "([^/:]+)";

void Reply(const txn::ApiResponse& response, httplib::Response& res) {
  res.status = response.status;
  res.set_content(response.body.dump(), "application/json");
}

}  // namespace

void RegisterTxnApiRoutes(txn::TxnApi& api, httplib::Server& server) {
  const std::string prefix = "/v1/transactions";
  server.Post(prefix, [&api](const httplib::Request& req, httplib::Response& res) {
    Reply(api.Begin(req.body), res);
  });
  server.Post(prefix + "/" + kGid + "/branches",
              [&api](const httplib::Request& req, httplib::Response& res) {
                Reply(api.AddBranch(req.matches[1], req.body), res);
              });
  server.Post(prefix + "/" + kGid + ":submit",
              [&api](const httplib::Request& req, httplib::Response& res) {
                Reply(api.Submit(req.matches[1]), res);
              });
  server.Post(prefix + "/" + kGid + ":abort",
              [&api](const httplib::Request& req, httplib::Response& res) {
                Reply(api.Abort(req.matches[1]), res);
              });
  server.Get(prefix + "/" + kGid, [&api](const httplib::Request& req, httplib::Response& res) {
    Reply(api.Get(req.matches[1]), res);
  });
}

}  // namespace atomflow::testing
