// The JSON shapes of the API's resources (docs/api.md): workflows, executions, step entries.
#pragma once

#include <string>

#include "engine/step_history.h"
#include "store/store.h"
#include "value/value.h"

namespace atomflow::server {

// prefix is "" or "projects/P/locations/L/", as the request's path carried it.
Json WorkflowJson(const store::WorkflowRecord& record, const std::string& prefix);
Json ExecutionJson(const store::ExecutionRecord& record, const std::string& prefix);
// One step entry (engine/step_history.h) as the API's step entry numbered entry_id (from 1).
Json StepEntryJson(const engine::StepEntry& entry, int64_t entry_id,
                   const std::string& execution_name);
// One journal record of kind "log" as a log entry.
Json LogEntryJson(const store::JournalEntry& entry);

}  // namespace atomflow::server
