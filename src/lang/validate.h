// Deploy-time checks that need a whole loaded workflow: names that expressions read, call
// targets and their args, jump targets, and where transactions and their branches may appear.
#pragma once

#include <string>
#include <vector>

#include "lang/ast.h"
#include "lang/loader_diagnostics.h"

namespace atomflow::lang {

// Checks a loaded workflow (also one whose load reported structural errors: the checks read
// whatever loaded) and reports every problem into diagnostics, each at the position of the
// offending step, call or expression and naming the step:
// - an expression reads a variable defined nowhere in its routine (variables are params,
//   assign targets, call results, loop variables and `except as` names; what a parallel branch
//   or iteration creates is visible only inside it; subworkflow names and standard-library
//   modules such as `http` or `sys` also resolve);
// - an expression calls an unknown function, a blocking one that only a call step may call,
//   or a function or subworkflow with too many or too few positional args;
// - a call step's target is neither a subworkflow nor a standard-library function, or it
//   passes an unknown named arg or leaves out a required one;
// - two steps of one routine share a name;
// - `next` names a step of neither the current block nor an enclosing one of the same routine
//   (a step inside another step's nested steps cannot be entered; parallel branches and
//   transactions cannot be left); `end` is always valid and `break`/`continue` only inside a
//   for body;
// - a parallel branch writes a parent variable that is not `shared`, a shared variable is not
//   assigned before its parallel step, or parallel steps nest deeper than kMaxParallelNesting;
// - `compensate` or `tcc` outside a transaction, a transaction inside a transaction, a
//   compensation that calls neither http.* nor atomflow.jobs.run, or a tcc phase that does not
//   call http.*.
void ValidateWorkflow(const Workflow& workflow, Diagnostics& diagnostics);

// The same checks, as a Status whose message has one "FILE:LINE:COLUMN: message" line per
// problem.
[[nodiscard]] Status ValidateWorkflow(const Workflow& workflow);

// What a valid workflow does that its author may not expect, one "FILE:LINE:COLUMN: warning:
// message" line each, in file order: a call inside a transaction that changes something outside
// (http.post, put, patch, delete, an http.request that is not a literal GET or HEAD,
// atomflow.jobs.run) with neither compensate: nor tcc: is no branch, and an abort leaves it
// in place.
std::vector<std::string> TransactionWarnings(const Workflow& workflow);

}  // namespace atomflow::lang
