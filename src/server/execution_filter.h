// The `filter` and `orderBy` of an executions list, Google's text turned into a store query.
#pragma once

#include <string>

#include "common/status.h"
#include "store/store.h"

namespace atomflow::server {

// Adds the terms of filter to query->filters. The text is terms joined by AND, each
// `FIELD OP VALUE` with FIELD one of state, startTime, endTime, workflowRevisionId, OP one of
// = != < <= > >=, and VALUE quoted ("FAILED") or bare. InvalidArgument naming the bad term.
Status ParseExecutionFilter(const std::string& filter, store::ExecutionQuery* query);

// Sets query->oldest_first from orderBy: "", "startTime desc" (newest first, the default),
// "startTime" or "startTime asc". InvalidArgument otherwise.
Status ParseExecutionOrder(const std::string& order_by, store::ExecutionQuery* query);

}  // namespace atomflow::server
