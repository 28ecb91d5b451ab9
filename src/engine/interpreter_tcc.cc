// The interpreter's try-confirm-cancel branches, and compensable steps whose action's outcome
// may be unknown: registering branches so that every action that may have run is undone.
//
// What a participant's answer means (docs/transactions.md): 2xx is success; 409 and the other
// client errors but 408 and 429 are a definite failure (the request was refused, nothing ran),
// and so is a request that never left (a URL that does not parse or resolve, a refused
// connection); anything else (5xx, 408, 429, a timeout, a broken connection) is unknown: the
// operation may have run.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "engine/engine.h"
#include "engine/execution.h"
#include "engine/interpreter.h"

namespace atomflow::engine {

namespace {

constexpr int kTryAttempts = 5;           // a try with unknown answers is abandoned after these
constexpr int kCancelAttempts = 6;        // as many as a compensation gets
constexpr int kConfirmAttempts = 10;      // phase two of a commit: retried longer
constexpr double kFirstRetryDelay = 0.2;  // seconds
constexpr double kMaxRetryDelay = 30;     // seconds

// How a participant answered one branch operation.
enum class Answer { kSuccess, kDefiniteFailure, kUnknown };

bool HasTag(const Value& error, std::string_view tag) {
  if (!error.is_map()) return false;
  const Value* tags = error.AsMap().Find("tags");
  if (tags == nullptr || !tags->is_list()) return false;
  for (const Value& item : tags->AsList()) {
    if (item.is_string() && item.AsString() == tag) return true;
  }
  return false;
}

// True when the request of a failed http.* call never left the process: it was never built
// (a TypeError), or the connection was never made (ConnectionFailedError: a URL that does not
// parse or resolve, a refused connection).
bool NeverSent(const EffectOutcome& outcome) {
  return !outcome.ok &&
         (HasTag(outcome.value, "TypeError") || HasTag(outcome.value, "ConnectionFailedError"));
}

// Classifies the outcome of an http.* call.
Answer ClassifyHttp(const EffectOutcome& outcome) {
  if (outcome.ok) return Answer::kSuccess;
  if (NeverSent(outcome)) return Answer::kDefiniteFailure;
  const Value* code = outcome.value.is_map() ? outcome.value.AsMap().Find("code") : nullptr;
  if (code == nullptr || !code->is_int() || !HasTag(outcome.value, "HttpError")) {
    return Answer::kUnknown;
  }
  int64_t status = code->AsInt();
  bool client_error = status >= 400 && status < 500 && status != 408 && status != 429;
  return client_error ? Answer::kDefiniteFailure : Answer::kUnknown;
}

bool IsHttp(const std::string& function) { return function.rfind("http.", 0) == 0; }

// FNV-1a: a hash that is the same in every build and process, so jitter replays exactly.
uint64_t StableHash(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  return hash;
}

// Capped exponential backoff with "equal jitter": half the delay fixed, half spread by a
// hash of the branch, the operation and the attempt. Derived, not drawn, so a replay asks for
// the very same sleep.
double RetryDelay(const std::string& branch, const std::string& op, int attempt) {
  double capped = std::min(kMaxRetryDelay, kFirstRetryDelay * (1 << std::min(attempt - 1, 10)));
  uint64_t hash = StableHash(branch + "/" + op + "/" + std::to_string(attempt));
  double spread = static_cast<double>(hash % 1000) / 1000.0;
  return capped / 2 + capped / 2 * spread;
}

std::string ErrorText(const Value& error) {
  if (error.is_map()) {
    const Value* message = error.AsMap().Find("message");
    if (message != nullptr && message->is_string()) return message->AsString();
  }
  return DebugString(error);
}

Value RenderedCall(const std::string& function, Map args) {
  return Value(Map{{"function", function}, {"args", Value(std::move(args))}});
}

}  // namespace

Task<Flow> Interpreter::RunTcc(const lang::Step& step, Frame& frame) {
  if (transactions_.empty()) {
    lang::Raise("SystemError", "step '" + step.name + "': a tcc step must be inside a transaction");
  }
  const lang::TccSpec& spec = *step.tcc;
  Map try_args = co_await EvalArgs(spec.try_call.args, frame);
  Map confirm_args = co_await EvalArgs(spec.confirm.args, frame);
  Map cancel_args = co_await EvalArgs(spec.cancel.args, frame);

  // The branch is journaled before the try is sent (the try's intent comes after it in the
  // journal), so a try that may have run is always cancelled on abort, even after a crash.
  txn::Transaction& txn = *transactions_.back();
  txn::Branch registered;
  registered.kind = txn::BranchKind::kTcc;
  registered.step = step.name;
  registered.confirm = RenderedCall(spec.confirm.function, std::move(confirm_args));
  registered.undo = RenderedCall(spec.cancel.function, std::move(cancel_args));
  const txn::Branch& branch = txn.AddBranch(std::move(registered));
  std::string branch_id = branch.id;  // other strands may add branches while the try runs
  execution_->RecordBranch(txn.BranchRecord(branch), step.name);

  std::optional<Value> failure;
  Value result;
  try {
    result = co_await SendTry(spec.try_call.function, std::move(try_args), branch_id, step.name);
  } catch (const lang::RaisedError& raised) {
    failure = raised.payload();
  }
  if (failure) {
    // The try failed or never got a definite answer. Should the block handle the error and
    // commit, this branch is cancelled rather than confirmed (see ConfirmTcc).
    txn::Branch* failed = txn.FindBranch(branch_id);
    failed->failed = true;
    execution_->RecordBranch(txn.BranchRecord(*failed), step.name);
    throw lang::RaisedError(std::move(*failure));
  }
  if (!spec.try_call.result.empty()) frame.vars().Set(spec.try_call.result, result);
  co_return Flow::Normal();
}

// Sends a try until a definite answer: success returns the reply; a definite failure, or no
// definite answer within the budget, raises (the transaction aborts and cancels the branch).
Task<Value> Interpreter::SendTry(const std::string& function, Map args, const std::string& branch,
                                 const std::string& step) {
  txn::Transaction& txn = *transactions_.back();
  Value last_error;
  for (int attempt = 0; attempt < kTryAttempts; ++attempt) {
    if (attempt > 0) co_await Sleep(RetryDelay(branch, "try", attempt), step);
    CheckTransactionDeadline(step);
    EffectRequest request;
    request.step = step;
    request.function = function;
    request.args = Value(args);
    request.needs_intent = true;
    request.gid = txn.gid();
    request.branch = branch;
    request.op = "try";
    request.txn_deadline = transaction_deadline_;
    EffectOutcome outcome = co_await execution_->Perform(std::move(request));
    Answer answer = ClassifyHttp(outcome);
    if (answer == Answer::kSuccess) co_return std::move(outcome.value);
    if (answer == Answer::kDefiniteFailure) {
      if (attempt == 0 && NeverSent(outcome)) txn.FindBranch(branch)->never_sent = true;
      throw lang::RaisedError(std::move(outcome.value));
    }
    WarnRetry(step, "try", attempt, outcome.value);
    last_error = std::move(outcome.value);
  }
  std::string message = "the try of step '" + step + "' got no definite answer in " +
                        std::to_string(kTryAttempts) + " attempts: " + ErrorText(last_error);
  Map error = lang::MakeError("TransactionBranchError", message).AsMap();
  error.Set("cause", std::move(last_error));
  throw lang::RaisedError(Value(std::move(error)));
}

// A compensable step inside a transaction. Its branch is registered (and journaled) before
// the action is sent, so the action and its compensation carry the same Atomflow-Branch and a
// crash at any point leaves the branch in the journal. Once the outcome is known the branch is
// completed: success or unknown (it may have run) renders the compensation, after the action
// so that it can use the result; a definite failure (the participant refused, nothing ran)
// marks it failed and it is not compensated.
Task<Flow> Interpreter::RunCompensableCall(const lang::Step& step, Frame& frame) {
  const lang::CallSpec& call = *step.call;
  Map args = co_await EvalArgs(call.args, frame);
  // An http action's intent is journaled before it is sent and registers the branch itself.
  bool folded = IsHttp(call.function);
  std::string branch_id = RegisterPendingCompensable(step, folded);
  std::optional<Value> failure;
  bool cancelled = false;
  try {
    Value result;
    if (folded) {
      result = co_await SendAction(call.function, std::move(args), branch_id, step);
    } else {
      result = co_await Call(call.function, std::move(args), frame, step.name);
    }
    if (!call.result.empty()) frame.vars().Set(call.result, result);
  } catch (const lang::RaisedError& raised) {
    failure = raised.payload();
  } catch (const CancelledSignal&) {
    cancelled = true;  // the action may have run before the cancellation took effect
  }
  bool definite = failure && IsHttp(call.function) &&
                  ClassifyHttp(EffectOutcome::Failure(*failure)) == Answer::kDefiniteFailure;
  bool completed = co_await CompleteCompensable(step, frame, branch_id, definite,
                                                failure.has_value() || cancelled);
  (void)completed;
  if (cancelled) throw CancelledSignal{};
  if (failure) throw lang::RaisedError(std::move(*failure));
  co_return Flow::Normal();
}

// Until its outcome is known the branch's compensation is unrenderable: a branch left pending
// (its step abandoned mid-action) makes the abort end COMPENSATION_FAILED, never silently ok.
// When `folded`, the action's intent records the pending branch (it is journaled before the
// action is sent, and names the gid, the branch and the step): its own record is not written,
// only its key taken, so the keys are those of an older journal that has the record.
std::string Interpreter::RegisterPendingCompensable(const lang::Step& step, bool folded) {
  txn::Transaction& txn = *transactions_.back();
  txn::Branch pending;
  pending.kind = txn::BranchKind::kCompensable;
  pending.step = step.name;
  pending.outcome_unknown = true;
  pending.undo = Value(
      Map{{"function", step.compensate->function}, {"render_error", txn::kOutcomeNeverLearned}});
  const txn::Branch& branch = txn.AddBranch(std::move(pending));
  if (folded) {
    execution_->SkipRecord();
  } else {
    execution_->RecordBranch(txn.BranchRecord(branch), step.name);
  }
  return branch.id;
}

Task<Value> Interpreter::SendAction(const std::string& function, Map args,
                                    const std::string& branch, const lang::Step& step) {
  CheckTransactionDeadline(step.name);
  EffectRequest request;
  request.step = step.name;
  request.function = function;
  request.args = Value(std::move(args));
  request.needs_intent = true;
  request.gid = transactions_.back()->gid();
  request.branch = branch;
  request.op = "action";
  request.registers_compensation = step.compensate->function;
  request.txn_deadline = transaction_deadline_;
  EffectOutcome outcome = co_await execution_->Perform(std::move(request));
  if (!outcome.ok) throw lang::RaisedError(std::move(outcome.value));
  co_return std::move(outcome.value);
}

// Always true: a Task must return a value. When the outcome is unknown the result variable is
// not set, and a compensation that needs it cannot be rendered: the branch then fails to
// compensate and the transaction ends COMPENSATION_FAILED for an operator rather than
// silently leaving the action in place.
Task<bool> Interpreter::CompleteCompensable(const lang::Step& step, Frame& frame,
                                            const std::string& branch_id, bool definite,
                                            bool unknown) {
  Value undo;
  if (!definite) {
    std::optional<std::string> render_error;
    try {
      Map undo_args = co_await EvalArgs(step.compensate->args, frame);
      undo = RenderedCall(step.compensate->function, std::move(undo_args));
    } catch (const lang::RaisedError& raised) {
      render_error = ErrorText(raised.payload());
    } catch (const CancelledSignal&) {
      render_error = "the execution was cancelled while rendering the compensation";
    }
    if (render_error) {
      undo = Value(Map{{"function", step.compensate->function}, {"render_error", *render_error}});
    }
  }
  // Looked up after the render: other strands may have added branches meanwhile.
  txn::Transaction& txn = *transactions_.back();
  txn::Branch* branch = txn.FindBranch(branch_id);
  if (definite) {
    branch->failed = true;
    branch->outcome_unknown = false;
  } else {
    branch->undo = std::move(undo);
    branch->outcome_unknown = unknown;
  }
  execution_->RecordBranch(txn.BranchRecord(*branch), step.name);
  co_return true;
}

// Phase two of a commit: confirms are retried with backoff. The decision never turns back, so
// a confirm whose budget runs out leaves the transaction COMPENSATION_FAILED (committed, with
// a branch an operator must finish) instead of cancelling anything.
// A branch whose try failed is cancelled even in a commit: its try may still have run.
Task<bool> Interpreter::ConfirmTcc(const txn::Branch& branch, const txn::Transaction& txn) {
  if (branch.never_sent) co_return true;
  if (branch.failed) {
    co_return co_await RunBranchOp(branch, txn, branch.undo, "cancel", kCancelAttempts);
  }
  co_return co_await RunBranchOp(branch, txn, branch.confirm, "confirm", kConfirmAttempts);
}

// Abort: every registered tcc branch is cancelled, including one whose try definitely failed
// or never got an answer; the participant's barrier turns a cancel without a try into an
// empty cancel and refuses a try that arrives after it.
Task<bool> Interpreter::CancelTcc(const txn::Branch& branch, const txn::Transaction& txn) {
  if (branch.never_sent) co_return true;  // no try reached the participant
  co_return co_await RunBranchOp(branch, txn, branch.undo, "cancel", kCancelAttempts);
}

Task<bool> Interpreter::RunBranchOp(const txn::Branch& branch, const txn::Transaction& txn,
                                    const Value& call, const std::string& op, int attempts) {
  const Map& rendered = call.AsMap();
  std::string function = rendered.Find("function")->AsString();
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) {
      const Value* args = rendered.Find("args");
      const Value* url = args && args->is_map() ? args->AsMap().Find("url") : nullptr;
      CountRetry(url ? *url : Value());
      co_await Sleep(RetryDelay(branch.id, op, attempt), branch.step);
    }
    EffectRequest request;
    request.step = branch.step;
    request.function = function;
    request.args = *rendered.Find("args");
    request.needs_intent = true;
    request.gid = txn.gid();
    request.branch = branch.id;
    request.op = op;
    EffectOutcome outcome = co_await execution_->Perform(std::move(request));
    if (outcome.ok) co_return true;
    WarnRetry(branch.step, op, attempt, outcome.value);
  }
  co_return false;
}

void Interpreter::WarnRetry(const std::string& step, const std::string& op, int attempt,
                            const Value& error) {
  if (execution_->replaying()) return;
  execution_->engine()->progress()->OnLog(execution_->id(), step, "WARNING",
                                          "the " + op + " of step '" + step + "' failed (attempt " +
                                              std::to_string(attempt + 1) +
                                              "): " + ErrorText(error));
}

void Interpreter::CheckTransactionDeadline(const std::string& step) {
  if (transactions_.empty() || transaction_deadline_ <= 0 || execution_->replaying()) return;
  if (execution_->engine()->NowSeconds() <= transaction_deadline_) return;
  lang::Raise("TimeoutError", "transaction '" + transactions_.back()->step() +
                                  "' passed its timeout before step '" + step + "'");
}

}  // namespace atomflow::engine
