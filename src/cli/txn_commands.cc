// `atomflow txn list|describe|resolve`: global transactions as the journals record them, and
// the operator's way out of COMPENSATION_FAILED.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <vector>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "engine/engine.h"
#include "store/store.h"
#include "txn/txn_view.h"

namespace atomflow::cli {

namespace {

// Every transaction in the store: executions newest first, each one's in the order they began.
Result<Json> AllTransactions(store::Store& store) {
  Result<std::vector<store::ExecutionRecord>> records = store.ListExecutions("", 0);
  if (!records.ok()) return records.status();
  Json all = Json::array();
  for (const store::ExecutionRecord& record : *records) {
    Result<std::vector<store::JournalEntry>> journal = store.ReadJournal(record.id);
    if (!journal.ok()) return journal.status();
    for (Json& txn : txn::TransactionsOf(record, *journal)) all.push_back(std::move(txn));
  }
  return all;
}

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

// Issues each compensation that has not landed again, newest branch first, journaling intent
// and outcome under keys of their own. True when every one of them succeeded.
bool RetryCompensations(engine::Engine& engine, const Json& txn) {
  bool all_landed = true;
  const Json& branches = txn["branches"];
  for (auto it = branches.rbegin(); it != branches.rend(); ++it) {
    const Json& branch = *it;
    if (branch.value("kind", "") != "compensable" || branch.value("compensated", false)) continue;
    std::string branch_id = branch.value("branch", "");
    const Json& undo = branch["undo"];

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

    std::string message = outcome.ok ? "compensated" : DebugString(outcome.value);
    fprintf(stderr, "  %s (%s): %s\n", branch_id.c_str(), request.step.c_str(), message.c_str());
    all_landed = all_landed && outcome.ok;
  }
  return all_landed;
}

void PrintTable(const Json& transactions) {
  printf("%-60s  %-20s  %-8s  %s\n", "GID", "STATE", "BRANCHES", "BEGAN");
  for (const Json& txn : transactions) {
    printf("%-60s  %-20s  %-8zu  %s\n", txn.value("gid", "").c_str(),
           txn.value("state", "").c_str(), txn["branches"].size(),
           txn.value("begin_time", "").c_str());
  }
}

}  // namespace

Json TransactionsJson(const store::ExecutionRecord& record,
                      const std::vector<store::JournalEntry>& journal) {
  return txn::TransactionsOf(record, journal);
}

int TxnListCommand(const CommonOptions& options, const std::string& state) {
  static const char* const kStates[] = {"ACTIVE", "DECIDED", "COMMITTED", "ABORTED",
                                        "COMPENSATION_FAILED"};
  if (!state.empty() &&
      std::find(std::begin(kStates), std::end(kStates), state) == std::end(kStates)) {
    return Invalid(options, "unknown transaction state '" + state +
                                "' (ACTIVE, DECIDED, COMMITTED, ABORTED, COMPENSATION_FAILED)");
  }
  Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(options.store);
  if (!store.ok()) return Invalid(options, store.message());
  Result<Json> all = AllTransactions(**store);
  if (!all.ok()) return Invalid(options, all.message());

  Json shown = Json::array();
  for (Json& txn : *all) {
    if (state.empty() || txn.value("state", "") == state) shown.push_back(std::move(txn));
  }
  if (!options.json) {
    PrintTable(shown);
    return kExitSucceeded;
  }
  std::cout << shown.dump() << std::endl;
  return kExitSucceeded;
}

int TxnDescribeCommand(const CommonOptions& options, const std::string& gid) {
  Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(options.store);
  if (!store.ok()) return Invalid(options, store.message());
  Result<Json> txn = atomflow::txn::FindTransaction(**store, gid);
  if (!txn.ok()) return Invalid(options, txn.message());
  std::cout << txn->dump(options.json ? -1 : 2) << std::endl;
  return kExitSucceeded;
}

int TxnResolveCommand(const CommonOptions& options, const std::string& gid, bool retry,
                      bool mark_compensated) {
  if (retry == mark_compensated) {
    return Invalid(options, "txn resolve needs exactly one of --retry and --mark-compensated");
  }
  StderrProgress progress(true, "resolved");
  Result<std::unique_ptr<engine::Engine>> engine = OpenEngine(options, &progress);
  if (!engine.ok()) return Invalid(options, engine.message());
  store::Store& store = *(*engine)->store();
  Result<Json> txn = atomflow::txn::FindTransaction(store, gid);
  if (!txn.ok()) return Invalid(options, txn.message());
  std::string txn_state = txn->value("state", "");
  if (txn_state != "COMPENSATION_FAILED") {
    return Invalid(options, "transaction '" + gid + "' is " + txn_state +
                                "; only a COMPENSATION_FAILED transaction can be resolved");
  }
  // A commit never turns back: what is left of it is finishing, never undoing.
  bool committed = txn->value("decision", "") == "COMMIT";
  if (committed && retry) {
    return Invalid(options, "transaction '" + gid +
                                "' was decided COMMIT: --retry runs undo "
                                "steps and would undo committed work; finish the branches that "
                                "did not land by hand, then record it with --mark-compensated");
  }

  std::string resolution =
      committed ? "finished by an operator" : "marked compensated by an operator";
  if (retry) {
    fprintf(stderr, "retrying the compensations of %s\n", gid.c_str());
    if (!RetryCompensations(**engine, *txn)) {
      fprintf(stderr, "atomflow: some compensations failed again; %s stays COMPENSATION_FAILED\n",
              gid.c_str());
      return kExitFailed;
    }
    resolution = "compensations retried by an operator";
  }
  std::string state = committed ? "COMMITTED" : "ABORTED";
  Status written =
      AppendDurably(store, txn->value("execution", ""), "txn_resolved", "operator/" + gid,
                    {{"gid", gid}, {"state", state}, {"resolution", resolution}});
  if (!written.ok()) return Invalid(options, written.message());
  fprintf(stderr, "%s: %s (%s)\n", gid.c_str(), state.c_str(), resolution.c_str());
  return kExitSucceeded;
}

}  // namespace atomflow::cli
