// The transaction routes: the store's global transactions, operator resolution, and the
// self-coordinated (DTM-style) transaction API of txn::TxnApi.
#pragma once

#include <httplib.h>

#include <string>

#include "common/status.h"
#include "engine/engine.h"
#include "txn/txn_api.h"
#include "value/value.h"

namespace atomflow::server {

// Registers POST /v1/transactions, POST /v1/transactions/{gid}/branches, POST
// /v1/transactions/{gid}:submit, POST /v1/transactions/{gid}:abort and GET
// /v1/transactions/{gid} on server, each answering what api answers, without authorization
// (ApiServer registers the same handlers behind its own). api must outlive the server.
void RegisterTxnApiRoutes(txn::TxnApi& api, httplib::Server& server);

// The operator's way out of COMPENSATION_FAILED, as `atomflow txn resolve` does it: "RETRY"
// runs the compensations that did not land again (refused for a transaction decided COMMIT),
// "MARK_COMPENSATED" records that an operator finished by hand. Journals the resolution in the
// transaction's execution and returns the transaction as it is afterwards. Blocks while
// retried compensations run. FailedPrecondition when the transaction is in another state or a
// retried compensation failed again.
Result<Json> ResolveTransaction(engine::Engine& engine, const std::string& gid,
                                const std::string& action);

}  // namespace atomflow::server
