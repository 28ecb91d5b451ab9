// The routes of the self-coordinated transaction API (txn::TxnApi) on a cpp-httplib server.
#pragma once

#include <httplib.h>

#include "txn/txn_api.h"

namespace atomflow::testing {

// Registers POST /v1/transactions, POST /v1/transactions/{gid}/branches, POST
// /v1/transactions/{gid}:submit, POST /v1/transactions/{gid}:abort and GET
// /v1/transactions/{gid} on server, each answering what api answers, as JSON. api must outlive
// the server's handlers.
void RegisterTxnApiRoutes(txn::TxnApi& api, httplib::Server& server);

}  // namespace atomflow::testing
