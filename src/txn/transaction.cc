// Transaction bookkeeping and the journal payloads of branches and decisions.
#include "txn/transaction.h"

#include <cassert>

#include "value/journal_text.h"

namespace atomflow::txn {

const char kOutcomeNeverLearned[] = "the outcome of the action was never learned";

Json PendingBranchRecord(const Json& intent) {
  return {{"gid", intent.value("gid", "")},
          {"branch", intent.value("branch", "")},
          {"kind", BranchKindName(BranchKind::kCompensable)},
          {"step", intent.value("step", "")},
          {"undo",
           {{"function", intent.value("compensate", "")}, {"render_error", kOutcomeNeverLearned}}},
          {"staged", nullptr},
          {"outcome", "unknown"}};
}

const char* BranchKindName(BranchKind kind) {
  switch (kind) {
    case BranchKind::kCompensable:
      return "compensable";
    case BranchKind::kStagedFile:
      return "staged_file";
    case BranchKind::kTcc:
      return "tcc";
    case BranchKind::kPrepared:
      return "prepared";
  }
  return "unknown";
}

const char* DecisionName(Decision decision) {
  return decision == Decision::kCommit ? "COMMIT" : "ABORT";
}

const char* TxnStateName(TxnState state) {
  switch (state) {
    case TxnState::kActive:
      return "ACTIVE";
    case TxnState::kCommitted:
      return "COMMITTED";
    case TxnState::kAborted:
      return "ABORTED";
    case TxnState::kCompensationFailed:
      return "COMPENSATION_FAILED";
  }
  return "UNKNOWN";
}

const Branch& Transaction::AddBranch(BranchKind kind, std::string step, Value undo, Value staged) {
  Branch branch;
  branch.kind = kind;
  branch.step = std::move(step);
  branch.undo = std::move(undo);
  branch.staged = std::move(staged);
  return AddBranch(std::move(branch));
}

const Branch& Transaction::AddBranch(Branch branch) {
  assert(state_ == TxnState::kActive);
  branch.id = gid_ + "#" + std::to_string(branches_.size() + 1);
  branches_.push_back(std::move(branch));
  CheckInvariants();
  return branches_.back();
}

void Transaction::MarkRollbackOnly(Value cause) {
  if (!rollback_cause_) rollback_cause_ = std::move(cause);  // the first cause is the cause
}

Branch* Transaction::FindBranch(const std::string& id) {
  for (Branch& branch : branches_) {
    if (branch.id == id) return &branch;
  }
  return nullptr;
}

Json Transaction::BeginRecord() const { return {{"gid", gid_}, {"step", step_}}; }

std::string Transaction::BranchRecord(const Branch& branch) const {
  JsonObjectText record;
  record.String("gid", gid_)
      .String("branch", branch.id)
      .String("kind", BranchKindName(branch.kind))
      .String("step", branch.step)
      .JournalValue("undo", branch.undo)
      .JournalValue("staged", branch.staged);
  if (branch.kind == BranchKind::kTcc) record.JournalValue("confirm", branch.confirm);
  const char* outcome = branch.outcome_unknown ? "unknown" : nullptr;
  if (branch.failed) outcome = branch.never_sent ? "never_sent" : "failed";
  if (outcome != nullptr) record.String("outcome", outcome);
  return record.Take();
}

Json Transaction::DecisionRecord(Decision decision, const Value& cause) const {
  return {{"gid", gid_},
          {"step", step_},
          {"decision", DecisionName(decision)},
          {"branches", branches_.size()},
          {"cause", ToJournalJson(cause)}};
}

Json Transaction::EndRecord(const Value& cause) const {
  return {{"gid", gid_}, {"state", TxnStateName(state_)}, {"cause", ToJournalJson(cause)}};
}

void Transaction::CheckInvariants() const {
#ifndef NDEBUG
  // Branch ids are dense and in completion order: recovery undoes them in reverse.
  for (size_t i = 0; i < branches_.size(); ++i) {
    assert(branches_[i].id == gid_ + "#" + std::to_string(i + 1));
    assert(branches_[i].kind != BranchKind::kCompensable || branches_[i].undo.is_map());
    // A tcc branch is registered before its try with both phase-two calls already rendered.
    assert(branches_[i].kind != BranchKind::kTcc ||
           (branches_[i].undo.is_map() && branches_[i].confirm.is_map()));
  }
#endif
}

}  // namespace atomflow::txn
