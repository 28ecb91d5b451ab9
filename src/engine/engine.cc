// Engine: scheduling executions on workers, journaling effects, and carrying them out.
#include "engine/engine.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <unordered_map>

#include "common/log.h"
#include "engine/execution.h"
#include "lang/limits.h"
#include "value/journal_text.h"

namespace atomflow::engine {

namespace {

int64_t NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// An execution's error as people read it: bytes as {"$bytes": ...}, text as text.
std::string ErrorJson(const Value& error) { return DebugString(error); }

constexpr const char* kCreateCallback = "events.create_callback_endpoint";
constexpr const char* kAwaitCallback = "events.await_callback";
constexpr double kDefaultCallbackTimeout = 43200;  // seconds, as in Cloud Workflows

std::string Rfc3339(int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
           utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
           static_cast<int>(ms % 1000));
  return text;
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// An intent as the journal keeps it, as JSON text: what a resumed execution compares its
// request with, and what `recover` reads a prepared branch's prepare from.
std::string IntentText(const EffectRequest& request) {
  JsonObjectText intent;
  intent.String("function", request.function)
      .String("step", request.step)
      .JournalValue("args", request.args)
      .String("gid", request.gid)
      .String("branch", request.branch)
      .String("op", request.op);
  if (!request.registers_compensation.empty()) {
    intent.String("compensate", request.registers_compensation);  // the pending branch's record
  }
  return intent.Take();
}

// The prepared SQL branches a resumed execution's journal names: its `prepared` branch records'
// database and gid.
ResumingExecution PreparedOf(const std::string& execution_id,
                             const std::vector<store::JournalEntry>& journal) {
  ResumingExecution resuming{execution_id, {}};
  for (const store::JournalEntry& entry : journal) {
    if (entry.kind != "branch" || !entry.payload.is_object()) continue;
    const Json& staged = entry.payload.value("staged", Json::object());
    if (entry.payload.value("kind", "") != "prepared" || !staged.is_object()) continue;
    resuming.prepared.emplace_back(staged.value("database", ""), staged.value("xid", ""));
  }
  return resuming;
}

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

// Credentials that reach the server with a callback request (the caller's API token) are not
// part of what the workflow receives and never enter the journal.
void DropCredentialHeaders(Json& http_request) {
  auto headers = http_request.find("headers");
  if (headers == http_request.end() || !headers->is_object()) return;
  Json kept = Json::object();
  for (auto& [name, value] : headers->items()) {
    std::string lower = Lower(name);
    if (lower == "authorization" || lower == "proxy-authorization" || lower == "cookie") continue;
    kept[name] = value;
  }
  *headers = std::move(kept);
}

// The callback id at the end of a callback URL ".../callbacks/<id>".
std::string CallbackIdOf(const Value& callback) {
  if (!callback.is_map()) return "";
  const Value* url = callback.AsMap().Find("url");
  if (url == nullptr || !url->is_string()) return "";
  const std::string& text = url->AsString();
  size_t slash = text.rfind('/');
  return slash == std::string::npos ? "" : text.substr(slash + 1);
}

}  // namespace

// A UUIDv7 (RFC 9562) as 36 lowercase characters: 48 bits of Unix milliseconds, the version
// 7, 12 bits, the variant, 62 bits. Ids grow with time, so the journal's primary key
// (execution_id, seq) takes new rows at the right edge of its B-tree instead of on random
// pages. Within one millisecond (or if the clock steps back) the 74 bits after the time count
// up from the last id, so this process never hands out an id twice or out of order; they
// start from random bits at each new millisecond, so two processes do not collide.
std::string NewExecutionId() {
  static std::mutex mutex;
  static std::mt19937_64 generator(std::random_device{}());
  static uint64_t last_ms = 0;
  static uint64_t rand_a = 0;  // 12 bits
  static uint64_t rand_b = 0;  // 62 bits
  constexpr uint64_t kRandBMask = (uint64_t{1} << 62) - 1;
  std::lock_guard<std::mutex> lock(mutex);

  uint64_t now = static_cast<uint64_t>(NowMs());
  if (now > last_ms) {
    last_ms = now;
    rand_a = generator() & 0xfff;
    rand_b = generator() & kRandBMask;
  } else if (++rand_b > kRandBMask) {
    rand_b = 0;
    if (++rand_a > 0xfff) {
      rand_a = 0;
      ++last_ms;  // borrows the next millisecond rather than repeat an id
    }
  }

  char text[40];
  snprintf(text, sizeof(text), "%08x-%04x-7%03x-%04x-%012llx", static_cast<unsigned>(last_ms >> 16),
           static_cast<unsigned>(last_ms & 0xffff), static_cast<unsigned>(rand_a),
           static_cast<unsigned>(0x8000 | (rand_b >> 48)),
           static_cast<unsigned long long>(rand_b & 0xffffffffffffULL));
  return text;
}

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
  // A fault point fires in a store callback: nothing may be committed between it and the kill.
  if (!crash_at_.empty()) store_->SetSerialCallbacks(true);
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

// The row of a new execution, without its source (the caller adds it), or why the argument
// cannot be one.
Result<store::ExecutionRecord> Engine::NewRecord(const lang::Workflow& workflow,
                                                 const Value& argument,
                                                 const StartOptions& options) const {
  Result<Json> argument_json = ToJson(argument);
  if (!argument_json.ok()) return Status::Error("argument: " + argument_json.message());
  std::string argument_text = argument_json->dump(-1, ' ', false, Json::error_handler_t::replace);
  if (Status size = lang::CheckExecutionArgument(argument_text.size()); !size.ok()) return size;

  store::ExecutionRecord record;
  record.id = NewExecutionId();
  record.workflow_name = options.workflow_name.empty()
                             ? std::filesystem::path(workflow.file).stem().string()
                             : options.workflow_name;
  record.source_file = workflow.file;
  record.argument = std::move(argument_text);
  record.state = "ACTIVE";
  record.start_time_ms = NowMs();
  record.owner = owner_;
  record.revision_id = options.revision_id;
  record.service_account = options.service_account;
  record.labels = options.labels;
  return record;
}

Result<std::string> Engine::Start(std::shared_ptr<const lang::Workflow> workflow, Value argument,
                                  const StartOptions& options) {
  if (draining_) return Status::Unavailable("the engine is shutting down");
  Result<store::ExecutionRecord> created_record = NewRecord(*workflow, argument, options);
  if (!created_record.ok()) return created_record.status();
  store::ExecutionRecord record = std::move(created_record).value();

  // The execution keeps the workflow, source included; only the row gets its own copy.
  std::string id = record.id;
  auto execution = std::make_shared<Execution>(this, record, workflow, std::move(argument),
                                               std::vector<store::JournalEntry>());
  record.source = workflow->source;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    creating_.emplace(id, std::vector<std::function<void()>>());
  }

