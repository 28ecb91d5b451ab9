// The interpreter's side of global transactions: running the block, deciding, and carrying
// out phase two (publish staged files, or compensate and discard).
#include <coroutine>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "engine/engine.h"
#include "engine/execution.h"
#include "engine/interpreter.h"

namespace atomflow::engine {

namespace {

constexpr int kCompensationAttempts = 6;
// A publish's retry budget, as COMMIT PREPARED's: about a minute and a half of capped backoff
// (ATOMFLOW_SLEEP_SCALE shortens it in tests).
constexpr int kPublishAttempts = 10;
constexpr double kFirstRetryDelay = 0.2;
const std::string kCommitFunction = "atomflow.files.commit";
const std::string kDiscardFunction = "atomflow.files.discard";

std::string ErrorMessage(const Value& error) {
  if (error.is_string()) return error.AsString();
  if (error.is_map()) {
    const Value* message = error.AsMap().Find("message");
    if (message != nullptr && message->is_string()) return message->AsString();
  }
  return DebugString(error);
}

Value AbortedError(const txn::Transaction& txn, const Value& cause, const std::string& step) {
  std::string message = "transaction '" + txn.step() + "' aborted";
  if (!step.empty()) message += ": step '" + step + "' failed";
  message += ": " + ErrorMessage(cause);
  if (txn.state() == txn::TxnState::kCompensationFailed) {
    message += " (some compensations failed: the transaction needs an operator)";
  }
  return Value(Map{{"message", message},
                   {"tags", Value(List{"TransactionAborted"})},
                   {"gid", txn.gid()},
                   {"state", txn::TxnStateName(txn.state())},
                   {"failed_step", step},
                   {"cause", cause}});
}

// The first staged file of the transaction that is no longer in its staging folder with the
// size it was written with, as the error that aborts the transaction; nullopt when all are.
// Its branch's step goes to `step`.
std::optional<Value> MissingStagedFile(const txn::Transaction& txn, std::string* step) {
  for (const txn::Branch& branch : txn.branches()) {
    if (branch.kind != txn::BranchKind::kStagedFile || !branch.staged.is_map()) continue;
    const Value* path = branch.staged.AsMap().Find("staged_path");
    const Value* size = branch.staged.AsMap().Find("size");
    if (path == nullptr || !path->is_string() || size == nullptr || !size->is_int()) continue;
    std::error_code error;
    uintmax_t found = std::filesystem::file_size(path->AsString(), error);
    if (!error && found == static_cast<uintmax_t>(size->AsInt())) continue;
    *step = branch.step;
    return lang::MakeError("SystemError", "the staged file of step '" + branch.step + "' (" +
                                              path->AsString() +
                                              ") is gone or changed: it can never be published");
  }
  return std::nullopt;
}

}  // namespace

Task<Flow> Interpreter::RunTransaction(const lang::Step& step, Frame& frame) {
  if (!transactions_.empty()) {
    lang::Raise("SystemError", "step '" + step.name + "': transactions cannot be nested");
  }
  const lang::TransactionSpec& spec = *step.transaction;
  txn::Transaction txn(
      execution_->id() + ":" + step.name + "#" + std::to_string(++transaction_count_), step.name);
  execution_->Record("txn_begin", txn.BeginRecord());
  transaction_deadline_ = 0;
  if (spec.timeout) {
    Value timeout = co_await Eval(*spec.timeout, frame);
    if (!timeout.is_number()) lang::Raise("TypeError", "transaction timeout must be a number");
    Value start = CallLocal("sys.now", {}, step.name);
    transaction_deadline_ = start.AsNumber() + timeout.AsNumber();
  }

  transactions_.push_back(&txn);
  error_step_.clear();
  std::optional<Value> failure;
  bool cancelled = false;
  Flow flow;
  try {
    flow = co_await RunBlock(spec.steps, frame);
  } catch (const lang::RaisedError& raised) {
    failure = raised.payload();
  } catch (const CancelledSignal&) {
    cancelled = true;
    failure = lang::MakeError("CancelledError", "the execution was cancelled");
  }
  transactions_.pop_back();
  if (!failure && txn.rollback_cause()) failure = *txn.rollback_cause();  // a failed prepare
  // Past the deadline at the commit point (a resumed process found the transaction undecided
  // after it, say): the timeout wins, as it would have in the middle of the block.
  if (!failure && transaction_deadline_ > 0 && !execution_->replaying() &&
      execution_->engine()->NowSeconds() > transaction_deadline_) {
    failure = lang::MakeError("TimeoutError",
                              "transaction '" + step.name + "' passed its timeout undecided");
  }
  std::string failed_step = failure ? error_step_ : "";
  error_step_.clear();
  // A staged file that vanished since it was written (a resumed execution whose staging folder
  // was emptied while no process ran, a store restored without it) could never be published:
  // the transaction aborts rather than decide a commit phase two cannot finish. A replay that
  // has the decision in its journal takes it from there instead.
  if (!failure && !execution_->replaying()) failure = MissingStagedFile(txn, &failed_step);

  // From here on the outcome must be carried out even if the execution is cancelled.
  execution_->set_shielded(true);
  txn::Decision decision = co_await Decide(
      txn, failure ? txn::Decision::kAbort : txn::Decision::kCommit, failure.value_or(Value()));
  if (decision == txn::Decision::kCommit) {
    // A confirm that ran out of attempts cannot turn the commit back: an operator finishes it.
    bool published = co_await Publish(txn);
    txn.set_state(published ? txn::TxnState::kCommitted : txn::TxnState::kCompensationFailed);
  } else {
    bool undone = co_await Undo(txn);
    txn.set_state(undone ? txn::TxnState::kAborted : txn::TxnState::kCompensationFailed);
  }
  execution_->Record("txn_end", txn.EndRecord(failure.value_or(Value())));
  execution_->engine()->progress()->OnTransaction(execution_->id(), txn.gid(), step.name,
                                                  txn::TxnStateName(txn.state()));
  execution_->set_shielded(false);

  if (cancelled) throw CancelledSignal{};
  if (decision == txn::Decision::kAbort) {
    throw lang::RaisedError(AbortedError(txn, failure.value_or(Value()), failed_step));
  }
  co_return flow;
}

namespace {

bool FinishedAtCommit(const txn::Branch& branch) {
  return branch.kind == txn::BranchKind::kTcc || branch.kind == txn::BranchKind::kPrepared ||
         branch.kind == txn::BranchKind::kStagedFile;
}

// A commit with no branch to finish (a saga's, every branch compensable) sends nothing out
// because of the decision: whatever the execution does next that is seen outside (an effect,
// its end) waits for a record queued after the decision, so it need not wait for the decision
// itself. Until then, a crash leaves the transaction undecided with every result journaled,
// and the replay reaches the same commit.
bool DecisionNeedsItsOwnCommit(const txn::Transaction& txn, txn::Decision decision) {
  if (decision != txn::Decision::kCommit) return true;
  for (const txn::Branch& branch : txn.branches()) {
    if (FinishedAtCommit(branch)) return true;
  }
  return false;
}

}  // namespace

// The commit point: the decision is durable before phase two starts (or before anything the
// execution does after it becomes durable, see DecisionNeedsItsOwnCommit). A resumed execution
// gets the journaled decision back, so it finishes what the earlier process decided.
Task<txn::Decision> Interpreter::Decide(txn::Transaction& txn, txn::Decision decision,
                                        const Value& cause) {
  EffectRequest request;
  request.step = txn.step();
  request.function = "txn.decide";
  request.gid = txn.gid();
  request.needs_intent = false;
  bool own_commit = DecisionNeedsItsOwnCommit(txn, decision);
  request.op = own_commit ? "decide" : "record";
  Json record = txn.DecisionRecord(decision, cause);
  if (!own_commit) {
    // A commit with nothing to finish is complete once decided: its decision record also
    // stands for the txn_end that follows it, whose key it names (the key the txn_end takes:
    // nothing else on this strand takes one in between). Engine::Decide, and on a resume the
    // journal's index, mark that record carried, so it is not written on its own.
    record["state"] = txn::TxnStateName(txn::TxnState::kCommitted);
    record["end_key"] = execution_->NextRecordKey();
  }
  request.args = FromJournalJson(record);
  EffectOutcome outcome = co_await execution_->Perform(std::move(request));
  bool commit = outcome.value.is_string() && outcome.value.AsString() == "COMMIT";
  co_return commit ? txn::Decision::kCommit : txn::Decision::kAbort;
}

// Stages a file: inside a transaction it becomes a prepared branch published at commit;
// outside one it is published at once.
Task<Value> Interpreter::StageFile(const std::string& function, const Map& args,
                                   const std::string& step) {
  EffectRequest request;
  request.step = step;
  request.function = function;
  request.args = Value(args);
  request.needs_intent = false;
  request.op = transactions_.empty() ? "put" : "stage";
  if (!transactions_.empty()) request.gid = transactions_.back()->gid();
  EffectOutcome outcome = co_await execution_->Perform(std::move(request));
  if (!outcome.ok) throw lang::RaisedError(std::move(outcome.value));

  if (!transactions_.empty()) {
    txn::Transaction& txn = *transactions_.back();
    const txn::Branch& branch =
        txn.AddBranch(txn::BranchKind::kStagedFile, step, Value(), outcome.value);
    execution_->RecordBranch(txn.BranchRecord(branch), step);
  }
  co_return outcome.value;
}

// The phase-two operations of one commit, running at once on the transaction's strand.
struct Interpreter::PhaseTwoRun {
  Strand* strand = nullptr;
  std::coroutine_handle<> parent;  // Publish, waiting for the operations
  size_t running = 0;
  bool all_ok = true;
  std::exception_ptr failure;  // the first operation that threw (a broken replay, say)
};

// Phase two, commit: every branch's operation is issued at once, in registration order, and
// each retries on its own; the commit waits for all of them. They share the transaction's
// strand: each operation's first effect takes the key the branch had when they ran one after
// the other, and outcomes are consumed in journal order, so a replay rebuilds the same
// interleaving (and the same keys for the retries).
Task<bool> Interpreter::Publish(txn::Transaction& txn) {
  std::vector<const txn::Branch*> branches;
  for (const txn::Branch& branch : txn.branches()) {
    if (FinishedAtCommit(branch)) branches.push_back(&branch);
  }
  if (branches.empty()) co_return true;
  if (branches.size() == 1) co_return co_await PublishBranch(*branches.front(), txn);

  PhaseTwoRun run;
  run.strand = &execution_->current_strand();
  run.running = branches.size();
  std::vector<Task<int>> operations;
  operations.reserve(branches.size());
  for (const txn::Branch* branch : branches) {
    operations.push_back(RunPhaseTwoOp(run, *branch, txn));
    execution_->Schedule(operations.back().handle(), run.strand);
  }
  JoinAwaiter join(&run.parent);
  co_await join;
  if (run.failure) std::rethrow_exception(run.failure);
  co_return run.all_ok;
}

Task<int> Interpreter::RunPhaseTwoOp(PhaseTwoRun& run, const txn::Branch& branch,
                                     const txn::Transaction& txn) {
  try {
    bool ok = co_await PublishBranch(branch, txn);
    run.all_ok = run.all_ok && ok;
  } catch (...) {
    if (!run.failure) run.failure = std::current_exception();
  }
  if (--run.running == 0) execution_->Schedule(run.parent, run.strand);
  co_return 0;
}

// One branch's part of a commit; false when it ran out of attempts. Phase two never turns
// back, so a branch that cannot be finished (a staged file whose target folder was removed
// after the prepare, say) leaves the transaction COMPENSATION_FAILED for an operator, with
// each failed attempt in the execution's log.
Task<bool> Interpreter::PublishBranch(const txn::Branch& branch, const txn::Transaction& txn) {
  if (branch.kind == txn::BranchKind::kTcc) co_return co_await ConfirmTcc(branch, txn);
  if (branch.kind == txn::BranchKind::kPrepared) co_return co_await CommitPrepared(branch, txn);
  Value last_error;
  for (int attempt = 0; attempt < kPublishAttempts; ++attempt) {
    if (attempt > 0) {
      co_await Sleep(std::min(30.0, kFirstRetryDelay * (1 << std::min(attempt - 1, 8))),
                     branch.step);
    }
    EffectOutcome outcome = co_await FileOp(kCommitFunction, branch, txn);
    if (outcome.ok) co_return true;
    last_error = std::move(outcome.value);
    execution_->engine()->progress()->OnLog(execution_->id(), branch.step, "WARNING",
                                            "publishing the file of step '" + branch.step +
                                                "' failed (attempt " + std::to_string(attempt + 1) +
                                                "): " + ErrorMessage(last_error));
  }
  std::string text = "publishing the file of step '" + branch.step + "' failed " +
                     std::to_string(kPublishAttempts) +
                     " times: the transaction needs an operator: " + ErrorMessage(last_error);
  log::Error("execution {} transaction {}: {}", execution_->id(), txn.gid(), text);
  execution_->engine()->progress()->OnLog(execution_->id(), branch.step, "ERROR", text);
  co_return false;
}

Task<bool> Interpreter::Undo(txn::Transaction& txn) {
  // Crash tests: the abort decision and its result are durable, no undo has its intent yet.
  if (!execution_->replaying()) execution_->engine()->CrashPoint("abort:" + txn.step());
  bool all_undone = true;
  const std::vector<txn::Branch>& branches = txn.branches();
  for (auto it = branches.rbegin(); it != branches.rend(); ++it) {
    if (it->kind == txn::BranchKind::kStagedFile) {
      EffectOutcome outcome = co_await FileOp(kDiscardFunction, *it, txn);
      all_undone = all_undone && outcome.ok;
      continue;
    }
    if (it->kind == txn::BranchKind::kTcc) {
      bool cancelled = co_await CancelTcc(*it, txn);
      all_undone = all_undone && cancelled;
      continue;
    }
    if (it->kind == txn::BranchKind::kPrepared) {
      bool rolled_back = co_await RollbackPrepared(*it, txn);
      all_undone = all_undone && rolled_back;
      continue;
    }
    all_undone = co_await RunCompensation(*it, txn) && all_undone;
  }
  co_return all_undone;
}

Task<EffectOutcome> Interpreter::FileOp(const std::string& function, const txn::Branch& branch,
                                        const txn::Transaction& txn) {
  EffectRequest request;
  request.step = branch.step;
  request.function = function;
  request.args = branch.staged;
  request.needs_intent = false;
  request.gid = txn.gid();
  request.branch = branch.id;
  request.op = function == "atomflow.files.commit" ? "confirm" : "cancel";
  co_return co_await execution_->Perform(std::move(request));
}

// Runs a branch's compensating call, retrying with backoff; false when every attempt failed.
Task<bool> Interpreter::RunCompensation(const txn::Branch& branch, const txn::Transaction& txn) {
  const Map& undo = branch.undo.AsMap();
  if (branch.failed) co_return true;  // the action definitely did not run: nothing to undo
  if (const Value* render_error = undo.Find("render_error"); render_error != nullptr) {
    // The action's outcome was unknown and its compensation needed the result it never got.
    execution_->engine()->progress()->OnLog(
        execution_->id(), branch.step, "ERROR",
        "step '" + branch.step +
            "' may have run but cannot be compensated: " + render_error->AsString());
    co_return false;
  }
  // Retried with the same capped, jittered backoff as a TCC cancel (interpreter_tcc.cc).
  bool undone = co_await RunBranchOp(branch, txn, branch.undo, "compensate", kCompensationAttempts);
  co_return undone;
}

}  // namespace atomflow::engine
