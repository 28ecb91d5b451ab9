// Global transactions assembled from execution journals, for `atomflow txn` and the REST API.
#include "txn/txn_view.h"

#include <time.h>

#include <cstdio>
#include <map>
#include <utility>

#include "txn/transaction.h"

namespace atomflow::txn {
namespace {

// Executions read per store query while walking the store.
constexpr int kExecutionPage = 100;

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

// RFC 3339 UTC with milliseconds; empty for 0 (not happened yet).
std::string Rfc3339(int64_t ms) {
  if (ms == 0) return "";
  time_t seconds = ms / 1000;
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char text[40];
  strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  char full[48];
  snprintf(full, sizeof(full), "%s.%03dZ", text, static_cast<int>(ms % 1000));
  return full;
}

// A branch may be recorded again as it progresses (registered, then its action's outcome):
// the latest record describes it.
void ApplyBranch(Json branch, TxnView& txn) {
  if (branch.value("kind", "") == "compensable") branch["compensated"] = false;
  for (Json& known : txn.branches) {
    if (known.value("branch", "") == branch.value("branch", "")) {
      known = std::move(branch);
      return;
    }
  }
  txn.branches.push_back(std::move(branch));
}

void ApplyEntry(const store::JournalEntry& entry, TxnView& txn) {
  const Json& p = entry.payload;
  if (entry.kind == "txn_begin") {
    txn.step = p.value("step", "");
    txn.begin_ms = entry.time_ms;
  } else if (entry.kind == "intent" && p.contains("compensate")) {
    // An action's intent that registers its compensable branch (the branch's first record
    // since the two were folded; older journals have a branch record before the intent).
    ApplyBranch(PendingBranchRecord(p), txn);
  } else if (entry.kind == "branch") {
    ApplyBranch(p, txn);
  } else if (entry.kind == "decision") {
    txn.decision = p.value("decision", "");
    // A saga commit's decision that carries its end (docs/journal.md, "Folded records").
    if (p.contains("state")) {
      txn.state = p.value("state", "");
      txn.end_ms = entry.time_ms;
    }
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
std::vector<TxnView> Views(const store::ExecutionRecord& record,
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

// The transactions of one stored execution; none without reading the whole journal when it
// never began one (a search on the journal's primary key, filtered by kind).
Result<Json> TransactionsOfExecution(store::Store& store, const store::ExecutionRecord& record) {
  Result<std::vector<store::JournalEntry>> began =
      store.ReadJournalKind(record.id, "txn_begin", 0, 1);
  if (!began.ok()) return began.status();
  if (began->empty()) return Json::array();

  Result<std::vector<store::JournalEntry>> journal = store.ReadJournal(record.id);
  if (!journal.ok()) return journal.status();
  return TransactionsOf(record, *journal);
}

// Adds the execution's transactions, newest first, that pass the state filter and the offset,
// until the page holds limit of them (limit <= 0: no limit).
void AddToPage(const Json& transactions, const std::string& state, int limit, int& skip,
               Json& page) {
  for (auto it = transactions.rbegin(); it != transactions.rend(); ++it) {
    if (limit > 0 && static_cast<int>(page.size()) >= limit) return;
    if (!state.empty() && it->value("state", "") != state) continue;
    if (skip > 0) {
      --skip;
      continue;
    }
    page.push_back(*it);
  }
}

}  // namespace

Json TransactionsOf(const store::ExecutionRecord& record,
                    const std::vector<store::JournalEntry>& journal) {
  Json out = Json::array();
  for (const TxnView& view : Views(record, journal)) out.push_back(ToJson(view));
  return out;
}

Result<Json> ListTransactions(store::Store& store, const std::string& state, int offset,
                              int limit) {
  Json page = Json::array();
  int skip = offset > 0 ? offset : 0;
  store::ExecutionQuery query;
  query.limit = kExecutionPage;
  while (limit <= 0 || static_cast<int>(page.size()) < limit) {
    Result<std::vector<store::ExecutionRecord>> records = store.QueryExecutions(query);
    if (!records.ok()) return records.status();

    for (const store::ExecutionRecord& record : *records) {
      Result<Json> transactions = TransactionsOfExecution(store, record);
      if (!transactions.ok()) return transactions.status();
      AddToPage(*transactions, state, limit, skip, page);
    }
    if (static_cast<int>(records->size()) < query.limit) break;  // the last page
    query.cursor_start_time_ms = records->back().start_time_ms;
    query.cursor_id = records->back().id;
  }
  return page;
}

Result<Json> FindTransaction(store::Store& store, const std::string& gid) {
  Status missing =
      Status::NotFound("no transaction '" + gid + "' in the store (atomflow txn list)");
  size_t colon = gid.find(':');
  if (colon == std::string::npos) return missing;

  // The gid names the execution whose journal holds the transaction.
  Result<store::ExecutionRecord> record = store.GetExecution(gid.substr(0, colon));
  if (!record.ok())
    return record.status().code() == StatusCode::kNotFound ? missing : record.status();
  Result<std::vector<store::JournalEntry>> journal = store.ReadJournal(record->id);
  if (!journal.ok()) return journal.status();

  for (const Json& transaction : TransactionsOf(*record, *journal)) {
    if (transaction.value("gid", "") == gid) return transaction;
  }
  return missing;
}

}  // namespace atomflow::txn
