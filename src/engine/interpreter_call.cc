// The interpreter's calls: subworkflows, the standard library, and effects.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>

#include "common/metrics.h"
#include "engine/engine.h"
#include "engine/execution.h"
#include "engine/interpreter.h"

namespace atomflow::engine {

namespace {

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// Functions whose effects reach outside the process and go through the journal's intents.
bool IsOutsideEffect(std::string_view function) {
  return StartsWith(function, "http.") || function == "atomflow.jobs.run";
}

std::vector<Value> ToPositional(const lang::FunctionSignature& signature, Map args) {
  std::vector<Value> positional;
  for (const auto& [name, value] : args) {
    bool known = false;
    for (const std::string& param : signature.params) known = known || param == name;
    if (!known) {
      lang::Raise("TypeError", "unknown argument '" + name + "' calling " + signature.name);
    }
  }
  for (size_t i = 0; i < signature.params.size(); ++i) {
    Value* given = args.Find(signature.params[i]);
    if (given == nullptr && i < signature.required) {
      lang::Raise("TypeError",
                  "missing argument '" + signature.params[i] + "' calling " + signature.name);
    }
    positional.push_back(given ? std::move(*given) : Value());
  }
  while (!positional.empty() && positional.back().is_null() &&
         positional.size() > signature.required) {
    positional.pop_back();
  }
  return positional;
}

// A testing feature: ATOMFLOW_SLEEP_SCALE multiplies every pause (sys.sleep and retry
// backoff), so tests of samples that sleep or back off for seconds run at once and never
// depend on timing. Unset or malformed: 1.
double SleepScale() {
  const char* text = std::getenv("ATOMFLOW_SLEEP_SCALE");
  if (text == nullptr || *text == '\0') return 1.0;
  char* end = nullptr;
  double scale = std::strtod(text, &end);
  return *end == '\0' && scale >= 0 ? scale : 1.0;
}

// The longest pause sys.sleep and sys.sleep_until accept: 100 years of 365 days. The engine's
// timers count nanoseconds of a 64-bit clock (about 292 years), so a longer pause would wrap
// around and end at once; it is refused instead.
constexpr double kMaxSleepSeconds = 100.0 * 365 * 24 * 3600;

// Raises a ValueError unless `seconds` is a pause the engine can wait: a number, not negative,
// at most kMaxSleepSeconds. `what` names the function and argument in the message.
void CheckSleepSeconds(double seconds, const std::string& what) {
  if (std::isnan(seconds)) lang::Raise("ValueError", what + " must be a number, not NaN");
  if (seconds < 0) {
    lang::Raise("ValueError", fmt::format("{} must not be negative, got {}", what, seconds));
  }
  if (seconds > kMaxSleepSeconds) {
    lang::Raise("ValueError", fmt::format("{} is {} s, more than the longest pause, {} s "
                                          "(100 years)",
                                          what, seconds, kMaxSleepSeconds));
  }
}

std::string RandomUuid() {
  static thread_local std::mt19937_64 generator(std::random_device{}());
  uint64_t high = generator();
  uint64_t low = generator();
  high = (high & 0xffffffffffff0fffULL) | 0x4000;               // version 4
  low = (low & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  char text[37];
  snprintf(text, sizeof(text), "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(high >> 32),
           static_cast<unsigned>((high >> 16) & 0xffff), static_cast<unsigned>(high & 0xffff),
           static_cast<unsigned>(low >> 48),
           static_cast<unsigned long long>(low & 0xffffffffffffULL));
  return text;
}

}  // namespace

Task<Flow> Interpreter::RunCallStep(const lang::Step& step, Frame& frame) {
  const lang::CallSpec& call = *step.call;
  Map args = co_await EvalArgs(call.args, frame);
  Value result = co_await Call(call.function, std::move(args), frame, step.name);
  if (!call.result.empty()) frame.vars().Set(call.result, std::move(result));
  co_return Flow::Normal();
}

namespace {

Task<Value> ReadyValue(Value value) { co_return value; }

}  // namespace

// Not a coroutine: it returns the task of the coroutine that carries the call out, so no frame
// of its own waits with it. Its checks run when the task is made, just before it is awaited.
Task<Value> Interpreter::Call(const std::string& function, Map args, Frame& frame,
                              const std::string& step) {
  if (const lang::Routine* routine = execution_->workflow().FindRoutine(function);
      routine != nullptr && function != "main") {
    return CallSubworkflow(*routine, std::move(args), frame);
  }
  const lang::FunctionSignature* signature = lang::FindFunction(function);
  if (signature == nullptr) lang::Raise("TypeError", "unknown function '" + function + "'");

  if (function == "sys.log") {
    Log(args, step);
    return ReadyValue(Value());
  }
  if (function == "sys.sleep") {
    const Value* seconds = args.Find("seconds");
    if (seconds == nullptr || !seconds->is_number()) {
      lang::Raise("TypeError", "sys.sleep: 'seconds' must be a number");
    }
    CheckSleepSeconds(seconds->AsNumber(), "sys.sleep: 'seconds'");
    return Sleep(seconds->AsNumber(), step);
  }
  if (function == "sys.sleep_until") {
    // The time is an RFC 3339 timestamp (or epoch seconds); a time already past returns at once.
    // The clock is read through sys.now so that a replay waits the same way.
    const Value* time = args.Find("time");
    if (time == nullptr || (!time->is_string() && !time->is_number())) {
      lang::Raise("TypeError", "sys.sleep_until: 'time' must be an RFC 3339 timestamp string");
    }
    double target = time->is_number() ? time->AsNumber()
                                      : lang::CallPureFunction("time.parse", {*time}).AsDouble();
    double now = CallLocal("sys.now", {}, step).AsNumber();
    double seconds = target > now ? target - now : 0;
    if (seconds > kMaxSleepSeconds) {
      lang::Raise("ValueError", fmt::format("sys.sleep_until: 'time' is more than 100 years from "
                                            "now ({} s, the longest pause)",
                                            kMaxSleepSeconds));
    }
    return Sleep(seconds, step);
  }
  if (StartsWith(function, "atomflow.files.")) {
    return StageFileWithArgs(function, std::move(args), step);
  }
  if (function == "atomflow.sql.exec") return SqlExec(std::move(args), step);
  // Callbacks are carried out by the engine (engine/callbacks.h), journaled like effects.
  if (StartsWith(function, "events.")) return CallEffect(function, std::move(args), step);
  if (IsOutsideEffect(function)) return CallEffect(function, std::move(args), step);
  return CallPositional(function, ToPositional(*signature, std::move(args)), frame, step);
}

// StageFile reads its args by reference: this frame owns them while it runs.
Task<Value> Interpreter::StageFileWithArgs(const std::string& function, Map args,
                                           const std::string& step) {
  co_return co_await StageFile(function, args, step);
}

Task<Value> Interpreter::CallPositional(const std::string& function, std::vector<Value> args,
                                        Frame& frame, const std::string& step) {
  if (const lang::Routine* routine = execution_->workflow().FindRoutine(function);
      routine != nullptr && function != "main") {
    if (args.size() > routine->params.size()) {
      lang::Raise("TypeError", "too many arguments calling '" + function + "'");
    }
    Map named;
    for (size_t i = 0; i < args.size(); ++i) named.Set(routine->params[i].name, args[i]);
    co_return co_await CallSubworkflow(*routine, std::move(named), frame);
  }
  const lang::FunctionSignature* signature = lang::FindFunction(function);
  if (signature == nullptr) lang::Raise("TypeError", "unknown function '" + function + "'");
  if (signature->effect) co_return CallLocal(function, args, step);
  if (signature->blocking) {
    lang::Raise("TypeError", function + " is blocking: call it from a call step");
  }
  co_return lang::CallPureFunction(function, std::move(args));
}

Task<Value> Interpreter::CallSubworkflow(const lang::Routine& routine, Map args, Frame& frame) {
  for (const auto& [name, value] : args) {
    bool known = false;
    for (const lang::Param& param : routine.params) known = known || param.name == name;
    if (!known) {
      lang::Raise("TypeError", "unknown argument '" + name + "' calling '" + routine.name + "'");
    }
  }
  co_return co_await RunRoutine(routine, std::move(args), frame.depth() + 1);
}

namespace {

// An effect call's awaiter, built outside the coroutine that awaits it (see SleepAwaiter).
Execution::EffectAwaiter CallAwaiter(Execution* execution, const std::string& function, Map args,
                                     const std::string& step, const txn::Transaction* txn,
                                     double txn_deadline) {
  EffectRequest request;
  request.step = step;
  request.function = function;
  request.args = Value(std::move(args));
  request.needs_intent = true;
  if (txn != nullptr) {
    request.gid = txn->gid();
    request.op = "action";
    request.txn_deadline = txn_deadline;
  }
  return execution->Perform(std::move(request));
}

}  // namespace

Task<Value> Interpreter::CallEffect(const std::string& function, Map args,
                                    const std::string& step) {
  if (!transactions_.empty() && transaction_deadline_ > 0 && !execution_->replaying() &&
      execution_->engine()->NowSeconds() > transaction_deadline_) {
    lang::Raise("TimeoutError", "transaction '" + transactions_.back()->step() +
                                    "' passed its timeout before step '" + step + "'");
  }
  Value url;
  if (const Value* given = args.Find("url"); given != nullptr) url = *given;
  const txn::Transaction* txn = transactions_.empty() ? nullptr : transactions_.back();
  EffectOutcome outcome =
      co_await CallAwaiter(execution_, function, std::move(args), step, txn, transaction_deadline_);
  if (!outcome.ok && StartsWith(function, "http.")) failed_http_url_ = std::move(url);
  if (!outcome.ok) throw lang::RaisedError(std::move(outcome.value));
  co_return std::move(outcome.value);
}

namespace {

// Builds a sleep's awaiter outside the coroutine that awaits it, so that only the awaiter (a
// pointer to the request) waits in that coroutine's frame, not the request it was built from.
Execution::EffectAwaiter SleepAwaiter(Execution* execution, double seconds, const std::string& step,
                                      double txn_deadline) {
  EffectRequest request;
  request.step = step;
  request.function = "sys.sleep";
  request.args = Value(Map{{"seconds", seconds * SleepScale()}});
  request.needs_intent = true;
  request.txn_deadline = txn_deadline;
  return execution->Perform(std::move(request));
}

}  // namespace

Task<Value> Interpreter::Sleep(double seconds, const std::string& step) {
  double deadline = transactions_.empty() ? 0 : transaction_deadline_;
  EffectOutcome outcome = co_await SleepAwaiter(execution_, seconds, step, deadline);
  if (!outcome.ok) throw lang::RaisedError(std::move(outcome.value));
  co_return Value();
}

Value Interpreter::CallLocal(const std::string& function, const std::vector<Value>& args,
                             const std::string& step) {
  if (function == "sys.now") {
    return execution_->Local(function, step,
                             [this] { return Value(execution_->engine()->NowSeconds()); });
  }
  if (function == "uuid.generate") {
    return execution_->Local(function, step, [] { return Value(RandomUuid()); });
  }
  if (function == "sys.get_env") {
    if (args.empty() || !args[0].is_string()) {
      lang::Raise("TypeError", "sys.get_env: 'name' must be a string");
    }
    std::string name = args[0].AsString();
    Value fallback = args.size() > 1 ? args[1] : Value();
    return execution_->Local(function, step, [this, name, fallback] {
      if (name == "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID") return Value(execution_->id());
      if (name == "GOOGLE_CLOUD_WORKFLOW_ID") return Value(execution_->workflow_name());
      const char* value = std::getenv(name.c_str());
      return value ? Value(value) : fallback;
    });
  }
  lang::Raise("TypeError", "unknown function '" + function + "'");
}

void Interpreter::Log(const Map& args, const std::string& step) {
  const Value* severity = args.Find("severity");
  const Value* data = args.Find("data");
  if (data == nullptr) data = args.Find("text");
  if (data == nullptr) data = args.Find("json");
  std::string text = data == nullptr     ? ""
                     : data->is_string() ? data->AsString()
                                         : DebugString(*data);
  std::string level = severity && severity->is_string() ? severity->AsString() : "DEFAULT";
  bool replayed = execution_->replaying();
  execution_->Record("log", {{"step", step}, {"severity", level}, {"text", text}});
  if (!replayed) execution_->engine()->progress()->OnLog(execution_->id(), step, level, text);
}

// The host of a URL ("https://user@host:8443/x" -> "host"); the user part never reaches a label.
void Interpreter::CountRetry(const Value& url) {
  if (execution_->replaying()) return;  // counted by the process that made the retry
  std::string_view text = url.is_string() ? std::string_view(url.AsString()) : "";
  size_t scheme = text.find("://");
  if (scheme != std::string_view::npos) text.remove_prefix(scheme + 3);
  text = text.substr(0, text.find_first_of("/?#"));
  if (size_t at = text.rfind('@'); at != std::string_view::npos) text.remove_prefix(at + 1);
  if (!text.empty() && text.front() == '[') {
    text = text.substr(0, text.find(']') + 1);
  } else {
    text = text.substr(0, text.find(':'));
  }
  metrics::Registry::Global()
      .GetCounter("atomflow_retries_total",
                  "Retries of http.* calls by a retry policy, and of transaction branch "
                  "operations (confirm, cancel, compensate).",
                  {{"host", std::string(text)}})
      ->Add();
}

}  // namespace atomflow::engine
