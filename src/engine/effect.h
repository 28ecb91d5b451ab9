// The outcome of an effect, the common currency between connectors and the interpreter.
#pragma once

#include <utility>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::engine {

// What an effect produced: a result value, or an error value (a map with "message" and
// "tags") that the interpreter raises into the workflow.
struct EffectOutcome {
  bool ok = true;
  Value value;

  static EffectOutcome Success(Value value) { return {true, std::move(value)}; }
  static EffectOutcome Failure(Value error) { return {false, std::move(error)}; }
};

}  // namespace atomflow::engine

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace atomflow::engine {

// One effect the interpreter asks for. The key is deterministic (the same on every replay of
// the execution), so a resumed execution finds the effect's journaled result or intent.
struct EffectRequest {
  std::string key;           // position of the effect in the execution, e.g. "12"
  std::string step;          // the step that asked, for messages and crash points
  std::string function;      // "http.post", "atomflow.jobs.run", "sys.sleep", ...
  Value args;                // the rendered args map
  bool needs_intent = true;  // outside consequences: the intent is durable before issuing
  // Issued while the strand finishes a transaction (phase two): cancelling the execution
  // must not cut it off.
  bool shielded = false;
  // Transaction headers (Atomflow-Gid, -Branch, -Op) when the effect is a branch operation.
  std::string gid;
  std::string branch;
  std::string op;
  // The compensating function of the compensable branch this action's intent registers
  // (docs/journal.md, "Folded records"): the intent then stands for the branch's pending
  // record, which is not written on its own. Empty for every other effect.
  std::string registers_compensation;
  // The enclosing transaction's deadline (epoch seconds, 0 for none): an effect still running
  // then is cut off with a TimeoutError, so the transaction aborts on time.
  double txn_deadline = 0;
};

// An effect from the moment a strand asks for it until its outcome is handed back: the request,
// kept once and shared (by pointer) by the strand's awaiter, the execution's set of running
// effects and every callback that carries the effect out, so a waiting execution holds one
// copy of it however many parties wait with it.
struct PendingEffect {
  explicit PendingEffect(EffectRequest request) : request(std::move(request)) {}
  const EffectRequest request;
  // The I/O loop timer of a sleep or of a callback await, 0 while none is armed. Touched on
  // the loop thread only.
  uint64_t timer = 0;
};
using EffectPtr = std::shared_ptr<PendingEffect>;

// Where an effect is carried out, for handlers.
struct EffectContext {
  std::string execution_id;
  std::string service_account;  // the identity the execution runs as (its record's); "": none
  bool resumed = false;         // the intent was journaled by an earlier process
  std::function<void(const std::string& line)> on_log;  // job log lines
  std::function<void()> on_started;  // the effect is under way (a job's process launched)
  std::string jobs_root;             // where job folders live
  std::string staging_root;          // where staged files wait for their transaction
};

// An execution about to resume in this process, with the prepared SQL branches its journal
// names (the branch records' `staged`): what an earlier process may have left on a server
// that the replay still accounts for.
struct ResumingExecution {
  std::string execution_id;
  std::vector<std::pair<std::string, std::string>> prepared;  // (database name, gid)
};

// Carries out effects with outside consequences (HTTP, jobs, files). Implemented by
// connectors; the engine owns the journal and the scheduling around it.
class EffectHandler {
 public:
  virtual ~EffectHandler() = default;

  // Starts the effect; calls done exactly once, from any thread.
  virtual void Perform(const EffectRequest& request, EffectContext context,
                       std::function<void(EffectOutcome)> done) = 0;

  // Asks a running effect to stop early (a job is cancelled); done still runs.
  virtual void Cancel(const std::string& execution_id, const EffectRequest& request) = 0;

  // The execution has ended and its end is durable: whatever the handler kept for it on the
  // side (staged files a killed process wrote and never journaled) can go.
  virtual void Forget(const std::string& execution_id) { (void)execution_id; }

  // Executions about to resume, before any of them runs: what an earlier process left for
  // them outside that their journals do not account for can go (a prepared SQL branch's
  // prepare is sent before its branch record is durable, and a replay that takes another
  // path would never reach that gid again, while its locks stay). Blocks; called from the
  // thread that resumes them, never the I/O loop or a worker.
  virtual void Resuming(const std::vector<ResumingExecution>& executions) { (void)executions; }

  // Whether this process can finish what the execution's journal started: an error (which
  // says why) when it names a resource this process does not know, a database that is not
  // configured here, say. Resuming it anyway would fail its phase two, or abort a
  // transaction that should commit; it stays ACTIVE for a process that can.
  virtual Status CanResume(const ResumingExecution& execution) {
    (void)execution;
    return Status::Ok();
  }
};

}  // namespace atomflow::engine
