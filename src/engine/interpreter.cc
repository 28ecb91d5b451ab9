// The interpreter's core: routines, blocks, steps, jumps and expression evaluation.
#include "engine/interpreter.h"

#include <any>
#include <chrono>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "common/metrics.h"
#include "engine/engine.h"
#include "engine/execution.h"
#include "lang/limits.h"

namespace atomflow::engine {

namespace {

// Looked up once: every step adds to it, so the hot path holds a pointer, not a name.
metrics::Counter* StepsTotal() {
  static metrics::Counter* const counter = metrics::Registry::Global().GetCounter(
      "atomflow_steps_total", "Workflow steps run (a resumed execution's replay included).");
  return counter;
}

// Thrown by Frame::CallHost when an expression calls a function that needs the interpreter
// (a subworkflow or an effect); the interpreter performs the call and evaluates again.
struct NeedCall {
  std::string name;
  std::vector<Value> args;
};

// Turns a step's `next:` into the flow that carries it out.
Flow JumpTo(const std::string& target) {
  if (target == "end") return Flow(Flow::Kind::kEnd);
  if (target == "break") return Flow(Flow::Kind::kBreak);
  if (target == "continue") return Flow(Flow::Kind::kContinue);
  return Flow(Flow::Kind::kJump, &target);
}

int64_t NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

#if defined(__x86_64__)
// Time-stamp counter cycles (some microseconds at any clock rate a server runs at) within
// which the clock read after the inline step before stands for this one's end.
constexpr uint64_t kClockReadCycles = 20000;
#endif

}  // namespace

bool RunsInline(const lang::Step& step) {
  switch (step.kind) {
    case lang::Step::Kind::kNext:
      return true;
    case lang::Step::Kind::kAssign:
      for (const lang::Assignment& assignment : step.assign) {
        if (assignment.target.calls_host || !lang::IsPure(assignment.value)) return false;
      }
      return true;
    case lang::Step::Kind::kSwitch:
      for (const lang::SwitchCase& arm : step.switch_cases) {
        if (!lang::IsPure(arm.condition) || !RunsInline(*arm.body)) return false;
      }
      return true;
    default:
      return false;
  }
}

bool RunsInline(const lang::Block& block) {
  for (const auto& step : block.steps) {
    if (!RunsInline(*step)) return false;
  }
  return true;
}

namespace {

// Evaluates without suspending; false when the expression needs a call (see NeedCall).
bool TryEval(const lang::Template& tmpl, Frame& frame, Value* out) {
  if (tmpl.kind == lang::Template::Kind::kLiteral) {
    *out = tmpl.literal;
    return true;
  }
  frame.memo.clear();
  frame.memo_used = 0;
  try {
    *out = lang::Render(tmpl, frame);
    return true;
  } catch (const NeedCall&) {
    return false;
  }
}

}  // namespace

bool Frame::IsSubworkflow(std::string_view name) const {
  return name != "main" && workflow_->FindRoutine(name) != nullptr;
}

Value Frame::CallHost(std::string_view name, std::vector<Value> args) {
  if (memo_used < memo.size()) return memo[memo_used++];
  throw NeedCall{std::string(name), std::move(args)};
}

// Not a coroutine: main runs in RunRoutine's frame, which also gives an uncaught error its
// stack trace, so that no frame of RunMain's own waits with every execution.
Task<Value> Interpreter::RunMain(Value argument) {
  const lang::Routine& main = execution_->workflow().main();
  Map args;
  if (!main.params.empty()) args.Set(main.params[0].name, std::move(argument));
  return RunRoutine(main, std::move(args), 0);
}

namespace {

// Error paths out of line: the strings they build would otherwise take room in the frame of
// every routine call for as long as it runs.
[[noreturn]] void RaiseMissingArgument(const lang::Param& param, const lang::Routine& routine) {
  lang::Raise("TypeError", "missing argument '" + param.name + "' calling '" + routine.name + "'");
}

[[noreturn]] void RaiseJumpNotFound(const Flow& flow) {
  lang::Raise("SystemError", "jump target '" + *flow.target + "' not found");
}

// What a routine whose steps ended with `flow` returns.
Value RoutineResult(Flow flow) {
  if (flow.kind == Flow::Kind::kReturn) return std::move(flow.value);
  if (flow.kind == Flow::Kind::kJump) RaiseJumpNotFound(flow);
  return Value();
}

}  // namespace

// Binds the parameters without suspending, from the first; returns the index of the first one
// whose default calls a subworkflow or an effect (BindParamsSlow binds the rest), or the count.
size_t Interpreter::BindParams(const lang::Routine& routine, Map& args, Frame& frame) {
  for (size_t i = 0; i < routine.params.size(); ++i) {
    const lang::Param& param = routine.params[i];
    if (Value* given = args.Find(param.name)) {
      frame.vars().Set(param.name, std::move(*given));
    } else if (param.default_value) {
      Value value;
      if (!TryEval(*param.default_value, frame, &value)) return i;
      frame.vars().Set(param.name, std::move(value));
    } else {
      RaiseMissingArgument(param, routine);
    }
  }
  return routine.params.size();
}

// Its own coroutine, so that the locals of a suspending default do not take room in the frame
// of every routine call for as long as it runs.
Task<int> Interpreter::BindParamsSlow(const lang::Routine& routine, Map& args, Frame& frame,
                                      size_t first) {
  for (size_t i = first; i < routine.params.size(); ++i) {
    const lang::Param& param = routine.params[i];
    if (Value* given = args.Find(param.name)) {
      frame.vars().Set(param.name, std::move(*given));
    } else if (param.default_value) {
      Value value = co_await Eval(*param.default_value, frame);
      frame.vars().Set(param.name, std::move(value));
    } else {
      RaiseMissingArgument(param, routine);
    }
  }
  co_return 0;
}

// Depth 0 is main: an error nothing caught leaves it with its stack trace, and the steps not
// yet counted are counted however the execution ends.
Task<Value> Interpreter::RunRoutine(const lang::Routine& routine, Map args, int depth) {
  lang::CheckCallDepth(depth, routine.name);
  Frame frame(&execution_->workflow(), &routine, depth);
  try {
    size_t bound = BindParams(routine, args, frame);
    if (bound < routine.params.size()) co_await BindParamsSlow(routine, args, frame, bound);
    Flow flow = co_await RunBlock(routine.steps, frame);
    if (depth == 0) FlushStepCount();
    co_return RoutineResult(std::move(flow));
  } catch (const lang::RaisedError& raised) {
    if (depth != 0) throw;
    FlushStepCount();
    // Nothing can catch it any more: the execution's error says where it came from.
    throw lang::RaisedError(WithStackTrace(raised.payload()));
  } catch (...) {
    if (depth == 0) FlushStepCount();
    throw;
  }
}

// Runs a block's steps, resolving the jumps between them. A step that may suspend runs in this
// frame (BeginStep, the body's task, EndStep / FailStep) rather than in a coroutine of its own,
// so that a waiting execution keeps one frame per block it is in, not two.
namespace {

// Where a block goes after a step's flow: true with `i` at the next step to run, false when
// the flow leaves the block (a return, break or continue, or a jump to a step outside it).
bool AdvanceInBlock(const lang::Block& block, const Flow& flow, size_t& i) {
  if (flow.kind == Flow::Kind::kNormal) {
    ++i;
    return true;
  }
  if (flow.kind != Flow::Kind::kJump) return false;
  auto target = block.index.find(*flow.target);
  if (target == block.index.end()) return false;
  i = target->second;
  return true;
}

}  // namespace

Task<Flow> Interpreter::RunBlock(const lang::Block& block, Frame& frame) {
  variables_may_grow_ = true;  // set by what led here: arguments, `as`, a branch's copies
  size_t i = 0;
  while (i < block.steps.size()) {
    const lang::Step& step = *block.steps[i];
    Flow flow;
    if (RunsInline(step)) {
      flow = RunStepInline(step, frame);
    } else {
      int64_t start_ms = BeginStep();
      int nesting = nesting_;
      try {
        bool nested = EnterStepBody(step, frame);
        flow = co_await StepBodyTask(step, frame);
        flow = LeaveStepBody(step, std::move(flow), nested);
        lang::CheckVariableMemory(step, frame.vars());
      } catch (...) {
        nesting_ = nesting;  // the body's own bookkeeping was skipped by the throw
        FailStep(step, frame, start_ms);
        throw;
      }
      EndStep(step, frame, start_ms);
      variables_may_grow_ = true;  // results, other strands' frames, a subworkflow's return
    }
    if (AdvanceInBlock(block, flow, i)) continue;
    co_return flow;
  }
  co_return Flow::Normal();
}

// The steps run inline since the last flush go to the counter with this one: one atomic add
// per step that may suspend, so the counter lags by at most the inline steps since then.
void Interpreter::FlushStepCount() {
  if (uncounted_steps_ == 0) return;
  StepsTotal()->Add(static_cast<double>(uncounted_steps_));
  uncounted_steps_ = 0;
}

// The start of a step that may suspend: counts it and returns its start time.
int64_t Interpreter::BeginStep() {
  lang::CheckStepCount(execution_->CountStep());
  ++uncounted_steps_;
  FlushStepCount();
  inline_clock_ms_ = 0;  // the body may suspend
  return NowMs();
}

void Interpreter::EndStep(const lang::Step& step, Frame& frame, int64_t start_ms) {
  inline_clock_ms_ = 0;
  if (!step.name.empty()) ReportStep(step, frame, start_ms, NowMs(), false);
}

// The bookkeeping of a step whose body threw: the error remembers where it came from.
void Interpreter::FailStep(const lang::Step& step, Frame& frame, int64_t start_ms) {
  if (error_step_.empty()) error_step_ = step.name;
  NoteErrorStep(step, frame);
  inline_clock_ms_ = 0;
  if (!step.name.empty()) ReportStep(step, frame, start_ms, NowMs(), true);
}

// RunBlock's loop for a block whose every step runs inline.
Flow Interpreter::RunBlockInline(const lang::Block& block, Frame& frame) {
  size_t i = 0;
  while (i < block.steps.size()) {
    Flow flow = RunStepInline(*block.steps[i], frame);
    if (!AdvanceInBlock(block, flow, i)) return flow;
  }
  return Flow::Normal();
}

Flow Interpreter::RunStepInline(const lang::Step& step, Frame& frame) {
  lang::CheckStepCount(execution_->CountStep());
  ++uncounted_steps_;  // counted by the next FlushStepCount
  // Nothing between the end of the inline step before and this one can suspend: its end is
  // this one's start, so a step reads the clock once.
  int64_t start_ms = inline_clock_ms_ != 0 ? inline_clock_ms_ : NowMs();
  int nesting = nesting_;
  Flow flow;
  try {
    flow = RunStepBodyInline(step, frame);
    if (variables_may_grow_ && step.kind != lang::Step::Kind::kNext) {
      lang::CheckVariableMemory(step, frame.vars());
      variables_may_grow_ = false;
    }
  } catch (...) {
    nesting_ = nesting;  // the body's own bookkeeping was skipped by the throw
    inline_clock_ms_ = 0;
    if (error_step_.empty()) error_step_ = step.name;
    NoteErrorStep(step, frame);
    if (!step.name.empty()) ReportStep(step, frame, start_ms, NowMs(), true);
    throw;
  }
  inline_clock_ms_ = InlineNowMs();
  if (!step.name.empty()) ReportStep(step, frame, start_ms, inline_clock_ms_, false);
  return flow;
}

// Reading the clock costs more than a short inline step. Where the CPU's time-stamp counter
// says that little time passed since the last reading (kClockReadCycles), that reading is
// the time: a step's times are late by microseconds at most, well under their millisecond
// unit. A counter that goes back or jumps (another core, a migrated VM) only makes it read.
int64_t Interpreter::InlineNowMs() {
#if defined(__x86_64__)
  uint64_t tsc = __rdtsc();
  if (inline_clock_ms_ != 0 && tsc - inline_clock_tsc_ < kClockReadCycles) {
    return inline_clock_ms_;
  }
  inline_clock_tsc_ = tsc;
#endif
  return NowMs();
}

// RunStepBody for the kinds RunsInline admits.
Flow Interpreter::RunStepBodyInline(const lang::Step& step, Frame& frame) {
  if (frame.read_only() != nullptr) CheckWritable(step, frame);
  if (step.kind == lang::Step::Kind::kSwitch) return RunSwitchInline(step, frame);
  if (step.kind == lang::Step::Kind::kAssign) {
    ++nesting_;
    AssignAll(step, frame);
    --nesting_;
  }
  return step.next.empty() ? Flow::Normal() : JumpTo(step.next);
}

namespace {

const std::string kSucceeded = "SUCCEEDED";
const std::string kFailed = "FAILED";

}  // namespace

void Interpreter::ReportStep(const lang::Step& step, Frame& frame, int64_t start_ms, int64_t end_ms,
                             bool failed) {
  // A step is reported once: not when a replay reruns it, even past the last journaled
  // effect, where only its journaled step record tells.
  bool replayed = execution_->replaying();
  bool recorded = execution_->RecordStep(step.name, frame.routine().name, step.pos.line, failed,
                                         start_ms, end_ms);
  if (replayed || !recorded) return;
  StepReport report{execution_->id(),  frame.routine().name,
                    step.name,         failed ? kFailed : kSucceeded,
                    end_ms - start_ms, frame.depth() + nesting_};
  execution_->engine()->progress()->OnStep(report);
}

void Interpreter::LoadRegisters(const Strand& strand) {
  transactions_ = strand.transactions;
  transaction_deadline_ = strand.transaction_deadline;
  error_step_ = strand.error_step;
  error_trace_.clear();
  if (strand.error_trace.has_value()) {
    error_trace_ = std::any_cast<std::vector<TraceElement>>(strand.error_trace);
  }
  nesting_ = strand.nesting;
  parallel_depth_ = strand.parallel_depth;
  inline_clock_ms_ = 0;
  variables_may_grow_ = true;  // another strand's frame
}

void Interpreter::SaveRegisters(Strand& strand) const {
  strand.transactions = transactions_;
  strand.transaction_deadline = transaction_deadline_;
  strand.error_step = error_step_;
  strand.error_trace.reset();
  if (!error_trace_.empty()) strand.error_trace = error_trace_;
  strand.nesting = nesting_;
  strand.parallel_depth = parallel_depth_;
}

namespace {

Task<Flow> NormalFlow() { co_return Flow::Normal(); }

}  // namespace

// Switch, raise and return run at the nesting of the step itself; the other bodies one deeper.
bool Interpreter::EnterStepBody(const lang::Step& step, Frame& frame) {
  using Kind = lang::Step::Kind;
  if (frame.read_only() != nullptr) CheckWritable(step, frame);
  bool nested =
      step.kind != Kind::kSwitch && step.kind != Kind::kRaise && step.kind != Kind::kReturn;
  if (nested) ++nesting_;
  return nested;
}

// A switch applies its own `next`; a raise never ends normally, a return never normally.
Flow Interpreter::LeaveStepBody(const lang::Step& step, Flow flow, bool nested) {
  if (nested) --nesting_;
  if (step.kind == lang::Step::Kind::kSwitch) return flow;
  if (flow.kind == Flow::Kind::kNormal && !step.next.empty()) return JumpTo(step.next);
  return flow;
}

Task<Flow> Interpreter::StepBodyTask(const lang::Step& step, Frame& frame) {
  using Kind = lang::Step::Kind;
  switch (step.kind) {
    case Kind::kAssign:
      return RunAssign(step, frame);
    case Kind::kCall:
      // Inside a transaction a compensable step registers its branch even when the action's
      // outcome is unknown (see interpreter_tcc.cc).
      if (step.compensate && !transactions_.empty()) return RunCompensableCall(step, frame);
      return RunCallStep(step, frame);
    case Kind::kSwitch:
      return RunSwitch(step, frame);
    case Kind::kFor:
      return RunFor(step, frame);
    case Kind::kRaise:
      return RunRaise(step, frame);
    case Kind::kReturn:
      return RunReturn(step, frame);
    case Kind::kTry:
      return RunTry(step, frame);
    case Kind::kSteps:
      return RunBlock(step.steps, frame);
    case Kind::kTransaction:
      return RunTransaction(step, frame);
    case Kind::kNext:
      break;
    case Kind::kParallel:
      return RunParallel(step, frame);
    case Kind::kTcc:
      return RunTcc(step, frame);
  }
  return NormalFlow();
}

Task<Flow> Interpreter::RunRaise(const lang::Step& step, Frame& frame) {
  Value raised = co_await Eval(*step.raise, frame);
  throw lang::RaisedError(std::move(raised));
}

Task<Flow> Interpreter::RunReturn(const lang::Step& step, Frame& frame) {
  // g++ 12 miscompiles a co_await inside a conditional expression: keep it a statement.
  Value returned;
  if (step.return_value) returned = co_await Eval(*step.return_value, frame);
  co_return Flow::Return(std::move(returned));
}

Task<Value> Interpreter::Eval(const lang::Template& tmpl, Frame& frame) {
  Value value;
  if (TryEval(tmpl, frame, &value)) co_return value;
  co_return co_await EvalSlow(tmpl, frame);
}

// Evaluates an expression that calls subworkflows or effect functions: each attempt runs
// until the next unanswered call, which the interpreter performs (suspending if needed) and
// memoizes; the next attempt replays the answered calls from the memo. Evaluation is pure
// apart from those calls, so every attempt sees the same values.
Task<Value> Interpreter::EvalSlow(const lang::Template& tmpl, Frame& frame) {
  std::vector<Value> memo;
  for (;;) {
    frame.memo = memo;
    frame.memo_used = 0;
    std::optional<NeedCall> need;
    try {
      Value value = lang::Render(tmpl, frame);
      frame.memo.clear();
      co_return value;
    } catch (NeedCall& call) {
      need = std::move(call);
    }
    memo.push_back(
        co_await CallPositional(need->name, std::move(need->args), frame, std::string()));
  }
}

Task<Map> Interpreter::EvalArgs(const std::vector<std::pair<std::string, lang::Template>>& args,
                                Frame& frame) {
  Map rendered;
  for (const auto& [name, tmpl] : args) {
    Value value;
    if (!TryEval(tmpl, frame, &value)) value = co_await EvalSlow(tmpl, frame);
    rendered.Set(name, std::move(value));
  }
  co_return rendered;
}

}  // namespace atomflow::engine
