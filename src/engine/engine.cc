// Engine: scheduling executions on workers, journaling effects, and carrying them out.
#include "engine/engine.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>

#include "common/log.h"
#include "engine/execution.h"
#include "lang/limits.h"

namespace atomflow::engine {

namespace {

int64_t NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string NewExecutionId() {
  static std::mt19937_64 generator(std::random_device{}());
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  uint64_t high = generator();
  uint64_t low = generator();
  char text[40];
  snprintf(text, sizeof(text), "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(high >> 32),
           static_cast<unsigned>((high >> 16) & 0xffff), static_cast<unsigned>(high & 0xfff),
           static_cast<unsigned>(0x8000 | ((low >> 48) & 0x3fff)),
           static_cast<unsigned long long>(low & 0xffffffffffffULL));
  return text;
}

// An execution's error as people read it: bytes as {"$bytes": ...}, text as text.
std::string ErrorJson(const Value& error) { return DebugString(error); }

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Open(EngineOptions options, HandlerFactory factory,
                                             ProgressSink* progress) {
  Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(options.store_path);
  if (!store.ok()) return store.status();

  std::filesystem::path dir = std::filesystem::absolute(options.store_path).parent_path();
  if (options.jobs_root.empty()) options.jobs_root = (dir / "jobs").string();
  if (options.staging_root.empty()) options.staging_root = (dir / "staging").string();
  if (options.workers <= 0) {
    options.workers = std::max(1u, std::thread::hardware_concurrency());
  }

  std::unique_ptr<Engine> engine(new Engine(options, std::move(store).value(), progress));
  engine->handler_ = factory(&engine->loop_, engine->options_);
  engine->loop_.Start();
  for (int i = 0; i < engine->options_.workers; ++i) {
    engine->workers_.emplace_back([raw = engine.get()] { raw->WorkerLoop(); });
  }
  return engine;
}

Engine::Engine(EngineOptions options, std::unique_ptr<store::Store> store, ProgressSink* progress)
    : options_(std::move(options)),
      store_(std::move(store)),
      progress_(progress),
      owner_(store::ProcessOwner()) {
  const char* crash_at = std::getenv("ATOMFLOW_CRASH_AT");
  if (crash_at != nullptr) crash_at_ = crash_at;
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& worker : workers_) worker.join();
  loop_.Stop();
  handler_.reset();
  Status flushed = store_->Flush();
  if (!flushed.ok()) log::Error("flushing the store failed: {}", flushed.message());
}

double Engine::NowSeconds() const {
  using namespace std::chrono;
  return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

Result<std::string> Engine::Start(std::shared_ptr<const lang::Workflow> workflow, Value argument,
                                  const StartOptions& options) {
  Result<Json> argument_json = ToJson(argument);
  if (!argument_json.ok()) return Status::Error("argument: " + argument_json.message());
  std::string argument_text = argument_json->dump(-1, ' ', false, Json::error_handler_t::replace);
  if (Status size = lang::CheckExecutionArgument(argument_text.size()); !size.ok()) return size;

  store::ExecutionRecord record;
  record.id = NewExecutionId();
  record.workflow_name = options.workflow_name.empty()
                             ? std::filesystem::path(workflow->file).stem().string()
                             : options.workflow_name;
  record.source_file = workflow->file;
  record.source = workflow->source;
  record.argument = std::move(argument_text);
  record.state = "ACTIVE";
  record.start_time_ms = NowMs();
  record.owner = owner_;
  record.revision_id = options.revision_id;
  record.service_account = options.service_account;
  record.labels = options.labels;
  Status created = store_->CreateExecution(record);
  if (!created.ok()) return created;

  log::Debug("execution {} started ({})", record.id, record.workflow_name);
  std::string id = record.id;
  Launch(std::make_shared<Execution>(this, std::move(record), std::move(workflow),
                                     std::move(argument), std::vector<store::JournalEntry>()));
  return id;
}

Result<std::string> Engine::Resume(const std::string& execution_id) {
  Result<store::ExecutionRecord> record = store_->GetExecution(execution_id);
  if (!record.ok()) return record.status();
  if (record->state != "ACTIVE") {
    return Status::Error("execution " + execution_id + " is already " + record->state);
  }
  Result<bool> claimed = store_->Claim(execution_id, owner_);
  if (!claimed.ok()) return claimed.status();
  if (!claimed.value()) {
    return Status::Error("execution " + execution_id + " is being run by another process");
  }

  Result<std::shared_ptr<const lang::Workflow>> workflow =
      lang::LoadWorkflow(record->source_file, record->source);
  if (!workflow.ok()) return Status::Error("cannot reload the workflow: " + workflow.message());
  Result<std::vector<store::JournalEntry>> journal = store_->ReadJournal(execution_id);
  if (!journal.ok()) return journal.status();

  Value argument = FromJson(Json::parse(record->argument, nullptr, false));
  log::Info("execution {} resumed from {} journal entries", execution_id, journal->size());
  Launch(std::make_shared<Execution>(this, std::move(record).value(), std::move(workflow).value(),
                                     std::move(argument), std::move(journal).value()));
  return execution_id;
}

Result<std::vector<std::string>> Engine::Recover() {
  Result<std::vector<store::ExecutionRecord>> active = store_->ListExecutions("ACTIVE", 100000);
  if (!active.ok()) return active.status();
  std::vector<std::string> resumed;
  for (const store::ExecutionRecord& record : *active) {
    if (!record.owner.empty() && record.owner != owner_ && store::IsLiveLocalOwner(record.owner)) {
      continue;  // another live process drives it
    }
    Result<std::string> id = Resume(record.id);
    if (id.ok())
      resumed.push_back(*id);
    else
      log::Warn("cannot resume execution {}: {}", record.id, id.message());
  }
  log::Info("recovery resumed {} of {} active executions", resumed.size(), active->size());
  return resumed;
}

void Engine::Launch(std::shared_ptr<Execution> execution) {
  execution->Start();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    active_[execution->id()] = execution;
  }
  Enqueue(std::move(execution));
}

void Engine::Cancel(const std::string& execution_id) {
  std::shared_ptr<Execution> execution;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = active_.find(execution_id);
    if (found == active_.end()) return;
    execution = found->second;
  }
  execution->RequestCancel();
  loop_.Post([this, execution] {
    for (const EffectRequest& running : execution->RunningEffects()) {
      CancelEffect(execution, running);
    }
  });
}

