// The participant barrier over libpq: insert-based ("change instead of check"), so concurrent
// duplicates and a try racing its cancel are serialised by the table's primary key.
#include "txn/barrier.h"

#include <memory>
#include <vector>

namespace atomflow::txn {

namespace {

constexpr char kCreateTable[] =
    "CREATE TABLE IF NOT EXISTS atomflow_barrier ("
    " gid TEXT NOT NULL,"
    " branch TEXT NOT NULL,"
    " op TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " created_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
    " PRIMARY KEY (gid, branch, op))";

constexpr char kInsert[] =
    "INSERT INTO atomflow_barrier (gid, branch, op, reason) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT DO NOTHING";

constexpr char kReason[] =
    "SELECT reason FROM atomflow_barrier WHERE gid = $1 AND branch = $2 AND op = $3";

constexpr char kMarkEmpty[] =
    "UPDATE atomflow_barrier SET reason = 'empty' WHERE gid = $1 AND branch = $2 AND op = $3";

// The reasons a row carries.
constexpr char kReasonApplied[] = "applied";  // the operation itself (its business write ran)
constexpr char kReasonGuard[] = "guard";      // a try/action row written by its cancel

using ResultPtr = std::unique_ptr<PGresult, decltype(&PQclear)>;

ResultPtr Exec(PGconn* connection, const char* sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const std::string& param : params) values.push_back(param.c_str());
  return ResultPtr(PQexecParams(connection, sql, static_cast<int>(values.size()), nullptr,
                                values.data(), nullptr, nullptr, 0),
                   &PQclear);
}

Status Check(PGconn* connection, const ResultPtr& result, const char* what) {
  ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return Status::Ok();
  return Status::Error(std::string("barrier: ") + what + ": " + PQerrorMessage(connection));
}

// Inserts a row; true when it is new. While another transaction holds the same key
// uncommitted, PostgreSQL waits for it, so the answer is always final.
Result<bool> Insert(PGconn* connection, const std::vector<std::string>& row) {
  ResultPtr result = Exec(connection, kInsert, row);
  Status status = Check(connection, result, "insert");
  if (!status.ok()) return status;
  return std::string(PQcmdTuples(result.get())) == "1";
}

Status Simple(PGconn* connection, const char* sql) {
  ResultPtr result(PQexec(connection, sql), &PQclear);
  return Check(connection, result, sql);
}

// The operation a cancel or compensate undoes; empty for the others.
std::string OriginOf(const std::string& op) {
  if (op == "cancel") return "try";
  if (op == "compensate") return "action";
  return "";
}

bool IsKnownOp(const std::string& op) {
  return op == "try" || op == "confirm" || op == "cancel" || op == "action" || op == "compensate";
}

// The body of Run, inside BEGIN; the caller commits on kApplied/kEmpty and rolls back else.
Result<BarrierResult> RunInTransaction(PGconn* connection, const std::string& gid,
                                       const std::string& branch, const std::string& op,
                                       const Barrier::BusinessWrite& business) {
  Result<bool> inserted = Insert(connection, {gid, branch, op, kReasonApplied});
  if (!inserted.ok()) return inserted.status();
  if (!*inserted) {
    // The row exists: a repeat, unless a cancel wrote it as a guard before this try came.
    ResultPtr reason = Exec(connection, kReason, {gid, branch, op});
    Status status = Check(connection, reason, "read reason");
    if (!status.ok()) return status;
    bool guard =
        PQntuples(reason.get()) == 1 && std::string(PQgetvalue(reason.get(), 0, 0)) == kReasonGuard;
    return guard ? BarrierResult::kRejected : BarrierResult::kDuplicate;
  }

  std::string origin = OriginOf(op);
  if (!origin.empty()) {
    Result<bool> guarded = Insert(connection, {gid, branch, origin, kReasonGuard});
    if (!guarded.ok()) return guarded.status();
    if (*guarded) {
      // The try never arrived: nothing to undo, and the guard row refuses it from now on.
      ResultPtr marked = Exec(connection, kMarkEmpty, {gid, branch, op});
      Status status = Check(connection, marked, "mark empty");
      if (!status.ok()) return status;
      return BarrierResult::kEmpty;
    }
  }
  Status written = business(connection);
  if (!written.ok()) return written;
  return BarrierResult::kApplied;
}

}  // namespace

const char* BarrierResultName(BarrierResult result) {
  switch (result) {
    case BarrierResult::kApplied:
      return "applied";
    case BarrierResult::kEmpty:
      return "empty";
    case BarrierResult::kDuplicate:
      return "duplicate";
    case BarrierResult::kRejected:
      return "rejected";
  }
  return "unknown";
}

const char* Barrier::CreateTableSql() { return kCreateTable; }

Status Barrier::CreateTable(PGconn* connection) { return Simple(connection, kCreateTable); }

Result<BarrierResult> Barrier::Run(PGconn* connection, const std::string& gid,
                                   const std::string& branch, const std::string& op,
                                   const BusinessWrite& business) {
  if (!IsKnownOp(op)) return Status::Error("barrier: unknown operation '" + op + "'");
  if (gid.empty() || branch.empty()) return Status::Error("barrier: gid and branch are required");
  Status begun = Simple(connection, "BEGIN");
  if (!begun.ok()) return begun;

  Result<BarrierResult> result = RunInTransaction(connection, gid, branch, op, business);
  bool keep =
      result.ok() && (*result == BarrierResult::kApplied || *result == BarrierResult::kEmpty);
  // A duplicate or a rejection wrote nothing; a failed business write leaves no trace.
  Status ended = Simple(connection, keep ? "COMMIT" : "ROLLBACK");
  if (!result.ok()) return result;
  if (!ended.ok()) return ended;
  return result;
}

int Barrier::HttpStatus(BarrierResult result) {
  return result == BarrierResult::kRejected ? 409 : 200;
}

}  // namespace atomflow::txn
