// The deploy-time checks over a loaded workflow: names, calls, jumps, parallel scopes and
// transaction rules.
#include "lang/validate.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "lang/expr.h"
#include "lang/limits.h"
#include "lang/loader.h"

namespace atomflow::lang {
namespace {

// Standard-library modules: `http` in `${http.default_retry}` is a library name, not a
// variable.
const std::set<std::string, std::less<>> kModules = {
    "atomflow", "base64", "events", "experimental", "hash", "http", "json", "list",
    "map",      "math",   "retry",  "sys",          "text", "time", "uuid"};

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// A compensation runs during an abort, long after its step, and must reach the outside world
// again: only calls that the engine journals as outside effects can do that.
bool CanCompensate(std::string_view function) {
  return StartsWith(function, "http.") || function == "atomflow.jobs.run";
}

// Variables by name, with where each is first defined (0:0 for params).
using Variables = std::map<std::string, SourcePos, std::less<>>;

bool Before(SourcePos a, SourcePos b) {
  return std::pair(a.line, a.column) < std::pair(b.line, b.column);
}

void Define(Variables& variables, const std::string& name, SourcePos pos) {
  if (name.empty()) return;
  auto [it, inserted] = variables.emplace(name, pos);
  if (!inserted && Before(pos, it->second)) it->second = pos;
}

// A block in the chain of blocks a jump may reach. A boundary (a parallel branch or iteration,
// a transaction) ends the chain: a jump cannot leave it.
struct Scope {
  const Block* block = nullptr;
  const Scope* parent = nullptr;
  const char* boundary = nullptr;  // set when parent is outside a boundary: what it is
};

// The parallel step a step runs under: variables of the parent scope are read-only in its
// branches unless shared.
struct ParallelScope {
  Variables outer;  // the variables visible where the parallel step runs
  std::set<std::string, std::less<>> shared;
  SourcePos pos;  // of the parallel step
};

// Where a step sits.
struct Context {
  const Scope* scope = nullptr;
  const ParallelScope* parallel = nullptr;
  int parallel_depth = 0;
  bool in_for = false;
  bool in_transaction = false;
  std::string step_name;  // the nearest named step, for messages
};

// Where a named step is, for duplicate names and jumps into nested blocks.
struct StepSite {
  SourcePos pos;
  std::string parent;  // the named step whose nested steps hold it; empty at the top
};

// Calls visit(block) for every block of steps directly inside step; switch arms are steps of
// their own, not visited.
template <typename Visit>
void ForEachBlock(const Step& step, Visit visit) {
  if (step.for_loop) visit(step.for_loop->steps);
  if (step.parallel) {
    for (const auto& [name, branch] : step.parallel->branches) visit(branch);
    if (step.parallel->for_loop) visit(step.parallel->for_loop->steps);
  }
  if (step.try_block) {
    visit(step.try_block->steps);
    if (step.try_block->except) visit(step.try_block->except->steps);
  }
  visit(step.steps);
  if (step.transaction) visit(step.transaction->steps);
}

// Checks the routines of one workflow. Holds references to both; lives for one validation.
class Validator {
 public:
  Validator(const Workflow& workflow, Diagnostics& diagnostics)
      : workflow_(workflow), diagnostics_(diagnostics) {}

  void CheckRoutine(const Routine& routine);

 private:
  void CollectSteps(const Block& block, const std::string& parent);
  void CollectVariables(const Block& block, Variables& variables) const;
  void CollectVariables(const Step& step, Variables& variables) const;
  void CheckBlock(const Block& block, Context context, const char* boundary = nullptr);
  void CheckStep(const Step& step, Context context);
  void CheckStepTemplates(const Step& step, const Context& context);
  void CheckChildren(const Step& step, const Context& context);
  void CheckParallel(const Step& step, const Context& context);
  void CheckParallelBlock(const Block& block, const Context& context, const Variables& locals,
                          const char* boundary);
  void CheckParallelWrites(const Step& step, const Context& context);
  void CheckTransactionRules(const Step& step, const Context& context);
  void CheckNext(const Step& step, const Context& context);
  void CheckCall(const CallSpec& call, const Context& context);
  void CheckLibraryArgs(const CallSpec& call, const FunctionSignature& signature,
                        const Context& context);
  void CheckSubworkflowArgs(const CallSpec& call, const Routine& callee, const Context& context);
  void CheckTemplate(const std::optional<Template>& tmpl, const Context& context);
  void CheckTemplate(const Template& tmpl, const Context& context);
  void CheckExpression(const Expr& expr, SourcePos pos, const Context& context);
  void CheckFunction(const std::string& function, SourcePos pos, const Context& context);
  void CheckArity(const Expr& expr, SourcePos pos, const Context& context);
  bool IsKnownVariable(const std::string& name) const;
  std::string Suggest(const std::string& name) const;
  void Error(SourcePos pos, const std::string& message, const Context& context);

