// The engine: runs executions on a small pool of worker threads, carries out their effects on
// one I/O loop, and journals every effect so a killed process can be resumed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/callbacks.h"
#include "engine/effect.h"
#include "engine/io_loop.h"
#include "lang/ast.h"
#include "store/store.h"

namespace atomflow::engine {

class Execution;
class WorkflowCache;

// One finished step, for progress output.
// The strings are the engine's own and live only for the call (no copies on the step path).
struct StepReport {
  const std::string& execution_id;
  const std::string& routine;
  const std::string& step;
  const std::string& state;  // SUCCEEDED or FAILED
  int64_t duration_ms = 0;
  int depth = 0;  // nesting, for indentation
};

// Receives what a user watches while executions run. Called from worker and loop threads;
// implementations must be thread safe.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void OnStep(const StepReport& report) = 0;
  virtual void OnLog(const std::string& execution_id, const std::string& step,
                     const std::string& severity, const std::string& text) = 0;
  virtual void OnJobLog(const std::string& execution_id, const std::string& step,
                        const std::string& line) = 0;
  virtual void OnTransaction(const std::string& execution_id, const std::string& gid,
                             const std::string& step, const std::string& state) = 0;
};

// What a deployed workflow's execution carries besides its argument (see ExecutionRecord).
struct StartOptions {
  std::string workflow_name;  // default: the workflow file's stem
  std::string revision_id;
  std::string service_account;
  std::string labels = "{}";  // JSON text
  // Empty: Start returns once the execution's row is durable (the REST API, `atomflow run`).
  // Set: Start returns as soon as the execution runs, and this receives whether its row
  // became durable, on the store's callback thread (quick; no blocking store calls). If it
  // did not, none of the execution's effects was or will be issued, and Wait reports it
  // FAILED.
  std::function<void(Status)> on_durable;
};

struct EngineOptions {
  std::string store_path = "atomflow.db";
  int workers = 0;           // 0: one per core
  std::string jobs_root;     // default: <store dir>/jobs
  std::string staging_root;  // default: <store dir>/staging
  // Base of callback URLs, e.g. "http://127.0.0.1:8080"; empty: callbacks are refused (only
  // `atomflow serve` can receive them).
  std::string public_url;
};

// A new execution id: a UUIDv7, so ids grow with time (journal inserts in key order).
// Thread safe; never the same id twice in one process.
std::string NewExecutionId();

// Owns the store, the I/O loop, the workers and the effect handler. Thread safe.
class Engine {
 public:
  using HandlerFactory =
      std::function<std::unique_ptr<EffectHandler>(IoLoop* loop, const EngineOptions& options)>;

  static Result<std::unique_ptr<Engine>> Open(EngineOptions options, HandlerFactory factory,
                                              ProgressSink* progress);
  ~Engine();

  // Creates a durable execution of workflow with argument and starts it. Returns its id.
  Result<std::string> Start(std::shared_ptr<const lang::Workflow> workflow, Value argument,
                            const StartOptions& options = {});
  // Resumes an ACTIVE execution left by a process that stopped: replays its journal.
  Result<std::string> Resume(const std::string& execution_id);
  // Resumes every ACTIVE execution no live process owns; returns their ids.
  Result<std::vector<std::string>> Recover();

  void Cancel(const std::string& execution_id);
  void CancelAll();
  // Blocks until the execution has finished and its outcome is durable.
  store::ExecutionRecord Wait(const std::string& execution_id);

  // Makes a callback request durable in the execution's journal, then hands it to the await
  // that waits for it (or queues it). NotFound: no such execution or callback;
  // FailedPrecondition: the execution has finished. Returns once durable.
  Status DeliverCallback(const std::string& execution_id, const std::string& callback_id,
                         const std::string& method, Json http_request);
  // The execution's callback endpoints: [{"name", "method", "waiters", "createTime", ...}].
  Result<Json> ListCallbacks(const std::string& execution_id);

  // SIGTERM: stop taking new executions (Start answers Unavailable), let running steps reach
  // their next effect, wait up to timeout for effects in flight, flush the journal, release
  // ownership so the next process resumes them. Blocks.
  void Drain(double timeout_seconds);
  // Executions in memory that have not finished, for /metrics and /readyz.
  size_t ActiveCount();

  store::Store* store() { return store_.get(); }
  ProgressSink* progress() { return progress_; }
  double NowSeconds() const;

  // Carries out one effect for an operator tool (`atomflow txn resolve --retry`), outside any
  // running execution but journaled in execution_id's journal like any effect: the intent is
  // durable before it is issued, the outcome when it returns. Blocks until it completes.
  EffectOutcome PerformNow(const std::string& execution_id, EffectRequest request);

  // Used by Execution.
  void Journal(Execution& execution, const std::string& kind, std::string key, Json payload,
               std::function<void()> on_durable);
  // The same for a payload already written as JSON text (JsonObjectText), on the hot path.
  void JournalText(Execution& execution, const std::string& kind, std::string key,
                   std::string payload_text, std::function<void()> on_durable);
  // The same for an entry already built (its time is set here).
  void Journal(Execution& execution, store::JournalEntry entry, std::function<void()> on_durable);
  void JournalResult(Execution& execution, const EffectRequest& request,
                     const EffectOutcome& outcome);
  // Kills the process with SIGKILL when ATOMFLOW_CRASH_AT names this point (crash tests).
  void CrashPoint(const std::string& point);
  // Whether ATOMFLOW_CRASH_AT names the point `<kind><step>`; builds no string.
  bool CrashArmed(std::string_view kind, const std::string& step) const;
  // The timer delay until `deadline` (epoch seconds): 0 when past, bounded above.
  std::chrono::milliseconds DelayUntil(double deadline) const;
  // CanResume for a claimed execution; one that cannot resume is released, with the reason.
  Status CheckResumable(const ResumingExecution& resuming);
  // Keeps a finished execution's record for Wait, forgetting the oldest past a bound.
  // Caller holds mutex_.
  void KeepDone(store::ExecutionRecord record);

