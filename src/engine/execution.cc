// Execution: replay from the journal, effect suspension, and the final outcome.
#include "engine/execution.h"

#include "engine/engine.h"
#include "engine/interpreter.h"

namespace atomflow::engine {

namespace {

int64_t KeyNumber(const std::string& key) {
  try {
    return std::stoll(key);
  } catch (...) {
    return 0;
  }
}

}  // namespace

Execution::Execution(Engine* engine, store::ExecutionRecord record,
                     std::shared_ptr<const lang::Workflow> workflow, Value argument,
                     std::vector<store::JournalEntry> journal)
    : engine_(engine),
      record_(std::move(record)),
      workflow_(std::move(workflow)),
      argument_(std::move(argument)),
      interpreter_(std::make_unique<Interpreter>(this)) {
  for (store::JournalEntry& entry : journal) {
    if (entry.kind == "result") {
      last_journaled_effect_ = std::max(last_journaled_effect_, KeyNumber(entry.key));
      results_[entry.key] = std::move(entry);
    } else if (entry.kind == "intent") {
      last_journaled_effect_ = std::max(last_journaled_effect_, KeyNumber(entry.key));
      intents_[entry.key] = std::move(entry);
    } else if (entry.key.rfind("r", 0) == 0) {
      last_journaled_record_ = std::max(last_journaled_record_, KeyNumber(entry.key.substr(1)));
    }
  }
}

Execution::~Execution() = default;

bool Execution::replaying() const { return effect_counter_ < last_journaled_effect_; }

Execution::EffectAwaiter Execution::Perform(EffectRequest request) {
  request.key = NextKey();
  return EffectAwaiter(this, std::move(request));
}

bool Execution::EffectAwaiter::await_ready() {
  auto found = execution_->results_.find(request_.key);
  if (found != execution_->results_.end()) {
    execution_->CheckReplayed(request_, found->second);
    const Json& payload = found->second.payload;
    Value value = FromJournalJson(payload.value("value", Json()));
    replayed_ = EffectOutcome{payload.value("ok", false), std::move(value)};
    return true;
  }
  if (execution_->cancel_requested_ && !execution_->shielded_) throw CancelledSignal{};
  return false;
}

void Execution::EffectAwaiter::await_suspend(std::coroutine_handle<> handle) {
  execution_->suspended_ = handle;
  execution_->pending_ = std::move(request_);
}

EffectOutcome Execution::EffectAwaiter::await_resume() {
  if (replayed_) return std::move(*replayed_);
  EffectOutcome outcome = std::move(*execution_->outcome_);
  execution_->outcome_.reset();
  execution_->running_.reset();
  if (execution_->cancel_requested_ && !execution_->shielded_) throw CancelledSignal{};
  return outcome;
}

// A resumed execution must ask for the same effects in the same order as the journal says;
// anything else means the workflow or the journal changed, and replaying would be wrong.
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
  engine_->JournalResult(*this, request, EffectOutcome::Success(value));
  return value;
}

void Execution::Record(const std::string& kind, Json payload) {
  int64_t number = ++record_counter_;
  if (number <= last_journaled_record_) return;  // written by the process we resume
  engine_->Journal(*this, kind, "r" + std::to_string(number), std::move(payload), nullptr);
}

void Execution::RecordBranch(Json payload, const std::string& step) {
  int64_t number = ++record_counter_;
  if (number <= last_journaled_record_) return;
  engine_->Journal(*this, "branch", "r" + std::to_string(number), std::move(payload),
                   [engine = engine_, step] { engine->CrashPoint("branch:" + step); });
}

void Execution::RequestCancel() { cancel_requested_ = true; }

void Execution::Start() { root_.emplace(RunRoot()); }

Task<int> Execution::RunRoot() {
  try {
    final_value_ = co_await interpreter_->RunMain(argument_);
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
  }
  co_return 0;
}

void Execution::ResumeSlice() {
  std::coroutine_handle<> handle = suspended_ ? suspended_ : root_->handle();
  suspended_ = {};
  handle.resume();
}

bool Execution::finished() const { return root_ && root_->done(); }

std::optional<EffectRequest> Execution::TakePendingEffect() {
  std::optional<EffectRequest> request = std::move(pending_);
  pending_.reset();
  if (request) running_ = *request;
  return request;
}

void Execution::CompleteEffect(EffectOutcome outcome) { outcome_ = std::move(outcome); }

const EffectRequest* Execution::running_effect() const { return running_ ? &*running_ : nullptr; }

}  // namespace atomflow::engine