  const Workflow& workflow_;
  Diagnostics& diagnostics_;
  Variables variables_;                    // visible where the step being checked runs
  std::map<std::string, StepSite> steps_;  // every named step of the routine being checked
};

void Validator::CheckRoutine(const Routine& routine) {
  steps_.clear();
  CollectSteps(routine.steps, "");

  variables_.clear();
  for (const Param& param : routine.params) Define(variables_, param.name, SourcePos{});
  CollectVariables(routine.steps, variables_);
  CheckBlock(routine.steps, Context{});
}

void Validator::CollectSteps(const Block& block, const std::string& parent) {
  for (const auto& step : block.steps) {
    if (!step->name.empty()) {
      auto [it, inserted] = steps_.emplace(step->name, StepSite{step->pos, parent});
      if (!inserted) {
        diagnostics_.Error(step->pos, "duplicate step name '" + step->name + "' (first at line " +
                                          std::to_string(it->second.pos.line) +
                                          "); step names are unique within a routine");
      }
    }
    const std::string& holder = step->name.empty() ? parent : step->name;
    auto collect = [&](const Block& nested) { CollectSteps(nested, holder); };
    ForEachBlock(*step, collect);
    for (const SwitchCase& arm : step->switch_cases) ForEachBlock(*arm.body, collect);
  }
}

void Validator::CollectVariables(const Block& block, Variables& variables) const {
  for (const auto& step : block.steps) CollectVariables(*step, variables);
}

void Validator::CollectVariables(const Step& step, Variables& variables) const {
  for (const Assignment& assignment : step.assign) {
    Define(variables, assignment.target.root, assignment.pos);
  }
  if (step.call) Define(variables, step.call->result, step.call->pos);
  for (const SwitchCase& arm : step.switch_cases) CollectVariables(*arm.body, variables);
  if (step.for_loop) {
    Define(variables, step.for_loop->value, step.pos);
    Define(variables, step.for_loop->index, step.pos);
  }
  if (step.try_block && step.try_block->except) {
    Define(variables, step.try_block->except->as, step.try_block->except->pos);
  }
  if (step.tcc) {
    for (const CallSpec* call : {&step.tcc->try_call, &step.tcc->confirm, &step.tcc->cancel}) {
      Define(variables, call->result, call->pos);
    }
  }
  // What a parallel branch or iteration creates stays inside it (CheckParallel adds it there).
  if (step.parallel) return;
  ForEachBlock(step, [&](const Block& nested) { CollectVariables(nested, variables); });
}

void Validator::CheckBlock(const Block& block, Context context, const char* boundary) {
  Scope scope{&block, context.scope, boundary};
  context.scope = &scope;
  for (const auto& step : block.steps) CheckStep(*step, context);
}

void Validator::CheckStep(const Step& step, Context context) {
  if (!step.name.empty()) context.step_name = step.name;
  CheckStepTemplates(step, context);
  CheckNext(step, context);
  CheckTransactionRules(step, context);
  CheckParallelWrites(step, context);
  if (step.call) CheckCall(*step.call, context);
  if (step.compensate) CheckCall(*step.compensate, context);
  if (step.tcc) {
    for (const CallSpec* call : {&step.tcc->try_call, &step.tcc->confirm, &step.tcc->cancel}) {
      CheckCall(*call, context);
    }
  }
  CheckChildren(step, context);
}

void Validator::CheckStepTemplates(const Step& step, const Context& context) {
  for (const Assignment& assignment : step.assign) {
    for (const AssignTarget::Accessor& accessor : assignment.target.path) {
      if (accessor.index) CheckExpression(*accessor.index, assignment.pos, context);
    }
    CheckTemplate(assignment.value, context);
  }
  for (const CallSpec* call :
       {step.call ? &*step.call : nullptr, step.compensate ? &*step.compensate : nullptr}) {
    if (call == nullptr) continue;
    for (const auto& [name, value] : call->args) CheckTemplate(value, context);
  }
  for (const SwitchCase& arm : step.switch_cases) CheckTemplate(arm.condition, context);
  if (step.for_loop) {
    CheckTemplate(step.for_loop->in, context);
    CheckTemplate(step.for_loop->range, context);
  }
  if (step.parallel) {
    CheckTemplate(step.parallel->concurrency_limit, context);
    if (step.parallel->for_loop) {
      CheckTemplate(step.parallel->for_loop->in, context);
      CheckTemplate(step.parallel->for_loop->range, context);
    }
  }
  CheckTemplate(step.raise, context);
  CheckTemplate(step.return_value, context);
  if (step.try_block && step.try_block->retry) {
    const RetrySpec& retry = *step.try_block->retry;
    for (const std::optional<Template>* field :
         {&retry.policy, &retry.predicate, &retry.max_retries, &retry.initial_delay,
          &retry.max_delay, &retry.multiplier}) {
      CheckTemplate(*field, context);
    }
  }
  if (step.transaction) CheckTemplate(step.transaction->timeout, context);
  if (step.tcc) {
    for (const CallSpec* call : {&step.tcc->try_call, &step.tcc->confirm, &step.tcc->cancel}) {
      for (const auto& [name, value] : call->args) CheckTemplate(value, context);
    }
  }
}

void Validator::CheckChildren(const Step& step, const Context& context) {
  // A switch arm runs in the switch step's place, so it jumps from the same block.
  for (const SwitchCase& arm : step.switch_cases) CheckStep(*arm.body, context);
  if (step.for_loop) {
    Context body = context;
    body.in_for = true;
    CheckBlock(step.for_loop->steps, body);
  }
  if (step.parallel) CheckParallel(step, context);
  if (step.try_block) {
    CheckBlock(step.try_block->steps, context);
    if (step.try_block->except) CheckBlock(step.try_block->except->steps, context);
  }
  CheckBlock(step.steps, context);
  if (step.transaction) {
    Context body = context;
    body.in_transaction = true;
    CheckBlock(step.transaction->steps, body, "its transaction");
  }
}

void Validator::CheckParallel(const Step& step, const Context& context) {
  const ParallelSpec& spec = *step.parallel;
  if (context.parallel_depth + 1 > kMaxParallelNesting) {
    Error(step.pos,
          "parallel steps nest more than " + std::to_string(kMaxParallelNesting) + " deep",
          context);
  }

  ParallelScope scope;
  scope.outer = variables_;
  scope.pos = step.pos;
  // Shared names do not cascade into a nested parallel step, but what the outer step shares
  // is already writable where the nested one runs.
  if (context.parallel != nullptr) scope.shared = context.parallel->shared;
  for (const std::string& name : spec.shared) {
    scope.shared.insert(name);
    auto it = variables_.find(name);
    if (it == variables_.end() || !Before(it->second, step.pos)) {
      Error(step.pos, "shared variable '" + name + "' must be assigned before the parallel step",
            context);
    }
  }

  // Branches and iterations run concurrently: none can jump out, nor break the outer loop.
  Context branch = context;
  branch.parallel = &scope;
  branch.parallel_depth = context.parallel_depth + 1;
  branch.in_for = false;
  for (const auto& [name, block] : spec.branches) {
    CheckParallelBlock(block, branch, Variables{}, "its parallel branch");
  }
  if (spec.for_loop) {
    branch.in_for = true;
    Variables loop;
    Define(loop, spec.for_loop->value, step.pos);
    Define(loop, spec.for_loop->index, step.pos);
    CheckParallelBlock(spec.for_loop->steps, branch, loop, "its parallel for loop");
  }
}

void Validator::CheckParallelBlock(const Block& block, const Context& context,
                                   const Variables& locals, const char* boundary) {
  // A branch sees the parent's variables and its own, never a sibling branch's.
  Variables outer = variables_;
  Variables own = locals;
  CollectVariables(block, own);
  for (const auto& [name, pos] : own) Define(variables_, name, pos);
  CheckBlock(block, context, boundary);
  variables_ = std::move(outer);
}

void Validator::CheckParallelWrites(const Step& step, const Context& context) {
  const ParallelScope* parallel = context.parallel;
  if (parallel == nullptr) return;
  auto check = [&](const std::string& name, SourcePos pos) {
    if (name.empty() || parallel->shared.count(name) != 0) return;
    auto it = parallel->outer.find(name);
    // A parent variable is one that exists when the parallel step starts.
    if (it == parallel->outer.end() || !Before(it->second, parallel->pos)) return;
    Error(pos,
          "variable '" + name +
              "' of the parent scope is read-only in a parallel branch; list it in 'shared'",
          context);
  };
  for (const Assignment& assignment : step.assign) check(assignment.target.root, assignment.pos);
  if (step.call) check(step.call->result, step.call->pos);
}

void Validator::CheckTransactionRules(const Step& step, const Context& context) {
  if (!context.in_transaction) {
    if (step.compensate) Error(step.compensate->pos, "'compensate' outside a transaction", context);
    if (step.tcc) Error(step.pos, "'tcc' outside a transaction", context);
    return;
  }
  if (step.transaction) Error(step.pos, "a transaction nested inside a transaction", context);

  // An unknown function is reported by CheckCall; here, known ones that cannot undo.
  if (step.compensate && !step.compensate->function.empty() &&
      !CanCompensate(step.compensate->function)) {
    Error(step.compensate->pos,
          "'compensate' calls '" + step.compensate->function +
              "', which cannot run as a compensation (use http.* or atomflow.jobs.run)",
          context);
  }
  if (step.tcc) {
    for (const CallSpec* call : {&step.tcc->try_call, &step.tcc->confirm, &step.tcc->cancel}) {
      if (call->function.empty() || StartsWith(call->function, "http.")) continue;
      Error(call->pos,
            "a tcc phase calls '" + call->function + "'; try, confirm and cancel call http.*",
            context);
    }
  }
}

void Validator::CheckNext(const Step& step, const Context& context) {
  const std::string& target = step.next;
  if (target.empty() || target == "end") return;
  if (target == "break" || target == "continue") {
    if (!context.in_for) Error(step.next_pos, "'" + target + "' outside a for loop", context);
    return;
  }

  const char* crossed = nullptr;
  for (const Scope* scope = context.scope; scope != nullptr; scope = scope->parent) {
    if (scope->block->index.count(target) == 0) {
      if (crossed == nullptr) crossed = scope->boundary;
      continue;
    }
    if (crossed != nullptr) {
      Error(step.next_pos, "a jump to '" + target + "' cannot leave " + crossed, context);
    }
    return;
  }

  auto site = steps_.find(target);
  if (site != steps_.end()) {
    Error(step.next_pos,
          "a jump to '" + target + "' cannot enter the nested steps of step '" +
              site->second.parent + "' (a next reaches steps of its own or an enclosing block)",
          context);
    return;
  }
  Error(step.next_pos, "undefined next target '" + target + "'", context);
}

void Validator::CheckCall(const CallSpec& call, const Context& context) {
  if (call.function.empty()) return;
  if (const Routine* callee = workflow_.FindRoutine(call.function)) {
    CheckSubworkflowArgs(call, *callee, context);
    return;
  }
  const FunctionSignature* signature = FindFunction(call.function);
  if (signature == nullptr) {
    Error(call.pos, "undefined call target '" + call.function + "'", context);
    return;
  }
  CheckLibraryArgs(call, *signature, context);
}

void Validator::CheckLibraryArgs(const CallSpec& call, const FunctionSignature& signature,
                                 const Context& context) {
  std::vector<std::string_view> params(signature.params.begin(), signature.params.end());
  for (const auto& [name, value] : call.args) {
    if (std::find(params.begin(), params.end(), name) != params.end()) continue;
    std::string message = "unknown arg '" + name + "' for " + call.function;
    std::string suggestion = SuggestKey(name, params);
    if (!suggestion.empty()) message += " (did you mean '" + suggestion + "'?)";
    Error(value.pos, message, context);
  }

  for (size_t i = 0; i < signature.required; ++i) {
    const std::string& param = signature.params[i];
    bool given = std::any_of(call.args.begin(), call.args.end(),
                             [&](const auto& arg) { return arg.first == param; });
    if (!given) {
      Error(call.pos, "missing required arg '" + param + "' for " + call.function, context);
    }
  }
}

void Validator::CheckSubworkflowArgs(const CallSpec& call, const Routine& callee,
                                     const Context& context) {
  auto has_param = [&](const std::string& name) {
    return std::any_of(callee.params.begin(), callee.params.end(),
                       [&](const Param& param) { return param.name == name; });
  };
  for (const auto& [name, value] : call.args) {
    if (!has_param(name)) {
      Error(value.pos, "unknown arg '" + name + "' for subworkflow '" + callee.name + "'", context);
    }
  }

  for (const Param& param : callee.params) {
    if (param.default_value) continue;
    bool given = std::any_of(call.args.begin(), call.args.end(),
                             [&](const auto& arg) { return arg.first == param.name; });
    if (!given) {
      Error(call.pos,
            "missing required arg '" + param.name + "' for subworkflow '" + callee.name + "'",
            context);
    }
  }
}

void Validator::CheckTemplate(const std::optional<Template>& tmpl, const Context& context) {
  if (tmpl) CheckTemplate(*tmpl, context);
}

void Validator::CheckTemplate(const Template& tmpl, const Context& context) {
  switch (tmpl.kind) {
    case Template::Kind::kLiteral:
      return;
    case Template::Kind::kExpression:
      if (tmpl.expression) CheckExpression(*tmpl.expression, tmpl.pos, context);
      return;
    case Template::Kind::kList:
      for (const Template& item : tmpl.items) CheckTemplate(item, context);
      return;
    case Template::Kind::kMap:
      for (const auto& [key, value] : tmpl.entries) {
        CheckTemplate(key, context);
        CheckTemplate(value, context);
      }
      return;
  }
}

void Validator::CheckExpression(const Expr& expr, SourcePos pos, const Context& context) {
  ExprNames names = CollectNames(expr);
  for (const std::string& variable : names.variables) {
    if (!IsKnownVariable(variable)) {
      Error(pos, "undefined variable '" + variable + "'" + Suggest(variable), context);
    }
  }
  for (const std::string& function : names.functions) CheckFunction(function, pos, context);
  CheckArity(expr, pos, context);
}

void Validator::CheckFunction(const std::string& function, SourcePos pos, const Context& context) {
  if (workflow_.FindRoutine(function) != nullptr) return;
  const FunctionSignature* signature = FindFunction(function);
  if (signature != nullptr && signature->blocking) {
    Error(pos, "'" + function + "' blocks, so only a call step can call it", context);
  } else if (signature == nullptr && FindLibraryValue(function) == nullptr) {
    Error(pos, "undefined function '" + function + "'", context);
  }
}

void Validator::CheckArity(const Expr& expr, SourcePos pos, const Context& context) {
  for (const auto& operand : expr.operands) {
    if (operand) CheckArity(*operand, pos, context);
  }
  if (expr.kind != Expr::Kind::kCall) return;

  size_t given = expr.operands.size();
  size_t most = 0;
  size_t required = 0;
  std::string what;
  if (const Routine* callee = workflow_.FindRoutine(expr.name)) {
    most = callee->params.size();
    // Positional args fill params in order; each param left over needs a default.
    for (size_t i = 0; i < callee->params.size(); ++i) {
      if (!callee->params[i].default_value) required = i + 1;
    }
    what = "subworkflow '" + expr.name + "'";
  } else if (const FunctionSignature* signature = FindFunction(expr.name)) {
    most = signature->params.size();
    required = signature->required;
    what = "'" + expr.name + "'";
  } else {
    return;  // reported as undefined
  }

  if (given > most) {
    Error(pos,
          what + " takes at most " + std::to_string(most) + " args; got " + std::to_string(given),
          context);
  } else if (given < required) {
    Error(pos,
          what + " needs at least " + std::to_string(required) + " args; got " +
              std::to_string(given),
          context);
  }
}

bool Validator::IsKnownVariable(const std::string& name) const {
  return variables_.count(name) != 0 || workflow_.FindRoutine(name) != nullptr ||
         kModules.count(name) != 0;
}

std::string Validator::Suggest(const std::string& name) const {
  std::vector<std::string_view> candidates;
  for (const auto& [variable, pos] : variables_) candidates.push_back(variable);
  std::string suggestion = SuggestKey(name, candidates);
  return suggestion.empty() ? "" : " (did you mean '" + suggestion + "'?)";
}

void Validator::Error(SourcePos pos, const std::string& message, const Context& context) {
  diagnostics_.Error(pos, message + " in step '" + context.step_name + "'");
}

// Whether a call reaches outside and no transaction undoes it unless it is a branch: writes
// over HTTP and jobs. Reads (http.get, an http.request whose method is a literal GET or HEAD),
// sys.log, sleeps and the standard library change nothing outside; staged files and SQL join
// a transaction by themselves.
bool NeedsUndo(const CallSpec& call) {
  static const std::set<std::string, std::less<>> kWrites = {"http.post", "http.put", "http.patch",
                                                             "http.delete", "atomflow.jobs.run"};
  if (kWrites.count(call.function) != 0) return true;
  if (call.function != "http.request") return false;
  for (const auto& [name, value] : call.args) {
    if (name != "method" || value.kind != Template::Kind::kLiteral) continue;
    if (!value.literal.is_string()) return true;
    std::string method = value.literal.AsString();
    std::transform(method.begin(), method.end(), method.begin(), ::toupper);
    return method != "GET" && method != "HEAD";
  }
  return true;  // the method is computed (or missing): it may write
}

// Appends a warning for each call in step (and the steps inside it) that NeedsUndo and is
// inside `transaction` (empty: outside any) with neither compensate: nor tcc:. `named` is the
// nearest named step, for the message (an inline try body or a switch arm has no name).
void CollectUndoWarnings(const Step& step, const std::string& transaction, std::string named,
                         std::vector<std::pair<SourcePos, std::string>>& out) {
  if (!step.name.empty()) named = step.name;
  if (!transaction.empty() && step.call && !step.compensate && NeedsUndo(*step.call)) {
    out.emplace_back(step.call->pos,
                     step.call->function + " in step '" + named + "' has neither " +
                         "compensate: nor tcc:, so it is no branch of transaction '" + transaction +
                         "': an abort does not undo it");
  }
  for (const SwitchCase& arm : step.switch_cases) {
    CollectUndoWarnings(*arm.body, transaction, named, out);
  }
  ForEachBlock(step, [&](const Block& block) {
    bool body = step.transaction && &block == &step.transaction->steps;
    for (const auto& nested : block.steps) {
      CollectUndoWarnings(*nested, body ? step.name : transaction, named, out);
    }
  });
}

}  // namespace

std::vector<std::string> TransactionWarnings(const Workflow& workflow) {
  std::vector<std::pair<SourcePos, std::string>> found;
  for (const auto& [name, routine] : workflow.routines) {
    for (const auto& step : routine.steps.steps) {
      CollectUndoWarnings(*step, "", "", found);
    }
  }
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.first.line, a.first.column) <
           std::make_pair(b.first.line, b.first.column);
  });
  std::vector<std::string> lines;
  for (const auto& [pos, message] : found) {
    lines.push_back(workflow.file + ":" + std::to_string(pos.line) + ":" +
                    std::to_string(pos.column) + ": warning: " + message);
  }
  return lines;
}

void ValidateWorkflow(const Workflow& workflow, Diagnostics& diagnostics) {
  Validator validator(workflow, diagnostics);
  for (const auto& [name, routine] : workflow.routines) validator.CheckRoutine(routine);
}

Status ValidateWorkflow(const Workflow& workflow) {
  Diagnostics diagnostics(workflow.file);
  ValidateWorkflow(workflow, diagnostics);
  return diagnostics.ToStatus();
}

}  // namespace atomflow::lang
