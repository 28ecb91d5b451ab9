// The execution routes: run, get, list, cancel, step entries, logs, transactions and callbacks.
#include <algorithm>
#include <limits>
#include <set>

#include "common/log.h"
#include "engine/callbacks.h"
#include "engine/step_history.h"
#include "server/api_support.h"
#include "server/execution_filter.h"
#include "server/resources.h"
#include "server/server.h"
#include "txn/txn_view.h"

namespace atomflow::server {

namespace {

using Method = ApiServer::Method;
using RouteFn = void (*)(ApiServer&, const httplib::Request&, httplib::Response&);

// The execution E of workflow W (the path's first two groups); NotFound when E belongs to
// another workflow, so a caller cannot read executions through the wrong workflow's name.
Result<store::ExecutionRecord> LoadExecution(ApiServer& server, const httplib::Request& req) {
  std::string workflow = req.matches[1];
  std::string id = req.matches[2];
  Result<store::ExecutionRecord> record = server.store().GetExecution(id);
  if (!record.ok() || record->workflow_name != workflow) {
    return Status::NotFound("no execution '" + id + "' of workflow '" + workflow + "'");
  }
  return record;
}

std::string ExecutionName(const httplib::Request& req, const store::ExecutionRecord& record) {
  return NamePrefix(req) + "workflows/" + record.workflow_name + "/executions/" + record.id;
}

// The argument of a new execution: JSON text of at most kMaxArgumentBytes.
Result<Value> ParseArgument(const Json& body) {
  if (!body.contains("argument") || body["argument"].is_null()) return Value();
  if (!body["argument"].is_string()) {
    return Status::InvalidArgument(
        "'argument' must be a string holding JSON text, e.g. "
        "\"{\\\"n\\\": 1}\"");
  }
  const std::string& text = body["argument"].get_ref<const std::string&>();
  if (text.size() > kMaxArgumentBytes) {
    return Status::InvalidArgument("argument is " + std::to_string(text.size()) +
                                   " bytes, over the limit of " +
                                   std::to_string(kMaxArgumentBytes) + " bytes (32 KiB)");
  }
  if (text.empty()) return Value();
  Result<Json> parsed = ParseJsonText(text);
  if (!parsed.ok()) return Status::InvalidArgument("argument " + parsed.message());
  return FromJson(*parsed);
}

Result<std::string> ParseLabels(const Json& body) {
  Status checked = CheckLabelsField(body);
  if (!checked.ok()) return checked;
  return body.contains("labels") ? body["labels"].dump() : std::string("{}");
}

void CreateExecution(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {});
  if (!query.ok()) return ReplyError(res, query);
  Result<Json> body = ParseBody(req.body, {"argument", "labels", "callLogLevel"});
  if (!body.ok()) return ReplyError(res, body.status());
  Result<Value> argument = ParseArgument(*body);
  if (!argument.ok()) return ReplyError(res, argument.status());
  Result<std::string> labels = ParseLabels(*body);
  if (!labels.ok()) return ReplyError(res, labels.status());

  Result<store::WorkflowRecord> workflow = server.store().GetWorkflow(req.matches[1]);
  if (!workflow.ok()) return ReplyError(res, workflow.status());
  Result<std::shared_ptr<const lang::Workflow>> parsed = server.registry().Load(*workflow);
  if (!parsed.ok()) return ReplyError(res, parsed.status());
  engine::StartOptions options;
  options.workflow_name = workflow->name;
  options.revision_id = workflow->revision_id;
  options.service_account = workflow->service_account;
  options.labels = *labels;
  Result<std::string> id =
      server.engine().Start(std::move(parsed).value(), std::move(argument).value(), options);
  if (!id.ok()) return ReplyError(res, id.status());

