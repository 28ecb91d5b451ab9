// ResolveTransaction: retried compensations and the journaled resolution record.
#include "txn/txn_resolve.h"

#include <chrono>
#include <utility>

#include "common/log.h"
#include "store/store.h"
#include "txn/txn_view.h"

namespace atomflow::txn {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status AppendDurably(store::Store& store, const std::string& execution_id, std::string kind,
                     std::string key, Json payload) {
  store::JournalEntry entry;
  entry.kind = std::move(kind);
  entry.key = std::move(key);
  entry.payload = std::move(payload);
  entry.time_ms = NowMs();
  Status appended;
  store.Append(execution_id, std::move(entry), [&appended](Status status) { appended = status; });
  Status flushed = store.Flush();
  return appended.ok() ? flushed : appended;
}

// True when every compensation that had not landed succeeded this time.
bool RetryCompensations(engine::Engine& engine, const Json& txn, const CompensationReport& report) {
  bool all_landed = true;
  const Json& branches = txn["branches"];
  for (auto it = branches.rbegin(); it != branches.rend(); ++it) {
    const Json& branch = *it;
    if (branch.value("kind", "") != "compensable" || branch.value("compensated", false)) continue;
    std::string branch_id = branch.value("branch", "");
    Json undo = branch.value("undo", Json::object());

    engine::EffectRequest request;
    // A key of its own per attempt: a participant that remembers answers by key must not
    // hand back the failure of an earlier attempt.
    request.key = "operator/" + branch_id + "/" + std::to_string(NowMs());
    request.step = branch.value("step", "");
    request.function = undo.value("function", "");
    request.args = FromJournalJson(undo.value("args", Json::object()));
    request.gid = txn.value("gid", "");
    request.branch = branch_id;
    request.op = "compensate";
    engine::EffectOutcome outcome = engine.PerformNow(txn.value("execution", ""), request);

    if (report)
      report(branch_id, request.step, outcome.ok ? "compensated" : DebugString(outcome.value));
    all_landed = all_landed && outcome.ok;
  }
  return all_landed;
}

// Why the transaction cannot be resolved as asked; ok when it can.
Status CheckResolvable(const Json& txn, const std::string& gid, Resolution resolution) {
  std::string state = txn.value("state", "");
  if (state != "COMPENSATION_FAILED") {
    return Status::FailedPrecondition("transaction '" + gid + "' is " + state +
                                      "; only a COMPENSATION_FAILED transaction can be resolved");
  }
  bool committed = txn.value("decision", "") == "COMMIT";
  if (committed && resolution == Resolution::kRetry) {
    return Status::FailedPrecondition(
        "transaction '" + gid +
        "' was decided COMMIT: a retry runs undo steps and would undo committed work; finish "
        "the branches that did not land by hand, then mark it compensated");
  }
  return Status::Ok();
}

}  // namespace

ResolveOutcome ResolveTransaction(engine::Engine& engine, const std::string& gid,
                                  Resolution resolution, const CompensationReport& report) {
  ResolveOutcome out;
  store::Store& store = *engine.store();
  Result<Json> txn = FindTransaction(store, gid);
  if (!txn.ok()) {
    out.status = txn.status();
    return out;
  }
  out.status = CheckResolvable(*txn, gid, resolution);
  if (!out.status.ok()) return out;

  bool committed = txn->value("decision", "") == "COMMIT";
  out.resolution = committed ? "finished by an operator" : "marked compensated by an operator";
  if (resolution == Resolution::kRetry) {
    if (!RetryCompensations(engine, *txn, report)) {
      out.failed_again = true;
      out.transaction = std::move(txn).value();
      return out;
    }
    out.resolution = "compensations retried by an operator";
  }

  out.end_state = committed ? "COMMITTED" : "ABORTED";
  out.status =
      AppendDurably(store, txn->value("execution", ""), "txn_resolved", "operator/" + gid,
                    {{"gid", gid}, {"state", out.end_state}, {"resolution", out.resolution}});
  if (!out.status.ok()) return out;
  log::Event("transaction.resolved", {{"gid", gid}, {"state", out.end_state}});
  Result<Json> after = FindTransaction(store, gid);
  if (after.ok()) out.transaction = std::move(after).value();
  return out;
}

}  // namespace atomflow::txn
