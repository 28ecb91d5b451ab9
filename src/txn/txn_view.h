// Read-only views of global transactions as the journals record them, for the CLI and the API.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "store/store.h"
#include "value/value.h"

namespace atomflow::txn {

// The transactions of one execution as its journal records them (today's cli::TransactionsJson).
Json TransactionsOf(const store::ExecutionRecord& record,
                    const std::vector<store::JournalEntry>& journal);

// Every transaction in the store, newest first, optionally of one state, paged by offset.
Result<Json> ListTransactions(store::Store& store, const std::string& state, int offset, int limit);

// One transaction by gid (`<execution id>:<step>#<n>`); NotFound.
Result<Json> FindTransaction(store::Store& store, const std::string& gid);

}  // namespace atomflow::txn
