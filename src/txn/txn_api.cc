// TxnApi: the self-coordinated transaction API, translated into workflow executions.
#include "txn/txn_api.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "common/log.h"
#include "engine/engine.h"
#include "lang/ast.h"

namespace atomflow::txn {
namespace {

// The calls of each branch kind, in the order they are stored in ApiBranch::calls.
const std::vector<std::string>& CallNamesOf(const std::string& kind) {
  static const std::vector<std::string> kSaga = {"action", "compensate"};
  static const std::vector<std::string> kTcc = {"try", "confirm", "cancel"};
  return kind == "tcc" ? kTcc : kSaga;
}

ApiResponse BadRequest(const std::string& message) {
  return ApiError(400, "INVALID_ARGUMENT", message);
}

ApiResponse NotFound(const std::string& gid) {
  return ApiError(404, "NOT_FOUND", "no transaction '" + gid + "'");
}

ApiResponse Conflict(const std::string& message) {
  return ApiError(409, "FAILED_PRECONDITION", message);
}

// The parsed body; an empty body reads as {}. The error says what is wrong with it.
Result<Json> ParseObject(const std::string& body) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return Json::object();
  Result<Json> parsed = ParseJsonText(body);
  if (!parsed.ok()) return Status::Error("the body " + parsed.message());
  if (!parsed->is_object()) return Status::Error("the body must be a JSON object");
  return parsed;
}

bool IsHttpUrl(const Json& url) {
  if (!url.is_string()) return false;
  const std::string& text = url.get_ref<const std::string&>();
  return text.rfind("http://", 0) == 0 || text.rfind("https://", 0) == 0;
}

// One call {"url", "body"?} named field; an error message naming the wrong field, or empty.
std::string ParseCall(const Json& branch, const std::string& field, ApiCall* call) {
  if (!branch.contains(field) || !branch[field].is_object()) {
    return "field '" + field + "' must be an object {\"url\", \"body\"?}";
  }
  const Json& spec = branch[field];
  for (const auto& [key, value] : spec.items()) {
    if (key != "url" && key != "body") return "field '" + field + "." + key + "' is not known";
  }
  if (!spec.contains("url") || !IsHttpUrl(spec["url"])) {
    return "field '" + field + ".url' must be an http:// or https:// URL string";
  }
  call->url = spec["url"].get<std::string>();
  if (spec.contains("body")) call->body = spec["body"];
  return "";
}

// A branch from a request body, or the message of a 400 naming the wrong field.
Result<ApiBranch> ParseBranch(const std::string& body) {
  Result<Json> parsed = ParseObject(body);
  if (!parsed.ok()) return parsed.status();
  const Json& spec = *parsed;
  if (!spec.contains("kind") || !spec["kind"].is_string() ||
      (spec["kind"] != "saga" && spec["kind"] != "tcc")) {
    return Status::Error("field 'kind' must be \"saga\" or \"tcc\"");
  }
  ApiBranch branch;
  branch.kind = spec["kind"].get<std::string>();
  const std::vector<std::string>& names = CallNamesOf(branch.kind);
  for (const auto& [key, value] : spec.items()) {
    if (key != "kind" && std::find(names.begin(), names.end(), key) == names.end()) {
      return Status::Error("field '" + key + "' is not known for a " + branch.kind + " branch");
    }
  }
  for (const std::string& name : names) {
    ApiCall call;
    if (std::string error = ParseCall(spec, name, &call); !error.empty()) {
      return Status::Error(error);
    }
    branch.calls.push_back(std::move(call));
  }
  return branch;
}

// The YAML of one http.post call reading its URL and body from args, indented by indent.
void EmitCall(std::ostringstream& out, const std::string& indent, size_t branch, size_t call,
              const ApiCall& spec) {
  std::string path =
      "args.branches[" + std::to_string(branch) + "].calls[" + std::to_string(call) + "]";
  out << indent << "call: http.post\n";
  out << indent << "args:\n";
  out << indent << "  url: ${" << path << ".url}\n";
  if (spec.body) out << indent << "  body: ${" << path << ".body}\n";
}

void EmitBranch(std::ostringstream& out, size_t index, const ApiBranch& branch) {
  const std::string step = "            ";
  out << "            - branch_" << index + 1 << ":\n";
  if (branch.kind == "saga") {
    EmitCall(out, step + "    ", index, 0, branch.calls[0]);
    out << step << "    compensate:\n";
    EmitCall(out, step + "      ", index, 1, branch.calls[1]);
    return;
  }
  out << step << "    tcc:\n";
  const std::vector<std::string>& names = CallNamesOf("tcc");
  for (size_t call = 0; call < names.size(); ++call) {
    out << step << "      " << names[call] << ":\n";
    EmitCall(out, step + "        ", index, call, branch.calls[call]);
  }
}

}  // namespace

ApiResponse ApiError(int code, const std::string& status, const std::string& message) {
  return {code, Json{{"error", {{"code", code}, {"message", message}, {"status", status}}}}};
}

std::string TxnApi::WorkflowSource(const std::vector<ApiBranch>& branches,
                                   std::optional<double> timeout) {
  std::ostringstream out;
  out << "main:\n  params: [args]\n  steps:\n    - txn:\n        transaction:\n";
  // The timeout was checked to be a positive finite number; it is the only literal emitted.
  if (timeout) out << "          timeout: " << Json(*timeout).dump() << "\n";
  out << "          steps:\n";
  for (size_t i = 0; i < branches.size(); ++i) EmitBranch(out, i, branches[i]);
  out << "    - done:\n        return: ${args.gid}\n";
  return out.str();
}