// On the loop thread. Phase two of a transaction is never cut off; a sleep ends at once; a
// job is cancelled (it ends, and its outcome comes back as usual); an HTTP call finishes.
void Engine::CancelEffect(const std::shared_ptr<Execution>& execution,
                          const EffectRequest& running) {
  if (running.shielded) return;
  auto timer = sleeping_.find({execution->id(), running.key});
  if (timer == sleeping_.end()) {
    handler_->Cancel(execution->id(), running);
    return;
  }
  loop_.CancelTimer(timer->second);
  sleeping_.erase(timer);
  Complete(execution, running, EffectOutcome::Success(Value()));
}

void Engine::CancelAll() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [id, execution] : active_) ids.push_back(id);
  }
  for (const std::string& id : ids) Cancel(id);
}

store::ExecutionRecord Engine::Wait(const std::string& execution_id) {
  std::unique_lock<std::mutex> lock(mutex_);
  finished_.wait(lock, [&] { return done_.count(execution_id) > 0; });
  return done_[execution_id];
}

void Engine::Enqueue(std::shared_ptr<Execution> execution) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    runnable_.push_back(std::move(execution));
  }
  ready_.notify_one();
}

void Engine::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Execution> execution;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [&] { return stopping_ || !runnable_.empty(); });
      if (stopping_) return;
      execution = std::move(runnable_.front());
      runnable_.pop_front();
    }
    Drive(execution);
  }
}

// Runs the execution until every strand waits for an effect or it finishes, then issues the
// effects its strands asked for. Only one worker holds an execution at a time: it is queued
// again only when an outcome arrives after the worker's turn ended (Execution::EndSlice).
void Engine::Drive(const std::shared_ptr<Execution>& execution) {
  for (;;) {
    if (execution->finished()) {
      if (execution->MarkFinalized()) Finalize(execution);
      return;
    }
    execution->ResumeSlice();
    if (execution->finished()) continue;
    for (EffectRequest& request : execution->TakePendingEffects()) {
      Dispatch(execution, std::move(request));
    }
    if (execution->EndSlice()) return;
  }
}

void Engine::Dispatch(const std::shared_ptr<Execution>& execution, EffectRequest request) {
  if (request.function == "txn.decide") {
    Decide(execution, request);
    return;
  }
  if (request.txn_deadline > 0) WatchDeadline(execution, request);
  bool resumed = execution->IntentJournaled(request.key);
  if (request.function == "sys.sleep") {
    SleepEffect(execution, request);
    if (resumed) CancelIfCancelled(execution, request);
    return;
  }
  if (!request.needs_intent || resumed) {
    Issue(execution, std::move(request), resumed);
    return;
  }

  // The intent is durable before the effect leaves the process: after a crash the effect is
  // retried with the same idempotency key, or its job reattached, never issued blind.
  Json intent = {{"function", request.function},
                 {"step", request.step},
                 {"args", ToJournalJson(request.args)},
                 {"gid", request.gid},
                 {"branch", request.branch},
                 {"op", request.op}};
  Journal(*execution, "intent", request.key, std::move(intent),
          [this, execution, request]() mutable { Issue(execution, std::move(request), false); });
}

