// One execution: its interpreter state (a chain of suspended coroutines), its journal cursor
// for replay, and the effect it is waiting for.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/effect.h"
#include "engine/task.h"
#include "lang/ast.h"
#include "store/store.h"
#include "value/value.h"

namespace atomflow::engine {

class Engine;
class Interpreter;

// Thrown through the interpreter when the execution is cancelled; `except` does not catch it.
struct CancelledSignal {};

// Thrown when a resumed execution's journal disagrees with the workflow it replays.
struct JournalMismatch {
  std::string message;
};

// An execution in memory. Driven by one worker thread at a time (the engine guarantees it):
// a worker resumes the coroutine chain, which runs until it awaits an effect or finishes.
// Effects are answered from the journal while replaying, so a resumed execution repeats no
// completed effect.
class Execution {
 public:
  Execution(Engine* engine, store::ExecutionRecord record,
            std::shared_ptr<const lang::Workflow> workflow, Value argument,
            std::vector<store::JournalEntry> journal);
  ~Execution();

  const std::string& id() const { return record_.id; }
  const store::ExecutionRecord& record() const { return record_; }
  const lang::Workflow& workflow() const { return *workflow_; }
  Engine* engine() const { return engine_; }

  // Awaited by the interpreter for every effect with outside consequences.
  class EffectAwaiter {
   public:
    EffectAwaiter(Execution* execution, EffectRequest request)
        : execution_(execution), request_(std::move(request)) {}
    bool await_ready();
    void await_suspend(std::coroutine_handle<> handle);
    EffectOutcome await_resume();

   private:
    Execution* execution_;
    EffectRequest request_;
    std::optional<EffectOutcome> replayed_;
  };
  // Fills in request.key; see EffectAwaiter.
  EffectAwaiter Perform(EffectRequest request);

  // A non-deterministic input without outside consequences (sys.now, uuid.generate,
  // sys.get_env): computed once, journaled, and answered from the journal on replay.
  Value Local(const std::string& function, const std::string& step,
              const std::function<Value()>& compute);

  // A journal record that is not an effect (step history, transaction branches, logs).
  // Records are numbered deterministically, so a replay does not write them twice.
  void Record(const std::string& kind, Json payload);
  // A transaction branch record; the crash point `branch:<step>` fires once it is durable.
  void RecordBranch(Json payload, const std::string& step);
  // True while the replay has not yet reached the point where the earlier process stopped.
  bool replaying() const;

  // Cancellation: makes the next effect await throw CancelledSignal, unless the interpreter
  // is undoing a transaction (compensation must run even for a cancelled execution).
  void RequestCancel();
  bool cancel_requested() const { return cancel_requested_; }
  void set_shielded(bool shielded) { shielded_ = shielded; }
  bool shielded() const { return shielded_; }

  // Driven by the engine.
  void Start();        // builds the root task
  void ResumeSlice();  // runs until the next suspension or the end
  bool finished() const;
  std::optional<EffectRequest> TakePendingEffect();
  void CompleteEffect(EffectOutcome outcome);  // before the engine resumes the execution
  bool IntentJournaled(const std::string& key) const { return intents_.count(key) > 0; }
  const Json& IntentPayload(const std::string& key) const { return intents_.at(key).payload; }
  const EffectRequest* running_effect() const;

  // Final outcome, valid once finished(): state and JSON result or error.
  std::string final_state() const { return final_state_; }
  const Value& final_value() const { return final_value_; }

  // Step counting for ResourceLimitError, and call depth for RecursionError.
  int64_t CountStep() { return ++steps_executed_; }

 private:
  friend class EffectAwaiter;
  std::string NextKey() { return std::to_string(++effect_counter_); }
  void CheckReplayed(const EffectRequest& request, const store::JournalEntry& entry) const;
  Task<int> RunRoot();

  Engine* engine_;
  store::ExecutionRecord record_;
  std::shared_ptr<const lang::Workflow> workflow_;
  Value argument_;
  std::unique_ptr<Interpreter> interpreter_;

  // Replay index built from the journal of an earlier process.
  std::unordered_map<std::string, store::JournalEntry> results_;
  std::unordered_map<std::string, store::JournalEntry> intents_;
  int64_t last_journaled_effect_ = 0;
  int64_t last_journaled_record_ = 0;

  int64_t effect_counter_ = 0;
  int64_t record_counter_ = 0;
  int64_t steps_executed_ = 0;

  std::optional<Task<int>> root_;
  std::coroutine_handle<> suspended_;
  std::optional<EffectRequest> pending_;
  std::optional<EffectRequest> running_;
  std::optional<EffectOutcome> outcome_;
  std::atomic<bool> cancel_requested_{false};
  bool shielded_ = false;

  std::string final_state_;
  Value final_value_;
};

}  // namespace atomflow::engine
