// The routes of the self-coordinated transaction API (txn::TxnApi) on a cpp-httplib server, for
// tests that serve them without the rest of the API; they live in src/server/txn_routes.h.
#pragma once

#include <httplib.h>

#include "server/txn_routes.h"
#include "txn/txn_api.h"

namespace atomflow::testing {

// Registers POST /v1/transactions, POST /v1/transactions/{gid}/branches, POST
// /v1/transactions/{gid}:submit, POST /v1/transactions/{gid}:abort and GET
// /v1/transactions/{gid} on server, each answering what api answers, as JSON. api must outlive
// the server's handlers.
inline void RegisterTxnApiRoutes(txn::TxnApi& api, httplib::Server& server) {
  server::RegisterTxnApiRoutes(api, server);
}

}  // namespace atomflow::testing
