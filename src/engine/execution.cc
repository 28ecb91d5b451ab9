// Execution: replay from the journal, strands and their effects, and the final outcome.
#include "engine/execution.h"

#include <cassert>

#include "engine/engine.h"
#include "engine/interpreter.h"

namespace atomflow::engine {

namespace {

// Results computed inside the process (Execution::Local): answered by key on replay, never
// delivered through the outcome queue. Journals written before the "local" flag existed are
// recognised by function.
bool IsLocalResult(const Json& payload) {
  if (payload.value("local", false)) return true;
  std::string function = payload.value("function", "");
  return function == "sys.now" || function == "uuid.generate" || function == "sys.get_env";
}

// The transaction step of a decision record: its "step", or, in records written before it
// had one, the part of the gid ("<execution id>:<step>#<n>") between the id and the count.
std::string DecisionStep(const Json& decision) {
  if (decision.contains("step")) return decision.value("step", "");
  std::string gid = decision.value("gid", "");
  size_t begin = gid.find(':');
  size_t end = gid.rfind('#');
  if (begin == std::string::npos || end == std::string::npos || end <= begin) return "";
  return gid.substr(begin + 1, end - begin - 1);
}

// The result record the decide effect of a journaled decision would have had.
store::JournalEntry DecisionResult(const store::JournalEntry& decision) {
  store::JournalEntry result;
  result.seq = decision.seq;
  result.kind = "result";
  result.key = decision.key.substr(1);
  result.payload = {{"function", "txn.decide"},
                    {"step", DecisionStep(decision.payload)},
                    {"ok", true},
                    {"value", decision.payload.value("decision", "ABORT")}};
  result.time_ms = decision.time_ms;
  return result;
}

EffectOutcome JournaledOutcome(const store::JournalEntry& entry) {
  const Json& payload = entry.payload;
  return EffectOutcome{payload.value("ok", false), FromJournalJson(payload.value("value", Json()))};
}

// The phase of a cancel point the journal implies without recording it (see the constructor).
constexpr char kAfterUnrecorded[] = "after (unrecorded)";

// Runs the shared-variable copies of a strand and of the strands it runs inside, outermost
// first on the way in and innermost first on the way out.
void SyncIn(Strand* strand) {
  if (strand == nullptr) return;
  SyncIn(strand->parent);
  if (strand->sync_in) strand->sync_in();
}

void SyncOut(Strand* strand) {
  for (; strand != nullptr; strand = strand->parent) {
    if (strand->sync_out) strand->sync_out();
  }
}

}  // namespace

Execution::Execution(Engine* engine, store::ExecutionRecord record,
                     std::shared_ptr<const lang::Workflow> workflow, Value argument,
                     std::vector<store::JournalEntry> journal)
    : engine_(engine),
      created_{std::move(record.id),          std::move(record.workflow_name),
               std::move(record.source_file), std::move(record.argument),
               std::move(record.state),       std::move(record.owner),
               std::move(record.revision_id), std::move(record.service_account),
               std::move(record.labels),      record.start_time_ms},
      workflow_(std::move(workflow)),
      argument_(std::move(argument)),
      interpreter_(this) {
  IndexJournal(journal);
}

void Execution::IndexJournal(std::vector<store::JournalEntry>& journal) {
  // The journal comes in append order, which for delivered results is the order the earlier
  // process consumed them in.
  std::vector<std::string> delivered_after_cancel;
  for (store::JournalEntry& entry : journal) {
    if (entry.kind == "result") {
      IndexResult(std::move(entry), delivered_after_cancel);
    } else if (entry.kind == "decision") {
      // A durable decision is its decide effect's outcome (the effect has no result record
      // of its own): deciding again could turn a COMMIT around once its deadline passed.
      IndexResult(DecisionResult(entry), delivered_after_cancel);
      // A saga commit's decision carries its txn_end (docs/journal.md, "Folded records").
      std::string end_key = entry.payload.value("end_key", "");
      if (!end_key.empty()) journaled_records_.insert(std::move(end_key));
    } else if (entry.kind == "intent") {
      intents_[entry.key] = std::move(entry);
    } else if (entry.kind == "cancel") {
      cancel_requested_ = true;
    } else if (entry.kind == "cancelled") {
      cancelled_at_[entry.payload.value("key", "")] = entry.payload.value("phase", "");
    } else if (entry.kind == "steps") {
      for (std::string& key : StepRecordKeys(entry.payload)) {
        journaled_records_.insert(std::move(key));
      }
    } else if (entry.key.rfind("r", 0) == 0) {
      journaled_records_.insert(entry.key);
    }
  }
  // A result journaled after the cancel was consumed with the cancel requested, so an
  // unshielded strand threw there, but a crash may have lost that "cancelled" record (it is
  // appended after the result): without this the resume would take the effect as finished and
  // go on, committing a transaction the cancel had aborted (#6).
  for (const std::string& key : delivered_after_cancel) {
    if (cancelled_at_.count(key) == 0) cancelled_at_[key] = kAfterUnrecorded;
  }
}

void Execution::IndexResult(store::JournalEntry entry, std::vector<std::string>& after_cancel) {
  // The first outcome of a key is the one consumed; a later one (an older journal's decide
  // result after its decision) says the same.
  if (!IsLocalResult(entry.payload) && results_.count(entry.key) == 0) {
    replay_order_.push_back(entry.key);
    if (cancel_requested_) after_cancel.push_back(entry.key);
  }
  results_[entry.key] = std::move(entry);
}

Execution::~Execution() = default;

// An execution in memory has no outcome yet: its state is the one it was given (ACTIVE),
// without result, error or end time.
store::ExecutionRecord Execution::record() const {
  store::ExecutionRecord record;
  record.id = created_.id;
  record.workflow_name = created_.workflow_name;
  record.source_file = created_.source_file;
  record.source = workflow_->source;
  record.argument = created_.argument;
  record.state = created_.state;
  record.start_time_ms = created_.start_time_ms;
  record.owner = created_.owner;
  record.revision_id = created_.revision_id;
  record.service_account = created_.service_account;
  record.labels = created_.labels;
  return record;
}

Execution::EffectAwaiter Execution::Perform(EffectRequest request) {
  request.key = NextKey();
  request.shielded = current_->shielded;
  return EffectAwaiter(this, std::move(request));
}

// Every effect suspends its strand, even one whose outcome is journaled: the replay hands
// outcomes back in journal order (DeliverReplayed), which is what rebuilds the interleaving.
bool Execution::EffectAwaiter::await_ready() {
  auto found = execution_->results_.find(request().key);
  if (found != execution_->results_.end()) {
    execution_->CheckReplayed(request(), found->second);
    return false;
  }
  // An effect whose intent is journaled was in flight when the earlier process stopped: it
  // is issued again (a job reattached) and cancelled like any running effect, not skipped.
  auto intent = execution_->intents_.find(request().key);
  bool in_flight = intent != execution_->intents_.end();
  if (in_flight) execution_->CheckReplayed(request(), intent->second);
  execution_->CancelPoint(request().key, "before", !in_flight && !execution_->current_->shielded);
  return false;
}

void Execution::EffectAwaiter::await_suspend(std::coroutine_handle<> handle) {
  handle_ = handle;
  strand_ = execution_->current_;
  execution_->waiting_[request().key] = this;
  if (execution_->results_.count(request().key) == 0) {
    execution_->pending_.push_back(effect_);
  }
}

EffectOutcome Execution::EffectAwaiter::await_resume() {
  EffectOutcome outcome = std::move(*outcome_);
  outcome_.reset();
  // A replayed outcome was consumed by the earlier process before any cancellation it did
  // not record: only the journal may cancel there.
  execution_->CancelPoint(request().key, "after", !replayed_ && !strand_->shielded);
  return outcome;
}

// A resumed execution must ask for the same effects as the journal says; anything else means
// the workflow or the journal changed, and replaying would be wrong.
void Execution::CheckReplayed(const EffectRequest& request,
                              const store::JournalEntry& entry) const {
  std::string function = entry.payload.value("function", "");
  std::string step = entry.payload.value("step", "");
  if (function == request.function && step == request.step) return;
  throw JournalMismatch{"journal entry " + entry.key + " records " + function + " in step '" +
                        step + "', but the workflow now asks for " + request.function +
                        " in step '" + request.step + "'"};
}

Value Execution::Local(const std::string& function, const std::string& step,
                       const std::function<Value()>& compute) {
  EffectRequest request;
  request.key = NextKey();
  request.step = step;
  request.function = function;
  auto found = results_.find(request.key);
  if (found != results_.end()) {
    CheckReplayed(request, found->second);
    return FromJournalJson(found->second.payload.value("value", Json()));
  }
  Value value = compute();
  Json payload = {{"function", function},
                  {"step", step},
                  {"ok", true},
                  {"value", ToJournalJson(value)},
                  {"local", true}};
  engine_->Journal(*this, "result", request.key, std::move(payload), nullptr);
  return value;
}

void Execution::Record(const std::string& kind, Json payload) {
  FlushSteps();  // the steps that ended before this record come before it in the journal
  std::string key = "r" + current_->prefix + std::to_string(++current_->record_counter);
  if (journaled_records_.count(key)) return;  // written by the process we resume
  engine_->Journal(*this, kind, std::move(key), std::move(payload), nullptr);
}

bool Execution::RecordStepKeyed(const std::string& step, const std::string& routine, int line,
                                bool failed, int64_t start_ms, int64_t end_ms) {
  int64_t counter = ++current_->record_counter;
  if (journaled_records_.count("r" + current_->prefix + std::to_string(counter))) return false;
  StepRecord record{&step, &routine, &current_->prefix, counter, start_ms, end_ms, line, failed};
  if (step_history_.Add(record)) FlushSteps();
  return true;
}

void Execution::FlushSteps() {
  if (step_history_.empty()) return;
  engine_->Journal(*this, step_history_.Take(), nullptr);
}

void Execution::RecordBranch(std::string payload_text, const std::string& step) {
  FlushSteps();
  std::string key = "r" + current_->prefix + std::to_string(++current_->record_counter);
  if (journaled_records_.count(key)) return;
  // Crash tests: a prepare sent before the writer committed its branch record (Engine::Issue);
  // the point names a prepared SQL step.
  if (engine_->CrashArmed("prepare_sent:", step)) return;
  engine_->JournalText(*this, "branch", std::move(key), std::move(payload_text),
                       [engine = engine_, step] { engine->CrashPoint("branch:" + step); });
}

void Execution::SkipRecord() { ++current_->record_counter; }

std::string Execution::NextRecordKey() const {
  return "r" + current_->prefix + std::to_string(current_->record_counter + 1);
}

void Execution::RequestCancel() {
  if (cancel_requested_.exchange(true)) return;
  engine_->Journal(*this, "cancel", "cancel", Json::object(), nullptr);
}

// While the replay runs, only the journal decides: throwing at a live cancel then would make
// the strands ask for other effects than the ones whose outcomes are still to be handed back.
void Execution::CancelPoint(const std::string& key, const char* phase, bool live) {
  auto recorded = cancelled_at_.find(key);
  if (recorded != cancelled_at_.end()) {
    if (recorded->second == phase) throw CancelledSignal{};
    bool after = std::string_view(phase) == "after";
    if (recorded->second == kAfterUnrecorded && after && !current_->shielded) {
      throw CancelledSignal{};
    }
    return;
  }
  if (!live || !cancel_requested_ || replaying()) return;
  // Crash tests: the cancel is about to take effect here, and then its record is durable.
  engine_->CrashPoint("before_cancelled");
  cancelled_at_[key] = phase;
  engine_->Journal(*this, "cancelled", "c" + key, Json{{"key", key}, {"phase", phase}}, nullptr);
  engine_->CrashPoint("cancelled");
  throw CancelledSignal{};
}

void Execution::Schedule(std::coroutine_handle<> handle, Strand* strand) {
  ready_.push_back({handle, strand});
}

// The root is the interpreter's RunMain itself, with no coroutine of its own above it (a
// frame fewer per waiting execution): its outcome is taken by TakeOutcome once it finishes.
void Execution::Start() {
  root_.emplace(interpreter_.RunMain(std::move(argument_)));
  Schedule(root_->handle(), &main_strand_);
  std::lock_guard<std::mutex> lock(mutex_);
  scheduled_ = true;
}

void Execution::TakeOutcome() {
  try {
    final_value_ = root_->TakeResult();
    final_state_ = "SUCCEEDED";
  } catch (const lang::RaisedError& raised) {
    final_value_ = raised.payload();
    final_state_ = "FAILED";
  } catch (const CancelledSignal&) {
    final_value_ = lang::MakeError("CancelledError", "the execution was cancelled");
    final_state_ = "CANCELLED";
  } catch (const JournalMismatch& mismatch) {
    final_value_ = lang::MakeError("SystemError", "cannot resume: " + mismatch.message);
    final_state_ = "FAILED";
  } catch (const std::bad_alloc&) {
    final_value_ = lang::MakeError("ResourceLimitError", "the execution ran out of memory");
    final_state_ = "FAILED";
  } catch (...) {
    // Any other exception ends the execution with no state, as it always has; the interpreter
    // turns the errors a workflow can make into RaisedError.
  }
}

// Strands that are ready run first, in the order they became ready; only when all of them
// wait is the next outcome handed over: journaled ones first (replay), then live ones. The
// steps the slice ran are journaled when it ends, before the intents of the effects it asked
// for and before the execution's final state.
void Execution::ResumeSlice() {
  while (!finished()) {
    if (!ready_.empty()) {
      RunReady();
      continue;
    }
    if (DeliverReplayed()) continue;
    if (replaying()) {
      FailStuckReplay();
      break;
    }
    if (!DeliverLive()) break;
  }
  FlushSteps();
}

// Resumes one ready coroutine on its strand: the interpreter's registers and the shared
// variables are switched to that strand's for as long as it runs.
void Execution::RunReady() {
  auto [handle, strand] = ready_.front();
  ready_.pop_front();
  current_ = strand;
  interpreter_.LoadRegisters(*strand);
  SyncIn(strand);
  handle.resume();
  // The strand suspended or ended; it lives until the coroutine that owns it resumes, which
  // can happen only after this returns.
  SyncOut(strand);
  interpreter_.SaveRegisters(*strand);
  current_ = &main_strand_;
  if (root_->done()) TakeOutcome();
}

bool Execution::DeliverReplayed() {
  if (!replaying()) return false;
  const std::string& key = replay_order_[replay_cursor_];
  if (waiting_.count(key) == 0) return false;
  ++replay_cursor_;
  Wake(key, JournaledOutcome(results_.at(key)), true);
  return true;
}

bool Execution::DeliverLive() {
  std::pair<std::string, EffectOutcome> delivered;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (inbox_.empty()) return false;
    delivered = std::move(inbox_.front());
    inbox_.pop_front();
  }
  Wake(delivered.first, std::move(delivered.second), false);
  return true;
}