  // The row is queued before the execution runs or can be found (CancelAll journals a cancel):
  // the store's one FIFO queue writes it before any append of the execution, so its first
  // intent can share the row's commit, and an effect is still issued only once both are
  // durable.
  auto durable = std::make_shared<std::promise<Status>>();
  std::future<Status> created = durable->get_future();
  std::function<void(Status)> on_durable = options.on_durable;
  log::Event("execution.started", {{"execution", id}, {"workflow", record.workflow_name}});
  store_->CreateExecutionAsync(std::move(record), [this, id, durable, on_durable](Status status) {
    OnCreated(id, status);
    if (on_durable) on_durable(status);
    durable->set_value(status);
  });
  bool unborn = false;
  {
    // Under the lock OnCreated takes: a create that already failed is not made active again.
    std::lock_guard<std::mutex> lock(mutex_);
    unborn = unborn_.count(id) != 0;
    if (!unborn) active_[id] = execution;
  }
  if (!unborn) {
    execution->Start();
    Enqueue(std::move(execution));
  }
  if (on_durable) return id;

  Status outcome = created.get();
  if (!outcome.ok()) return outcome;
  return id;
}

void Engine::OnCreated(const std::string& execution_id, const Status& status) {
  std::vector<std::function<void()>> waiting;
  std::shared_ptr<Execution> unborn;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto pending = creating_.find(execution_id);
    if (pending != creating_.end()) {
      waiting = std::move(pending->second);
      creating_.erase(pending);
    }
    if (!status.ok()) {
      unborn_.insert(execution_id);
      auto found = active_.find(execution_id);
      if (found != active_.end()) {
        unborn = std::move(found->second);
        active_.erase(found);
      }
      store::ExecutionRecord record;
      if (unborn != nullptr) record = unborn->record();
      record.id = execution_id;
      record.state = "FAILED";
      record.error = ErrorJson(lang::MakeError(
          "SystemError", "the execution could not be recorded: " + status.message()));
      KeepDone(std::move(record));
      finished_.notify_all();
    }
  }
  if (status.ok()) {
    for (std::function<void()>& issue : waiting) issue();
    return;
  }

  // The store refuses its writes from now on, so no intent becomes durable and no effect is
  // issued; cancelling stops its steps at their next cancel point.
  log::Error("execution {} could not be recorded, it will not run: {}", execution_id,
             status.message());
  if (unborn != nullptr) unborn->RequestCancel();
}

bool Engine::IssueWhenCreated(const std::shared_ptr<Execution>& execution,
                              const EffectPtr& effect) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (unborn_.count(execution->id()) != 0) return true;
  auto pending = creating_.find(execution->id());
  if (pending == creating_.end()) return false;
  pending->second.push_back([this, execution, effect] { Issue(execution, effect, false); });
  return true;
}

bool Engine::CreateFailed(const std::string& execution_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return unborn_.count(execution_id) != 0;
}

// Parses each distinct workflow (source file and text) once during one Recover call, so that
// the executions of one workflow share its parsed form; failures are kept too. Not thread safe.
class WorkflowCache {
 public:
  Result<std::shared_ptr<const lang::Workflow>> Load(const std::string& file,
                                                     const std::string& source) {
    size_t key = std::hash<std::string>{}(source)*31 + std::hash<std::string>{}(file);
    std::vector<Entry>& entries = entries_[key];
    for (const Entry& entry : entries) {
      if (entry.file != file || entry.source != source) continue;
      if (!entry.error.ok()) return entry.error;
      return entry.workflow;
    }

    Result<std::shared_ptr<const lang::Workflow>> loaded = lang::LoadWorkflow(file, source);
    Entry entry{file, source, nullptr, Status::Ok()};
    if (loaded.ok()) {
      entry.workflow = *loaded;
    } else {
      entry.error = loaded.status();
    }
    entries.push_back(std::move(entry));
    return loaded;
  }

 private:
  struct Entry {
    std::string file;
    std::string source;
    std::shared_ptr<const lang::Workflow> workflow;
    Status error;
  };
  std::unordered_map<size_t, std::vector<Entry>> entries_;  // by hash of (source, file)
};

namespace {

// Executions claimed by the first commit of a recovery; each next claim takes twice as many, so
// that few commits claim the lot (a claim queues behind the resumed executions' own writes)
// while the first executions resume soon.
constexpr size_t kFirstRecoverBatch = 1000;
// No claim takes more: a claim is one savepoint, whose undo records (the rows' pages, a few
// executions to a page) the store keeps in memory until it ends, and one commit, whose pages
// must fit the writer's page cache (16 MB) or spill.
constexpr size_t kLargestRecoverBatch = 8 * kFirstRecoverBatch;
// Executions resumed between two launches of them to the workers.
constexpr size_t kLaunchBatch = 1000;

// The number of executions the claim of batch `index` takes.
size_t RecoverBatchSize(size_t index) {
  return index >= 3 ? kLargestRecoverBatch : kFirstRecoverBatch << index;
}

}  // namespace

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
  return ResumeClaimed(std::move(record).value(), std::move(workflow).value());
}