void Engine::Issue(const std::shared_ptr<Execution>& execution, EffectRequest request,
                   bool resumed) {
  EffectContext context;
  context.execution_id = execution->id();
  context.resumed = resumed;
  context.jobs_root = options_.jobs_root;
  context.staging_root = options_.staging_root;
  std::string step = request.step;
  context.on_log = [this, id = execution->id(), step](const std::string& line) {
    progress_->OnJobLog(id, step, line);
  };
  context.on_started = [this, step] { CrashPoint("job_started:" + step); };
  // A prepared SQL branch: its record and intent are durable, PREPARE TRANSACTION not sent.
  if (request.op == "prepare") CrashPoint("before_prepare:" + step);
  EffectRequest copy = request;
  handler_->Perform(copy, std::move(context),
                    [this, execution, request = std::move(request)](EffectOutcome outcome) {
                      // Prepared on the server, and the result not yet in the journal.
                      if (request.op == "prepare" && outcome.ok) {
                        CrashPoint("after_prepare:" + request.step);
                      }
                      Complete(execution, request, std::move(outcome));
                    });
  if (resumed) CancelIfCancelled(execution, copy);
}

// An effect that was in flight when a cancelled execution's process died is issued again, so
// that it can be stopped like any running effect: a job is reattached, then cancelled. Posted
// after the issuing, which queued its own work on the loop first.
void Engine::CancelIfCancelled(const std::shared_ptr<Execution>& execution,
                               const EffectRequest& request) {
  if (!execution->cancel_requested() || request.shielded) return;
  loop_.Post([this, execution, request] { CancelEffect(execution, request); });
}

void Engine::SleepEffect(const std::shared_ptr<Execution>& execution,
                         const EffectRequest& request) {
  double deadline = 0;
  if (execution->IntentJournaled(request.key)) {
    deadline = execution->IntentPayload(request.key).value("deadline", 0.0);
  } else {
    const Value* seconds = request.args.AsMap().Find("seconds");
    deadline = NowSeconds() + (seconds ? seconds->AsNumber() : 0.0);
    Journal(*execution, "intent", request.key,
            {{"function", request.function}, {"step", request.step}, {"deadline", deadline}},
            nullptr);
  }
  auto delay = std::chrono::milliseconds(
      std::max<int64_t>(0, static_cast<int64_t>((deadline - NowSeconds()) * 1000)));
  loop_.Post([this, execution, request, delay] {
    IoLoop::TimerId timer = loop_.AddTimer(delay, [this, execution, request] {
      sleeping_.erase({execution->id(), request.key});
      Complete(execution, request, EffectOutcome::Success(Value()));
    });
    sleeping_[{execution->id(), request.key}] = timer;
  });
}

void Engine::Decide(const std::shared_ptr<Execution>& execution, const EffectRequest& request) {
  Json record = ToJournalJson(request.args);
  std::string decision = record.value("decision", "ABORT");
  Journal(*execution, "decision", "d" + request.key, record, [this, execution, request, decision] {
    CrashPoint("decision");
    Complete(execution, request, EffectOutcome::Success(Value(decision)));
  });
}

// Cuts the effect off when its transaction's deadline passes first: a sleep's timer is
// cancelled, a job is cancelled, an HTTP call's late answer is ignored (Deliver keeps the
// first outcome). The TimeoutError is journaled like any outcome, so a replay sees it too.
void Engine::WatchDeadline(const std::shared_ptr<Execution>& execution,
                           const EffectRequest& request) {
  auto delay = std::chrono::milliseconds(
      std::max<int64_t>(0, static_cast<int64_t>((request.txn_deadline - NowSeconds()) * 1000)));
  loop_.Post([this, execution, request, delay] {
    loop_.AddTimer(delay, [this, execution, request] {
      if (!execution->IsRunning(request.key)) return;
      auto timer = sleeping_.find({execution->id(), request.key});
      if (timer != sleeping_.end()) {
        loop_.CancelTimer(timer->second);
        sleeping_.erase(timer);
      } else {
        handler_->Cancel(execution->id(), request);
      }
      Complete(execution, request,
               EffectOutcome::Failure(
                   lang::MakeError("TimeoutError", "step '" + request.step +
                                                       "' was cut off: its transaction "
                                                       "passed its timeout")));
    });
  });
}

