// Store records as the API's resources.
#include "server/resources.h"

#include "server/api_support.h"

namespace atomflow::server {

namespace {

Json ParsedOr(const std::string& text, Json fallback) {
  Json parsed = Json::parse(text, nullptr, false);
  return parsed.is_discarded() ? fallback : parsed;
}

// Google's execution error: the error as JSON text, and its stack trace as text.
Json ErrorJson(const std::string& error_text) {
  Json error = ParsedOr(error_text, Json());
  Json out = {{"payload", error_text}};
  if (error.is_object() && error.contains("context") && error["context"].is_string()) {
    out["context"] = error["context"];
  } else if (error.is_object() && error.contains("message") && error["message"].is_string()) {
    out["context"] = error["message"];
  }
  return out;
}

}  // namespace

Json WorkflowJson(const store::WorkflowRecord& record, const std::string& prefix) {
  return {{"name", prefix + "workflows/" + record.name},
          {"description", record.description},
          {"state", "ACTIVE"},
          {"revisionId", record.revision_id},
          {"createTime", FormatTime(record.create_time_ms)},
          {"updateTime", FormatTime(record.update_time_ms)},
          {"revisionCreateTime", FormatTime(record.revision_create_time_ms)},
          {"labels", ParsedOr(record.labels, Json::object())},
          {"serviceAccount", record.service_account},
          {"sourceContents", record.source}};
}

Json ExecutionJson(const store::ExecutionRecord& record, const std::string& prefix) {
  Json out = {{"name", prefix + "workflows/" + record.workflow_name + "/executions/" + record.id},
              {"state", record.state},
              {"argument", record.argument.empty() ? "null" : record.argument},
              {"startTime", FormatTime(record.start_time_ms)},
              {"workflowRevisionId", record.revision_id},
              {"labels", ParsedOr(record.labels, Json::object())}};
  if (record.end_time_ms != 0) {
    out["endTime"] = FormatTime(record.end_time_ms);
    out["duration"] = FormatDuration(record.end_time_ms - record.start_time_ms);
  }
  if (record.state == "SUCCEEDED") out["result"] = record.result.empty() ? "null" : record.result;
  if (record.state != "SUCCEEDED" && !record.error.empty()) out["error"] = ErrorJson(record.error);
  return out;
}

Json StepEntryJson(const engine::StepEntry& entry, int64_t entry_id,
                   const std::string& execution_name) {
  const Json& p = entry.payload;
  std::string state = p.value("state", "");
  Json out = {{"name", execution_name + "/stepEntries/" + std::to_string(entry_id)},
              {"entryId", std::to_string(entry_id)},
              {"routine", p.value("routine", "")},
              {"step", p.value("step", "")},
              {"state", state.empty() ? "STATE_UNSPECIFIED" : "STATE_" + state},
              {"createTime", FormatTime(p.value("start_ms", int64_t{0}))},
              {"updateTime", FormatTime(p.value("end_ms", int64_t{0}))}};
  if (p.contains("line")) out["line"] = p["line"];
  if (p.contains("error")) out["exception"] = {{"payload", p["error"].dump()}};
  return out;
}

Json LogEntryJson(const store::JournalEntry& entry) {
  const Json& p = entry.payload;
  return {{"time", FormatTime(entry.time_ms)},
          {"severity", p.value("severity", "")},
          {"step", p.value("step", "")},
          {"text", p.value("text", "")}};
}

}  // namespace atomflow::server