Value TxnApi::ArgumentOf(const std::string& gid, const std::vector<ApiBranch>& branches) {
  Json list = Json::array();
  for (const ApiBranch& branch : branches) {
    Json calls = Json::array();
    for (const ApiCall& call : branch.calls) {
      Json entry = {{"url", call.url}};
      if (call.body) entry["body"] = *call.body;
      calls.push_back(std::move(entry));
    }
    list.push_back({{"kind", branch.kind}, {"calls", std::move(calls)}});
  }
  return FromJson(Json{{"gid", gid}, {"branches", std::move(list)}});
}

std::string TxnApi::NewGid() {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  char text[40];
  std::snprintf(text, sizeof(text), "api-%016llx-%llu", static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(++counter_));
  return text;
}

ApiResponse TxnApi::Begin(const std::string& body) {
  Result<Json> spec = ParseObject(body);
  if (!spec.ok()) return BadRequest(spec.message());
  Pending pending;
  if (spec->contains("timeout")) {
    const Json& timeout = (*spec)["timeout"];
    if (!timeout.is_number() || !std::isfinite(timeout.get<double>()) ||
        timeout.get<double>() <= 0) {
      return BadRequest("field 'timeout' must be a positive number of seconds");
    }
    pending.timeout = timeout.get<double>();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  std::string gid = NewGid();
  transactions_.emplace(gid, std::move(pending));
  return {200, Json{{"gid", gid}}};
}

ApiResponse TxnApi::AddBranch(const std::string& gid, const std::string& body) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = transactions_.find(gid);
  if (it == transactions_.end()) return NotFound(gid);
  Pending& pending = it->second;
  if (pending.dropped || !pending.execution.empty()) {
    return Conflict("transaction '" + gid + "' was already submitted or aborted");
  }
  Result<ApiBranch> branch = ParseBranch(body);
  if (!branch.ok()) return BadRequest(branch.message());
  pending.branches.push_back(std::move(branch).value());
  return {200, Json{{"branch", pending.branches.size()}}};
}

ApiResponse TxnApi::Submit(const std::string& gid) {
  // The lock is held across Start so no branch can be added while the execution is created.
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = transactions_.find(gid);
  if (it == transactions_.end()) return NotFound(gid);
  Pending& pending = it->second;
  if (pending.dropped || !pending.execution.empty()) {
    return Conflict("transaction '" + gid + "' was already submitted or aborted");
  }
  if (pending.branches.empty()) return Conflict("transaction '" + gid + "' has no branches");

  std::string source = WorkflowSource(pending.branches, pending.timeout);
  Result<std::shared_ptr<const lang::Workflow>> workflow =
      lang::LoadWorkflow("txn-api-" + gid + ".yaml", source);
  if (!workflow.ok()) return ApiError(500, "INTERNAL", workflow.message());
  Result<std::string> id =
      engine_->Start(std::move(workflow).value(), ArgumentOf(gid, pending.branches));
  if (!id.ok()) return ApiError(500, "INTERNAL", id.message());
  pending.execution = *id;
  log::Info("api transaction {} submitted as execution {} ({} branches)", gid, *id,
            pending.branches.size());
  return {202, Json{{"gid", gid}, {"execution", *id}}};
}

ApiResponse TxnApi::Abort(const std::string& gid) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = transactions_.find(gid);
  if (it == transactions_.end()) return NotFound(gid);
  Pending& pending = it->second;
  if (!pending.execution.empty()) {
    return Conflict("transaction '" + gid + "' was submitted: its workflow decides its outcome");
  }
  pending.dropped = true;
  return {200, Json{{"gid", gid}, {"state", "DROPPED"}}};
}

ApiResponse TxnApi::Get(const std::string& gid) {
  std::string execution;
  Json view;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = transactions_.find(gid);
    if (it == transactions_.end()) return NotFound(gid);
    const Pending& pending = it->second;
    execution = pending.execution;
    view = {{"gid", gid},
            {"state", pending.dropped ? "DROPPED" : "OPEN"},
            {"branches", pending.branches.size()}};
  }
  // The store is read outside the lock: it may wait for the store's writer.
  if (!execution.empty()) {
    view["state"] = SubmittedState(execution);
    view["execution"] = execution;
  }
  return {200, view};
}

std::string TxnApi::SubmittedState(const std::string& execution_id) {
  Result<store::ExecutionRecord> record = engine_->store()->GetExecution(execution_id);
  if (!record.ok() || record->state == "ACTIVE") return "ACTIVE";
  Result<std::vector<store::JournalEntry>> journal = engine_->store()->ReadJournal(execution_id);
  std::string state;
  if (journal.ok()) {
    // The latest end of the transaction wins: an operator's resolution follows the txn_end.
    // A saga commit's decision carries its end (docs/journal.md, "Folded records").
    for (const store::JournalEntry& entry : *journal) {
      bool ends = entry.kind == "txn_end" || entry.kind == "txn_resolved" ||
                  (entry.kind == "decision" && entry.payload.contains("state"));
      if (ends) {
        state = entry.payload.value("state", state);
      }
    }
  }
  // An execution cancelled before its block began never journaled one: nothing committed.
  return state.empty() ? "ABORTED" : state;
}

}  // namespace atomflow::txn
