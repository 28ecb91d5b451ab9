// One global transaction: its branches, its decision, and the journal records that describe
// them (the durable format is documented in docs/journal.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "value/value.h"

namespace atomflow::txn {

// The kinds of participant. Compensable branches are undone by a compensating call (saga);
// staged files are prepared (written, fsynced) and published only at commit.
enum class BranchKind { kCompensable, kStagedFile };

enum class Decision { kCommit, kAbort };

enum class TxnState { kActive, kCommitted, kAborted, kCompensationFailed };

const char* BranchKindName(BranchKind kind);
const char* DecisionName(Decision decision);
const char* TxnStateName(TxnState state);

// A participant: what to do in phase two. For a compensable branch `undo` holds the rendered
// compensating call {function, args}; for a staged file `staged` holds {staged_path,
// target_path, size}.
struct Branch {
  std::string id;  // "<gid>#<n>", n counting from 1 in order of completion
  BranchKind kind;
  std::string step;  // the step that created it
  Value undo;
  Value staged;
};

// The coordinator's state for one `transaction:` block of one execution. Not thread safe: the
// execution that runs the block owns it.
class Transaction {
 public:
  Transaction(std::string gid, std::string step) : gid_(std::move(gid)), step_(std::move(step)) {}

  const std::string& gid() const { return gid_; }
  const std::string& step() const { return step_; }
  const std::vector<Branch>& branches() const { return branches_; }
  TxnState state() const { return state_; }

  // Adds a branch in order of completion and returns it.
  const Branch& AddBranch(BranchKind kind, std::string step, Value undo, Value staged);
  void set_state(TxnState state) { state_ = state; }

  // Journal payloads.
  Json BeginRecord() const;
  Json BranchRecord(const Branch& branch) const;
  Json DecisionRecord(Decision decision, const Value& cause) const;
  Json EndRecord(const Value& cause) const;

  // Checks the rules that must hold after every change (debug builds).
  void CheckInvariants() const;

 private:
  std::string gid_;
  std::string step_;
  std::vector<Branch> branches_;
  TxnState state_ = TxnState::kActive;
};

}  // namespace atomflow::txn