  log::Event(
      "execution.created",
      {{"execution", *id}, {"workflow", workflow->name}, {"revision", workflow->revision_id}});
  Result<store::ExecutionRecord> record = server.store().GetExecution(*id);
  if (!record.ok()) return ReplyError(res, record.status());
  ReplyJson(res, ExecutionJson(*record, NamePrefix(req)));
}

Status CheckView(const httplib::Request& req) {
  std::string view = QueryParam(req, "view");
  if (view.empty() || view == "FULL" || view == "BASIC") return Status::Ok();
  return Status::InvalidArgument("view must be BASIC or FULL, not '" + view + "'");
}

// BASIC leaves out the argument and the result, as in Google's API.
Json Viewed(Json execution, const httplib::Request& req) {
  if (QueryParam(req, "view") == "BASIC") {
    execution.erase("argument");
    execution.erase("result");
  }
  return execution;
}

// The step running now: the last step effect whose outcome is not journaled yet.
Json CurrentSteps(ApiServer& server, const store::ExecutionRecord& record) {
  Json steps = Json::array();
  Result<std::vector<store::JournalEntry>> intents =
      server.store().ReadJournalKind(record.id, "intent", 0, 0);
  Result<std::vector<store::JournalEntry>> results =
      server.store().ReadJournalKind(record.id, "result", 0, 0);
  if (!intents.ok() || !results.ok()) return steps;
  std::set<std::string> done;
  for (const store::JournalEntry& result : *results) done.insert(result.key);
  for (const store::JournalEntry& intent : *intents) {
    if (done.count(intent.key)) continue;
    // The journal's effect keys number effects and strands; they do not name the routine.
    steps.push_back({{"step", intent.payload.value("step", "")}});
  }
  return steps;
}

void GetExecution(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"view"});
  if (query.ok()) query = CheckView(req);
  if (!query.ok()) return ReplyError(res, query);
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());
  Json out = ExecutionJson(*record, NamePrefix(req));
  if (record->state == "ACTIVE") out["status"] = {{"currentSteps", CurrentSteps(server, *record)}};
  ReplyJson(res, Viewed(std::move(out), req));
}

// Reads the executions list's query: filter, order and page cursor.
Status ExecutionQueryOf(const httplib::Request& req, store::ExecutionQuery* query) {
  Status status = CheckQuery(req, {"pageSize", "pageToken", "filter", "orderBy", "view"});
  if (status.ok()) status = CheckView(req);
  if (status.ok()) status = ParseExecutionFilter(QueryParam(req, "filter"), query);
  if (status.ok()) status = ParseExecutionOrder(QueryParam(req, "orderBy"), query);
  if (!status.ok()) return status;
  std::string token = QueryParam(req, "pageToken");
  if (token.empty()) return Status::Ok();

  Result<std::string> cursor = DecodePageToken(token, PageScope(req, "executions"));
  if (!cursor.ok()) return cursor.status();
  size_t bar = cursor->find('|');
  if (bar == std::string::npos) return DecodePageToken("", PageScope(req, "executions")).status();
  query->cursor_start_time_ms = std::atoll(cursor->substr(0, bar).c_str());
  query->cursor_id = cursor->substr(bar + 1);
  return Status::Ok();
}

void ListExecutions(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  store::ExecutionQuery query;
  query.workflow_name = req.matches[1];
  Status status = ExecutionQueryOf(req, &query);
  if (!status.ok()) return ReplyError(res, status);
  Result<int> size = PageSize(req);
  if (!size.ok()) return ReplyError(res, size.status());
  query.limit = *size + 1;

  Result<std::vector<store::ExecutionRecord>> records = server.store().QueryExecutions(query);
  if (!records.ok()) return ReplyError(res, records.status());
  std::string prefix = NamePrefix(req);
  Json out = {{"executions", Json::array()}};
  for (int i = 0; i < static_cast<int>(records->size()) && i < *size; ++i) {
    out["executions"].push_back(Viewed(ExecutionJson((*records)[i], prefix), req));
  }
  if (static_cast<int>(records->size()) > *size) {
    const store::ExecutionRecord& last = (*records)[*size - 1];
    out["nextPageToken"] = EncodePageToken(PageScope(req, "executions"),
                                           std::to_string(last.start_time_ms) + "|" + last.id);
  }
  ReplyJson(res, out);
}

