// The interpreter: walks a workflow's syntax tree as a chain of coroutines, suspending at
// every effect. Deterministic given the effects' outcomes, which is what makes replay work.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/effect.h"
#include "engine/task.h"
#include "lang/ast.h"
#include "txn/transaction.h"
#include "value/value.h"

namespace atomflow::engine {

class Execution;
struct Strand;

// How a step or block ended: normally, or by a jump that an enclosing block must resolve.
// Small (40 bytes), because the frames of waiting coroutines hold one: a jump's target points
// at the `next:` of the step in the syntax tree, which outlives every execution.
struct Flow {
  enum class Kind : uint8_t { kNormal, kJump, kReturn, kEnd, kBreak, kContinue };
  Kind kind = Kind::kNormal;
  const std::string* target = nullptr;  // kJump
  Value value;                          // kReturn

  Flow() = default;
  explicit Flow(Kind kind, const std::string* target = nullptr, Value value = Value())
      : kind(kind), target(target), value(std::move(value)) {}

  static Flow Normal() { return {}; }
  static Flow Return(Value value) { return Flow(Kind::kReturn, nullptr, std::move(value)); }
};

// The loop values of `range: [a, b]`: inclusive, step 1, integers when both ends are (else
// doubles); TypeError for anything but two numbers. Shared by `for` and parallel `for`.
List RangeValues(const Value& range);

// True when a step cannot suspend: a `next`, an assign, or a switch of those, whose
// expressions call no subworkflow or effect function (lang::IsPure). A block runs inline when
// all its steps do.
bool RunsInline(const lang::Step& step);
bool RunsInline(const lang::Block& block);

// The variables of one routine call. Also the expression evaluator's view of them: calls to
// subworkflows and effect functions inside expressions are answered from `memo`, filled by
// the interpreter one call at a time (see Interpreter::EvalSlow).
class Frame : public lang::EvalHost {
 public:
  Frame(const lang::Workflow* workflow, const lang::Routine* routine, int depth)
      : workflow_(workflow), routine_(routine), depth_(depth) {
    variables_ = &vars_;
  }
  // A parallel branch starts from a copy of the enclosing frame. variables_ points into the
  // frame itself, so a copy points into its own.
  Frame(const Frame& other)
      : lang::EvalHost(other),
        memo(other.memo),
        memo_used(other.memo_used),
        workflow_(other.workflow_),
        routine_(other.routine_),
        depth_(other.depth_),
        vars_(other.vars_),
        read_only_(other.read_only_) {
    variables_ = &vars_;
  }
  Frame& operator=(const Frame&) = delete;

  const Value* Lookup(std::string_view name) const override { return vars_.Find(name); }
  const Value* Lookup(std::string_view name, const KeyHint& hint) const override {
    return vars_.Find(name, hint);
  }
  bool IsSubworkflow(std::string_view name) const override;
  Value CallHost(std::string_view name, std::vector<Value> args) override;

  Map& vars() { return vars_; }
  const lang::Routine& routine() const { return *routine_; }
  int depth() const { return depth_; }

  // In a parallel branch: the variables of the enclosing scope that the branch sees as
  // read-only copies (those not listed in `shared`); null elsewhere.
  const std::unordered_set<std::string>* read_only() const { return read_only_.get(); }
  void set_read_only(std::shared_ptr<const std::unordered_set<std::string>> names) {
    read_only_ = std::move(names);
  }

  // Memo of host calls for the expression being evaluated.
  std::vector<Value> memo;
  size_t memo_used = 0;

 private:
  const lang::Workflow* workflow_;
  const lang::Routine* routine_;
  int depth_;
  Map vars_;
  std::shared_ptr<const std::unordered_set<std::string>> read_only_;
};

// Interprets one execution's workflow. Owned by the Execution; runs on whichever worker
// thread resumes it, one at a time.
class Interpreter {
 public:
  explicit Interpreter(Execution* execution) : execution_(execution) {}

  // Runs main with the execution's argument and returns main's result.
  Task<Value> RunMain(Value argument);

  // The registers below that belong to a strand: the Execution loads a strand's before
  // resuming it and saves them when it suspends, so concurrent branches each see their own.
  void LoadRegisters(const Strand& strand);
  void SaveRegisters(Strand& strand) const;