Result<std::string> Engine::ResumeClaimed(store::ExecutionRecord record,
                                          std::shared_ptr<const lang::Workflow> workflow) {
  Result<std::vector<store::JournalEntry>> journal = store_->ReadJournal(record.id);
  if (!journal.ok()) return journal.status();
  ResumingExecution resuming = PreparedOf(record.id, *journal);
  if (Status can = CheckResumable(resuming); !can.ok()) return can;
  handler_->Resuming({std::move(resuming)});
  return ResumeWithJournal(std::move(record), std::move(workflow), std::move(journal).value(),
                           nullptr);
}

// A claimed execution this process cannot finish (EffectHandler::CanResume) is released, left
// ACTIVE and unowned for a process that can.
Status Engine::CheckResumable(const ResumingExecution& resuming) {
  Status can = handler_->CanResume(resuming);
  if (can.ok()) return can;
  (void)store_->Release(resuming.execution_id, owner_);  // unowned either way
  return Status::Error("execution " + resuming.execution_id +
                       " cannot resume here: " + can.message());
}

std::string Engine::ResumeWithJournal(store::ExecutionRecord record,
                                      std::shared_ptr<const lang::Workflow> workflow,
                                      std::vector<store::JournalEntry> journal,
                                      std::vector<std::shared_ptr<Execution>>* launch_later) {
  std::string execution_id = record.id;
  Value argument = FromJson(Json::parse(record.argument, nullptr, false));
  callbacks_.Rebuild(execution_id, journal);
  log::Event("execution.resumed", {{"execution", execution_id},
                                   {"workflow", record.workflow_name},
                                   {"journal_entries", journal.size()}});
  auto execution = std::make_shared<Execution>(this, std::move(record), std::move(workflow),
                                               std::move(argument), std::move(journal));
  execution->MarkResumed();
  if (launch_later != nullptr) {
    launch_later->push_back(std::move(execution));
  } else {
    Launch(std::move(execution));
  }
  return execution_id;
}

Result<std::vector<std::string>> Engine::Recover() {
  Result<std::vector<store::ExecutionRecord>> active = store_->ListExecutions("ACTIVE", 100000);
  if (!active.ok()) return active.status();
  log::Event("recovery.started", {{"active", active->size()}});

  // The listed rows are kept: ClaimListed refuses any that ended since, so none is read again.
  std::vector<std::vector<store::ExecutionRecord>> records;
  std::unordered_map<std::string, bool> live;  // is each distinct owner a live local process
  for (store::ExecutionRecord& record : *active) {
    if (!record.owner.empty() && record.owner != owner_) {
      auto known = live.find(record.owner);
      if (known == live.end()) {
        known = live.emplace(record.owner, store::IsLiveLocalOwner(record.owner)).first;
      }
      if (known->second) continue;  // another live process drives it
    }
    if (records.empty() || records.back().size() == RecoverBatchSize(records.size() - 1)) {
      records.emplace_back();
    }
    records.back().push_back(std::move(record));
  }

  // The next batch is claimed while this one is resumed, so replays do not wait for commits.
  // A claim reads its own batch's records, which ResumeBatch moves only after the claim.
  auto claim = [this](const std::vector<store::ExecutionRecord>& batch) {
    return std::async(std::launch::async, [this, &batch] {
      std::vector<const store::ExecutionRecord*> listed;
      listed.reserve(batch.size());
      for (const store::ExecutionRecord& record : batch) listed.push_back(&record);
      return store_->ClaimListed(listed, owner_);
    });
  };
  WorkflowCache workflows;
  std::vector<std::string> resumed;
  std::future<Result<std::vector<bool>>> next;
  if (!records.empty()) next = claim(records[0]);
  for (size_t b = 0; b < records.size(); ++b) {
    Result<std::vector<bool>> claimed = next.get();
    if (b + 1 < records.size()) next = claim(records[b + 1]);
    if (!claimed.ok()) {
      log::Warn("cannot claim {} executions to resume: {}", records[b].size(), claimed.message());
      continue;
    }
    ResumeBatch(records[b], *claimed, workflows, resumed);
  }

  log::Event("recovery.finished", {{"active", active->size()}, {"resumed", resumed.size()}});
  return resumed;
}

void Engine::ResumeBatch(std::vector<store::ExecutionRecord>& records,
                         const std::vector<bool>& claimed, WorkflowCache& workflows,
                         std::vector<std::string>& resumed) {
  std::vector<store::ExecutionRecord*> chunk;
  chunk.reserve(kLaunchBatch);
  for (size_t i = 0; i < records.size(); ++i) {
    // Not claimed: a live process took it since the listing, it ended meanwhile, or it is gone.
    if (!claimed[i]) continue;
    records[i].owner = owner_;
    chunk.push_back(&records[i]);
    if (chunk.size() == kLaunchBatch) ResumeChunk(chunk, workflows, resumed);
  }
  ResumeChunk(chunk, workflows, resumed);
}

