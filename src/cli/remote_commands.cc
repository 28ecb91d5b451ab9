// `atomflow executions ...` and `atomflow txn ...`: through the REST API of a server, or on the
// local store as before; and the pieces every client command shares.
#include "cli/remote_commands.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/output.h"
#include "cli/progress.h"
#include "engine/step_history.h"
#include "server/workflow_registry.h"

namespace atomflow::cli {

namespace {

// What `executions wait` returns when --timeout passes first (as timeout(1) does).
constexpr int kExitTimedOut = 124;
constexpr int kDefaultListLimit = 1000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---- shared by the client commands ----

void AddTargetFlags(CLI::App& app, CLI::App* sub, TargetFlags& flags, CommonOptions& options) {
  flags.server_option = sub->add_option(
      "--server", flags.server, "the atomflow serve URL (default: $ATOMFLOW_SERVER; none: local)");
  flags.store_option = sub->add_option("--store", options.store, "the SQLite store file");
  flags.top_store_option = app.get_option_no_throw("--store");
  sub->add_flag("--json", options.json, "print JSON");
}

Result<Target> ResolveTarget(const TargetFlags& flags) {
  bool store_given = flags.store_option->count() > 0 ||
                     (flags.top_store_option != nullptr && flags.top_store_option->count() > 0);
  bool server_given = flags.server_option->count() > 0;
  if (store_given && server_given) {
    return Status::InvalidArgument("give --server or --store, not both");
  }
  Target target;
  // An explicit --store is more specific than the environment's ATOMFLOW_SERVER.
  target.server = store_given ? "" : ServerUrl(flags.server);
  if (!target.server.empty()) {
    target.client = std::make_unique<ApiClient>(target.server, TokenFromEnvironment());
  }
  return target;
}

int Failed(const CommonOptions& options, const Status& status) {
  return Invalid(options, status.message());
}

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  measure(header);
  for (const auto& row : rows) measure(row);

