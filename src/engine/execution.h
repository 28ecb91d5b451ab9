// One execution: its interpreter state (chains of suspended coroutines, one per strand), its
// journal cursor for replay, and the effects it is waiting for.
#pragma once

#include <any>
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "engine/effect.h"
#include "engine/interpreter.h"
#include "engine/step_history.h"
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

// A first-in first-out queue that holds no memory while it has never been used and gives its
// memory back on Release: a waiting execution keeps two of these empty. Not thread safe.
template <typename T>
class FifoQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  void push_back(T item) { items_.push_back(std::move(item)); }
  T& front() { return items_[head_]; }
  // Once the last item is taken the storage is reused from its start.
  void pop_front() {
    if (++head_ < items_.size()) return;
    items_.clear();
    head_ = 0;
  }
  // Frees the storage of an empty queue.
  void Release() {
    if (empty()) std::vector<T>().swap(items_);
  }

 private:
  std::vector<T> items_;
  size_t head_ = 0;  // the first item not yet taken
};

// A hash map or set that allocates nothing, not even its own header, until its first insertion:
// the replay index of an execution that never replays (most executions in memory started in
// this process) costs a pointer per container. Lookups on an empty one answer from a shared
// empty container, which nothing ever modifies. Not thread safe, like the container.
template <typename Container>
class LazyContainer {
 public:
  using const_iterator = typename Container::const_iterator;

  template <typename Key>
  size_t count(const Key& key) const {
    return items_ ? items_->count(key) : 0;
  }
  bool empty() const { return !items_ || items_->empty(); }
  template <typename Key>
  const_iterator find(const Key& key) const {
    return Get().find(key);
  }
  const_iterator end() const { return Get().end(); }
  template <typename Key>
  const auto& at(const Key& key) const {
    return Get().at(key);
  }
  template <typename Key>
  auto& operator[](Key&& key) {
    return Make()[std::forward<Key>(key)];
  }
  template <typename Item>
  auto insert(Item&& item) {
    return Make().insert(std::forward<Item>(item));
  }

 private:
  const Container& Get() const {
    static const Container kEmpty;
    return items_ ? *items_ : kEmpty;
  }
  Container& Make() {
    if (!items_) items_ = std::make_unique<Container>();
    return *items_;
  }

  std::unique_ptr<Container> items_;
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

  const std::string& id() const { return created_.id; }
  const std::string& workflow_name() const { return created_.workflow_name; }
  const std::string& service_account() const { return created_.service_account; }
  // The record the execution was created or resumed with, rebuilt on each call: the execution
  // keeps only the fields that do not change while it runs (no outcome yet), and the source
  // text only in its workflow (workflow().source), once for all the workflow's executions.
  store::ExecutionRecord record() const;
  const lang::Workflow& workflow() const { return *workflow_; }
  Engine* engine() const { return engine_; }

  // Awaited by the interpreter for every effect with outside consequences. It lives in the
  // awaiting coroutine's frame, so it holds the request by pointer (PendingEffect).
  class EffectAwaiter {
   public:
    EffectAwaiter(Execution* execution, EffectRequest request)
        : execution_(execution), effect_(std::make_shared<PendingEffect>(std::move(request))) {}
    bool await_ready();
    void await_suspend(std::coroutine_handle<> handle);
    EffectOutcome await_resume();

   private:
    friend class Execution;
    const EffectRequest& request() const { return effect_->request; }

    Execution* execution_;
    EffectPtr effect_;
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
  // A named step that ended: buffered (no journal write) and journaled with the next batch
  // (see FlushSteps). Keyed like Record, so a replay skips the steps already journaled: false
  // for such a step, which the process that journaled it already reported.
  // Inline for a fresh execution's compute loop, whose steps are nearly all short ones.
  bool RecordStep(const std::string& step, const std::string& routine, int line, bool failed,
                  int64_t start_ms, int64_t end_ms) {
    if (!journaled_records_.empty()) {
      return RecordStepKeyed(step, routine, line, failed, start_ms, end_ms);
    }
    int64_t counter = ++current_->record_counter;
    StepRecord record{&step, &routine, &current_->prefix, counter, start_ms, end_ms, line, failed};
    bool full = step_history_.AddShort(record) ? step_history_.full() : step_history_.Add(record);
    if (full) FlushSteps();
    return true;
  }
  // Journals the buffered steps as one "steps" record. Runs before any other record, at the
  // end of every slice (so before the intents of the effects it asked for) and when the
  // buffer is full; a crash loses only what is buffered, which a replay records again.
  void FlushSteps();
  // A transaction branch record (its JSON text, Transaction::BranchRecord); the crash point
  // `branch:<step>` fires once it is durable.
  void RecordBranch(std::string payload_text, const std::string& step);
  // Takes the next record key without writing anything: a record whose content another record
  // carries (a compensable branch's pending record, in its action's intent). Keys stay those
  // of a journal that wrote the record on its own, so either journal replays the same.
  void SkipRecord();
  // The key the next record of the running strand will take (Record, RecordBranch).
  std::string NextRecordKey() const;
  // The record keyed `key` is carried by another record (a saga commit's decision carries its
  // txn_end): Record then skips it, as it skips a record the journal already holds.
  void MarkRecordCarried(const std::string& key) { journaled_records_.insert(key); }
  // True while the replay has not yet reached the point where the earlier process stopped.
  bool replaying() const { return replay_cursor_ < replay_order_.size(); }
  // Resumed in this process (from a journal, possibly empty), not started fresh here: an
  // earlier process may have left its prepared SQL gids on a server, journaled or not.
  bool resumed() const { return resumed_; }
  void MarkResumed() { resumed_ = true; }  // before it is launched

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
  bool MarkFinalized();                         // true the first time only
  std::vector<EffectPtr> TakePendingEffects();  // effects to issue, in request order
  // Journals an effect's outcome and queues it for the strand that waits; from any thread.
  // True when the caller must queue the execution on a worker.
  [[nodiscard]] bool Deliver(const EffectRequest& request, EffectOutcome outcome);
  // Ends a worker's turn: true when nothing arrived meanwhile, false to run another slice.
  [[nodiscard]] bool EndSlice();
  bool IntentJournaled(const std::string& key) const { return intents_.count(key) > 0; }
  const Json& IntentPayload(const std::string& key) const { return intents_.at(key).payload; }
  std::vector<EffectPtr> RunningEffects() const;  // issued and not yet delivered
  bool IsRunning(const std::string& key) const;

