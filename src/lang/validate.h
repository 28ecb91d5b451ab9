// Deploy-time checks that need a whole loaded workflow: names that expressions read, call
// targets and their args, jump targets, and where transactions and their branches may appear.
#pragma once

#include "lang/ast.h"
#include "lang/loader_diagnostics.h"

namespace atomflow::lang {

// Checks a workflow whose tree loaded without errors and reports every problem into
// diagnostics, each at the position of the offending step, call or expression and naming the
// step:
// - an expression reads a variable defined nowhere in its routine (variables are params,
//   assign targets, call results, loop variables, `except as` names and parallel shared names;
//   subworkflow names and standard-library modules such as `http` or `sys` also resolve);
// - an expression calls an unknown function, or a blocking one that only a call step may call;
// - a call step's target is neither a subworkflow nor a standard-library function, or it calls
//   a subworkflow with an unknown named arg or without a required one;
// - `next` names a step of neither the current block nor an enclosing one of the same routine
//   (parallel branches and transactions cannot be left by a jump); `end` is always valid and
//   `break`/`continue` only inside a for body;
// - `compensate` or `tcc` outside a transaction, or a transaction inside a transaction.
void ValidateWorkflow(const Workflow& workflow, Diagnostics& diagnostics);

// The same checks, as a Status whose message has one "FILE:LINE:COLUMN: message" line per
// problem.
[[nodiscard]] Status ValidateWorkflow(const Workflow& workflow);

}  // namespace atomflow::lang
