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

namespace atomflow::cli {

namespace {

// One transaction assembled from its execution's journal.
struct TxnView {
  std::string gid;
  std::string execution_id;
  std::string workflow;
  std::string step;
  std::string state;  // the last word of the journal on it
  std::string decision;
  std::string resolution;  // set when an operator resolved it
  int64_t begin_ms = 0;
  int64_t end_ms = 0;
  Json branches = Json::array();  // branch records, each with "compensated" added
};

// Effect keys of compensations, by branch id: their results say which compensations landed.
using CompensationKeys = std::map<std::string, std::string>;

void ApplyEntry(const store::JournalEntry& entry, TxnView& txn) {
  const Json& p = entry.payload;
  if (entry.kind == "txn_begin") {
    txn.step = p.value("step", "");
    txn.begin_ms = entry.time_ms;
  } else if (entry.kind == "branch") {
    // A branch may be recorded again as it progresses (registered, then its action's
    // outcome): the latest record describes it.
    Json branch = p;
    if (branch.value("kind", "") == "compensable") branch["compensated"] = false;
    for (Json& known : txn.branches) {
      if (known.value("branch", "") == branch.value("branch", "")) {
        known = branch;
        return;
      }
    }
    txn.branches.push_back(branch);
  } else if (entry.kind == "decision") {
    txn.decision = p.value("decision", "");
  } else if (entry.kind == "txn_end" || entry.kind == "txn_resolved") {
    txn.state = p.value("state", "");
    txn.end_ms = entry.time_ms;
    if (entry.kind == "txn_resolved") txn.resolution = p.value("resolution", "");
  }
}

void MarkCompensated(TxnView& txn, const std::string& branch_id) {
  for (Json& branch : txn.branches) {
    if (branch.value("branch", "") == branch_id) branch["compensated"] = true;
  }
}

// Every transaction of one execution, in the order they began.
std::vector<TxnView> TransactionsOf(const store::ExecutionRecord& record,
                                    const std::vector<store::JournalEntry>& journal) {
  std::vector<TxnView> views;
  std::map<std::string, size_t> by_gid;
  std::map<std::string, std::pair<std::string, std::string>> compensations;  // key -> gid, branch
  for (const store::JournalEntry& entry : journal) {
    const Json& p = entry.payload;
    std::string gid = p.is_object() ? p.value("gid", "") : "";
    if (entry.kind == "result" || entry.kind == "operator_result") {
      auto found = compensations.find(entry.key);
      if (found != compensations.end() && p.value("ok", false)) {
        MarkCompensated(views[by_gid[found->second.first]], found->second.second);
      }
      continue;
    }
    if (gid.empty()) continue;
    bool intent = entry.kind == "intent" || entry.kind == "operator_intent";
    if (intent && p.value("op", "") == "compensate") {
      compensations[entry.key] = {gid, p.value("branch", "")};
      continue;
    }
    if (by_gid.count(gid) == 0) {
      by_gid[gid] = views.size();
      TxnView view;
      view.gid = gid;
      view.execution_id = record.id;
      view.workflow = record.workflow_name;
      views.push_back(std::move(view));
    }
    ApplyEntry(entry, views[by_gid[gid]]);
  }
  for (TxnView& view : views) {
    if (view.state.empty()) view.state = view.decision.empty() ? "ACTIVE" : "DECIDED";
  }
  return views;
}

Result<std::vector<TxnView>> AllTransactions(store::Store& store) {
  Result<std::vector<store::ExecutionRecord>> records = store.ListExecutions("", 0);
  if (!records.ok()) return records.status();
  std::vector<TxnView> all;
  for (const store::ExecutionRecord& record : *records) {
    Result<std::vector<store::JournalEntry>> journal = store.ReadJournal(record.id);
    if (!journal.ok()) return journal.status();
    for (TxnView& view : TransactionsOf(record, *journal)) all.push_back(std::move(view));
  }
  return all;
}

Json ToJson(const TxnView& txn) {
  Json out = {{"gid", txn.gid},
              {"execution", txn.execution_id},
              {"workflow", txn.workflow},
              {"step", txn.step},
              {"state", txn.state},
              {"decision", txn.decision},
              {"begin_time", Rfc3339(txn.begin_ms)},
              {"end_time", Rfc3339(txn.end_ms)},
              {"branches", txn.branches}};
  if (!txn.resolution.empty()) out["resolution"] = txn.resolution;
  return out;
}

Result<TxnView> FindTransaction(store::Store& store, const std::string& gid) {
  Result<std::vector<TxnView>> all = AllTransactions(store);
  if (!all.ok()) return all.status();
  for (TxnView& view : *all) {
    if (view.gid == gid) return std::move(view);
  }
  return Status::Error("no transaction '" + gid + "' in the store (atomflow txn list)");
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
bool RetryCompensations(engine::Engine& engine, const TxnView& txn) {
  bool all_landed = true;
  for (auto it = txn.branches.rbegin(); it != txn.branches.rend(); ++it) {
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
    request.gid = txn.gid;
    request.branch = branch_id;
    request.op = "compensate";
    engine::EffectOutcome outcome = engine.PerformNow(txn.execution_id, request);

    std::string message = outcome.ok ? "compensated" : DebugString(outcome.value);
    fprintf(stderr, "  %s (%s): %s\n", branch_id.c_str(), request.step.c_str(), message.c_str());
    all_landed = all_landed && outcome.ok;
  }
  return all_landed;
}

void PrintTable(const std::vector<TxnView>& views) {
  printf("%-60s  %-20s  %-8s  %s\n", "GID", "STATE", "BRANCHES", "BEGAN");
  for (const TxnView& txn : views) {
    printf("%-60s  %-20s  %-8zu  %s\n", txn.gid.c_str(), txn.state.c_str(), txn.branches.size(),
           Rfc3339(txn.begin_ms).c_str());
  }
}

}  // namespace

Json TransactionsJson(const store::ExecutionRecord& record,
                      const std::vector<store::JournalEntry>& journal) {
  Json out = Json::array();
  for (const TxnView& view : TransactionsOf(record, journal)) out.push_back(ToJson(view));
  return out;
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
  Result<std::vector<TxnView>> all = AllTransactions(**store);
  if (!all.ok()) return Invalid(options, all.message());

  std::vector<TxnView> shown;
  for (TxnView& view : *all) {
    if (state.empty() || view.state == state) shown.push_back(std::move(view));
  }
  if (!options.json) {
    PrintTable(shown);
    return kExitSucceeded;
  }
  Json out = Json::array();
  for (const TxnView& view : shown) out.push_back(ToJson(view));
  std::cout << out.dump() << std::endl;
  return kExitSucceeded;
}

int TxnDescribeCommand(const CommonOptions& options, const std::string& gid) {
  Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(options.store);
  if (!store.ok()) return Invalid(options, store.message());
  Result<TxnView> txn = FindTransaction(**store, gid);
  if (!txn.ok()) return Invalid(options, txn.message());
  std::cout << ToJson(*txn).dump(options.json ? -1 : 2) << std::endl;
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
  Result<TxnView> txn = FindTransaction(store, gid);
  if (!txn.ok()) return Invalid(options, txn.message());
  if (txn->state != "COMPENSATION_FAILED") {
    return Invalid(options, "transaction '" + gid + "' is " + txn->state +
                                "; only a COMPENSATION_FAILED transaction can be resolved");
  }
  // A commit never turns back: what is left of it is finishing, never undoing.
  bool committed = txn->decision == "COMMIT";
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
  Status written = AppendDurably(store, txn->execution_id, "txn_resolved", "operator/" + gid,
                                 {{"gid", gid}, {"state", state}, {"resolution", resolution}});
  if (!written.ok()) return Invalid(options, written.message());
  fprintf(stderr, "%s: %s (%s)\n", gid.c_str(), state.c_str(), resolution.c_str());
  return kExitSucceeded;
}

}  // namespace atomflow::cli