void CancelExecution(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {});
  if (!query.ok()) return ReplyError(res, query);
  Result<Json> body = ParseBody(req.body, {});
  if (!body.ok()) return ReplyError(res, body.status());
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());
  if (record->state != "ACTIVE") {
    return ReplyError(res, Status::FailedPrecondition("execution '" + record->id +
                                                      "' has already finished: " + record->state));
  }
  // Cancellation is journaled by the execution itself; it ends CANCELLED once open
  // transactions aborted and compensations ran.
  server.engine().Cancel(record->id);
  log::Event("execution.cancel_requested",
             {{"execution", record->id}, {"workflow", record->workflow_name}});
  ReplyJson(res, ExecutionJson(*record, NamePrefix(req)));
}

// A failed step of a failed execution, whose journal record carries no error of its own, shows
// the error that ended the execution: the one that passed through it.
Json WithException(Json entry, const store::ExecutionRecord& record) {
  if (entry.contains("exception") || entry.value("state", "") != "STATE_FAILED") return entry;
  if (record.state != "FAILED" || record.error.empty()) return entry;
  entry["exception"] = {{"payload", record.error}};
  return entry;
}

// Where a page of step entries starts: after entry `offset` of journal row `seq` (the step
// entries of one "steps" row share its seq), with `before` entries on earlier pages.
struct StepCursor {
  int64_t seq = 0;
  int64_t offset = 0;
  int64_t before = 0;
};

// Cursor text "<seq>.<offset>|<entries before>", so entry ids count from 1 across pages. A
// token of an older server, "<seq>|<entries before>", resumes after the whole row seq.
StepCursor ParseStepCursor(const std::string& text) {
  StepCursor cursor;
  cursor.seq = std::atoll(text.c_str());
  size_t dot = text.find('.');
  size_t bar = text.find('|');
  cursor.offset =
      dot < bar ? std::atoll(text.c_str() + dot + 1) : std::numeric_limits<int64_t>::max();
  if (bar != std::string::npos) cursor.before = std::atoll(text.c_str() + bar + 1);
  return cursor;
}

void ListStepEntries(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"pageSize", "pageToken", "filter", "orderBy", "view"});
  if (!query.ok()) return ReplyError(res, query);
  Result<int> size = PageSize(req);
  if (!size.ok()) return ReplyError(res, size.status());
  StepCursor cursor;
  std::string token = QueryParam(req, "pageToken");
  if (!token.empty()) {
    Result<std::string> text = DecodePageToken(token, PageScope(req, "steps"));
    if (!text.ok()) return ReplyError(res, text.status());
    cursor = ParseStepCursor(*text);
  }
  int64_t before = cursor.before;
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());

  Result<std::vector<engine::StepEntry>> entries =
      engine::ReadStepEntries(server.store(), record->id, cursor.seq, cursor.offset, *size + 1);
  if (!entries.ok()) return ReplyError(res, entries.status());
  std::string name = ExecutionName(req, *record);
  Json out = {{"stepEntries", Json::array()}};
  for (int i = 0; i < static_cast<int>(entries->size()) && i < *size; ++i) {
    out["stepEntries"].push_back(
        WithException(StepEntryJson((*entries)[i], before + i + 1, name), *record));
  }
  if (static_cast<int>(entries->size()) > *size) {
    const engine::StepEntry& last = (*entries)[*size - 1];
    out["nextPageToken"] = EncodePageToken(
        PageScope(req, "steps"), std::to_string(last.seq) + "." + std::to_string(last.offset) +
                                     "|" + std::to_string(before + *size));
  }
  ReplyJson(res, out);
}