  auto print = [&widths](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    printf("%s\n", line.c_str());
  };
  print(header);
  for (const auto& row : rows) print(row);
}

Result<Json> ParseLabels(const std::vector<std::string>& labels) {
  Json out = Json::object();
  for (const std::string& label : labels) {
    size_t equals = label.find('=');
    if (equals == std::string::npos || equals == 0) {
      return Status::InvalidArgument("--label takes key=value, not '" + label + "'");
    }
    out[label.substr(0, equals)] = label.substr(equals + 1);
  }
  return out;
}

namespace {

// ---- executions as the API shows them ----

// An execution named by the user: its id, and its workflow when known.
struct ExecutionRef {
  std::string workflow;
  std::string id;
};

// "workflows/W/executions/E" (Google's "projects/P/locations/L/" prefix allowed), or E with
// --workflow W, or E alone.
Result<ExecutionRef> ParseExecutionRef(const std::string& text, const std::string& workflow) {
  ExecutionRef ref{workflow, text};
  size_t at = text.find("workflows/");
  size_t executions = text.find("/executions/");
  if (at != std::string::npos && executions != std::string::npos && executions > at) {
    ref.workflow = text.substr(at + 10, executions - at - 10);
    ref.id = text.substr(executions + 12);
    if (!workflow.empty() && workflow != ref.workflow) {
      return Status::InvalidArgument("--workflow " + workflow + " does not match " + text);
    }
  }
  if (ref.id.empty() || ref.id.find('/') != std::string::npos) {
    return Status::InvalidArgument("'" + text +
                                   "' is no execution id (ID, or workflows/W/executions/ID)");
  }
  return ref;
}

std::string ExecutionPath(const ExecutionRef& ref) {
  return "/v1/workflows/" + PathSegment(ref.workflow) + "/executions/" + PathSegment(ref.id);
}

// An execution resource of the API as the record the local commands print.
store::ExecutionRecord RecordOf(const Json& resource) {
  store::ExecutionRecord record;
  std::string name = resource.value("name", "");
  Result<ExecutionRef> ref = ParseExecutionRef(name, "");
  if (ref.ok()) {
    record.workflow_name = ref->workflow;
    record.id = ref->id;
  }
  record.state = resource.value("state", "");
  record.argument = resource.value("argument", "");
  record.result = resource.value("result", "");
  record.start_time_ms = ParseRfc3339(resource.value("startTime", ""));
  record.end_time_ms = ParseRfc3339(resource.value("endTime", ""));
  record.revision_id = resource.value("workflowRevisionId", "");
  record.labels = resource.value("labels", Json::object()).dump();
  if (resource.contains("error") && resource["error"].is_object()) {
    const Json& error = resource["error"];
    Json payload = ParseOrNull(error.value("payload", ""));
    // The stack trace travels beside the payload; `run` prints it from the error itself.
    std::string context = error.value("context", "");
    if (payload.is_object() && !context.empty() && !payload.contains("context")) {
      payload["context"] = context;
    }
    record.error = payload.is_null() ? error.value("payload", "") : payload.dump();
  }
  return record;
}

// The names of the steps the execution is at, from its status; "" when it shows none.
std::string CurrentSteps(const Json& resource) {
  std::string out;
  const Json status = resource.value("status", Json::object());
  for (const Json& step : status.value("currentSteps", Json::array())) {
    if (!out.empty()) out += ", ";
    out += step.value("step", "");
  }
  return out;
}

bool Finished(const std::string& state) {
  return state == "SUCCEEDED" || state == "FAILED" || state == "CANCELLED";
}

// Finds the workflow of an execution given by id alone: the server has no list of every
// execution, so each deployed workflow is asked in turn (ids are unique across workflows).
Result<ExecutionRef> FindOnServer(ApiClient& client, ExecutionRef ref) {
  if (!ref.workflow.empty()) return ref;
  Result<Json> workflows = client.GetAll("/v1/workflows", "workflows");
  if (!workflows.ok()) return workflows.status();
  for (const Json& workflow : *workflows) {
    std::string name = workflow.value("name", "");
    ref.workflow = name.substr(name.rfind('/') + 1);
    Result<Json> found = client.Get(ExecutionPath(ref));
    if (found.ok()) return ref;
    if (found.status().code() != StatusCode::kNotFound) return found.status();
  }
  return Status::NotFound("no execution '" + ref.id +
                          "' in the server's workflows (an execution of a deleted workflow "
                          "needs --workflow W or the name workflows/W/executions/ID)");
}

Result<Json> GetExecution(ApiClient& client, const ExecutionRef& ref) {
  return client.Get(ExecutionPath(ref));
}

// ---- the commands' flags ----

// Everything the executions and txn subcommands take; one per group, shared by its handlers.
struct ExecutionFlags {
  std::string id;
  std::string workflow;
  std::string state;
  int limit = kDefaultListLimit;
  std::string data;
  std::vector<std::string> labels;
  bool wait = false;
  double timeout_seconds = 0;
  std::string gid;
  bool retry = false;
  bool mark_compensated = false;
  std::vector<CLI::Option*> configs;  // --config of the subcommands that open an engine
};

// ---- executions list ----

Json ListJson(const store::ExecutionRecord& record) {
  return {{"id", record.id},
          {"name", record.workflow_name},
          {"state", record.state},
          {"start_time", Rfc3339(record.start_time_ms)},
          {"end_time", Rfc3339(record.end_time_ms)},
          {"revision_id", record.revision_id}};
}

std::string Duration(const store::ExecutionRecord& record) {
  if (record.end_time_ms == 0) return "";
  char text[32];
  snprintf(text, sizeof(text), "%.2fs", (record.end_time_ms - record.start_time_ms) / 1000.0);
  return text;
}

int PrintExecutions(const CommonOptions& options, const std::vector<store::ExecutionRecord>& list) {
  if (options.json) {
    Json out = Json::array();
    for (const store::ExecutionRecord& record : list) out.push_back(ListJson(record));
    std::cout << out.dump() << std::endl;
    return kExitSucceeded;
  }
  std::vector<std::vector<std::string>> rows;
  for (const store::ExecutionRecord& record : list) {
    rows.push_back({record.id, record.workflow_name, record.revision_id, record.state,
                    Rfc3339(record.start_time_ms), Duration(record)});
  }
  PrintTable({"ID", "WORKFLOW", "REVISION", "STATE", "STARTED", "DURATION"}, rows);
  return kExitSucceeded;
}

Result<std::vector<store::ExecutionRecord>> ListRemote(ApiClient& client,
                                                       const ExecutionFlags& flags) {
  std::vector<std::string> workflows;
  if (!flags.workflow.empty()) {
    workflows.push_back(flags.workflow);
  } else {
    Result<Json> all = client.GetAll("/v1/workflows", "workflows");
    if (!all.ok()) return all.status();
    for (const Json& workflow : *all) {
      std::string name = workflow.value("name", "");
      workflows.push_back(name.substr(name.rfind('/') + 1));
    }
  }
  QueryParams query;
  if (!flags.state.empty()) query.emplace_back("filter", "state=\"" + flags.state + "\"");
  if (flags.limit > 0) query.emplace_back("pageSize", std::to_string(std::min(flags.limit, 1000)));

  std::vector<store::ExecutionRecord> records;
  for (const std::string& workflow : workflows) {
    Result<Json> page = client.GetAll("/v1/workflows/" + PathSegment(workflow) + "/executions",
                                      "executions", query, flags.limit);
    if (!page.ok()) return page.status();
    for (const Json& resource : *page) records.push_back(RecordOf(resource));
  }
  // Newest first across workflows, as the local list is.
  std::stable_sort(records.begin(), records.end(),
                   [](const auto& a, const auto& b) { return a.start_time_ms > b.start_time_ms; });
  if (flags.limit > 0 && static_cast<int>(records.size()) > flags.limit) {
    records.resize(flags.limit);
  }
  return records;
}

Result<std::vector<store::ExecutionRecord>> ListLocal(const CommonOptions& options,
                                                      const ExecutionFlags& flags) {
  Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
  if (!store.ok()) return store.status();
  if (flags.workflow.empty()) return (*store)->ListExecutions(flags.state, flags.limit);

  store::ExecutionQuery query;
  query.workflow_name = flags.workflow;
  if (!flags.state.empty()) query.filters.push_back({"state", "=", flags.state});
  query.limit = flags.limit;
  return (*store)->QueryExecutions(query);
}

int ListExecutions(const CommonOptions& options, Target& target, const ExecutionFlags& flags) {
  Result<std::vector<store::ExecutionRecord>> records =
      target.remote() ? ListRemote(*target.client, flags) : ListLocal(options, flags);
  if (!records.ok()) return Failed(options, records.status());
  return PrintExecutions(options, *records);
}

// ---- executions describe ----

// A step entry of the API as a step of `describe`.
Json StepOf(const Json& entry) {
  std::string state = entry.value("state", "");
  if (state.starts_with("STATE_")) state = state.substr(6);
  int64_t start = ParseRfc3339(entry.value("createTime", ""));
  int64_t end = ParseRfc3339(entry.value("updateTime", ""));
  return {{"step", entry.value("step", "")},
          {"routine", entry.value("routine", "")},
          {"state", state},
          {"start_time", Rfc3339(start)},
          {"end_time", Rfc3339(end)},
          {"duration_ms", end > start ? end - start : 0}};
}

Result<Json> DescribeRemote(ApiClient& client, const ExecutionRef& ref) {
  Result<Json> resource = GetExecution(client, ref);
  if (!resource.ok()) return resource.status();
  Result<Json> entries = client.GetAll(ExecutionPath(ref) + "/stepEntries", "stepEntries");
  if (!entries.ok()) return entries.status();
  Result<Json> transactions = client.Get(ExecutionPath(ref) + "/transactions");
  if (!transactions.ok()) return transactions.status();

  store::ExecutionRecord record = RecordOf(*resource);
  Json out = Outcome(record);
  out["start_time"] = Rfc3339(record.start_time_ms);
  out["end_time"] = Rfc3339(record.end_time_ms);
  out["duration_ms"] = record.end_time_ms ? record.end_time_ms - record.start_time_ms : 0;
  out["argument"] = ParseOrNull(record.argument);
  out["revision_id"] = record.revision_id;
  out["labels"] = ParseOrNull(record.labels);
  Json steps = Json::array();
  for (const Json& entry : *entries) steps.push_back(StepOf(entry));
  out["steps"] = steps;
  out["transactions"] = transactions->value("transactions", Json::array());
  std::string current = CurrentSteps(*resource);
  if (!current.empty()) out["current_steps"] = current;
  return out;
}

int DescribeExecution(const CommonOptions& options, Target& target, const ExecutionFlags& flags) {
  Result<ExecutionRef> ref = ParseExecutionRef(flags.id, flags.workflow);
  if (!ref.ok()) return Failed(options, ref.status());
  if (!target.remote()) {
    if (!ref->workflow.empty()) {
      Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
      if (!store.ok()) return Failed(options, store.status());
      Result<store::ExecutionRecord> record = (*store)->GetExecution(ref->id);
      if (record.ok() && record->workflow_name != ref->workflow) {
        return Invalid(options, "execution '" + ref->id + "' belongs to workflow '" +
                                    record->workflow_name + "', not '" + ref->workflow + "'");
      }
    }
    return DescribeCommand(options, ref->id);
  }

  Result<ExecutionRef> found = FindOnServer(*target.client, *ref);
  if (!found.ok()) return Failed(options, found.status());
  Result<Json> out = DescribeRemote(*target.client, *found);
  if (!out.ok()) return Failed(options, out.status());
  if (options.json) {
    std::cout << out->dump() << std::endl;
  } else {
    PrintDescription(*out);
  }
  return kExitSucceeded;
}

// ---- executions wait ----

// The line a person watches while `wait` waits: rewritten in place on a terminal, absent
// elsewhere.
class WaitLine {
 public:
  WaitLine() : terminal_(isatty(STDERR_FILENO) == 1) {}
  ~WaitLine() { Clear(); }