 private:
  Engine(EngineOptions options, std::unique_ptr<store::Store> store, ProgressSink* progress);

  // Recover's step: resumes those of a batch of listed executions that ClaimListed gave this
  // process (it refuses those no longer ACTIVE, so the listed rows are current).
  void ResumeBatch(std::vector<store::ExecutionRecord>& records, const std::vector<bool>& claimed,
                   WorkflowCache& workflows, std::vector<std::string>& resumed);
  // Resumes a claimed execution read after its claim: replays its journal on `workflow`.
  Result<std::string> ResumeClaimed(store::ExecutionRecord record,
                                    std::shared_ptr<const lang::Workflow> workflow);
  // ResumeClaimed with the journal read already; launches the execution, or appends it to
  // `launch_later` when given (Recover launches many at once).
  std::string ResumeWithJournal(store::ExecutionRecord record,
                                std::shared_ptr<const lang::Workflow> workflow,
                                std::vector<store::JournalEntry> journal,
                                std::vector<std::shared_ptr<Execution>>* launch_later);
  // ResumeBatch's step for at most kLaunchBatch claimed executions: one journal read for them.
  void ResumeChunk(std::vector<store::ExecutionRecord*>& chunk, WorkflowCache& workflows,
                   std::vector<std::string>& resumed);

  void Launch(std::shared_ptr<Execution> execution);
  // Launch for many: one lock and one wake-up of the workers for the lot.
  void LaunchMany(std::vector<std::shared_ptr<Execution>>& executions);
  // A new execution's row, without its source; or why its argument cannot be one.
  Result<store::ExecutionRecord> NewRecord(const lang::Workflow& workflow, const Value& argument,
                                           const StartOptions& options) const;
  // Start's create is durable or failed: issues the effects that waited for it, or ends the
  // execution that will never exist. On the store's callback thread.
  void OnCreated(const std::string& execution_id, const Status& status);
  // True when the effect must wait for its execution's row (then issued by OnCreated) or is
  // dropped because the row will never exist; false when it may be issued now.
  bool IssueWhenCreated(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  // Whether Start's create of this execution failed (its writes are refused by the store).
  bool CreateFailed(const std::string& execution_id);
  void Enqueue(std::shared_ptr<Execution> execution);
  void WorkerLoop();
  void Drive(const std::shared_ptr<Execution>& execution);
  // The effect functions below share the effect (EffectPtr) with the execution and with the
  // callbacks that carry it out; none copies its request.
  void Dispatch(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void DispatchPrepare(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void Issue(const std::shared_ptr<Execution>& execution, const EffectPtr& effect, bool resumed);
  void SleepEffect(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void CreateCallbackEffect(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void AwaitCallbackEffect(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void WaitForCallback(const std::shared_ptr<Execution>& execution, const EffectPtr& effect,
                       const std::string& callback_id, double deadline);
  // Appends unless the engine has drained (then the process must write nothing more): false.
  bool JournalIfLive(const std::string& execution_id, store::JournalEntry entry,
                     std::function<void(Status)> on_durable);
  void WaitForQuiet(double timeout_seconds);
  void CancelIfCancelled(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void CancelEffect(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void CutOffIfCancelled(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void WatchDeadline(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void Decide(const std::shared_ptr<Execution>& execution, const EffectPtr& effect);
  void Complete(const std::shared_ptr<Execution>& execution, const EffectPtr& effect,
                EffectOutcome outcome);
  void Finalize(const std::shared_ptr<Execution>& execution);

  EngineOptions options_;
  std::unique_ptr<store::Store> store_;
  ProgressSink* progress_;
  std::string crash_at_;
  std::string owner_;
  IoLoop loop_;
  std::unique_ptr<EffectHandler> handler_;

  std::mutex mutex_;
  std::condition_variable ready_;     // workers wait for runnable executions
  std::condition_variable finished_;  // Wait() waits for outcomes
  std::deque<std::shared_ptr<Execution>> runnable_;
  std::map<std::string, std::shared_ptr<Execution>> active_;
  // The latest finished executions, without their source, for Wait; older ones are read
  // back from the store, so a long-running server does not keep every record it finished.
  std::unordered_map<std::string, store::ExecutionRecord> done_;
  std::deque<std::string> done_order_;  // ids in done_, oldest first
  // Started executions whose row is queued and not yet durable, with the effects that need
  // no intent of their own and so wait for the row instead; and the ids whose create
  // failed. Under mutex_.
  std::unordered_map<std::string, std::vector<std::function<void()>>> creating_;
  std::unordered_set<std::string> unborn_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  int busy_workers_ = 0;  // workers inside Drive; under mutex_

  // Callback endpoints, their queued requests and waiting awaits (engine/callbacks.h).
  CallbackBook callbacks_;

  // Drain: draining_ stops new starts, deliveries and the issuing of effects; drained_ stops
  // every journal write once the journal is flushed and ownership is about to be released.
  std::atomic<bool> draining_{false};
  std::atomic<bool> drained_{false};
  std::atomic<int> journaling_{0};  // Journal calls between their drained_ check and Append
  std::atomic<int> in_flight_{0};   // effects handed to the handler and not yet completed
  std::vector<std::shared_ptr<Execution>> released_;  // kept alive after Drain
};

}  // namespace atomflow::engine