void Engine::ResumeChunk(std::vector<store::ExecutionRecord*>& chunk, WorkflowCache& workflows,
                         std::vector<std::string>& resumed) {
  if (chunk.empty()) return;
  // The records are the listing's own, so the store may find their journals by its own keys.
  std::vector<const store::ExecutionRecord*> listed(chunk.begin(), chunk.end());
  Result<std::vector<std::vector<store::JournalEntry>>> journals =
      store_->ReadListedJournals(listed);
  if (!journals.ok()) {
    log::Warn("cannot resume {} executions: {}", listed.size(), journals.message());
    chunk.clear();
    return;
  }

  std::vector<std::shared_ptr<Execution>> launch;
  launch.reserve(chunk.size());
  std::vector<ResumingExecution> resuming;
  resuming.reserve(chunk.size());
  for (size_t i = 0; i < chunk.size(); ++i) {
    store::ExecutionRecord& record = *chunk[i];
    Result<std::shared_ptr<const lang::Workflow>> workflow =
        workflows.Load(record.source_file, record.source);
    if (!workflow.ok()) {
      log::Warn("cannot resume execution {}: cannot reload the workflow: {}", record.id,
                workflow.message());
      continue;
    }
    ResumingExecution prepared = PreparedOf(record.id, (*journals)[i]);
    if (Status can = CheckResumable(prepared); !can.ok()) {
      log::Warn("{}", can.message());
      continue;
    }
    resuming.push_back(std::move(prepared));
    resumed.push_back(ResumeWithJournal(std::move(record), std::move(workflow).value(),
                                        std::move((*journals)[i]), &launch));
  }
  // Before any of them runs: a replay must not find an earlier process's stray gid's locks.
  handler_->Resuming(resuming);
  LaunchMany(launch);
  chunk.clear();
}

void Engine::Launch(std::shared_ptr<Execution> execution) {
  execution->Start();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    active_[execution->id()] = execution;
  }
  Enqueue(std::move(execution));
}

void Engine::LaunchMany(std::vector<std::shared_ptr<Execution>>& executions) {
  if (executions.empty()) return;
  for (const std::shared_ptr<Execution>& execution : executions) execution->Start();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::shared_ptr<Execution>& execution : executions) {
      active_[execution->id()] = execution;
      runnable_.push_back(std::move(execution));
    }
  }
  executions.clear();
  ready_.notify_all();
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
    for (const EffectPtr& running : execution->RunningEffects()) {
      CancelEffect(execution, running);
    }
  });
}

// On the loop thread. Phase two of a transaction is never cut off; a sleep ends at once; a
// job is cancelled (it ends, and its outcome comes back as usual); an HTTP call finishes.
void Engine::CancelEffect(const std::shared_ptr<Execution>& execution, const EffectPtr& effect) {
  const EffectRequest& running = effect->request;
  if (running.shielded) return;
  if (effect->timer == 0) {
    handler_->Cancel(execution->id(), running);
    return;
  }
  loop_.CancelTimer(std::exchange(effect->timer, 0));
  if (running.function != kAwaitCallback) {
    Complete(execution, effect, EffectOutcome::Success(Value()));
    return;
  }
  // A failure, so that a rebuilt queue does not count this await as having taken a request.
  callbacks_.RemoveWaiter(execution->id(), running.key);
  Complete(
      execution, effect,
      EffectOutcome::Failure(lang::MakeError("CancelledError", "the execution was cancelled")));
}

void Engine::CancelAll() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [id, execution] : active_) ids.push_back(id);
  }
  for (const std::string& id : ids) Cancel(id);
}

namespace {

// Finished records Wait finds in memory; an older one is read back from the store.
constexpr size_t kDoneKept = 4096;

}  // namespace

void Engine::KeepDone(store::ExecutionRecord record) {
  record.source.clear();  // the store has it; a kept copy per execution adds up
  std::string id = record.id;
  if (done_.insert_or_assign(id, std::move(record)).second) done_order_.push_back(id);
  while (done_order_.size() > kDoneKept) {
    done_.erase(done_order_.front());
    done_order_.pop_front();
  }
}

// An execution this engine is not running (any more) is read from the store: it finished
// long enough ago to be forgotten here, or drained (it stays ACTIVE for the next process), or
// it was never started by this process.
store::ExecutionRecord Engine::Wait(const std::string& execution_id) {
  std::unique_lock<std::mutex> lock(mutex_);
  finished_.wait(lock, [&] {
    return done_.count(execution_id) > 0 || drained_ || active_.count(execution_id) == 0;
  });
  auto done = done_.find(execution_id);
  if (done != done_.end()) return done->second;
  lock.unlock();
  Result<store::ExecutionRecord> record = store_->GetExecution(execution_id);
  return record.ok() ? *record : store::ExecutionRecord{};
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
      ++busy_workers_;
    }
    Drive(execution);
    std::lock_guard<std::mutex> lock(mutex_);
    --busy_workers_;
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
    for (const EffectPtr& effect : execution->TakePendingEffects()) Dispatch(execution, effect);
    if (execution->EndSlice()) return;
  }
}

void Engine::Dispatch(const std::shared_ptr<Execution>& execution, const EffectPtr& effect) {
  // Draining: the effect is neither journaled nor issued; the next process asks for it again.
  if (draining_) return;
  const EffectRequest& request = effect->request;
  if (request.function == "txn.decide") {
    Decide(execution, effect);
    return;
  }
  if (request.txn_deadline > 0) WatchDeadline(execution, effect);
  bool resumed = execution->IntentJournaled(request.key);
  if (request.function == "sys.sleep") {
    SleepEffect(execution, effect);
    if (resumed) CancelIfCancelled(execution, effect);
    return;
  }
  if (request.function == kCreateCallback) {
    CreateCallbackEffect(execution, effect);
    return;
  }
  if (request.function == kAwaitCallback) {
    AwaitCallbackEffect(execution, effect);
    if (resumed) CancelIfCancelled(execution, effect);
    return;
  }
  if (!request.needs_intent || resumed) {
    // Such an effect has no intent to wait for, but Start does not wait for the execution's
    // row either: it waits for the row here, and is never issued if the row is never written.
    if (!resumed && IssueWhenCreated(execution, effect)) return;
    Issue(execution, effect, resumed);
    return;
  }
  if (request.op == "prepare" && !store_->SharedByHosts()) {
    DispatchPrepare(execution, effect);
    return;
  }

  // The intent is durable before the effect leaves the process: after a crash the effect is
  // retried with the same idempotency key, or its job reattached, never issued blind.
  JournalText(*execution, "intent", request.key, IntentText(request), [this, execution, effect] {
    // A compensation whose intent is durable and that has not been sent.
    if (effect->request.op == "compensate") CrashPoint("compensate:" + effect->request.step);
    // The intent is the branch's first record: registered, its action not sent.
    if (!effect->request.registers_compensation.empty()) {
      CrashPoint("branch:" + effect->request.step);
    }
    Issue(execution, effect, false);
  });
}