 private:
  struct ParallelRun;
  struct ParallelBranch;
  Task<Value> RunRoutine(const lang::Routine& routine, Map args, int depth);
  size_t BindParams(const lang::Routine& routine, Map& args, Frame& frame);
  Task<int> BindParamsSlow(const lang::Routine& routine, Map& args, Frame& frame, size_t first);
  Task<Flow> RunBlock(const lang::Block& block, Frame& frame);
  // A step that may suspend runs in RunBlock's frame: BeginStep (counting, clock), then its
  // body in three parts, so that no coroutine frame of its own waits with the body:
  // EnterStepBody's bookkeeping, the body's task (StepBodyTask is not a coroutine: it returns
  // the task of the coroutine the step's kind runs), and LeaveStepBody's, which applies `next`;
  // then EndStep, or FailStep when the body threw.
  int64_t BeginStep();
  void EndStep(const lang::Step& step, Frame& frame, int64_t start_ms);
  void FailStep(const lang::Step& step, Frame& frame, int64_t start_ms);
  bool EnterStepBody(const lang::Step& step, Frame& frame);
  Task<Flow> StepBodyTask(const lang::Step& step, Frame& frame);
  Flow LeaveStepBody(const lang::Step& step, Flow flow, bool nested);
  Task<Flow> RunRaise(const lang::Step& step, Frame& frame);
  Task<Flow> RunReturn(const lang::Step& step, Frame& frame);
  void ReportStep(const lang::Step& step, Frame& frame, int64_t start_ms, int64_t end_ms,
                  bool failed);
  void FlushStepCount();  // adds uncounted_steps_ to atomflow_steps_total

  // The synchronous path: a step that cannot suspend (RunsInline: an assign, a `next`, or a
  // switch of those, whose expressions call no subworkflow or effect function) runs without
  // coroutine frames, with the same counting, error bookkeeping and step record as
  // RunBlock gives a step that may suspend.
  Flow RunBlockInline(const lang::Block& block, Frame& frame);
  Flow RunStepInline(const lang::Step& step, Frame& frame);
  int64_t InlineNowMs();
  Flow RunStepBodyInline(const lang::Step& step, Frame& frame);
  Flow RunSwitchInline(const lang::Step& step, Frame& frame);

  // interpreter_steps.cc
  Task<Flow> RunAssign(const lang::Step& step, Frame& frame);
  Task<Flow> RunSwitch(const lang::Step& step, Frame& frame);
  Task<Flow> RunFor(const lang::Step& step, Frame& frame);
  Task<Flow> RunIterations(const lang::ForSpec& loop, const List& values, Frame& frame);
  Task<Flow> RunTry(const lang::Step& step, Frame& frame);
  Task<bool> ShouldRetry(const lang::RetrySpec& retry, const Value& error, int attempt,
                         Frame& frame, double* delay_seconds);
  void Assign(Frame& frame, const lang::AssignTarget& target, Value value);
  void AssignAll(const lang::Step& step, Frame& frame);  // a pure assign step's assignments
  void NoteErrorStep(const lang::Step& step, const Frame& frame);
  Value WithStackTrace(Value error) const;

  // interpreter_call.cc
  Task<Flow> RunCallStep(const lang::Step& step, Frame& frame);
  Task<Value> Call(const std::string& function, Map args, Frame& frame, const std::string& step);
  Task<Value> CallPositional(const std::string& function, std::vector<Value> args, Frame& frame,
                             const std::string& step);
  Task<Value> CallSubworkflow(const lang::Routine& routine, Map args, Frame& frame);
  Task<Value> CallEffect(const std::string& function, Map args, const std::string& step);
  Task<Value> Sleep(double seconds, const std::string& step);
  Value CallLocal(const std::string& function, const std::vector<Value>& args,
                  const std::string& step);
  void Log(const Map& args, const std::string& step);
  // atomflow_retries_total{host}: a retry of an http.* call (or a branch operation) to url.
  void CountRetry(const Value& url);

  // interpreter_parallel.cc
  Task<Flow> RunParallel(const lang::Step& step, Frame& frame);
  Task<int> ConcurrencyLimit(const lang::ParallelSpec& spec, Frame& frame);
  Task<List> IterationValues(const lang::ForSpec& loop, Frame& frame);
  void StartBranches(ParallelRun& run);
  void StartBranch(ParallelRun& run, ParallelBranch& branch);
  Task<int> RunBranch(ParallelRun& run, ParallelBranch& branch);
  void EndBranch(ParallelRun& run);
  void CheckWritable(const lang::Step& step, const Frame& frame) const;