EffectOutcome Engine::PerformNow(const std::string& execution_id, EffectRequest request) {
  auto append = [this, &execution_id](std::string kind, const std::string& key, Json payload) {
    store::JournalEntry entry{0, std::move(kind), key, std::move(payload), NowMs()};
    store_->Append(execution_id, std::move(entry), nullptr);
    return store_->Flush();
  };
  // Kinds of their own: a replay of the execution (it may still be ACTIVE) must not take these
  // for effects of its own.
  Status intent = append("operator_intent", request.key,
                         {{"function", request.function},
                          {"step", request.step},
                          {"args", ToJournalJson(request.args)},
                          {"gid", request.gid},
                          {"branch", request.branch},
                          {"op", request.op}});
  if (!intent.ok()) return EffectOutcome::Failure(lang::MakeError("SystemError", intent.message()));

  EffectContext context;
  context.execution_id = execution_id;
  context.jobs_root = options_.jobs_root;
  context.staging_root = options_.staging_root;
  context.on_log = [](const std::string&) {};
  std::promise<EffectOutcome> done;
  std::future<EffectOutcome> outcome = done.get_future();
  handler_->Perform(request, context,
                    [&done](EffectOutcome result) { done.set_value(std::move(result)); });
  EffectOutcome result = outcome.get();

  Status journaled = append("operator_result", request.key,
                            {{"function", request.function},
                             {"step", request.step},
                             {"ok", result.ok},
                             {"value", ToJournalJson(result.value)}});
  (void)journaled;  // the participant saw it either way; a later retry carries the same key
  return result;
}

void Engine::Complete(const std::shared_ptr<Execution>& execution, const EffectRequest& request,
                      EffectOutcome outcome) {
  if (execution->Deliver(request, std::move(outcome))) Enqueue(execution);
}

void Engine::JournalResult(Execution& execution, const EffectRequest& request,
                           const EffectOutcome& outcome) {
  Json payload = {{"function", request.function},
                  {"step", request.step},
                  {"ok", outcome.ok},
                  {"value", ToJournalJson(outcome.value)}};
  std::function<void()> on_durable;
  if (!crash_at_.empty())
    on_durable = [this, step = request.step] { CrashPoint("effect:" + step); };
  Journal(execution, "result", request.key, std::move(payload), std::move(on_durable));
}

void Engine::Journal(Execution& execution, const std::string& kind, std::string key, Json payload,
                     std::function<void()> on_durable) {
  store::JournalEntry entry;
  entry.kind = kind;
  entry.key = std::move(key);
  entry.payload = std::move(payload);
  entry.time_ms = NowMs();
  std::string id = execution.id();
  store_->Append(id, std::move(entry), [id, on_durable = std::move(on_durable)](Status status) {
    if (!status.ok()) {
      // The journal is the execution's only durable memory: going on without it would
      // break the promise that no completed effect repeats.
      log::Error("journal write for execution {} failed: {}", id, status.message());
      std::abort();
    }
    if (on_durable) on_durable();
  });
}

void Engine::CrashPoint(const std::string& point) {
  if (crash_at_.empty() || crash_at_ != point) return;
  Status flushed = store_->Flush();
  (void)flushed;
  fprintf(stderr, "atomflow: crash point %s reached, killing the process\n", point.c_str());
  kill(getpid(), SIGKILL);
}

void Engine::Finalize(const std::shared_ptr<Execution>& execution) {
  std::string state = execution->final_state();
  std::string result;
  std::string error;
  if (state == "SUCCEEDED") {
    Result<Json> json = ToJson(execution->final_value());
    if (json.ok()) {
      result = json->dump();
    } else {
      state = "FAILED";
      error = ErrorJson(
          lang::MakeError("TypeError", "the result cannot be returned: " + json.message()));
    }
  } else {
    error = ErrorJson(execution->final_value());
  }

  store::ExecutionRecord record = execution->record();
  record.state = state;
  record.result = result;
  record.error = error;
  record.end_time_ms = NowMs();
  store_->Finish(execution->id(), state, result, error, [this, record](Status status) {
    // Finish also clears the owner. This runs on the store's writer thread: no store calls.
    if (!status.ok()) log::Error("finishing {} failed: {}", record.id, status.message());
    if (status.ok()) handler_->Forget(record.id);
    std::lock_guard<std::mutex> lock(mutex_);
    done_[record.id] = record;
    active_.erase(record.id);
    finished_.notify_all();
  });
}

}  // namespace atomflow::engine
