// ResolvePreparedTransactions: pg_prepared_xacts against the journal.
#include "connectors/sql_recovery.h"

#include <set>
#include <unordered_map>

#include "common/log.h"
#include "connectors/sql_connection.h"

namespace atomflow::connectors {

namespace {

constexpr char kXidPrefix[] = "atomflow:";

// The execution id in "atomflow:<execution id>:<block>#<n>:<branch n>".
std::string ExecutionOf(const std::string& xid) {
  size_t start = sizeof(kXidPrefix) - 1;
  size_t colon = xid.find(':', start);
  return colon == std::string::npos ? "" : xid.substr(start, colon - start);
}

std::string Finish(SqlConnection& connection, const std::string& xid, bool commit) {
  bool missing = false;
  SqlOutcome outcome = commit ? connection.CommitPrepared(xid, &missing)
                              : connection.RollbackPrepared(xid, &missing);
  if (!outcome.ok()) return "failed: " + outcome.message;
  if (missing) return "gone (finished meanwhile)";
  return commit ? "committed" : "rolled back";
}

// Whether a journaled database name is database `name` (connection string `conninfo`): the
// same name, or one that resolves to the same connection string (an override variable's name
// differs in case and punctuation, or an alias).
bool SameDatabase(const DatabaseCatalog& catalog, const std::string& name,
                  const std::string& conninfo, const std::string& journaled) {
  if (journaled == name) return true;
  Result<std::string> other = catalog.ConnectionString(journaled);
  return other.ok() && *other == conninfo;
}

// Resolves the prepared transactions of one database.
void ResolveDatabase(store::Store& store, const DatabaseCatalog& catalog, const std::string& name,
                     const std::string& conninfo, bool roll_back_unknown,
                     std::vector<PreparedResolution>* resolutions) {
  auto is_this = [&](const std::string& journaled) {
    return SameDatabase(catalog, name, conninfo, journaled);
  };
  Result<std::unique_ptr<SqlConnection>> connection = SqlConnection::Open(conninfo);
  if (!connection.ok()) {
    log::Warn("recovery: database {}: {}", name, connection.message());
    resolutions->push_back({name, "", "failed: " + connection.message()});
    return;
  }
  Result<std::vector<std::string>> xids = (*connection)->ListPrepared(kXidPrefix);
  if (!xids.ok()) {
    log::Warn("recovery: database {}: {}", name, xids.message());
    resolutions->push_back({name, "", "failed: " + xids.message()});
    return;
  }
  for (const std::string& xid : *xids) {
    std::string execution_id = ExecutionOf(xid);
    Result<store::ExecutionRecord> record = store.GetExecution(execution_id);
    // An ACTIVE execution finishes its own branches. One this store does not know may be
    // another store's, running now on the same database: left alone unless the operator says
    // no other store exists (this store's own executions prepare only once their row is
    // durable).
    std::string skipped;
    if (record.ok() && record->state == "ACTIVE") skipped = "skipped";
    if (!record.ok() && !roll_back_unknown) skipped = "skipped (unknown to this store)";
    if (!skipped.empty()) {
      log::Info("recovery: prepared transaction {} on database {} (execution {}): {}", xid, name,
                execution_id, skipped);
      resolutions->push_back({name, xid, skipped});
      continue;
    }
    // A missing execution has no journal: nothing decided COMMIT, so the branch aborts.
    std::vector<store::JournalEntry> journal;
    if (record.ok()) {
      Result<std::vector<store::JournalEntry>> read = store.ReadJournal(execution_id);
      if (read.ok()) journal = std::move(read).value();
    }
    std::string outcome = Finish(**connection, xid, JournalCommits(journal, xid, is_this));
    log::Info("recovery: prepared transaction {} on database {} (execution {}, {}): {}", xid, name,
              execution_id, record.ok() ? record->state : "unknown to the store", outcome);
    resolutions->push_back({name, xid, outcome});
  }
}

// A database that does not answer must not hold up the resumption of every execution.
constexpr int kSweepConnectTimeoutSeconds = 5;

using ResumingById = std::unordered_map<std::string, const engine::ResumingExecution*>;

// Whether a branch record of the resuming execution names gid `xid` on database `name`.
bool Named(const engine::ResumingExecution& execution, const DatabaseCatalog& catalog,
           const std::string& name, const std::string& conninfo, const std::string& xid) {
  for (const auto& [database, journaled_xid] : execution.prepared) {
    if (journaled_xid == xid && SameDatabase(catalog, name, conninfo, database)) return true;
  }
  return false;
}

// Rolls back, on one database, the resuming executions' gids that no branch record names.
void RollBackStrays(const DatabaseCatalog& catalog, const std::string& name,
                    const std::string& conninfo, const ResumingById& resuming,
                    std::vector<PreparedResolution>* resolutions) {
  Result<std::unique_ptr<SqlConnection>> connection =
      SqlConnection::Open(conninfo, kSweepConnectTimeoutSeconds);
  Result<std::vector<std::string>> xids =
      connection.ok() ? (*connection)->ListPrepared(kXidPrefix)
                      : Result<std::vector<std::string>>(connection.status());
  if (!xids.ok()) {
    log::Warn("resume: database {}: cannot look for stray prepared transactions: {}", name,
              xids.message());
    resolutions->push_back({name, "", "failed: " + xids.message()});
    return;
  }
  for (const std::string& xid : *xids) {
    auto execution = resuming.find(ExecutionOf(xid));
    if (execution == resuming.end()) continue;
    if (Named(*execution->second, catalog, name, conninfo, xid)) continue;
    std::string outcome = Finish(**connection, xid, false);
    log::Info(
        "resume: prepared transaction {} on database {} (execution {}), which no branch "
        "record names: {}",
        xid, name, execution->first, outcome);
    resolutions->push_back({name, xid, outcome});
  }
}

}  // namespace

std::vector<PreparedResolution> RollBackUnjournaledPrepares(
    const DatabaseCatalog& catalog, const std::vector<engine::ResumingExecution>& executions,
    const std::set<std::string>& skipped) {
  std::vector<PreparedResolution> resolutions;
  std::vector<std::string> names = catalog.Names();
  if (executions.empty() || names.empty()) return resolutions;

  ResumingById resuming;
  for (const engine::ResumingExecution& execution : executions) {
    resuming.emplace(execution.execution_id, &execution);
  }
  for (const std::string& name : names) {
    Result<std::string> conninfo = catalog.ConnectionString(name);
    if (!conninfo.ok()) continue;  // an unusable name: ResolvePreparedTransactions reports it
    if (skipped.count(name) != 0) continue;
    RollBackStrays(catalog, name, *conninfo, resuming, &resolutions);
  }
  return resolutions;
}

bool JournalCommits(const std::vector<store::JournalEntry>& journal, const std::string& xid,
                    const std::function<bool(const std::string&)>& is_this_database) {
  std::string branch;
  std::string gid;
  for (const store::JournalEntry& entry : journal) {
    if (entry.kind != "branch" || !entry.payload.is_object()) continue;
    const Json& staged = entry.payload.value("staged", Json::object());
    if (staged.is_object() && staged.value("xid", "") == xid &&
        is_this_database(staged.value("database", ""))) {
      branch = entry.payload.value("branch", "");
      gid = entry.payload.value("gid", "");
    }
  }
  if (branch.empty()) return false;

  std::string prepare_key;
  bool prepared = false;
  bool committed = false;
  for (const store::JournalEntry& entry : journal) {
    const Json& payload = entry.payload;
    if (!payload.is_object()) continue;
    if (entry.kind == "intent" && payload.value("branch", "") == branch &&
        payload.value("op", "") == "prepare") {
      prepare_key = entry.key;
    } else if (entry.kind == "result" && !prepare_key.empty() && entry.key == prepare_key) {
      prepared = payload.value("ok", false);
    } else if (entry.kind == "decision" && payload.value("gid", "") == gid) {
      committed = payload.value("decision", "") == "COMMIT";
    }
  }
  return prepared && committed;
}

std::vector<PreparedResolution> ResolvePreparedTransactions(store::Store& store,
                                                            const DatabaseCatalog& catalog,
                                                            bool roll_back_unknown) {
  std::vector<PreparedResolution> resolutions;
  for (const std::string& name : catalog.Names()) {
    Result<std::string> conninfo = catalog.ConnectionString(name);
    if (!conninfo.ok()) {
      log::Warn("recovery: {}", conninfo.message());
      resolutions.push_back({name, "", "failed: " + conninfo.message()});
      continue;
    }
    ResolveDatabase(store, catalog, name, *conninfo, roll_back_unknown, &resolutions);
  }
  log::Info("recovery: {} prepared transaction entries on {} databases", resolutions.size(),
            catalog.Names().size());
  return resolutions;
}

}  // namespace atomflow::connectors
