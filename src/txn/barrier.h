// The participant's side of a global transaction: a barrier table in the participant's own
// PostgreSQL database that makes every branch operation idempotent, turns a cancel that
// arrives before its try into an empty cancel, and refuses a try that arrives after its cancel
// (no hanging). The table and the HTTP contract are documented in docs/transactions-barrier.md.
#pragma once

#include <libpq-fe.h>

#include <functional>
#include <string>

#include "common/status.h"

namespace atomflow::txn {

// What Barrier::Run did with one branch operation, and the HTTP answer it calls for.
enum class BarrierResult {
  kApplied,    // the business write ran and committed with the barrier row: 200
  kEmpty,      // a cancel or compensate whose try or action never arrived: nothing to undo,
               // remembered so that the try is refused later: 200
  kDuplicate,  // the operation had already been done (a retry): 200 again, nothing ran
  kRejected,   // a try or action arriving after its cancel or compensate: 409, nothing ran
};

const char* BarrierResultName(BarrierResult result);

// Runs branch operations behind the barrier. Stateless: every call works on the connection it
// is given, which must not be inside a transaction (Run opens and ends its own). Thread safe
// as far as libpq is: one connection per thread at a time.
class Barrier {
 public:
  // The business write of an operation, run inside the barrier's local transaction on the same
  // connection. An error rolls back the barrier row with it, so the operation can be retried.
  using BusinessWrite = std::function<Status(PGconn*)>;

  // The table, created when missing.
  static const char* CreateTableSql();
  [[nodiscard]] static Status CreateTable(PGconn* connection);

  // In one local transaction: records (gid, branch, op) and runs the business write only if
  // the row is new. op is one of try, confirm, cancel, action, compensate. A cancel
  // (compensate) also records its try (action) with reason 'guard'; if that row is new the
  // cancel is empty and the business write does not run. A try (action) meeting a guard row
  // is rejected.
  [[nodiscard]] static Result<BarrierResult> Run(PGconn* connection, const std::string& gid,
                                                 const std::string& branch, const std::string& op,
                                                 const BusinessWrite& business);

  // The HTTP status a participant answers for a result: 200, or 409 for kRejected.
  static int HttpStatus(BarrierResult result);
};

}  // namespace atomflow::txn