void GetStepEntry(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"view"});
  if (!query.ok()) return ReplyError(res, query);
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());
  int64_t entry_id = std::atoll(req.matches[3].str().c_str());
  Result<std::vector<engine::StepEntry>> entries =
      entry_id > 0 ? engine::ReadStepEntries(server.store(), record->id, 0, 0, entry_id)
                   : Result<std::vector<engine::StepEntry>>(std::vector<engine::StepEntry>());
  if (!entries.ok()) return ReplyError(res, entries.status());
  if (entry_id <= 0 || static_cast<int64_t>(entries->size()) < entry_id) {
    return ReplyError(res, Status::NotFound("no step entry " + req.matches[3].str() +
                                            " in execution '" + record->id + "'"));
  }
  ReplyJson(res,
            WithException(StepEntryJson(entries->back(), entry_id, ExecutionName(req, *record)),
                          *record));
}

void ListLogs(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"pageSize", "pageToken"});
  if (!query.ok()) return ReplyError(res, query);
  Result<int> size = PageSize(req);
  if (!size.ok()) return ReplyError(res, size.status());
  int64_t after_seq = 0;
  if (std::string token = QueryParam(req, "pageToken"); !token.empty()) {
    Result<std::string> cursor = DecodePageToken(token, PageScope(req, "logs"));
    if (!cursor.ok()) return ReplyError(res, cursor.status());
    after_seq = std::atoll(cursor->c_str());
  }
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());

  Result<std::vector<store::JournalEntry>> entries =
      server.store().ReadJournalKind(record->id, "log", after_seq, *size + 1);
  if (!entries.ok()) return ReplyError(res, entries.status());
  Json out = {{"entries", Json::array()}};
  for (int i = 0; i < static_cast<int>(entries->size()) && i < *size; ++i) {
    out["entries"].push_back(LogEntryJson((*entries)[i]));
  }
  if (static_cast<int>(entries->size()) > *size) {
    out["nextPageToken"] =
        EncodePageToken(PageScope(req, "logs"), std::to_string((*entries)[*size - 1].seq));
  }
  ReplyJson(res, out);
}

void ListExecutionTransactions(ApiServer& server, const httplib::Request& req,
                               httplib::Response& res) {
  Status query = CheckQuery(req, {});
  if (!query.ok()) return ReplyError(res, query);
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());
  Result<std::vector<store::JournalEntry>> journal = server.store().ReadJournal(record->id);
  if (!journal.ok()) return ReplyError(res, journal.status());
  ReplyJson(res, {{"transactions", txn::TransactionsOf(*record, *journal)}});
}

void ListCallbacks(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"pageSize", "pageToken"});
  if (!query.ok()) return ReplyError(res, query);
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());
  Result<Json> callbacks = server.engine().ListCallbacks(record->id);
  if (!callbacks.ok()) return ReplyError(res, callbacks.status());
  Json out = Json::array();
  for (Json callback : *callbacks) {
    if (callback.contains("createTimeMs")) {
      callback["createTime"] = FormatTime(callback["createTimeMs"].get<int64_t>());
      callback.erase("createTimeMs");
    }
    out.push_back(std::move(callback));
  }
  ReplyJson(res, {{"callbacks", out}});
}

// The request a callback hands to events.await_callback. Credentials stay out of it: it is
// journaled and returned to the workflow.
Json CallbackRequestJson(const httplib::Request& req) {
  Json headers = Json::object();
  for (const auto& [name, value] : req.headers) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower == "authorization" || lower == "cookie" || lower == "proxy-authorization") continue;
    headers[name] = value;
  }
  Json query = Json::object();
  for (const auto& [name, value] : QueryParams(req)) {
    if (!query.contains(name)) query[name] = Json::array();
    query[name].push_back(value);
  }
  Json body = nullptr;
  if (!req.body.empty()) {
    Json parsed = Json::parse(req.body, nullptr, false);
    body = parsed.is_discarded() ? Json(req.body) : parsed;
  }
  return {{"body", body},
          {"headers", headers},
          {"method", req.method},
          {"query", query},
          {"url", req.target.empty() ? req.path : req.target}};
}

