// Measuring values against the runtime limits of limits.h.
#include "lang/limits.h"

#include <string>

#include "lang/error.h"

namespace atomflow::lang {
namespace {

// Scalars (null, booleans, numbers) count as one machine word.
constexpr size_t kScalarBytes = 8;

// Sums the bytes of values until the total passes a limit, noting the first string longer
// than kMaxStringBytes on the way.
class Meter {
 public:
  explicit Meter(size_t limit) : limit_(limit) {}

  void Add(size_t bytes) { total_ += bytes; }

  // depth: the value's own level, 1 for a variable. Below kMaxValueDepth nothing is read, so
  // a value nested deeper (built one level per step) is refused before anything that walks
  // it recursively (the journal's encoding, the destructor) could exhaust a thread's stack.
  void Add(const Value& value, int depth = 1) {
    if (total_ > limit_) return;
    if (depth > kMaxValueDepth) {
      too_deep_ = true;
      return;
    }
    switch (value.type()) {
      case Value::Type::kString:
        AddText(value.AsString());
        return;
      case Value::Type::kBytes:
        total_ += value.AsBytes().size();
        return;
      case Value::Type::kList:
        total_ += kScalarBytes;
        for (const Value& item : value.AsList()) Add(item, depth + 1);
        return;
      case Value::Type::kMap:
        total_ += kScalarBytes;
        for (const auto& [key, item] : value.AsMap()) {
          total_ += key.size();
          Add(item, depth + 1);
        }
        return;
      default:
        total_ += kScalarBytes;
        return;
    }
  }

  size_t total() const { return total_; }
  size_t long_string() const { return long_string_; }
  bool too_deep() const { return too_deep_; }

 private:
  void AddText(const std::string& text) {
    total_ += text.size();
    if (long_string_ == 0 && text.size() > kMaxStringBytes) long_string_ = text.size();
  }

  size_t limit_;
  size_t total_ = 0;
  size_t long_string_ = 0;  // the size of the first string over kMaxStringBytes; 0 when none
  bool too_deep_ = false;   // a value nests deeper than kMaxValueDepth
};

}  // namespace

void CheckStepCount(int64_t steps) {
  if (steps <= kMaxStepsPerExecution) return;
  Raise("ResourceLimitError",
        "the execution exceeded the limit of " + std::to_string(kMaxStepsPerExecution) + " steps");
}

void CheckCallDepth(int depth, const std::string& routine) {
  if (depth < kMaxCallDepth) return;
  Raise("RecursionError", "maximum call depth of " + std::to_string(kMaxCallDepth) +
                              " exceeded calling '" + routine + "'");
}

size_t ValueBytes(const Value& value, size_t limit) {
  Meter meter(limit);
  meter.Add(value);
  return meter.total();
}

namespace {

// Out of line: the messages are built only when the limit is passed, not on every step.
std::string AfterStep(const Step& step) {
  return step.name.empty() ? "" : " after step '" + step.name + "'";
}

[[noreturn]] void RaiseLongString(const Step& step, const std::string& name, size_t bytes) {
  Raise("ResourceLimitError", "variable '" + name + "' holds a string of " + std::to_string(bytes) +
                                  " bytes; the limit is " + std::to_string(kMaxStringBytes) +
                                  AfterStep(step));
}

[[noreturn]] void RaiseTooDeep(const Step& step, const std::string& name) {
  Raise("ResourceLimitError", "variable '" + name +
                                  "' nests lists and maps deeper than the limit of " +
                                  std::to_string(kMaxValueDepth) + " levels" + AfterStep(step));
}

[[noreturn]] void RaiseTooMuchMemory(const Step& step) {
  Raise("ResourceLimitError", "the variables of the workflow take more than " +
                                  std::to_string(kMaxVariableBytes) + " bytes, the memory limit" +
                                  AfterStep(step));
}

}  // namespace

void CheckVariableMemory(const Step& step, const Map& vars) {
  // A switch's arm may assign too.
  if (step.kind != Step::Kind::kAssign && step.kind != Step::Kind::kCall &&
      step.kind != Step::Kind::kSwitch) {
    return;
  }

  Meter meter(kMaxVariableBytes);
  for (const auto& [name, value] : vars) {
    meter.Add(name.size());
    meter.Add(value);
    // A string over its own limit is named first: it is the cause even when the total is
    // passed too.
    if (meter.long_string() != 0) RaiseLongString(step, name, meter.long_string());
    if (meter.too_deep()) RaiseTooDeep(step, name);
    if (meter.total() > kMaxVariableBytes) RaiseTooMuchMemory(step);
  }
}

Status CheckExecutionArgument(size_t json_bytes) {
  if (json_bytes <= kMaxArgumentBytes) return Status::Ok();
  return Status::Error("the execution argument is " + std::to_string(json_bytes) +
                       " bytes of JSON; the limit is " + std::to_string(kMaxArgumentBytes));
}

}  // namespace atomflow::lang
