// The interpreter's core: routines, blocks, steps, jumps and expression evaluation.
#include "engine/interpreter.h"

#include <any>
#include <chrono>

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
  if (target == "end") return {Flow::Kind::kEnd};
  if (target == "break") return {Flow::Kind::kBreak};
  if (target == "continue") return {Flow::Kind::kContinue};
  return {Flow::Kind::kJump, target};
}

int64_t NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

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

Task<Value> Interpreter::RunMain(Value argument) {
  const lang::Routine& main = execution_->workflow().main();
  Map args;
  if (!main.params.empty()) args.Set(main.params[0].name, std::move(argument));
  std::optional<Value> failure;
  try {
    co_return co_await RunRoutine(main, std::move(args), 0);
  } catch (const lang::RaisedError& raised) {
    failure = raised.payload();
  }
  // Nothing can catch it any more: the execution's error says where it came from.
  throw lang::RaisedError(WithStackTrace(std::move(*failure)));
}

Task<Value> Interpreter::RunRoutine(const lang::Routine& routine, Map args, int depth) {
  lang::CheckCallDepth(depth, routine.name);
  Frame frame(&execution_->workflow(), &routine, depth);
  for (const lang::Param& param : routine.params) {
    if (Value* given = args.Find(param.name)) {
      frame.vars().Set(param.name, std::move(*given));
    } else if (param.default_value) {
      frame.vars().Set(param.name, co_await Eval(*param.default_value, frame));
    } else {
      lang::Raise("TypeError",
                  "missing argument '" + param.name + "' calling '" + routine.name + "'");
    }
  }

  Flow flow = co_await RunBlock(routine.steps, frame);
  if (flow.kind == Flow::Kind::kReturn) co_return std::move(flow.value);
  if (flow.kind == Flow::Kind::kJump) {
    lang::Raise("SystemError", "jump target '" + flow.target + "' not found");
  }
  co_return Value();
}

Task<Flow> Interpreter::RunBlock(const lang::Block& block, Frame& frame) {
  size_t i = 0;
  while (i < block.steps.size()) {
    Flow flow = co_await RunStep(*block.steps[i], frame);
    if (flow.kind == Flow::Kind::kNormal) {
      ++i;
      continue;
    }
    if (flow.kind == Flow::Kind::kJump) {
      auto target = block.index.find(flow.target);
      if (target != block.index.end()) {
        i = target->second;
        continue;
      }
    }
    co_return flow;
  }
  co_return Flow::Normal();
}

Task<Flow> Interpreter::RunStep(const lang::Step& step, Frame& frame) {
  lang::CheckStepCount(execution_->CountStep());
  StepsTotal()->Add();
  int64_t start_ms = NowMs();
  int nesting = nesting_;
  std::exception_ptr error;
  Flow flow;
  try {
    flow = co_await RunStepBody(step, frame);
    lang::CheckVariableMemory(step, frame.vars());
  } catch (...) {
    nesting_ = nesting;  // the body's own bookkeeping was skipped by the throw
    error = std::current_exception();
    if (error_step_.empty()) error_step_ = step.name;
    NoteErrorStep(step, frame);
  }

  if (!step.name.empty()) {
    ReportStep(step, frame, start_ms, error ? "FAILED" : "SUCCEEDED");
  }
  if (error) std::rethrow_exception(error);
  co_return flow;
}

void Interpreter::ReportStep(const lang::Step& step, Frame& frame, int64_t start_ms,
                             const char* state) {
  int64_t end_ms = NowMs();
  bool replayed = execution_->replaying();
  execution_->Record("step", {{"step", step.name},
                              {"routine", frame.routine().name},
                              {"state", state},
                              {"start_ms", start_ms},
                              {"end_ms", end_ms},
                              {"line", step.pos.line}});
  if (replayed) return;
  StepReport report{execution_->id(),  frame.routine().name,    step.name, state,
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

Task<Flow> Interpreter::RunStepBody(const lang::Step& step, Frame& frame) {
  using Kind = lang::Step::Kind;
  if (frame.read_only() != nullptr) CheckWritable(step, frame);
  Flow flow;
  ++nesting_;
  switch (step.kind) {
    case Kind::kAssign:
      flow = co_await RunAssign(step, frame);
      break;
    case Kind::kCall:
      flow = co_await RunCallStep(step, frame);
      break;
    case Kind::kSwitch:
      --nesting_;
      co_return co_await RunSwitch(step, frame);  // applies its own `next`
    case Kind::kFor:
      flow = co_await RunFor(step, frame);
      break;
    case Kind::kRaise: {
      --nesting_;
      Value raised = co_await Eval(*step.raise, frame);
      throw lang::RaisedError(std::move(raised));
    }
    case Kind::kReturn: {
      --nesting_;
      // g++ 12 miscompiles a co_await inside a conditional expression: keep it a statement.
      Value returned;
      if (step.return_value) returned = co_await Eval(*step.return_value, frame);
      co_return Flow::Return(std::move(returned));
    }
    case Kind::kTry:
      flow = co_await RunTry(step, frame);
      break;
    case Kind::kSteps:
      flow = co_await RunBlock(step.steps, frame);
      break;
    case Kind::kTransaction:
      flow = co_await RunTransaction(step, frame);
      break;
    case Kind::kNext:
      break;
    case Kind::kParallel:
      flow = co_await RunParallel(step, frame);
      break;
    case Kind::kTcc:
      flow = co_await RunTcc(step, frame);
      break;
  }
  --nesting_;
  if (flow.kind == Flow::Kind::kNormal && !step.next.empty()) flow = JumpTo(step.next);
  co_return flow;
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