// A prepared SQL branch's PREPARE TRANSACTION goes out without waiting for its branch record
// and intent to be durable: both are queued before it, so they still precede its result in the
// journal, and the decision (the commit point) still waits for all of them. What a crash in
// between leaves is a gid the journal may not know; gids are deterministic, so the resumed
// execution rolls its gid back before preparing again, and `recover` rolls back what no
// journaled branch accounts for (docs/transactions-sql.md, "What a crash leaves"). The row of a
// fresh execution is waited for: a gid of an execution the store does not know could be
// another store's, and `recover` leaves those alone.
void Engine::DispatchPrepare(const std::shared_ptr<Execution>& execution, const EffectPtr& effect) {
  const EffectRequest& request = effect->request;
  // Crash tests: `prepare_sent:<step>` holds the intent back, as a writer that had not
  // committed it yet would (Execution::RecordBranch holds the branch record back).
  if (!CrashArmed("prepare_sent:", request.step)) {
    JournalText(*execution, "intent", request.key, IntentText(request), nullptr);
  }
  if (IssueWhenCreated(execution, effect)) return;  // after the row, or never if it failed
  Issue(execution, effect, false);
}

void Engine::Issue(const std::shared_ptr<Execution>& execution, const EffectPtr& effect,
                   bool resumed) {
  const EffectRequest& request = effect->request;
  EffectContext context;
  context.execution_id = execution->id();
  context.service_account = execution->service_account();
  // A prepare of a resumed execution may find its gid prepared by the earlier process, whether
  // or not that process's intent became durable: the connector rolls the gid back first.
  context.resumed = resumed || (request.op == "prepare" && execution->resumed());
  context.jobs_root = options_.jobs_root;
  context.staging_root = options_.staging_root;
  std::string step = request.step;
  context.on_log = [this, id = execution->id(), step](const std::string& line) {
    progress_->OnJobLog(id, step, line);
  };
  context.on_started = [this, step] { CrashPoint("job_started:" + step); };
  // A prepared SQL branch: its record and intent are durable, PREPARE TRANSACTION not sent.
  if (request.op == "prepare") CrashPoint("before_prepare:" + step);
  ++in_flight_;
  handler_->Perform(request, std::move(context), [this, execution, effect](EffectOutcome outcome) {
    // Prepared on the server, and the result not yet in the journal (nor, at prepare_sent,
    // the branch record and the intent, whatever the server answered).
    if (effect->request.op == "prepare" && !crash_at_.empty()) {
      CrashPoint("prepare_sent:" + effect->request.step);
      if (outcome.ok) CrashPoint("after_prepare:" + effect->request.step);
    }
    // The participant answered a compensation whose result is not in the journal.
    if (effect->request.op == "compensate") CrashPoint("compensated:" + effect->request.step);
    Complete(execution, effect, std::move(outcome));
    --in_flight_;
  });
  if (resumed) CancelIfCancelled(execution, effect);
}

// An effect that was in flight when a cancelled execution's process died is issued again, so
// that it can be stopped like any running effect: a job is reattached, then cancelled. Posted
// after the issuing, which queued its own work on the loop first.
void Engine::CancelIfCancelled(const std::shared_ptr<Execution>& execution,
                               const EffectPtr& effect) {
  if (!execution->cancel_requested() || effect->request.shielded) return;
  loop_.Post([this, execution, effect] { CancelEffect(execution, effect); });
}

// On the loop thread, once a wait's timer is registered. A cancel that came while the wait was
// being set up posted its CancelEffect before the timer existed, found nothing to stop, and
// would leave the wait to run its full length: the flag it set first is seen here instead.
void Engine::CutOffIfCancelled(const std::shared_ptr<Execution>& execution,
                               const EffectPtr& effect) {
  if (!execution->cancel_requested() || effect->request.shielded) return;
  CancelEffect(execution, effect);
}

// The timer lives in the effect (PendingEffect::timer) and its callback holds the effect and
// the execution, nothing more: a sleeping execution keeps one request and one small callback.
void Engine::SleepEffect(const std::shared_ptr<Execution>& execution, const EffectPtr& effect) {
  const EffectRequest& request = effect->request;
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
  std::chrono::milliseconds delay = DelayUntil(deadline);
  loop_.Post([this, execution, effect, delay] {
    effect->timer = loop_.AddTimer(delay, [this, execution, effect] {
      effect->timer = 0;
      Complete(execution, effect, EffectOutcome::Success(Value()));
    });
    CutOffIfCancelled(execution, effect);
  });
}