void Execution::Wake(const std::string& key, EffectOutcome outcome, bool replayed) {
  auto found = waiting_.find(key);
  // Invariant: every outcome is for an effect a strand waits for (keys are unique).
  assert(found != waiting_.end());
  if (found == waiting_.end()) return;
  EffectAwaiter* awaiter = found->second;
  waiting_.erase(found);
  awaiter->outcome_ = std::move(outcome);
  awaiter->replayed_ = replayed;
  Schedule(awaiter->handle_, awaiter->strand_);
}

// Every strand waits, yet the next journaled outcome is for an effect none asked for: the
// workflow no longer makes the requests its journal recorded.
void Execution::FailStuckReplay() {
  const std::string& key = replay_order_[replay_cursor_];
  const Json& payload = results_.at(key).payload;
  final_value_ = lang::MakeError("SystemError", "cannot resume: journal entry " + key +
                                                    " records " + payload.value("function", "") +
                                                    " in step '" + payload.value("step", "") +
                                                    "', which the workflow no longer reaches");
  final_state_ = "FAILED";
  stuck_ = true;
}

bool Execution::finished() const { return stuck_ || (root_ && root_->done()); }

bool Execution::MarkFinalized() { return !std::exchange(finalized_, true); }

std::vector<EffectPtr> Execution::TakePendingEffects() {
  std::vector<EffectPtr> effects = std::move(pending_);
  pending_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const EffectPtr& effect : effects) running_[effect->request.key] = effect;
  return effects;
}

bool Execution::Deliver(const EffectRequest& request, EffectOutcome outcome) {
  std::lock_guard<std::mutex> lock(mutex_);
  // An effect cut off at its transaction's deadline completes a second time, later: the
  // first outcome stands and is the only one journaled.
  if (running_.count(request.key) == 0) return false;
  // Journaled under the same lock as it is queued: journal order is consumption order. A
  // decision's outcome is its decision record, which a replay reads as the result.
  if (request.function != "txn.decide") engine_->JournalResult(*this, request, outcome);
  inbox_.push_back({request.key, std::move(outcome)});
  running_.erase(request.key);
  return !std::exchange(scheduled_, true);
}

// A turn that ends leaves the execution waiting, maybe for hours: its queues give their memory
// back.
bool Execution::EndSlice() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!inbox_.empty()) return false;
  scheduled_ = false;
  inbox_.Release();
  ready_.Release();
  return true;
}

bool Execution::IsRunning(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_.count(key) > 0;
}

std::vector<EffectPtr> Execution::RunningEffects() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<EffectPtr> running;
  for (const auto& [key, effect] : running_) running.push_back(effect);
  return running;
}

}  // namespace atomflow::engine