// Whether a finished execution ever made the callback endpoint: a late request to one is refused
// as too late (409), a request to an endpoint that never was as not found (404).
bool HadCallback(ApiServer& server, const store::ExecutionRecord& record,
                 const std::string& callback_id) {
  Result<std::vector<store::JournalEntry>> intents =
      server.store().ReadJournalKind(record.id, "intent", 0, 0);
  if (!intents.ok()) return false;
  return std::any_of(intents->begin(), intents->end(), [&](const store::JournalEntry& intent) {
    return engine::CallbackBook::CallbackId(record.id, intent.key) == callback_id;
  });
}

// A callback is handed to the workflow as strings: bytes that are not UTF-8 could never be
// returned or journaled as JSON, so they are refused here rather than fail the execution.
Status CheckCallbackText(const httplib::Request& req) {
  size_t at = 0;
  if (!IsValidUtf8(req.body, &at)) {
    return Status::InvalidArgument("the callback body is not UTF-8 text (at byte " +
                                   std::to_string(at) + ")");
  }
  if (!IsValidUtf8(req.target, &at)) {
    return Status::InvalidArgument("the callback URL's query is not UTF-8 text");
  }
  for (const auto& [name, value] : req.headers) {
    if (!IsValidUtf8(name, &at) || !IsValidUtf8(value, &at)) {
      return Status::InvalidArgument("a callback header is not UTF-8 text");
    }
  }
  for (const auto& [name, value] : QueryParams(req)) {
    if (!IsValidUtf8(name, &at) || !IsValidUtf8(value, &at)) {
      return Status::InvalidArgument("a callback query parameter is not UTF-8 text");
    }
  }
  return Status::Ok();
}

void DeliverCallback(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Result<store::ExecutionRecord> record = LoadExecution(server, req);
  if (!record.ok()) return ReplyError(res, record.status());
  if (Status text = CheckCallbackText(req); !text.ok()) return ReplyError(res, text);
  std::string callback_id = req.matches[3];
  if (record->state != "ACTIVE" && !HadCallback(server, *record, callback_id)) {
    return ReplyError(res, Status::NotFound("no callback '" + callback_id + "' in execution '" +
                                            record->id + "'"));
  }
  Status delivered = server.engine().DeliverCallback(record->id, callback_id, req.method,
                                                     CallbackRequestJson(req));
  if (!delivered.ok()) return ReplyError(res, delivered);
  log::Event("callback.delivered",
             {{"execution", record->id}, {"callback", callback_id}, {"method", req.method}});
  ReplyJson(res, Json::object());
}

}  // namespace

void RegisterExecutionRoutes(ApiServer& server) {
  auto bind = [&server](RouteFn route) {
    return [&server, route](const httplib::Request& req, httplib::Response& res) {
      route(server, req, res);
    };
  };
  const std::string kAll = V1("/workflows/([^/:]+)/executions");
  const std::string kOne = kAll + "/([^/:]+)";
  server.Route(Method::kPost, kAll, Role::kInvoker, bind(CreateExecution));
  server.Route(Method::kGet, kAll, Role::kViewer, bind(ListExecutions));
  server.Route(Method::kGet, kOne, Role::kViewer, bind(GetExecution));
  server.Route(Method::kPost, kOne + ":cancel", Role::kInvoker, bind(CancelExecution));
  server.Route(Method::kGet, kOne + "/stepEntries", Role::kViewer, bind(ListStepEntries));
  server.Route(Method::kGet, kOne + "/stepEntries/([^/]+)", Role::kViewer, bind(GetStepEntry));
  server.Route(Method::kGet, kOne + "/logs", Role::kViewer, bind(ListLogs));
  server.Route(Method::kGet, kOne + "/transactions", Role::kViewer,
               bind(ListExecutionTransactions));
  server.Route(Method::kGet, kOne + "/callbacks", Role::kViewer, bind(ListCallbacks));
  for (Method method :
       {Method::kPost, Method::kGet, Method::kPut, Method::kPatch, Method::kDelete}) {
    server.Route(method, kOne + "/callbacks/([^/]+)", Role::kInvoker, bind(DeliverCallback));
  }
}

}  // namespace atomflow::server