void Engine::Decide(const std::shared_ptr<Execution>& execution, const EffectPtr& effect) {
  // The record is the decide effect's args (Transaction::DecisionRecord), written as text.
  std::string record;
  AppendJournalText(effect->request.args, record);
  const Map& args = effect->request.args.AsMap();
  const Value* decided = args.Find("decision");
  std::string decision = decided && decided->is_string() ? decided->AsString() : "ABORT";
  // A saga commit's decision is also its txn_end (Interpreter::Decide): that record is not
  // written on its own, and the transaction's end is logged here.
  if (const Value* end_key = args.Find("end_key"); end_key && end_key->is_string()) {
    execution->MarkRecordCarried(end_key->AsString());
    log::Event("transaction.committed",
               {{"gid", effect->request.gid}, {"execution", execution->id()}});
  }
  // "record": nothing waits for this decision alone (Interpreter::Decide says when).
  bool wait = effect->request.op != "record";
  // Every result before the commit is durable, the decision is not: the replay decides again.
  if (!wait && !crash_at_.empty()) CrashPoint("undecided:" + effect->request.step);
  JournalText(*execution, "decision", "d" + effect->request.key, std::move(record),
              [this, execution, effect, decision, wait] {
                CrashPoint("decision");
                if (wait) Complete(execution, effect, EffectOutcome::Success(Value(decision)));
              });
  if (!wait) Complete(execution, effect, EffectOutcome::Success(Value(decision)));
}

// Cuts the effect off when its transaction's deadline passes first: a sleep's timer is
// cancelled, a job is cancelled, an HTTP call's late answer is ignored (Deliver keeps the
// first outcome). The TimeoutError is journaled like any outcome, so a replay sees it too.
void Engine::WatchDeadline(const std::shared_ptr<Execution>& execution, const EffectPtr& effect) {
  std::chrono::milliseconds delay = DelayUntil(effect->request.txn_deadline);
  loop_.Post([this, execution, effect, delay] {
    loop_.AddTimer(delay, [this, execution, effect] {
      const EffectRequest& request = effect->request;
      if (!execution->IsRunning(request.key)) return;
      if (effect->timer != 0) {
        loop_.CancelTimer(std::exchange(effect->timer, 0));
        callbacks_.RemoveWaiter(execution->id(), request.key);
      } else {
        handler_->Cancel(execution->id(), request);
      }
      Complete(execution, effect,
               EffectOutcome::Failure(
                   lang::MakeError("TimeoutError", "step '" + request.step +
                                                       "' was cut off: its transaction "
                                                       "passed its timeout")));
    });
  });
}

