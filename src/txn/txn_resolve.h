// The operator's way out of COMPENSATION_FAILED, shared by `atomflow txn resolve` and the API.
#pragma once

#include <functional>
#include <string>

#include "common/status.h"
#include "engine/engine.h"
#include "value/value.h"

namespace atomflow::txn {

enum class Resolution { kRetry, kMarkCompensated };

// What one retried compensation did, for the operator watching: branch id, step, and "compensated"
// or the error it raised.
using CompensationReport =
    std::function<void(const std::string& branch, const std::string& step, const std::string&)>;

// What ResolveTransaction did. `status` is not ok when nothing was resolved: NotFound, or
// FailedPrecondition for a transaction in another state or a RETRY of one decided COMMIT.
// `failed_again` says that RETRY ran and some compensation failed again (the transaction stays
// COMPENSATION_FAILED); `transaction` is the transaction as it is afterwards.
struct ResolveOutcome {
  Status status;
  bool failed_again = false;
  Json transaction;
  std::string end_state;   // COMMITTED or ABORTED when resolved
  std::string resolution;  // how, in words, as journaled
};

// kRetry issues each compensation that has not landed again, newest branch first, journaling
// intent and outcome under keys of their own (refused for a transaction decided COMMIT: a
// commit never turns back); kMarkCompensated records that an operator finished by hand. The
// resolution is journaled durably in the transaction's execution. Blocks while retried
// compensations run.
ResolveOutcome ResolveTransaction(engine::Engine& engine, const std::string& gid,
                                  Resolution resolution, const CompensationReport& report = {});

}  // namespace atomflow::txn