  void Show(const std::string& id, const std::string& steps, int64_t start_ms) {
    if (!terminal_) return;
    double elapsed = (NowMs() - (start_ms > 0 ? start_ms : started_ms_)) / 1000.0;
    std::string where = steps.empty() ? "" : " at " + steps;
    fprintf(stderr, "\r\033[Kexecution %s running%s, %.1fs", id.c_str(), where.c_str(), elapsed);
    fflush(stderr);
    shown_ = true;
  }

  void Clear() {
    if (!shown_) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    shown_ = false;
  }

 private:
  bool terminal_;
  bool shown_ = false;
  int64_t started_ms_ = NowMs();
};

// Polls until the execution is finished or deadline_ms passes (0: no deadline). poll returns
// the record and the steps it is at; false when it failed.
template <typename Poll>
Result<store::ExecutionRecord> PollUntilFinished(const std::string& id, int64_t deadline_ms,
                                                 Poll poll) {
  WaitLine line;
  int interval_ms = 100;
  while (true) {
    std::string steps;
    Result<store::ExecutionRecord> record = poll(&steps);
    if (!record.ok()) return record;
    if (Finished(record->state)) return record;
    if (deadline_ms > 0 && NowMs() >= deadline_ms) return record;

    line.Show(id, steps, record->start_time_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    interval_ms = std::min(interval_ms * 2, 1000);
  }
}

Result<store::ExecutionRecord> WaitRemote(ApiClient& client, const ExecutionRef& ref,
                                          int64_t deadline_ms) {
  return PollUntilFinished(ref.id, deadline_ms,
                           [&](std::string* steps) -> Result<store::ExecutionRecord> {
                             Result<Json> resource = GetExecution(client, ref);
                             if (!resource.ok()) return resource.status();
                             *steps = CurrentSteps(*resource);
                             return RecordOf(*resource);
                           });
}

// Locally the store knows the steps that finished: the line shows the last of them.
Result<store::ExecutionRecord> WaitLocal(store::Store& store, const std::string& id,
                                         int64_t deadline_ms) {
  int64_t after_seq = 0;
  int64_t after_offset = 0;
  std::string last_step;
  bool hinted = false;
  return PollUntilFinished(id, deadline_ms, [&](std::string* steps) {
    Result<std::vector<engine::StepEntry>> entries =
        engine::ReadStepEntries(store, id, after_seq, after_offset, 0);
    if (entries.ok() && !entries->empty()) {
      after_seq = entries->back().seq;
      after_offset = entries->back().offset;
      const Json& p = entries->back().payload;
      last_step = p.value("step", "");
    }
    *steps = last_step.empty() ? "" : "(after " + last_step + ")";
    Result<store::ExecutionRecord> record = store.GetExecution(id);
    // Nothing will end an execution whose process died until someone resumes it: say so once
    // (a server that restarts on this store resumes it by itself, so keep waiting).
    if (record.ok() && record->state == "ACTIVE" && !hinted &&
        (record->owner.empty() || !store::IsLiveLocalOwner(record->owner))) {
      hinted = true;
      fprintf(stderr,
              "atomflow: no process runs execution %s (its process is gone): `atomflow "
              "executions resume %s` finishes it, `atomflow executions cancel %s` cancels it; "
              "waiting\n",
              id.c_str(), id.c_str(), id.c_str());
    }
    return record;
  });
}

int WaitExecution(const CommonOptions& options, Target& target, const ExecutionFlags& flags) {
  Result<ExecutionRef> ref = ParseExecutionRef(flags.id, flags.workflow);
  if (!ref.ok()) return Failed(options, ref.status());
  int64_t deadline_ms =
      flags.timeout_seconds > 0 ? NowMs() + static_cast<int64_t>(flags.timeout_seconds * 1000) : 0;

  Result<store::ExecutionRecord> record = Status::Error("unset");
  if (target.remote()) {
    Result<ExecutionRef> found = FindOnServer(*target.client, *ref);
    if (!found.ok()) return Failed(options, found.status());
    record = WaitRemote(*target.client, *found, deadline_ms);
  } else {
    Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
    if (!store.ok()) return Failed(options, store.status());
    record = WaitLocal(**store, ref->id, deadline_ms);
  }
  if (!record.ok()) return Failed(options, record.status());

  if (!Finished(record->state)) {
    fprintf(stderr, "atomflow: execution %s is still %s after %gs\n", record->id.c_str(),
            record->state.c_str(), flags.timeout_seconds);
    if (options.json) std::cout << ListJson(*record).dump() << std::endl;
    return kExitTimedOut;
  }
  return PrintOutcome(options, *record);
}

// ---- executions run ----

int RunRemote(const CommonOptions& options, ApiClient& client, const ExecutionFlags& flags,
              const Json& labels) {
  Json body = {{"labels", labels}};
  if (!flags.data.empty()) body["argument"] = flags.data;
  Result<Json> started =
      client.Post("/v1/workflows/" + PathSegment(flags.workflow) + "/executions", body);
  if (!started.ok()) return Failed(options, started.status());
  store::ExecutionRecord record = RecordOf(*started);

  if (!flags.wait) {
    if (options.json) {
      std::cout << ListJson(record).dump() << std::endl;
    } else {
      std::cout << record.id << std::endl;
    }
    return kExitSucceeded;
  }
  fprintf(stderr, "execution %s started\n", record.id.c_str());
  Result<store::ExecutionRecord> finished =
      WaitRemote(client, {record.workflow_name, record.id}, 0);
  if (!finished.ok()) return Failed(options, finished.status());
  return PrintOutcome(options, *finished);
}

// Locally the command itself is the process that runs the execution: it runs to its end.
int RunLocal(const CommonOptions& options, const ExecutionFlags& flags, const Json& labels) {
  Value argument;
  if (!flags.data.empty()) {
    Result<Json> parsed = ParseData(flags.data);
    if (!parsed.ok()) return Failed(options, parsed.status());
    argument = FromJson(*parsed);
  }
  StderrProgress progress(false, "started");
  Result<std::unique_ptr<engine::Engine>> engine = OpenEngine(options, &progress);
  if (!engine.ok()) return Failed(options, engine.status());
  server::WorkflowRegistry registry((*engine)->store());
  Result<store::WorkflowRecord> workflow = (*engine)->store()->GetWorkflow(flags.workflow);
  if (!workflow.ok()) return Failed(options, workflow.status());
  Result<std::shared_ptr<const lang::Workflow>> parsed = registry.Load(*workflow);
  if (!parsed.ok()) return Failed(options, parsed.status());

  engine::StartOptions start;
  start.workflow_name = workflow->name;
  start.revision_id = workflow->revision_id;
  start.service_account = workflow->service_account;
  start.labels = labels.dump();
  Result<std::string> id = (*engine)->Start(std::move(parsed).value(), std::move(argument), start);
  if (!id.ok()) return Failed(options, id.status());
  progress.Announce(*id);
  return PrintOutcome(options, (*engine)->Wait(*id));
}

int RunExecution(const CommonOptions& options, Target& target, const ExecutionFlags& flags) {
  Result<Json> labels = ParseLabels(flags.labels);
  if (!labels.ok()) return Failed(options, labels.status());
  if (target.remote()) return RunRemote(options, *target.client, flags, *labels);
  return RunLocal(options, flags, *labels);
}

// ---- executions cancel ----

// Prints what a cancel left: the execution's state, or that it is still cancelling.
void PrintCancelled(const CommonOptions& options, const store::ExecutionRecord& record) {
  if (options.json) {
    std::cout << ListJson(record).dump() << std::endl;
  } else if (Finished(record.state)) {
    printf("execution %s %s\n", record.id.c_str(), record.state.c_str());
  } else {
    printf("execution %s cancelling (atomflow executions wait %s shows the outcome)\n",
           record.id.c_str(), record.id.c_str());
  }
}

// A cancel on the local store. A live process that runs the execution keeps it: cancelling is
// its business (Ctrl-C). When that process is gone (killed, crashed), this one claims the
// execution, resumes it with the cancel requested and waits for its end: CANCELLED, its
// transaction compensated, exit 0; another end (it finished first) is shown with exit 1.
int CancelLocal(const CommonOptions& options, const std::string& id) {
  {
    Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
    if (!store.ok()) return Failed(options, store.status());
    Result<store::ExecutionRecord> record = (*store)->GetExecution(id);
    if (!record.ok()) return Failed(options, record.status());
    if (Finished(record->state)) {
      return Invalid(options, "execution " + id + " is " + record->state + " already");
    }
  }
  StderrProgress progress(true, "resumed to be cancelled");
  Result<std::unique_ptr<engine::Engine>> engine = OpenEngine(options, &progress);
  if (!engine.ok()) return Failed(options, engine.status());
  Result<std::string> resumed = (*engine)->Resume(id);
  if (!resumed.ok() && resumed.message().find("another process") != std::string::npos) {
    return Invalid(options, "execution " + id +
                                " is run by a live process: Ctrl-C in the "
                                "terminal of its `atomflow run` cancels it, or cancel it "
                                "with --server on the `atomflow serve` that runs it");
  }
  if (!resumed.ok()) return Failed(options, resumed.status());
  if (!options.json) {
    fprintf(stderr, "execution %s: its process is gone; resumed here to cancel it\n", id.c_str());
  }
  (*engine)->Cancel(id);
  store::ExecutionRecord record = (*engine)->Wait(id);
  PrintCancelled(options, record);
  return record.state == "CANCELLED" ? kExitSucceeded : kExitFailed;
}

int CancelExecution(const CommonOptions& options, Target& target, const ExecutionFlags& flags) {
  Result<ExecutionRef> ref = ParseExecutionRef(flags.id, flags.workflow);
  if (!ref.ok()) return Failed(options, ref.status());
  if (!target.remote()) return CancelLocal(options, ref->id);

  Result<ExecutionRef> found = FindOnServer(*target.client, *ref);
  if (!found.ok()) return Failed(options, found.status());
  Result<Json> answer = target.client->Post(ExecutionPath(*found) + ":cancel", Json::object());
  if (!answer.ok()) return Failed(options, answer.status());
  store::ExecutionRecord record = RecordOf(*answer);
  if (record.id.empty()) record.id = found->id;
  PrintCancelled(options, record);
  return kExitSucceeded;
}

// ---- executions logs ----

// One line of `logs`: a step that ran, or a sys.log entry.
struct LogLine {
  int64_t time_ms = 0;
  Json entry;
};

void PrintLogs(const CommonOptions& options, std::vector<LogLine> lines) {
  // A step's line is its end; a log line written in the same millisecond came from within.
  std::stable_sort(lines.begin(), lines.end(), [](const LogLine& a, const LogLine& b) {
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return a.entry.value("type", "") == "log" && b.entry.value("type", "") == "step";
  });
  if (options.json) {
    Json out = Json::array();
    for (LogLine& line : lines) out.push_back(std::move(line.entry));
    std::cout << out.dump() << std::endl;
    return;
  }
  for (const LogLine& line : lines) {
    const Json& e = line.entry;
    if (e.value("type", "") == "step") {
      printf("%s  step %s.%s %s (%.2fs)\n", e.value("time", "").c_str(),
             e.value("routine", "").c_str(), e.value("step", "").c_str(),
             e.value("state", "").c_str(), e.value("duration_ms", int64_t{0}) / 1000.0);
    } else {
      printf("%s  [%s] %s: %s\n", e.value("time", "").c_str(), e.value("severity", "").c_str(),
             e.value("step", "").c_str(), e.value("text", "").c_str());
    }
  }
}

Json StepLine(const std::string& time, Json step) {
  step["type"] = "step";
  step["time"] = time;
  return step;
}

Json LogEntry(const std::string& time, const std::string& severity, const std::string& step,
              const std::string& text) {
  return {{"type", "log"}, {"time", time}, {"severity", severity}, {"step", step}, {"text", text}};
}

Result<std::vector<LogLine>> LogsRemote(ApiClient& client, const ExecutionRef& ref) {
  Result<Json> entries = client.GetAll(ExecutionPath(ref) + "/stepEntries", "stepEntries");
  if (!entries.ok()) return entries.status();
  Result<Json> logs = client.GetAll(ExecutionPath(ref) + "/logs", "entries");
  if (!logs.ok()) return logs.status();

  std::vector<LogLine> lines;
  for (const Json& entry : *entries) {
    Json step = StepOf(entry);
    std::string time = step["end_time"].get<std::string>();
    if (time.empty()) time = step["start_time"].get<std::string>();
    lines.push_back({ParseRfc3339(time), StepLine(time, step)});
  }
  for (const Json& log : *logs) {
    std::string time = log.value("time", "");
    lines.push_back({ParseRfc3339(time), LogEntry(time, log.value("severity", ""),
                                                  log.value("step", ""), log.value("text", ""))});
  }
  return lines;
}

Result<std::vector<LogLine>> LogsLocal(const CommonOptions& options, const std::string& id) {
  Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
  if (!store.ok()) return store.status();
  Result<store::ExecutionRecord> record = (*store)->GetExecution(id);
  if (!record.ok()) return record.status();
  Result<std::vector<engine::StepEntry>> steps = engine::ReadStepEntries(**store, id, 0, 0, 0);
  if (!steps.ok()) return steps.status();
  Result<std::vector<store::JournalEntry>> logs = (*store)->ReadJournalKind(id, "log", 0, 0);
  if (!logs.ok()) return logs.status();

  std::vector<LogLine> lines;
  for (const engine::StepEntry& entry : *steps) {
    const Json& p = entry.payload;
    int64_t start = p.value("start_ms", int64_t{0});
    int64_t end = p.value("end_ms", int64_t{0});
    Json step = {{"step", p.value("step", "")},   {"routine", p.value("routine", "")},
                 {"state", p.value("state", "")}, {"start_time", Rfc3339(start)},
                 {"end_time", Rfc3339(end)},      {"duration_ms", end - start}};
    lines.push_back({end, StepLine(Rfc3339(end), step)});
  }
  for (const store::JournalEntry& entry : *logs) {
    const Json& p = entry.payload;
    lines.push_back({entry.time_ms, LogEntry(Rfc3339(entry.time_ms), p.value("severity", ""),
                                             p.value("step", ""), p.value("text", ""))});
  }
  return lines;
}

int ExecutionLogs(const CommonOptions& options, Target& target, const ExecutionFlags& flags) {
  Result<ExecutionRef> ref = ParseExecutionRef(flags.id, flags.workflow);
  if (!ref.ok()) return Failed(options, ref.status());
  Result<std::vector<LogLine>> lines = Status::Error("unset");
  if (target.remote()) {
    Result<ExecutionRef> found = FindOnServer(*target.client, *ref);
    if (!found.ok()) return Failed(options, found.status());
    lines = LogsRemote(*target.client, *found);
  } else {
    lines = LogsLocal(options, ref->id);
  }
  if (!lines.ok()) return Failed(options, lines.status());
  PrintLogs(options, std::move(lines).value());
  return kExitSucceeded;
}

// ---- txn through a server ----

void PrintTransactions(const Json& transactions) {
  std::vector<std::vector<std::string>> rows;
  for (const Json& txn : transactions) {
    size_t branches = txn.contains("branches") ? txn["branches"].size() : 0;
    rows.push_back({txn.value("gid", ""), txn.value("state", ""), std::to_string(branches),
                    txn.value("begin_time", txn.value("beginTime", ""))});
  }
  PrintTable({"GID", "STATE", "BRANCHES", "BEGAN"}, rows);
}

int TxnListRemote(const CommonOptions& options, ApiClient& client, const ExecutionFlags& flags) {
  QueryParams query;
  if (!flags.state.empty()) query.emplace_back("state", flags.state);
  Result<Json> transactions = client.GetAll("/v1/transactions", "transactions", query);
  if (!transactions.ok()) return Failed(options, transactions.status());
  if (options.json) {
    std::cout << transactions->dump() << std::endl;
  } else {
    PrintTransactions(*transactions);
  }
  return kExitSucceeded;
}

int TxnDescribeRemote(const CommonOptions& options, ApiClient& client, const std::string& gid) {
  Result<Json> txn = client.Get("/v1/transactions/" + PathSegment(gid));
  if (!txn.ok()) return Failed(options, txn.status());
  std::cout << txn->dump(options.json ? -1 : 2) << std::endl;
  return kExitSucceeded;
}

int TxnResolveRemote(const CommonOptions& options, ApiClient& client, const ExecutionFlags& flags) {
  if (flags.retry == flags.mark_compensated) {
    return Invalid(options, "txn resolve needs exactly one of --retry and --mark-compensated");
  }
  Json body = {{"gid", flags.gid}, {"action", flags.retry ? "RETRY" : "MARK_COMPENSATED"}};
  Result<Json> txn = client.Post("/v1/transactions:resolve", body);
  if (!txn.ok()) {
    // Compensations that failed again leave it COMPENSATION_FAILED: 1, as a local resolve.
    bool failed_again = txn.message().find("failed again") != std::string::npos;
    Failed(options, txn.status());
    return failed_again ? kExitFailed : kExitInvalid;
  }
  std::string state = txn->value("state", "");
  if (options.json) {
    std::cout << txn->dump() << std::endl;
  } else {
    fprintf(stderr, "%s: %s (%s)\n", flags.gid.c_str(), state.c_str(),
            txn->value("resolution", "").c_str());
  }
  return state == "COMPENSATION_FAILED" ? kExitFailed : kExitSucceeded;
}

// --config given on a subcommand makes the configuration file required, as on the top level.
void NoteConfig(CommonOptions& options, CLI::Option* config) {
  if (config->count() > 0) options.config_required = true;
}

}  // namespace

void AddExecutionCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers) {
  auto flags = std::make_shared<ExecutionFlags>();
  CLI::App* executions = app.add_subcommand("executions", "run, watch and inspect executions");
  executions->require_subcommand(1);

  // Adds a subcommand that works on a server or the local store.
  auto add = [&](const std::string& name, const std::string& help, auto command) {
    CLI::App* sub = executions->add_subcommand(name, help);
    auto target_flags = std::make_shared<TargetFlags>();
    AddTargetFlags(app, sub, *target_flags, options);
    handlers.emplace_back(sub, [target_flags, flags, command, &options] {
      Result<Target> target = ResolveTarget(*target_flags);
      if (!target.ok()) return Failed(options, target.status());
      for (CLI::Option* config : flags->configs) NoteConfig(options, config);
      return command(options, *target, *flags);
    });
    return sub;
  };

  CLI::App* list = add("list", "list executions, newest first", ListExecutions);
  list->add_option("--workflow", flags->workflow, "only executions of this workflow");
  // The states the server's filter accepts (server/execution_filter.cc), checked here too so
  // that a local list refuses a misspelled state instead of finding nothing.
  list->add_option("--state", flags->state, "only executions in this state")
      ->check([](const std::string& state) -> std::string {
        static const char* const kStates[] = {"ACTIVE", "SUCCEEDED", "FAILED", "CANCELLED",
                                              "QUEUED"};
        if (std::find(std::begin(kStates), std::end(kStates), state) != std::end(kStates)) {
          return "";
        }
        return "unknown state '" + state + "' (ACTIVE, SUCCEEDED, FAILED, CANCELLED, QUEUED)";
      });
  list->add_option("--limit", flags->limit, "at most this many (0: all)")
      ->capture_default_str()
      ->check([](const std::string& text) -> std::string {
        return text.rfind("-", 0) == 0 ? "must be 0 or more, not " + text : "";
      });

  CLI::App* describe = add("describe", "show one execution", DescribeExecution);
  CLI::App* cancel = add(
      "cancel", "cancel an execution a server runs, or one whose process is gone", CancelExecution);
  CLI::App* wait =
      add("wait", "wait for an execution to finish, then show its outcome", WaitExecution);
  wait->add_option("--timeout", flags->timeout_seconds, "give up after this many seconds")
      ->check([](const std::string& text) -> std::string {
        return text.rfind("-", 0) == 0 ? "must be 0 or more seconds, not " + text : "";
      });
  CLI::App* logs = add("logs", "the steps an execution ran and its sys.log lines", ExecutionLogs);
  for (CLI::App* sub : {describe, cancel, wait, logs}) {
    sub->add_option("id", flags->id, "execution id, or workflows/W/executions/ID")->required();
    sub->add_option("--workflow", flags->workflow, "the execution's workflow");
  }

  CLI::App* run = add("run", "start an execution of a deployed workflow", RunExecution);
  run->add_option("name", flags->workflow, "the deployed workflow")->required();
  run->add_option("--data", flags->data, "the execution argument, as JSON")->check(NonEmptyData());
  run->add_option("--label", flags->labels, "a label key=value (repeatable)")
      ->allow_extra_args(false);
  run->add_flag("--wait", flags->wait, "wait for the outcome (local runs always do)");
  CLI::Option* run_config = run->add_option("--config", options.config, "configuration file");

  CLI::App* resume =
      add("resume", "finish an interrupted execution (local store)",
          [](const CommonOptions& options, Target& target, const ExecutionFlags& flags) {
            if (target.remote()) {
              return Invalid(options,
                             "a server resumes its own executions; "
                             "resume works on a local store");
            }
            return ResumeCommand(options, flags.id);
          });
  resume->add_option("id", flags->id, "execution id")->required();
  CLI::Option* resume_config = resume->add_option("--config", options.config, "configuration file");

  // A local cancel of an execution whose process is gone resumes it, with the connectors.
  CLI::Option* cancel_config = cancel->add_option("--config", options.config, "configuration file");

  flags->configs = {run_config, resume_config, cancel_config};
}

void AddTxnCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers) {
  auto flags = std::make_shared<ExecutionFlags>();
  CLI::App* txn = app.add_subcommand("txn", "inspect and resolve global transactions");
  txn->require_subcommand(1);
  CLI::App* list = txn->add_subcommand("list", "list transactions");
  list->add_option("--state", flags->state,
                   "only transactions in this state (e.g. COMPENSATION_FAILED)");
  CLI::App* describe = txn->add_subcommand("describe", "show one transaction");
  describe->add_option("gid", flags->gid, "transaction id")->required();
  CLI::App* resolve = txn->add_subcommand("resolve", "end a COMPENSATION_FAILED transaction");
  resolve->add_option("gid", flags->gid, "transaction id")->required();
  resolve->add_flag("--retry", flags->retry, "run the compensations that did not land again");
  resolve->add_flag("--mark-compensated", flags->mark_compensated,
                    "record that an operator undid them by hand");
  CLI::Option* config = resolve->add_option("--config", options.config, "configuration file");

  for (CLI::App* sub : {list, describe, resolve}) {
    auto target_flags = std::make_shared<TargetFlags>();
    AddTargetFlags(app, sub, *target_flags, options);
    handlers.emplace_back(sub, [=, &options]() -> int {
      Result<Target> target = ResolveTarget(*target_flags);
      if (!target.ok()) return Failed(options, target.status());
      ApiClient* client = target->client.get();
      if (sub == list) {
        if (client != nullptr) return TxnListRemote(options, *client, *flags);
        return TxnListCommand(options, flags->state);
      }
      if (sub == describe) {
        if (client != nullptr) return TxnDescribeRemote(options, *client, flags->gid);
        return TxnDescribeCommand(options, flags->gid);
      }
      if (client != nullptr) return TxnResolveRemote(options, *client, *flags);
      NoteConfig(options, config);
      return TxnResolveCommand(options, flags->gid, flags->retry, flags->mark_compensated);
    });
  }
}

}  // namespace atomflow::cli
