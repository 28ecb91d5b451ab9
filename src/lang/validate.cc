// The deploy-time checks over a loaded workflow: names, calls, jumps and transaction nesting.
#include "lang/validate.h"

#include <algorithm>
#include <set>

#include "lang/expr.h"

namespace atomflow::lang {
namespace {

// Standard-library modules: `http` in `${http.default_retry}` is a library name, not a
// variable.
const std::set<std::string, std::less<>> kModules = {
    "atomflow", "base64", "events", "experimental", "hash", "http", "json", "list",
    "map",      "math",   "retry",  "sys",          "text", "time", "uuid"};

// A block in the chain of blocks a jump may reach. A boundary (a parallel branch or iteration,
// a transaction) ends the chain: a jump cannot leave it.
struct Scope {
  const Block* block = nullptr;
  const Scope* parent = nullptr;
  const char* boundary = nullptr;  // set when parent is outside a boundary: what it is
};

// Where a step sits.
struct Context {
  const Scope* scope = nullptr;
  bool in_for = false;
  bool in_transaction = false;
  std::string step_name;  // the nearest named step, for messages
};

// Checks the routines of one workflow. Holds references to both; lives for one validation.
class Validator {
 public:
  Validator(const Workflow& workflow, Diagnostics& diagnostics)
      : workflow_(workflow), diagnostics_(diagnostics) {}

  void CheckRoutine(const Routine& routine);

 private:
  void CollectVariables(const Block& block);
  void CollectVariables(const Step& step);
  void CheckBlock(const Block& block, Context context, const char* boundary = nullptr);
  void CheckStep(const Step& step, Context context);
  void CheckStepTemplates(const Step& step, const Context& context);
  void CheckChildren(const Step& step, const Context& context);
  void CheckTransactionRules(const Step& step, const Context& context);
  void CheckNext(const Step& step, const Context& context);
  void CheckCall(const CallSpec& call, const Context& context);
  void CheckSubworkflowArgs(const CallSpec& call, const Routine& callee, const Context& context);
  void CheckTemplate(const std::optional<Template>& tmpl, const Context& context);
  void CheckTemplate(const Template& tmpl, const Context& context);
  void CheckExpression(const Expr& expr, SourcePos pos, const Context& context);
  bool IsKnownVariable(const std::string& name) const;
  void Error(SourcePos pos, const std::string& message, const Context& context);

  const Workflow& workflow_;
  Diagnostics& diagnostics_;
  std::set<std::string, std::less<>> variables_;  // of the routine being checked
};

void Validator::CheckRoutine(const Routine& routine) {
  variables_.clear();
  for (const Param& param : routine.params) variables_.insert(param.name);
  CollectVariables(routine.steps);
  CheckBlock(routine.steps, Context{});
}

void Validator::CollectVariables(const Block& block) {
  for (const auto& step : block.steps) CollectVariables(*step);
}

void Validator::CollectVariables(const Step& step) {
  for (const Assignment& assignment : step.assign) variables_.insert(assignment.target.root);
  if (step.call) variables_.insert(step.call->result);
  for (const SwitchCase& arm : step.switch_cases) CollectVariables(*arm.body);

  std::vector<const ForSpec*> loops;
  if (step.for_loop) loops.push_back(&*step.for_loop);
  if (step.parallel) {
    variables_.insert(step.parallel->shared.begin(), step.parallel->shared.end());
    for (const auto& [name, branch] : step.parallel->branches) CollectVariables(branch);
    if (step.parallel->for_loop) loops.push_back(&*step.parallel->for_loop);
  }
  for (const ForSpec* loop : loops) {
    variables_.insert(loop->value);
    variables_.insert(loop->index);
    CollectVariables(loop->steps);
  }

  if (step.try_block) {
    CollectVariables(step.try_block->steps);
    if (step.try_block->except) {
      variables_.insert(step.try_block->except->as);
      CollectVariables(step.try_block->except->steps);
    }
  }
  CollectVariables(step.steps);
  if (step.transaction) CollectVariables(step.transaction->steps);
  if (step.tcc) {
    for (const CallSpec* call : {&step.tcc->try_call, &step.tcc->confirm, &step.tcc->cancel}) {
      variables_.insert(call->result);
    }
  }
  variables_.erase("");
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
  if (step.parallel) {
    // Branches and iterations run concurrently: none can jump out, nor break the outer loop.
    Context branch = context;
    branch.in_for = false;
    for (const auto& [name, block] : step.parallel->branches) {
      CheckBlock(block, branch, "its parallel branch");
    }
    if (step.parallel->for_loop) {
      branch.in_for = true;
      CheckBlock(step.parallel->for_loop->steps, branch, "its parallel for loop");
    }
  }
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

void Validator::CheckTransactionRules(const Step& step, const Context& context) {
  if (context.in_transaction) {
    if (step.transaction) Error(step.pos, "a transaction nested inside a transaction", context);
    return;
  }
  if (step.compensate) Error(step.compensate->pos, "'compensate' outside a transaction", context);
  if (step.tcc) Error(step.pos, "'tcc' outside a transaction", context);
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
  Error(step.next_pos, "undefined next target '" + target + "'", context);
}

void Validator::CheckCall(const CallSpec& call, const Context& context) {
  if (call.function.empty()) return;
  if (const Routine* callee = workflow_.FindRoutine(call.function)) {
    CheckSubworkflowArgs(call, *callee, context);
    return;
  }
  if (FindFunction(call.function) == nullptr) {
    Error(call.pos, "undefined call target '" + call.function + "'", context);
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
      Error(pos, "undefined variable '" + variable + "'", context);
    }
  }

  for (const std::string& function : names.functions) {
    if (workflow_.FindRoutine(function) != nullptr) continue;
    const FunctionSignature* signature = FindFunction(function);
    if (signature != nullptr && signature->blocking) {
      Error(pos, "'" + function + "' blocks, so only a call step can call it", context);
    } else if (signature == nullptr && FindLibraryValue(function) == nullptr) {
      Error(pos, "undefined function '" + function + "'", context);
    }
  }
}

bool Validator::IsKnownVariable(const std::string& name) const {
  return variables_.count(name) != 0 || workflow_.FindRoutine(name) != nullptr ||
         kModules.count(name) != 0;
}

void Validator::Error(SourcePos pos, const std::string& message, const Context& context) {
  diagnostics_.Error(pos, message + " in step '" + context.step_name + "'");
}

}  // namespace

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