EffectOutcome Engine::PerformNow(const std::string& execution_id, EffectRequest request) {
  auto append = [this, &execution_id](std::string kind, const std::string& key, Json payload) {
    store::JournalEntry entry{0, std::move(kind), key, std::move(payload), NowMs(), ""};
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
  Result<store::ExecutionRecord> record = store_->GetExecution(execution_id);
  if (record.ok()) context.service_account = record->service_account;  // its identity's headers
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

void Engine::Complete(const std::shared_ptr<Execution>& execution, const EffectPtr& effect,
                      EffectOutcome outcome) {
  if (drained_) return;  // the next process owns the execution now
  if (execution->Deliver(effect->request, std::move(outcome))) Enqueue(execution);
}

void Engine::JournalResult(Execution& execution, const EffectRequest& request,
                           const EffectOutcome& outcome) {
  JsonObjectText payload;
  payload.String("function", request.function)
      .String("step", request.step)
      .Bool("ok", outcome.ok)
      .JournalValue("value", outcome.value);
  std::function<void()> on_durable;
  if (!crash_at_.empty())
    on_durable = [this, step = request.step] { CrashPoint("effect:" + step); };
  JournalText(execution, "result", request.key, payload.Take(), std::move(on_durable));
}

void Engine::JournalText(Execution& execution, const std::string& kind, std::string key,
                         std::string payload_text, std::function<void()> on_durable) {
  store::JournalEntry entry;
  entry.kind = kind;
  entry.key = std::move(key);
  entry.payload_text = std::move(payload_text);
  Journal(execution, std::move(entry), std::move(on_durable));
}

void Engine::Journal(Execution& execution, const std::string& kind, std::string key, Json payload,
                     std::function<void()> on_durable) {
  store::JournalEntry entry;
  entry.kind = kind;
  entry.key = std::move(key);
  entry.payload = std::move(payload);
  Journal(execution, std::move(entry), std::move(on_durable));
}

void Engine::Journal(Execution& execution, store::JournalEntry entry,
                     std::function<void()> on_durable) {
  entry.time_ms = NowMs();
  const std::string& id = execution.id();
  if (entry.kind == "txn_end") {
    log::Event("transaction." + Lower(entry.payload.value("state", "")),
               {{"gid", entry.payload.value("gid", "")}, {"execution", id}});
  }
  auto done = [this, id, on_durable = std::move(on_durable)](Status status) {
    if (!status.ok()) {
      // Refused because Start's create failed: the execution never existed, nothing of it
      // may happen (OnCreated ended it).
      if (CreateFailed(id)) return;
      // The journal is the execution's only durable memory: going on without it would
      // break the promise that no completed effect repeats.
      log::Error("journal write for execution {} failed: {}", id, status.message());
      std::abort();
    }
    if (on_durable) on_durable();
  };
  JournalIfLive(id, std::move(entry), std::move(done));
}

// journaling_ is raised before drained_ is read, and Drain sets drained_ before it waits for
// journaling_ to reach zero: every append either sees drained_ or is queued before the flush.
bool Engine::JournalIfLive(const std::string& execution_id, store::JournalEntry entry,
                           std::function<void(Status)> on_durable) {
  ++journaling_;
  bool live = !drained_;
  if (live) store_->Append(execution_id, std::move(entry), std::move(on_durable));
  --journaling_;
  return live;
}

// Bounded before the cast: a deadline from an older journal, or a large ATOMFLOW_SLEEP_SCALE,
// must not overflow the timer's nanoseconds (the language caps a pause at 100 years).
std::chrono::milliseconds Engine::DelayUntil(double deadline) const {
  constexpr double kLongestDelayMs = 200.0 * 365 * 24 * 3600 * 1000;
  double delay_ms = (deadline - NowSeconds()) * 1000;
  if (!(delay_ms > 0)) delay_ms = 0;  // NaN too
  return std::chrono::milliseconds(static_cast<int64_t>(std::min(delay_ms, kLongestDelayMs)));
}

bool Engine::CrashArmed(std::string_view kind, const std::string& step) const {
  return !crash_at_.empty() && crash_at_.size() == kind.size() + step.size() &&
         crash_at_.compare(0, kind.size(), kind) == 0 &&
         crash_at_.compare(kind.size(), std::string::npos, step) == 0;
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
  // Counted like a journal write: Drain must not release the execution with this queued.
  ++journaling_;
  if (drained_) {
    --journaling_;
    return;
  }
  store_->Finish(execution->id(), state, result, error, [this, record](Status status) {
    // Finish also clears the owner. This runs on the store's callback thread: no blocking
    // store calls.
    // Refused because the create failed: OnCreated already reported the execution FAILED.
    if (!status.ok() && CreateFailed(record.id)) return;
    if (!status.ok()) log::Error("finishing {} failed: {}", record.id, status.message());
    if (status.ok()) handler_->Forget(record.id);
    callbacks_.Forget(record.id);
    log::Event(
        "execution.finished",
        {{"execution", record.id}, {"workflow", record.workflow_name}, {"state", record.state}});
    std::lock_guard<std::mutex> lock(mutex_);
    active_.erase(record.id);
    KeepDone(record);
    finished_.notify_all();
  });
  --journaling_;
}

// ---- Callbacks ----

// The endpoint is journaled as the effect's intent (callback id, method, URL) before the
// workflow sees its URL, so a request to it after a crash finds it again; the id depends only
// on the execution and the effect key, so a resumed create hands out the same URL.
void Engine::CreateCallbackEffect(const std::shared_ptr<Execution>& execution,
                                  const EffectPtr& effect) {
  const EffectRequest& request = effect->request;
  if (execution->IntentJournaled(request.key)) {
    std::string url = execution->IntentPayload(request.key).value("url", "");
    Complete(execution, effect, EffectOutcome::Success(Value(Map{{"url", Value(url)}})));
    return;
  }
  if (options_.public_url.empty()) {
    Complete(execution, effect,
             EffectOutcome::Failure(lang::MakeError(
                 "SystemError",
                 "events.create_callback_endpoint: callbacks need `atomflow serve`, which "
                 "receives them; this process has no public URL")));
    return;
  }
  const Value* method_value = request.args.AsMap().Find("http_callback_method");
  std::string method = method_value && method_value->is_string() ? method_value->AsString() : "";
  method = method.empty() ? "POST" : Upper(method);

  CallbackEndpoint endpoint;
  endpoint.id = CallbackBook::CallbackId(execution->id(), request.key);
  endpoint.method = method;
  endpoint.url = options_.public_url + "/v1/workflows/" + execution->workflow_name() +
                 "/executions/" + execution->id() + "/callbacks/" + endpoint.id;
  endpoint.create_time_ms = NowMs();
  Json intent = {{"function", request.function}, {"step", request.step},
                 {"callback", endpoint.id},      {"method", endpoint.method},
                 {"url", endpoint.url},          {"create_time_ms", endpoint.create_time_ms}};
  Journal(*execution, "intent", request.key, std::move(intent),
          [this, execution, effect, endpoint] {
            callbacks_.AddEndpoint(execution->id(), endpoint);
            Complete(execution, effect,
                     EffectOutcome::Success(Value(Map{{"url", Value(endpoint.url)}})));
          });
}

// The await's intent holds its callback and its deadline, so a resumed await waits only for
// what is left of its timeout, and a rebuilt queue knows which awaits took requests.
void Engine::AwaitCallbackEffect(const std::shared_ptr<Execution>& execution,
                                 const EffectPtr& effect) {
  const EffectRequest& request = effect->request;
  if (execution->IntentJournaled(request.key)) {
    const Json& intent = execution->IntentPayload(request.key);
    WaitForCallback(execution, effect, intent.value("callback", ""), intent.value("deadline", 0.0));
    return;
  }
  const Map& args = request.args.AsMap();
  const Value* callback = args.Find("callback");
  std::string callback_id = callback ? CallbackIdOf(*callback) : "";
  if (callback_id.empty() || !callbacks_.HasEndpoint(execution->id(), callback_id)) {
    Complete(execution, effect,
             EffectOutcome::Failure(
                 lang::MakeError("ValueError",
                                 "events.await_callback: 'callback' must be a callback endpoint "
                                 "this execution created")));
    return;
  }
  const Value* timeout = args.Find("timeout");
  if (timeout != nullptr && !timeout->is_null() && !timeout->is_number()) {
    Complete(execution, effect,
             EffectOutcome::Failure(lang::MakeError(
                 "TypeError", "events.await_callback: 'timeout' must be a number of seconds")));
    return;
  }
  double seconds = timeout && timeout->is_number() ? timeout->AsNumber() : kDefaultCallbackTimeout;
  double deadline = NowSeconds() + seconds;
  Journal(*execution, "intent", request.key,
          {{"function", request.function},
           {"step", request.step},
           {"callback", callback_id},
           {"deadline", deadline}},
          nullptr);
  WaitForCallback(execution, effect, callback_id, deadline);
}

// On the loop thread: takes the oldest queued request, or waits for one until the deadline.
void Engine::WaitForCallback(const std::shared_ptr<Execution>& execution, const EffectPtr& effect,
                             const std::string& callback_id, double deadline) {
  std::chrono::milliseconds delay = DelayUntil(deadline);
  loop_.Post([this, execution, effect, callback_id, delay] {
    const std::string& key = effect->request.key;
    auto take = [this, execution, effect](const Json& delivered) {
      if (!execution->IsRunning(effect->request.key)) return false;  // cut off: the request stays
      if (effect->timer != 0) loop_.CancelTimer(std::exchange(effect->timer, 0));
      Complete(execution, effect, EffectOutcome::Success(FromJson(delivered)));
      return true;
    };
    std::optional<Json> queued = callbacks_.TakeOrWait(execution->id(), callback_id, key, take);
    if (queued) {
      Complete(execution, effect, EffectOutcome::Success(FromJson(*queued)));
      return;
    }
    effect->timer = loop_.AddTimer(delay, [this, execution, effect, callback_id] {
      effect->timer = 0;
      if (!callbacks_.RemoveWaiter(execution->id(), effect->request.key)) return;
      Complete(execution, effect,
               EffectOutcome::Failure(lang::MakeError(
                   "TimeoutError", "events.await_callback: no request reached callback " +
                                       callback_id + " before its timeout")));
    });
    CutOffIfCancelled(execution, effect);
  });
}

Status Engine::DeliverCallback(const std::string& execution_id, const std::string& callback_id,
                               const std::string& method, Json http_request) {
  if (draining_) return Status::Unavailable("the engine is shutting down; retry later");
  std::shared_ptr<Execution> execution;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = active_.find(execution_id);
    if (found != active_.end()) execution = found->second;
  }
  if (execution == nullptr) {
    Result<store::ExecutionRecord> record = store_->GetExecution(execution_id);
    if (!record.ok()) return Status::NotFound("no execution " + execution_id);
    if (record->state != "ACTIVE") {
      return Status::FailedPrecondition("execution " + execution_id + " has already finished (" +
                                        record->state + ")");
    }
    return Status::Unavailable("execution " + execution_id + " is not running in this process");
  }

  DropCredentialHeaders(http_request);
  Json value = {{"http_request", std::move(http_request)},
                {"received_time", Rfc3339(NowMs())},
                {"type", "HTTP"}};
  std::promise<bool> durable;
  std::future<bool> done = durable.get_future();
  Status reserved = callbacks_.Reserve(execution_id, callback_id, Upper(method), [&](int64_t n) {
    store::JournalEntry entry;
    entry.kind = "callback";
    entry.key = "callback/" + callback_id + "/" + std::to_string(n);
    entry.payload = {{"callback", callback_id}, {"request", value}};
    entry.time_ms = NowMs();
    bool live = JournalIfLive(execution_id, std::move(entry), [&, this](Status status) {
      if (!status.ok()) {
        log::Error("journal write for execution {} failed: {}", execution_id, status.message());
        std::abort();
      }
      loop_.Post([this, execution_id, callback_id, value] {
        callbacks_.Delivered(execution_id, callback_id, value);
      });
      durable.set_value(true);
    });
    if (!live) durable.set_value(false);
  });
  if (!reserved.ok()) return reserved;
  if (!done.get()) return Status::Unavailable("the engine is shutting down; retry later");
  return Status::Ok();
}

Result<Json> Engine::ListCallbacks(const std::string& execution_id) {
  bool in_memory = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_memory = active_.count(execution_id) > 0;
  }
  if (!in_memory) {
    Result<store::ExecutionRecord> record = store_->GetExecution(execution_id);
    if (!record.ok()) return Status::NotFound("no execution " + execution_id);
  }
  Json callbacks = callbacks_.List(execution_id);
  for (Json& callback : callbacks) {
    callback["createTime"] = Rfc3339(callback.value("createTimeMs", int64_t{0}));
  }
  return callbacks;
}