  // Final outcome, valid once finished(): state and JSON result or error.
  std::string final_state() const { return final_state_; }
  const Value& final_value() const { return final_value_; }

  // Step counting for ResourceLimitError, and call depth for RecursionError.
  int64_t CountStep() { return ++steps_executed_; }

 private:
  friend class EffectAwaiter;
  // RecordStep for a resumed execution, whose journal may hold the step already.
  bool RecordStepKeyed(const std::string& step, const std::string& routine, int line, bool failed,
                       int64_t start_ms, int64_t end_ms);
  std::string NextKey() { return current_->prefix + std::to_string(++current_->effect_counter); }
  void CheckReplayed(const EffectRequest& request, const store::JournalEntry& entry) const;
  // The constructor's reading of a resumed execution's journal into the replay's indexes.
  void IndexJournal(std::vector<store::JournalEntry>& journal);
  // One outcome the replay hands back; `after_cancel` collects those consumed with a cancel
  // requested.
  void IndexResult(store::JournalEntry entry, std::vector<std::string>& after_cancel);
  void TakeOutcome();  // sets the final state and value once the root task has finished
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
  // The fields of the record given to the constructor that record() repeats.
  struct CreatedRecord {
    std::string id;
    std::string workflow_name;
    std::string source_file;
    std::string argument;
    std::string state;
    std::string owner;
    std::string revision_id;
    std::string service_account;
    std::string labels;
    int64_t start_time_ms = 0;
  };
  CreatedRecord created_;
  std::shared_ptr<const lang::Workflow> workflow_;
  Value argument_;
  Interpreter interpreter_;  // held in place: one allocation fewer per execution

  // Replay index built from the journal of an earlier process: results and intents by key,
  // the keys of delivered (not local) results in journal order, and the record keys.
  LazyContainer<std::unordered_map<std::string, store::JournalEntry>> results_;
  LazyContainer<std::unordered_map<std::string, store::JournalEntry>> intents_;
  std::vector<std::string> replay_order_;
  size_t replay_cursor_ = 0;
  LazyContainer<std::unordered_set<std::string>> journaled_records_;
  StepHistory step_history_;  // steps not yet journaled; worker-side
  // Effects at which the earlier process threw CancelledSignal: key -> "before" (the effect
  // was never issued) or "after" (its outcome was delivered, then discarded).
  LazyContainer<std::unordered_map<std::string, std::string>> cancelled_at_;

  int64_t steps_executed_ = 0;

  // Worker-side state: touched only by the worker that drives the execution.
  Strand main_strand_;
  Strand* current_ = &main_strand_;
  std::optional<Task<Value>> root_;  // the interpreter's RunMain
  FifoQueue<std::pair<std::coroutine_handle<>, Strand*>> ready_;
  // By effect key; the keys point into the awaiters' requests, which outlive their entries.
  std::map<std::string_view, EffectAwaiter*> waiting_;
  std::vector<EffectPtr> pending_;
  bool stuck_ = false;  // the replay cannot go on: the workflow differs from the journal
  bool resumed_ = false;
  bool finalized_ = false;

  // Shared with the threads that complete effects.
  mutable std::mutex mutex_;
  FifoQueue<std::pair<std::string, EffectOutcome>> inbox_;  // outcomes in journal order
  // By effect key, pointing into the effect's own request.
  std::map<std::string_view, EffectPtr> running_;
  bool scheduled_ = false;  // queued on or held by a worker
  std::atomic<bool> cancel_requested_{false};

  std::string final_state_;
  Value final_value_;
};

}  // namespace atomflow::engine
