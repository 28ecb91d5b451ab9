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
#include "txn/txn_resolve.h"
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
  Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
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
  Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
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
  if (Status exists = CheckStoreExists(options.store); !exists.ok()) {
    return Invalid(options, exists.message());
  }
  StderrProgress progress(true, "resolved");
  Result<std::unique_ptr<engine::Engine>> engine = OpenEngine(options, &progress);
  if (!engine.ok()) return Invalid(options, engine.message());
  // Only a transaction that exists has compensations to retry: look it up before saying so.
  Result<Json> found = atomflow::txn::FindTransaction(*(*engine)->store(), gid);
  if (!found.ok()) return Invalid(options, found.message());
  if (retry) fprintf(stderr, "retrying the compensations of %s\n", gid.c_str());
  auto report = [](const std::string& branch, const std::string& step, const std::string& what) {
    fprintf(stderr, "  %s (%s): %s\n", branch.c_str(), step.c_str(), what.c_str());
  };
  txn::Resolution resolution = retry ? txn::Resolution::kRetry : txn::Resolution::kMarkCompensated;
  txn::ResolveOutcome outcome = txn::ResolveTransaction(**engine, gid, resolution, report);
  if (!outcome.status.ok()) return Invalid(options, outcome.status.message());
  if (outcome.failed_again) {
    fprintf(stderr, "atomflow: some compensations failed again; %s stays COMPENSATION_FAILED\n",
            gid.c_str());
    return kExitFailed;
  }
  fprintf(stderr, "%s: %s (%s)\n", gid.c_str(), outcome.end_state.c_str(),
          outcome.resolution.c_str());
  return kExitSucceeded;
}

}  // namespace atomflow::cli
