// The documented limits of the Cloud Workflows language, in one place: the static ones that the
// loader and validator check at deploy time, and the runtime ones with the helpers the
// interpreter calls to enforce them (each raises the error tag Google documents).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "lang/ast.h"
#include "value/value.h"

namespace atomflow::lang {

// Deploy time.
inline constexpr size_t kMaxSourceBytes = 128 * 1024;  // the workflow file
inline constexpr size_t kMaxAssignments = 50;          // items of one `assign`
inline constexpr size_t kMaxSwitchConditions = 50;     // conditions of one `switch`
inline constexpr size_t kMinParallelBranches = 2;      // `branches` of one parallel step
inline constexpr size_t kMaxParallelBranches = 10;
inline constexpr int kMaxParallelNesting = 2;  // parallel steps inside parallel steps
inline constexpr size_t kMaxMainParams = 1;    // the execution argument
inline constexpr size_t kMaxSubworkflowParams = 10;
inline constexpr size_t kMaxStepsPerBlock = 100000;  // one list of steps, as in the schema
// How deep steps may nest (a step inside steps, for, try, switch arms, branches). Google
// documents none; ours keeps the loader's and interpreter's recursion bounded.
inline constexpr int kMaxStepNesting = 100;

// Run time.
inline constexpr int64_t kMaxStepsPerExecution = 100000;  // ResourceLimitError
inline constexpr int kMaxCallDepth = 20;                  // RecursionError
inline constexpr size_t kMaxVariableBytes = 512 * 1024;   // one frame's variables
inline constexpr int kMaxValueDepth = kMaxJsonTextDepth;  // nesting of a variable's value
inline constexpr size_t kMaxStringBytes = 256 * 1024;     // one string value
inline constexpr size_t kMaxArgumentBytes = 32 * 1024;    // the execution argument, as JSON
inline constexpr int kMaxConcurrentBranches = 20;         // branches and iterations at once
inline constexpr int kMaxUnhandledBranchErrors = 100;     // per execution (continueAll)

// Raise ResourceLimitError when an execution is about to run its step number `steps` and that
// is past kMaxStepsPerExecution, and RecursionError when a call would make the call stack
// deeper than kMaxCallDepth (depth counts the calls already under way, main being 0).
void CheckStepCount(int64_t steps);
void CheckCallDepth(int depth, const std::string& routine);

// The memory a value counts for against kMaxVariableBytes: its bytes of text, 8 per scalar,
// and the keys of its maps. Stops counting once the total passes limit, so checking a large
// frame costs at most the limit.
size_t ValueBytes(const Value& value, size_t limit = SIZE_MAX);

// Raises ResourceLimitError when a string in vars is longer than kMaxStringBytes, when a
// variable nests lists and maps deeper than kMaxValueDepth, or when vars together take more
// than kMaxVariableBytes. Cheap for the steps that cannot grow variables: only assign, call
// and switch steps are measured.
void CheckVariableMemory(const Step& step, const Map& vars);

// An error when the execution argument, json_bytes long as JSON, is larger than
// kMaxArgumentBytes; Cloud Workflows refuses to create such an execution.
[[nodiscard]] Status CheckExecutionArgument(size_t json_bytes);

}  // namespace atomflow::lang
