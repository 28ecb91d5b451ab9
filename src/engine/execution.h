// One execution: its interpreter state (chains of suspended coroutines, one per strand), its
// journal cursor for replay, and the effects it is waiting for.
#pragma once

#include <any>
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "engine/effect.h"
#include "engine/task.h"
#include "lang/ast.h"
#include "store/store.h"
#include "value/value.h"

namespace atomflow::txn {
class Transaction;
}

namespace atomflow::engine {

class Engine;
class Interpreter;

// A strand of control: main, or one branch or iteration of a parallel step. Strands of one
// execution run one at a time on the worker that drives it and switch only where a strand
// suspends. Effect and record keys are numbered per strand (prefix + counter), so they are the
// same on every replay whatever order the strands interleave in. Owned by the parallel step
// that made it (main's by the Execution); outlives every coroutine that runs on it.
struct Strand {
  Strand* parent = nullptr;  // the strand that ran the parallel step; null for main
  std::string prefix;        // "" for main; "<parallel step key>.<branch id>:" for a branch
  int64_t effect_counter = 0;
  int64_t record_counter = 0;
  bool shielded = false;  // undoing a transaction: cancellation waits
  // Shared variables: copied in from the enclosing frame before the strand runs, and back out
  // when it suspends, so that every write is seen by the strands that run after it.
  std::function<void()> sync_in;
  std::function<void()> sync_out;
  // The interpreter's registers for this strand, saved while another strand runs.
  std::vector<txn::Transaction*> transactions;
  double transaction_deadline = 0;
  std::string error_step;
  std::any error_trace;  // the interpreter's stack trace of an uncaught error, its own type
  int nesting = 0;
  int parallel_depth = 0;
};

// Thrown through the interpreter when the execution is cancelled; `except` does not catch it.
struct CancelledSignal {};

// Thrown when a resumed execution's journal disagrees with the workflow it replays.
struct JournalMismatch {
  std::string message;
};

// An execution in memory. Driven by one worker thread at a time (Deliver/EndSlice keep it
// scheduled at most once): a worker resumes ready strands until every strand waits for an
// effect or the execution finishes. Several effects may be in flight at once (parallel
// branches); their outcomes are journaled and queued in one order, under mutex_, and consumed
// in that order, so a replay that hands the journaled outcomes back in journal order rebuilds
// exactly the interleaving (and the shared-variable writes) of the run that wrote them.
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
    friend class Execution;
    Execution* execution_;
    EffectRequest request_;
    std::coroutine_handle<> handle_;
    Strand* strand_ = nullptr;
    std::optional<EffectOutcome> outcome_;
    bool replayed_ = false;  // the outcome came from the journal, not from the effect
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
  // is undoing a transaction (compensation must run even for a cancelled execution). The
  // request is journaled, so a process that dies before the cancellation took effect leaves
  // it to the resumed one.
  void RequestCancel();
  bool cancel_requested() const { return cancel_requested_; }
  void set_shielded(bool shielded) { current_->shielded = shielded; }
  bool shielded() const { return current_->shielded; }

  // Strands, for the parallel step. The strand running now; a fresh key in it (a parallel
  // step's key is its branches' prefix); and a coroutine to resume on a strand once the
  // strands ready before it have run.
  Strand& current_strand() { return *current_; }
  std::string NewStrandKey() { return NextKey(); }
  void Schedule(std::coroutine_handle<> handle, Strand* strand);

  // Driven by the engine.
  void Start();        // builds the root task; the execution counts as scheduled
  void ResumeSlice();  // runs strands until all of them wait or the execution ends
  bool finished() const;
  bool MarkFinalized();                             // true the first time only
  std::vector<EffectRequest> TakePendingEffects();  // effects to issue, in request order
  // Journals an effect's outcome and queues it for the strand that waits; from any thread.
  // True when the caller must queue the execution on a worker.
  [[nodiscard]] bool Deliver(const EffectRequest& request, EffectOutcome outcome);
  // Ends a worker's turn: true when nothing arrived meanwhile, false to run another slice.
  [[nodiscard]] bool EndSlice();
  bool IntentJournaled(const std::string& key) const { return intents_.count(key) > 0; }
  const Json& IntentPayload(const std::string& key) const { return intents_.at(key).payload; }
  std::vector<EffectRequest> RunningEffects() const;  // issued and not yet delivered
  bool IsRunning(const std::string& key) const;

  // Final outcome, valid once finished(): state and JSON result or error.
  std::string final_state() const { return final_state_; }
  const Value& final_value() const { return final_value_; }

  // Step counting for ResourceLimitError, and call depth for RecursionError.
  int64_t CountStep() { return ++steps_executed_; }

 private:
  friend class EffectAwaiter;
  std::string NextKey() { return current_->prefix + std::to_string(++current_->effect_counter); }
  void CheckReplayed(const EffectRequest& request, const store::JournalEntry& entry) const;
  Task<int> RunRoot();
  void RunReady();
  bool DeliverReplayed();
  bool DeliverLive();
  void Wake(const std::string& key, EffectOutcome outcome, bool replayed);
  void FailStuckReplay();
  // Throws CancelledSignal at effect `key` when the execution is cancelled there: replayed,
  // when the journal says the earlier process did; live, when `live` (the caller knows the
  // earlier process did not get this far), a cancel is pending and the replay is over. A live
  // point is journaled before the throw, so a replay stops at the same effect.
  void CancelPoint(const std::string& key, const char* phase, bool live);

  Engine* engine_;
  store::ExecutionRecord record_;
  std::shared_ptr<const lang::Workflow> workflow_;
  Value argument_;
  std::unique_ptr<Interpreter> interpreter_;

  // Replay index built from the journal of an earlier process: results and intents by key,
  // the keys of delivered (not local) results in journal order, and the record keys.
  std::unordered_map<std::string, store::JournalEntry> results_;
  std::unordered_map<std::string, store::JournalEntry> intents_;
  std::vector<std::string> replay_order_;
  size_t replay_cursor_ = 0;
  std::unordered_set<std::string> journaled_records_;
  // Effects at which the earlier process threw CancelledSignal: key -> "before" (the effect
  // was never issued) or "after" (its outcome was delivered, then discarded).
  std::unordered_map<std::string, std::string> cancelled_at_;

  int64_t steps_executed_ = 0;

  // Worker-side state: touched only by the worker that drives the execution.
  Strand main_strand_;
  Strand* current_ = &main_strand_;
  std::optional<Task<int>> root_;
  std::deque<std::pair<std::coroutine_handle<>, Strand*>> ready_;
  std::unordered_map<std::string, EffectAwaiter*> waiting_;  // by effect key
  std::vector<EffectRequest> pending_;
  bool stuck_ = false;  // the replay cannot go on: the workflow differs from the journal
  bool finalized_ = false;

  // Shared with the threads that complete effects.
  mutable std::mutex mutex_;
  std::deque<std::pair<std::string, EffectOutcome>> inbox_;  // outcomes in journal order
  std::map<std::string, EffectRequest> running_;
  bool scheduled_ = false;  // queued on or held by a worker
  std::atomic<bool> cancel_requested_{false};

  std::string final_state_;
  Value final_value_;
};

}  // namespace atomflow::engine