  // interpreter_txn.cc
  Task<Flow> RunTransaction(const lang::Step& step, Frame& frame);
  Task<Value> StageFile(const std::string& function, const Map& args, const std::string& step);
  Task<Value> StageFileWithArgs(const std::string& function, Map args, const std::string& step);
  Task<txn::Decision> Decide(txn::Transaction& txn, txn::Decision decision, const Value& cause);
  Task<bool> Undo(txn::Transaction& txn);
  Task<bool> RunCompensation(const txn::Branch& branch, const txn::Transaction& txn);
  struct PhaseTwoRun;
  Task<bool> Publish(txn::Transaction& txn);
  Task<int> RunPhaseTwoOp(PhaseTwoRun& run, const txn::Branch& branch, const txn::Transaction& txn);
  Task<bool> PublishBranch(const txn::Branch& branch, const txn::Transaction& txn);
  Task<EffectOutcome> FileOp(const std::string& function, const txn::Branch& branch,
                             const txn::Transaction& txn);

  // interpreter_tcc.cc
  Task<Flow> RunTcc(const lang::Step& step, Frame& frame);
  Task<Value> SendTry(const std::string& function, Map args, const std::string& branch,
                      const std::string& step);
  Task<Flow> RunCompensableCall(const lang::Step& step, Frame& frame);
  std::string RegisterPendingCompensable(const lang::Step& step, bool folded);
  Task<Value> SendAction(const std::string& function, Map args, const std::string& branch,
                         const lang::Step& step);
  Task<bool> CompleteCompensable(const lang::Step& step, Frame& frame, const std::string& branch_id,
                                 bool definite, bool unknown);
  Task<bool> ConfirmTcc(const txn::Branch& branch, const txn::Transaction& txn);
  Task<bool> CancelTcc(const txn::Branch& branch, const txn::Transaction& txn);
  Task<bool> RunBranchOp(const txn::Branch& branch, const txn::Transaction& txn, const Value& call,
                         const std::string& op, int attempts);
  void WarnRetry(const std::string& step, const std::string& op, int attempt, const Value& error);
  void CheckTransactionDeadline(const std::string& step);

  // interpreter_sql.cc
  Task<Value> SqlExec(Map args, const std::string& step);
  Task<Value> PrepareSql(Map args, const std::string& step);
  Task<bool> CommitPrepared(const txn::Branch& branch, const txn::Transaction& txn);
  Task<bool> RollbackPrepared(const txn::Branch& branch, const txn::Transaction& txn);
  Task<EffectOutcome> FinishPrepared(const std::string& function, const txn::Branch& branch,
                                     const txn::Transaction& txn);

  // Expressions: TryEval answers without suspending unless the expression calls a
  // subworkflow or an effect function; EvalSlow handles those.
  Task<Value> Eval(const lang::Template& tmpl, Frame& frame);
  Task<Value> EvalSlow(const lang::Template& tmpl, Frame& frame);
  Task<Map> EvalArgs(const std::vector<std::pair<std::string, lang::Template>>& args, Frame& frame);

  Execution* execution_;
  std::vector<txn::Transaction*> transactions_;  // innermost last
  int transaction_count_ = 0;
  double transaction_deadline_ = 0;  // epoch seconds; 0 when the block has no timeout
  std::string error_step_;           // the innermost step an uncaught error came out of

  // One routine's part of an uncaught error's stack trace.
  struct TraceElement {
    std::string step;
    std::string routine;
    lang::SourcePos pos;
    int depth = 0;
  };
  std::vector<TraceElement> error_trace_;  // innermost routine first; cleared when caught
  int nesting_ = 0;         // depth of step bodies being run, for progress indentation
  int parallel_depth_ = 0;  // parallel steps around the running strand
  // When the last inline step ended (epoch ms), the next inline step's start; 0 once anything
  // that may suspend ran (a coroutine step, a strand switch).
  int64_t inline_clock_ms_ = 0;
  uint64_t inline_clock_tsc_ = 0;  // the time-stamp counter when it was read (InlineNowMs)
  // Steps run inline and not yet added to atomflow_steps_total (see FlushStepCount).
  int64_t uncounted_steps_ = 0;
  // False only while the running frame's variables are as the last memory check measured
  // them, but for scalars put over scalars (see Assign): an inline step then skips the check,
  // which walks every variable. Whatever else may change a frame's variables, or switch
  // frames (a step that may suspend, a block's start, a strand's registers) sets it.
  bool variables_may_grow_ = true;
  // The URL of the last http.* call that raised, for the retry metric; cleared when caught.
  Value failed_http_url_;
};

}  // namespace atomflow::engine
