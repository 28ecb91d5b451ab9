// The interpreter's side of atomflow.sql.exec: statements committed at once outside a
// transaction, and the prepared (two-phase commit) branch inside one. The protocol and what a
// crash at each point leaves are in docs/transactions-sql.md.
#include <algorithm>
#include <cstdio>

#include "common/log.h"
#include "engine/engine.h"
#include "engine/execution.h"
#include "engine/interpreter.h"

namespace atomflow::engine {

namespace {

// Phase two's retry budget: about a minute and a half of capped backoff before an operator
// is needed (ATOMFLOW_SLEEP_SCALE shortens it in tests).
constexpr int kFinishAttempts = 10;
constexpr double kFirstFinishDelay = 0.2;
constexpr double kMaxFinishDelay = 30.0;
// PostgreSQL's limit on a prepared transaction's gid (GIDSIZE - 1).
constexpr size_t kMaxXidLength = 199;
constexpr size_t kMaxXidStepLength = 100;

const char kExecFunction[] = "atomflow.sql.exec";
const char kCommitFunction[] = "atomflow.sql.commit_prepared";
const char kRollbackFunction[] = "atomflow.sql.rollback_prepared";

double FinishDelay(int attempt) {
  return std::min(kMaxFinishDelay, kFirstFinishDelay * (1 << std::min(attempt - 1, 8)));
}

std::string Fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  char hex[17];
  snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

// "atomflow:<execution id>:<block>#<n>:<branch n>". A long block name is clipped and a hash of
// the whole transaction gid added, so the gid stays unique and within PostgreSQL's limit.
std::string PreparedXid(const txn::Transaction& txn) {
  std::string branch = std::to_string(txn.branches().size() + 1);
  std::string xid = "atomflow:" + txn.gid() + ":" + branch;
  if (xid.size() <= kMaxXidLength) return xid;
  size_t colon = txn.gid().find(':');
  std::string execution_id = txn.gid().substr(0, colon);
  std::string block = txn.gid().substr(colon + 1, kMaxXidStepLength);
  return "atomflow:" + execution_id + ":" + block + "~" + Fnv1a(txn.gid()) + ":" + branch;
}

bool HasTag(const Value& error, const std::string& tag) {
  const Value* tags = error.is_map() ? error.AsMap().Find("tags") : nullptr;
  if (tags == nullptr || !tags->is_list()) return false;
  for (const Value& each : tags->AsList()) {
    if (each.is_string() && each.AsString() == tag) return true;
  }
  return false;
}

// A broken connection or a cut-off prepare may have left the work prepared on the server.
bool OutcomeUnknown(const Value& error) {
  return HasTag(error, "ConnectionError") || HasTag(error, "TimeoutError");
}

bool Missing(const Value& value) {
  const Value* missing = value.is_map() ? value.AsMap().Find("missing") : nullptr;
  return missing != nullptr && missing->is_bool() && missing->AsBool();
}

std::string Message(const Value& error) {
  const Value* message = error.is_map() ? error.AsMap().Find("message") : nullptr;
  return message != nullptr && message->is_string() ? message->AsString() : DebugString(error);
}

std::string StringField(const Value& map, const char* name) {
  const Value* value = map.is_map() ? map.AsMap().Find(name) : nullptr;
  return value != nullptr && value->is_string() ? value->AsString() : "";
}

}  // namespace

// Outside a transaction the statements run in one local transaction and commit. An intent is
// journaled first: a process that dies before the result is durable runs them again on resume
// (at least once, like any effect without a participant-side idempotency key).
Task<Value> Interpreter::SqlExec(Map args, const std::string& step) {
  if (!transactions_.empty()) co_return co_await PrepareSql(std::move(args), step);
  EffectRequest request;
  request.step = step;
  request.function = kExecFunction;
  request.args = Value(std::move(args));
  request.needs_intent = true;
  request.op = "exec";
  EffectOutcome outcome = co_await execution_->Perform(std::move(request));
  if (!outcome.ok) throw lang::RaisedError(std::move(outcome.value));
  co_return std::move(outcome.value);
}

// The prepared branch. Its record (database name and gid) is journaled before PREPARE
// TRANSACTION is sent, so that recovery knows every gid that may sit prepared on a server.
Task<Value> Interpreter::PrepareSql(Map args, const std::string& step) {
  CheckTransactionDeadline(step);
  const Value* database = args.Find("database");
  if (database == nullptr || !database->is_string()) {
    lang::Raise("TypeError", "atomflow.sql.exec: 'database' must name a configured database");
  }
  txn::Transaction& txn = *transactions_.back();
  std::string xid = PreparedXid(txn);
  txn::Branch spec;
  spec.kind = txn::BranchKind::kPrepared;
  spec.step = step;
  spec.staged = Value(Map{{"database", *database}, {"xid", Value(xid)}});
  const txn::Branch& branch = txn.AddBranch(std::move(spec));
  std::string branch_id = branch.id;
  execution_->RecordBranch(txn.BranchRecord(branch), step);

  args.Set("xid", Value(xid));
  EffectRequest request;
  request.step = step;
  request.function = kExecFunction;
  request.args = Value(std::move(args));
  request.needs_intent = true;
  request.gid = txn.gid();
  request.branch = branch_id;
  request.op = "prepare";
  request.txn_deadline = transaction_deadline_;
  EffectOutcome outcome = co_await execution_->Perform(std::move(request));
  if (!outcome.ok) {
    // The work is not prepared (or may be, when the answer was lost): phase two rolls the gid
    // back whatever the decision. A definite failure also dooms the transaction.
    txn.Abandon(branch_id);
    if (!OutcomeUnknown(outcome.value)) txn.MarkRollbackOnly(outcome.value);
    throw lang::RaisedError(std::move(outcome.value));
  }
  co_return std::move(outcome.value);
}

// COMMIT PREPARED, retried with capped backoff. A gid the server does not know was finished
// by someone else (an operator, or a commit whose answer was lost): only a journaled commit
// could prove which, and there is none, so the transaction is left for an operator.
Task<bool> Interpreter::CommitPrepared(const txn::Branch& branch, const txn::Transaction& txn) {
  if (txn.abandoned(branch.id)) co_return co_await RollbackPrepared(branch, txn);
  std::string xid = StringField(branch.staged, "xid");
  for (int attempt = 0; attempt < kFinishAttempts; ++attempt) {
    if (attempt > 0) co_await Sleep(FinishDelay(attempt), branch.step);
    EffectOutcome outcome = co_await FinishPrepared(kCommitFunction, branch, txn);
    if (outcome.ok && !Missing(outcome.value)) co_return true;
    if (outcome.ok) {
      std::string text = "COMMIT PREPARED " + xid + " found no prepared transaction and the " +
                         "journal holds no commit of it: the transaction needs an operator";
      log::Error("execution {} transaction {}: {}", execution_->id(), txn.gid(), text);
      execution_->engine()->progress()->OnLog(execution_->id(), branch.step, "ERROR", text);
      co_return false;
    }
    execution_->engine()->progress()->OnLog(execution_->id(), branch.step, "WARNING",
                                            "COMMIT PREPARED of step '" + branch.step +
                                                "' failed (attempt " + std::to_string(attempt + 1) +
                                                "): " + Message(outcome.value));
  }
  log::Error(
      "execution {} transaction {}: COMMIT PREPARED {} failed {} times: the "
      "transaction needs an operator",
      execution_->id(), txn.gid(), xid, kFinishAttempts);
  co_return false;
}

// ROLLBACK PREPARED, retried like a compensation. A gid the server does not know was never
// prepared or is already rolled back: either way the branch is undone.
Task<bool> Interpreter::RollbackPrepared(const txn::Branch& branch, const txn::Transaction& txn) {
  for (int attempt = 0; attempt < kFinishAttempts; ++attempt) {
    if (attempt > 0) co_await Sleep(FinishDelay(attempt), branch.step);
    EffectOutcome outcome = co_await FinishPrepared(kRollbackFunction, branch, txn);
    if (outcome.ok) co_return true;
    execution_->engine()->progress()->OnLog(execution_->id(), branch.step, "WARNING",
                                            "ROLLBACK PREPARED of step '" + branch.step +
                                                "' failed (attempt " + std::to_string(attempt + 1) +
                                                "): " + Message(outcome.value));
  }
  log::Error(
      "execution {} transaction {}: ROLLBACK PREPARED {} failed {} times: the "
      "transaction needs an operator",
      execution_->id(), txn.gid(), StringField(branch.staged, "xid"), kFinishAttempts);
  co_return false;
}

Task<EffectOutcome> Interpreter::FinishPrepared(const std::string& function,
                                                const txn::Branch& branch,
                                                const txn::Transaction& txn) {
  EffectRequest request;
  request.step = branch.step;
  request.function = function;
  request.args = branch.staged;
  request.needs_intent = false;  // idempotent: a repeat finds the gid gone (`missing`)
  request.gid = txn.gid();
  request.branch = branch.id;
  request.op = function == kCommitFunction ? "confirm" : "cancel";
  co_return co_await execution_->Perform(std::move(request));
}

}  // namespace atomflow::engine
