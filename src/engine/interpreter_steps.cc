// The interpreter's structured steps: assign, switch, for, try/retry.
#include <cmath>
#include <exception>
#include <unordered_set>

#include "engine/engine.h"
#include "engine/execution.h"
#include "engine/interpreter.h"
#include "lang/limits.h"

namespace atomflow::engine {

namespace {

std::string AccessorText(const lang::AssignTarget& target, size_t depth) {
  std::string text = target.root;
  for (size_t i = 0; i < depth && i < target.path.size(); ++i) {
    text += target.path[i].index ? "[...]" : "." + target.path[i].field;
  }
  return text;
}

// Sets value at path[i...] inside container, creating intermediate maps for missing keys.
void AssignPath(Value& container, const lang::AssignTarget& target, size_t i, Value value,
                Frame& frame) {
  const lang::AssignTarget::Accessor& accessor = target.path[i];
  bool last = i + 1 == target.path.size();
  Value key = accessor.index ? lang::Evaluate(*accessor.index, frame) : Value(accessor.field);

  if (key.is_string()) {
    if (!container.is_map()) {
      lang::Raise("TypeError", "cannot assign key '" + key.AsString() + "' of '" +
                                   AccessorText(target, i) + "': it is a " + container.TypeName() +
                                   ", not a map");
    }
    Map& map = container.MutableMap();
    if (last) {
      map.Set(key.AsString(), std::move(value));
      return;
    }
    Value* child = map.Find(key.AsString());
    if (child == nullptr) child = &(map[key.AsString()] = Value(Map()));
    AssignPath(*child, target, i + 1, std::move(value), frame);
    return;
  }

  if (!key.is_int()) {
    lang::Raise("TypeError", std::string("index of '") + AccessorText(target, i) +
                                 "' must be a string or an integer, got " + key.TypeName());
  }
  if (!container.is_list()) {
    lang::Raise("TypeError", "cannot index '" + AccessorText(target, i) + "': it is a " +
                                 container.TypeName() + ", not a list");
  }
  List& list = container.MutableList();
  int64_t index = key.AsInt();
  if (index < 0 || index >= static_cast<int64_t>(list.size())) {
    lang::Raise("IndexError", "index " + std::to_string(index) + " out of range for '" +
                                  AccessorText(target, i) + "' of length " +
                                  std::to_string(list.size()));
  }
  if (last) {
    list[index] = std::move(value);
    return;
  }
  AssignPath(list[index], target, i + 1, std::move(value), frame);
}

}  // namespace

// Every iteration runs at least one step, so a loop can never get past the step limit: the
// values stop there, and `range: [1, 1e12]` costs no more memory than `[1, 100001]`.
List RangeValues(const Value& range) {
  if (!range.is_list() || range.AsList().size() != 2 || !range.AsList()[0].is_number() ||
      !range.AsList()[1].is_number()) {
    lang::Raise("TypeError", "range must be a list of two numbers, got " + DebugString(range));
  }
  const Value& from = range.AsList()[0];
  const Value& to = range.AsList()[1];
  constexpr size_t kMaxValues = lang::kMaxStepsPerExecution + 1;
  List values;
  if (from.is_int() && to.is_int()) {
    for (int64_t v = from.AsInt(); v <= to.AsInt() && values.size() < kMaxValues; ++v) {
      values.emplace_back(v);
      if (v == to.AsInt()) break;  // ++v would overflow when the end is INT64_MAX
    }
  } else {
    for (double v = from.AsNumber(); v <= to.AsNumber() && values.size() < kMaxValues; v += 1.0) {
      values.emplace_back(v);
      if (v + 1.0 == v) break;  // past 2^53 adding one changes nothing: the range would not end
    }
  }
  return values;
}

namespace {

// The flow after a step that ended normally: its `next` (a step, end, break or continue).
Flow StepNext(const lang::Step& step) {
  if (step.next.empty()) return Flow::Normal();
  if (step.next == "end") return Flow(Flow::Kind::kEnd);
  if (step.next == "break") return Flow(Flow::Kind::kBreak);
  if (step.next == "continue") return Flow(Flow::Kind::kContinue);
  return Flow(Flow::Kind::kJump, &step.next);
}

// Null, a boolean or a number: what the memory check counts as one machine word.
bool IsScalar(const Value& value) {
  return value.is_null() || value.is_bool() || value.is_number();
}

double NumberOr(const Value* value, double fallback) {
  return value != nullptr && value->is_number() ? value->AsNumber() : fallback;
}

}  // namespace

void Interpreter::Assign(Frame& frame, const lang::AssignTarget& target, Value value) {
  if (target.path.empty()) {
    // As Set, without copying the name. A scalar put over a scalar leaves the variables'
    // size and nesting as they were; anything else may grow them.
    Map& vars = frame.vars();
    size_t count = vars.size();
    Value& slot = vars.FindOrInsert(target.root, target.root_hint);
    if (vars.size() != count || !IsScalar(slot) || !IsScalar(value)) variables_may_grow_ = true;
    slot = std::move(value);
    return;
  }
  variables_may_grow_ = true;
  Value* root = frame.vars().Find(target.root);
  if (root == nullptr) {
    lang::Raise("KeyError", "variable '" + target.root + "' is not defined");
  }
  AssignPath(*root, target, 0, std::move(value), frame);
}

// Remembers the innermost named step of each routine an uncaught error passes through: the
// first step to see it in a routine is the deepest one there, and its callers' call steps
// follow as the error leaves each routine.
void Interpreter::NoteErrorStep(const lang::Step& step, const Frame& frame) {
  if (step.name.empty()) return;
  if (!error_trace_.empty() && error_trace_.back().depth <= frame.depth()) return;
  error_trace_.push_back({step.name, frame.routine().name, step.pos, frame.depth()});
}

// The error an execution fails with. A map error gains Cloud Workflows' stack trace: a
// `context` text ("KeyError: message" then one `in step "s", routine "r", line: N` line per
// routine, innermost first) and `stack_trace.elements` [{step, routine, position: {line,
// column}}]. Any other raised value (a string) is left exactly as raised.
Value Interpreter::WithStackTrace(Value error) const {
  if (!error.is_map() || error_trace_.empty() || error.AsMap().Find("context") != nullptr) {
    return error;
  }
  const Map& fields = error.AsMap();
  const Value* tags = fields.Find("tags");
  const Value* message = fields.Find("message");
  bool tagged = tags != nullptr && tags->is_list() && !tags->AsList().empty() &&
                tags->AsList()[0].is_string();
  std::string context = tagged ? tags->AsList()[0].AsString() : "RuntimeError";
  context += ": " + (message && message->is_string() ? message->AsString() : DebugString(error));

  List elements;
  for (const TraceElement& element : error_trace_) {
    context += "\nin step \"" + element.step + "\", routine \"" + element.routine +
               "\", line: " + std::to_string(element.pos.line);
    Map position{{"line", Value(element.pos.line)}, {"column", Value(element.pos.column)}};
    elements.emplace_back(Map{{"step", Value(element.step)},
                              {"routine", Value(element.routine)},
                              {"position", Value(std::move(position))}});
  }
  Map& traced = error.MutableMap();
  traced.Set("context", Value(std::move(context)));
  traced.Set("stack_trace", Value(Map{{"elements", Value(std::move(elements))}}));
  return error;
}

Task<Flow> Interpreter::RunAssign(const lang::Step& step, Frame& frame) {
  for (const lang::Assignment& assignment : step.assign) {
    Value value = co_await Eval(assignment.value, frame);
    Assign(frame, assignment.target, std::move(value));
  }
  co_return Flow::Normal();
}

void Interpreter::AssignAll(const lang::Step& step, Frame& frame) {
  for (const lang::Assignment& assignment : step.assign) {
    Assign(frame, assignment.target, lang::Render(assignment.value, frame));
  }
}

Flow Interpreter::RunSwitchInline(const lang::Step& step, Frame& frame) {
  for (const lang::SwitchCase& arm : step.switch_cases) {
    Value condition = lang::Render(arm.condition, frame);
    if (!condition.is_bool()) {
      lang::Raise("TypeError",
                  std::string("switch condition must be a boolean, got ") + condition.TypeName());
    }
    if (condition.AsBool()) {
      Flow flow = RunStepBodyInline(*arm.body, frame);  // applies the arm's own `next`
      if (flow.kind != Flow::Kind::kNormal) return flow;
      break;
    }
  }
  return StepNext(step);
}

Task<Flow> Interpreter::RunSwitch(const lang::Step& step, Frame& frame) {
  for (const lang::SwitchCase& arm : step.switch_cases) {
    Value condition = co_await Eval(arm.condition, frame);
    if (!condition.is_bool()) {
      lang::Raise("TypeError",
                  std::string("switch condition must be a boolean, got ") + condition.TypeName());
    }
    if (condition.AsBool()) {
      bool nested = EnterStepBody(*arm.body, frame);
      Flow flow = co_await StepBodyTask(*arm.body, frame);
      flow = LeaveStepBody(*arm.body, std::move(flow), nested);  // the arm's own `next`
      if (flow.kind != Flow::Kind::kNormal) co_return flow;
      break;
    }
  }
  // The step's own `next` follows the switch however it ended, matched or not, as any
  // step's `next` does (Google's nested-steps example jumps to it after the arm's steps).
  co_return StepNext(step);
}

Task<Flow> Interpreter::RunFor(const lang::Step& step, Frame& frame) {
  const lang::ForSpec& loop = *step.for_loop;
  std::unordered_set<std::string> existing;
  for (const auto& [name, value] : frame.vars()) existing.insert(name);

  List values;
  if (loop.in) {
    Value in = co_await Eval(*loop.in, frame);
    if (!in.is_list()) {
      lang::Raise("TypeError", std::string("for: 'in' must be a list, got ") + in.TypeName());
    }
    values = in.AsList();
  } else {
    values = RangeValues(co_await Eval(*loop.range, frame));
  }

  // Variables first created inside the loop, and the loop variables, end with it, however
  // the loop ends: normally, by a jump or return, or by an error caught further out.
  Flow result = Flow::Normal();
  std::exception_ptr error;
  try {
    result = co_await RunIterations(loop, values, frame);
  } catch (...) {
    error = std::current_exception();
  }
  std::vector<std::string> created;
  for (const auto& [name, value] : frame.vars()) {
    if (!existing.count(name)) created.push_back(name);
  }
  for (const std::string& name : created) frame.vars().Erase(name);
  if (error) std::rethrow_exception(error);
  co_return result;
}

Task<Flow> Interpreter::RunIterations(const lang::ForSpec& loop, const List& values, Frame& frame) {
  bool inline_body = RunsInline(loop.steps);  // no coroutine frame per iteration
  for (size_t i = 0; i < values.size(); ++i) {
    frame.vars().FindOrInsert(loop.value, loop.value_hint) = values[i];
    if (i == 0 || !IsScalar(values[i])) variables_may_grow_ = true;
    if (!loop.index.empty()) {
      frame.vars().FindOrInsert(loop.index, loop.index_hint) = static_cast<int64_t>(i);
    }
    Flow flow;
    if (inline_body) {
      flow = RunBlockInline(loop.steps, frame);
    } else {
      flow = co_await RunBlock(loop.steps, frame);
    }
    if (flow.kind == Flow::Kind::kBreak) break;
    if (flow.kind == Flow::Kind::kNormal || flow.kind == Flow::Kind::kContinue) continue;
    co_return flow;
  }
  co_return Flow::Normal();
}

Task<Flow> Interpreter::RunTry(const lang::Step& step, Frame& frame) {
  const lang::TrySpec& spec = *step.try_block;
  for (int attempt = 0;; ++attempt) {
    std::optional<Value> error;
    try {
      co_return co_await RunBlock(spec.steps, frame);
    } catch (const lang::RaisedError& raised) {
      error = raised.payload();
    }
    error_step_.clear();
    error_trace_.clear();
    Value failed_url = std::exchange(failed_http_url_, Value());

    double delay = 0;
    bool retry = false;
    if (spec.retry) retry = co_await ShouldRetry(*spec.retry, *error, attempt, frame, &delay);
    if (retry) {
      if (!failed_url.is_null()) CountRetry(failed_url);
      co_await Sleep(delay, step.name);
      continue;
    }
    if (!spec.except) throw lang::RaisedError(std::move(*error));
    if (!spec.except->as.empty()) frame.vars().Set(spec.except->as, std::move(*error));
    co_return co_await RunBlock(spec.except->steps, frame);
  }
}

// Decides whether a failed try block runs again, and after how long: the predicate (a
// standard-library predicate or a subworkflow) must say yes and attempts must remain.
Task<bool> Interpreter::ShouldRetry(const lang::RetrySpec& retry, const Value& error, int attempt,
                                    Frame& frame, double* delay_seconds) {
  Map policy;
  if (retry.policy) {
    Value value = co_await Eval(*retry.policy, frame);
    if (!value.is_map()) lang::Raise("TypeError", "retry policy must be a map");
    policy = value.AsMap();
  }
  if (retry.predicate) {
    Value predicate = co_await Eval(*retry.predicate, frame);
    policy.Set("predicate", std::move(predicate));
  }
  if (retry.max_retries) {
    Value max_retries = co_await Eval(*retry.max_retries, frame);
    policy.Set("max_retries", std::move(max_retries));
  }
  Map backoff = policy.Find("backoff") && policy.Find("backoff")->is_map()
                    ? policy.Find("backoff")->AsMap()
                    : Map();
  // Each co_await is its own statement: g++ 12 miscompiles literals beside one.
  if (retry.initial_delay) {
    Value initial = co_await Eval(*retry.initial_delay, frame);
    backoff.Set("initial_delay", std::move(initial));
  }
  if (retry.max_delay) {
    Value maximum = co_await Eval(*retry.max_delay, frame);
    backoff.Set("max_delay", std::move(maximum));
  }
  if (retry.multiplier) {
    Value multiplier = co_await Eval(*retry.multiplier, frame);
    backoff.Set("multiplier", std::move(multiplier));
  }

  const Value* max_retries = policy.Find("max_retries");
  if (max_retries == nullptr || !max_retries->is_int()) {
    lang::Raise("TypeError", "retry: max_retries must be an integer");
  }
  if (attempt >= max_retries->AsInt()) co_return false;

  const Value* predicate = policy.Find("predicate");
  std::optional<std::string> function = predicate ? lang::AsFunctionRef(*predicate) : std::nullopt;
  if (!function) lang::Raise("TypeError", "retry: predicate must be a function");
  std::vector<Value> predicate_args(1, error);
  Value verdict =
      co_await CallPositional(*function, std::move(predicate_args), frame, std::string());
  if (!verdict.is_bool()) {
    lang::Raise("TypeError", "retry predicate '" + *function + "' must return a boolean");
  }
  if (!verdict.AsBool()) co_return false;

  double initial = NumberOr(backoff.Find("initial_delay"), 1.0);
  double maximum = NumberOr(backoff.Find("max_delay"), 60.0);
  double multiplier = NumberOr(backoff.Find("multiplier"), 1.25);
  *delay_seconds = std::min(maximum, initial * std::pow(multiplier, attempt));
  co_return true;
}

}  // namespace atomflow::engine
