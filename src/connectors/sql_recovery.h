// Recovery of prepared SQL branches: finishes the PostgreSQL prepared transactions that
// executions no longer drive, in the direction their journal decided.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "connectors/databases.h"
#include "engine/effect.h"
#include "store/store.h"

namespace atomflow::connectors {

// What recovery did with one prepared transaction.
struct PreparedResolution {
  std::string database;  // the catalog name
  std::string xid;       // the PostgreSQL gid
  std::string outcome;   // "committed", "rolled back", "skipped" (its execution is ACTIVE),
                         // "skipped (unknown to this store)", or "failed: <why>"
};

// Lists the prepared transactions whose gid starts with "atomflow:" on every database of the
// catalog and resolves each whose execution is in the store and not ACTIVE: COMMIT PREPARED
// when the journal holds the branch's successful prepare and a COMMIT decision for its
// transaction, ROLLBACK PREPARED otherwise. A gid of an execution the store does not know is
// skipped: another store's execution may be running on the same database (this store's own
// executions prepare only once their row is durable); roll_back_unknown rolls those back too,
// for an operator who knows that no other store uses the database. Logs each resolution. A
// database that
// cannot be reached is reported and skipped. Call it after the ACTIVE executions were resumed
// and finished, which finish their own branches.
std::vector<PreparedResolution> ResolvePreparedTransactions(store::Store& store,
                                                            const DatabaseCatalog& catalog,
                                                            bool roll_back_unknown = false);

// Rolls back, on every database of the catalog, the prepared transactions of executions about
// to resume (EffectHandler::Resuming) that no branch record of theirs names on that database:
// prepares an earlier process sent before their branch records were durable, which a replay
// that takes another path would never reach again. A gid a branch record names stays: the
// replay rolls it back before preparing it again, or finishes it in phase two. Logs each; a
// database that cannot be reached within a few seconds is logged and reported ("failed: ...")
// and its gids wait for `atomflow recover` once the execution has ended; the databases in
// `skipped` are not visited (the caller's memory of recent failures).
std::vector<PreparedResolution> RollBackUnjournaledPrepares(
    const DatabaseCatalog& catalog, const std::vector<engine::ResumingExecution>& executions,
    const std::set<std::string>& skipped = {});

// True when the journal decides that prepared transaction `xid`, found on the database being
// resolved, commits (see above). The branch record must name that database too
// (`is_this_database` answers for a journaled name): a process that died before its branch
// record was durable may have prepared the same gid on another database than the one its
// replay chose (an input that was not durable answered differently), and that one aborts.
bool JournalCommits(const std::vector<store::JournalEntry>& journal, const std::string& xid,
                    const std::function<bool(const std::string&)>& is_this_database);

}  // namespace atomflow::connectors
