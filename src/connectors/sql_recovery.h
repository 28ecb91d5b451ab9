// Recovery of prepared SQL branches: finishes the PostgreSQL prepared transactions that
// executions no longer drive, in the direction their journal decided.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "connectors/databases.h"
#include "store/store.h"

namespace atomflow::connectors {

// What recovery did with one prepared transaction.
struct PreparedResolution {
  std::string database;  // the catalog name
  std::string xid;       // the PostgreSQL gid
  std::string outcome;   // "committed", "rolled back", "skipped" (its execution is ACTIVE), or
                         // "failed: <why>"
};

// Lists the prepared transactions whose gid starts with "atomflow:" on every database of the
// catalog and resolves each whose execution is not ACTIVE in the store (or unknown to it):
// COMMIT PREPARED when the journal holds the branch's successful prepare and a COMMIT decision
// for its transaction, ROLLBACK PREPARED otherwise. Logs each resolution. A database that
// cannot be reached is reported and skipped. Call it after the ACTIVE executions were resumed
// and finished, which finish their own branches.
std::vector<PreparedResolution> ResolvePreparedTransactions(store::Store& store,
                                                            const DatabaseCatalog& catalog);

// True when the journal decides that prepared transaction `xid` commits (see above).
bool JournalCommits(const std::vector<store::JournalEntry>& journal, const std::string& xid);

}  // namespace atomflow::connectors