// ---- Drain ----

size_t Engine::ActiveCount() {
  std::lock_guard<std::mutex> lock(mutex_);
  return active_.size();
}

// Waits until no worker drives an execution, none is queued and no issued effect is out, or
// until the timeout. Polls: the conditions change on several threads.
void Engine::WaitForQuiet(double timeout_seconds) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  std::unique_lock<std::mutex> lock(mutex_);
  while (std::chrono::steady_clock::now() < deadline) {
    if (busy_workers_ == 0 && runnable_.empty() && in_flight_ == 0) return;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    lock.lock();
  }
}

// After draining_, effects are no longer issued (Dispatch drops them: the next process asks
// again), so running steps stop at their next effect; the effects already out get until the
// timeout to come back and have their outcomes journaled. Then drained_ stops every journal
// write, the journal is flushed and each execution released: the next process's Recover
// replays it without repeating a completed effect, and reissues one still out with the same
// idempotency key, as after a crash.
void Engine::Drain(double timeout_seconds) {
  if (draining_.exchange(true)) return;
  size_t active = ActiveCount();
  log::Event("drain.started", {{"active", active}, {"in_flight", in_flight_.load()}});
  WaitForQuiet(timeout_seconds);

  drained_ = true;
  while (journaling_ > 0) std::this_thread::yield();
  Status flushed = store_->Flush();
  if (!flushed.ok()) log::Error("flushing the store failed: {}", flushed.message());

  std::vector<std::shared_ptr<Execution>> executions;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (auto& [id, execution] : active_) executions.push_back(execution);
    active_.clear();
    released_ = executions;
  }
  ready_.notify_all();
  finished_.notify_all();
  for (const std::shared_ptr<Execution>& execution : executions) {
    Status released = store_->Release(execution->id(), owner_);
    if (!released.ok()) log::Warn("releasing {} failed: {}", execution->id(), released.message());
  }
  log::Event("drain.finished", {{"released", executions.size()}});
}

}  // namespace atomflow::engine
