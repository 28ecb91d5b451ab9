// Transaction bookkeeping and the journal payloads of branches and decisions.
#include "txn/transaction.h"

#include <cassert>

namespace atomflow::txn {

const char* BranchKindName(BranchKind kind) {
  return kind == BranchKind::kCompensable ? "compensable" : "staged_file";
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
  assert(state_ == TxnState::kActive);
  std::string id = gid_ + "#" + std::to_string(branches_.size() + 1);
  branches_.push_back(
      Branch{std::move(id), kind, std::move(step), std::move(undo), std::move(staged)});
  CheckInvariants();
  return branches_.back();
}

Json Transaction::BeginRecord() const { return {{"gid", gid_}, {"step", step_}}; }

Json Transaction::BranchRecord(const Branch& branch) const {
  return {{"gid", gid_},
          {"branch", branch.id},
          {"kind", BranchKindName(branch.kind)},
          {"step", branch.step},
          {"undo", ToJournalJson(branch.undo)},
          {"staged", ToJournalJson(branch.staged)}};
}

Json Transaction::DecisionRecord(Decision decision, const Value& cause) const {
  return {{"gid", gid_},
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
  }
#endif
}

}  // namespace atomflow::txn
