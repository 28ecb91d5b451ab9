// One global transaction: its branches, its decision, and the journal records that describe
// them (the durable format is documented in docs/journal.md).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "value/value.h"

namespace atomflow::txn {

// The kinds of participant. Compensable branches are undone by a compensating call (saga);
// staged files are prepared (written, fsynced) and published only at commit; tcc branches are
// reserved by a try, then confirmed at commit or cancelled at abort; prepared branches are
// PostgreSQL transactions prepared under their own gid (PREPARE TRANSACTION) and finished by
// COMMIT PREPARED or ROLLBACK PREPARED.
enum class BranchKind { kCompensable, kStagedFile, kTcc, kPrepared };

enum class Decision { kCommit, kAbort };

enum class TxnState { kActive, kCommitted, kAborted, kCompensationFailed };

const char* BranchKindName(BranchKind kind);
const char* DecisionName(Decision decision);
const char* TxnStateName(TxnState state);

// A participant: what to do in phase two. For a compensable branch `undo` holds the rendered
// compensating call {function, args}; for a staged file `staged` holds {staged_path,
// target_path, size}; for a tcc branch `confirm` and `undo` hold the rendered confirm and
// cancel calls; for a prepared branch `staged` holds {database, xid}: a database name, never a
// connection string, and the PostgreSQL gid.
struct Branch {
  std::string id;  // "<gid>#<n>", n counting from 1 in order of registration
  BranchKind kind = BranchKind::kCompensable;
  std::string step;  // the step that created it
  Value undo;
  Value staged;
  Value confirm;
  // A compensable branch whose action's outcome is unknown (a timeout, a 5xx): it may have run,
  // so it is compensated on abort like one that succeeded.
  bool outcome_unknown = false;
  // A compensable branch whose action definitely did not run (the participant refused it):
  // nothing to compensate. A tcc branch whose try failed or got no definite answer: it is
  // cancelled even when the transaction commits.
  bool failed = false;
  // A tcc branch none of whose tries reached the participant (every attempt failed to
  // connect): there is no try to cancel, and no late try can arrive, so no cancel is sent.
  bool never_sent = false;
};

// The render error of a compensable branch registered before its action was sent: until the
// action's outcome is known its compensation cannot be rendered.
extern const char kOutcomeNeverLearned[];

// The record of the pending compensable branch that an action's intent registers when it
// carries `compensate` (docs/journal.md, "Folded records"): the same payload the branch's own
// record had before the two were folded, so readers treat both journal shapes alike.
Json PendingBranchRecord(const Json& intent);

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
  // Adds a fully described branch (its id is assigned here) and returns it.
  const Branch& AddBranch(Branch branch);
  // The branch with this id, to complete it once its action's outcome is known; null if none.
  Branch* FindBranch(const std::string& id);
  void set_state(TxnState state) { state_ = state; }

  // A branch whose action failed where it cannot be retried in place (a prepare that failed
  // definitely) dooms the transaction: it aborts at the end of the block even if the error was
  // caught inside it.
  void MarkRollbackOnly(Value cause);
  const std::optional<Value>& rollback_cause() const { return rollback_cause_; }
  // A prepared branch whose prepare failed or was cut off: whatever the decision, phase two
  // rolls it back, since its work may or may not sit prepared on the server.
  void Abandon(const std::string& branch_id) { abandoned_.insert(branch_id); }
  bool abandoned(const std::string& branch_id) const { return abandoned_.count(branch_id) > 0; }

  // Journal payloads. A branch record is written on every branch of every transaction, so
  // it comes as its JSON text.
  Json BeginRecord() const;
  std::string BranchRecord(const Branch& branch) const;
  Json DecisionRecord(Decision decision, const Value& cause) const;
  Json EndRecord(const Value& cause) const;

  // Checks the rules that must hold after every change (debug builds).
  void CheckInvariants() const;

 private:
  std::string gid_;
  std::string step_;
  std::vector<Branch> branches_;
  TxnState state_ = TxnState::kActive;
  std::optional<Value> rollback_cause_;
  std::set<std::string> abandoned_;
};

}  // namespace atomflow::txn
