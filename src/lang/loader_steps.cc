// Loading blocks of steps and every kind of step body, with the structural checks that need
// only the step itself (unknown keys, two actions, keys that need another key, limits).
#include <algorithm>

#include "lang/loader.h"
#include "lang/stdlib.h"

namespace atomflow::lang {
namespace {

// The keys that make a step do something; a body holds at most one.
const std::vector<std::string_view> kActionKeys = {"assign",   "call",        "switch", "for",
                                                   "parallel", "raise",       "return", "try",
                                                   "steps",    "transaction", "tcc"};

// Every key a step body may hold.
const std::vector<std::string_view> kStepKeys = {
    "assign", "call",  "args",   "result", "next",  "switch",      "for", "parallel",  "raise",
    "try",    "retry", "except", "return", "steps", "transaction", "tcc", "compensate"};

std::vector<std::string_view> SwitchArmKeys() {
  std::vector<std::string_view> keys = kStepKeys;
  keys.push_back("condition");
  return keys;
}

// Keys that mean nothing without another key of the body.
struct KeyDependency {
  std::string_view key;
  std::string_view needs;
};
constexpr KeyDependency kDependencies[] = {
    {"args", "call"}, {"result", "call"}, {"compensate", "call"},
    {"retry", "try"}, {"except", "try"},
};

const std::map<std::string_view, Step::Kind> kKindOfAction = {
    {"assign", Step::Kind::kAssign},     {"call", Step::Kind::kCall},
    {"switch", Step::Kind::kSwitch},     {"for", Step::Kind::kFor},
    {"parallel", Step::Kind::kParallel}, {"raise", Step::Kind::kRaise},
    {"return", Step::Kind::kReturn},     {"try", Step::Kind::kTry},
    {"steps", Step::Kind::kSteps},       {"transaction", Step::Kind::kTransaction},
    {"tcc", Step::Kind::kTcc},
};

bool IsAction(std::string_view key) {
  return std::find(kActionKeys.begin(), kActionKeys.end(), key) != kActionKeys.end();
}

// Restores the step name used in messages when a nested step's load ends.
class StepNameScope {
 public:
  StepNameScope(std::string& slot, std::string name) : slot_(slot), saved_(std::move(slot)) {
    slot_ = std::move(name);
  }
  ~StepNameScope() { slot_ = std::move(saved_); }

 private:
  std::string& slot_;
  std::string saved_;
};

}  // namespace

Block WorkflowLoader::LoadBlock(const YAML::Node& node, std::string_view what) {
  Block block;
  if (!node.IsSequence() || node.size() == 0) {
    Error(node, "the steps of " + std::string(what) + " must be a non-empty list of steps");
    return block;
  }
  if (node.size() > kMaxStepsPerBlock) {
    Error(node, "the steps of " + std::string(what) + " are " + std::to_string(node.size()) +
                    " steps; the limit is " + std::to_string(kMaxStepsPerBlock));
    return block;
  }
  if (block_depth_ >= kMaxStepNesting) {
    Error(node, "the steps of " + std::string(what) + " nest more than " +
                    std::to_string(kMaxStepNesting) + " levels deep");
    return block;
  }

  ++block_depth_;
  for (const YAML::Node& item : node) {
    std::shared_ptr<const Step> step = LoadStep(item);
    if (!step) continue;
    // Duplicate names are reported by the validator, which sees the whole routine: names are
    // unique per routine, not only per block. A jump reaches the first of two.
    block.index.emplace(step->name, block.steps.size());
    block.steps.push_back(std::move(step));
  }
  --block_depth_;
  return block;
}

std::shared_ptr<const Step> WorkflowLoader::LoadStep(const YAML::Node& item) {
  if (!item.IsMap() || item.size() != 1) {
    Error(item, "a step must be a map with exactly one key, the step name");
    return nullptr;
  }
  auto entry = item.begin();
  auto step = std::make_shared<Step>();
  step->name = LoadString(entry->first, "a step name");
  step->pos = PosOf(entry->first);
  if (step->name.empty()) return nullptr;

  StepNameScope scope(step_name_, step->name);
  std::string what = "step '" + step->name + "'";
  if (!entry->second.IsMap()) {
    Error(entry->first, "the body of " + what + " must be a map");
    return step;
  }
  LoadBody(LoadKeyedMap(entry->second, what), BodyRole::kStep, *step);
  return step;
}

void WorkflowLoader::LoadBody(const KeyedMap& body, BodyRole role, Step& step) {
  size_t errors_before = diagnostics_.count();
  bool keys_ok = CheckBodyKeys(body, role);
  const KeyedMap::Entry* action = FindAction(body);
  CheckKeyDependencies(body);

  if (action != nullptr) {
    step.kind = kKindOfAction.at(action->key);
    LoadAction(*action, body, step);
  }
  LoadNext(body, step);

  // A step needs something to do; a switch arm may just end the switch. Other errors in the
  // body already explain what is missing.
  bool does_nothing = action == nullptr && !body.Has("next");
  if (does_nothing && role != BodyRole::kSwitchArm && keys_ok &&
      diagnostics_.count() == errors_before) {
    Error(step.pos, "step '" + step_name_ + "' does nothing (expected one of assign, call, " +
                        "switch, for, parallel, raise, return, try, steps, next)");
  }
}

bool WorkflowLoader::CheckBodyKeys(const KeyedMap& body, BodyRole role) {
  size_t errors_before = diagnostics_.count();
  std::string what = "step '" + step_name_ + "'";
  if (role == BodyRole::kSwitchArm) {
    CheckKeys(body, SwitchArmKeys(), "a switch condition of " + what);
  } else {
    CheckKeys(body, kStepKeys, what);
  }
  return diagnostics_.count() == errors_before;
}

const KeyedMap::Entry* WorkflowLoader::FindAction(const KeyedMap& body) {
  const KeyedMap::Entry* action = nullptr;
  for (const KeyedMap::Entry& entry : body.entries()) {
    if (!IsAction(entry.key)) continue;
    if (action != nullptr) {
      Error(entry.key_node, "step '" + step_name_ + "' has two actions: '" + action->key +
                                "' and '" + entry.key + "'");
      continue;
    }
    action = &entry;
  }
  return action;
}

void WorkflowLoader::CheckKeyDependencies(const KeyedMap& body) {
  for (const KeyDependency& dependency : kDependencies) {
    const KeyedMap::Entry* entry = body.Find(dependency.key);
    if (entry == nullptr || body.Has(dependency.needs)) continue;
    Error(entry->key_node, "'" + std::string(dependency.key) + "' without '" +
                               std::string(dependency.needs) + "'" + InStep());
  }
}

void WorkflowLoader::LoadAction(const KeyedMap::Entry& action, const KeyedMap& body, Step& step) {
  const YAML::Node& node = action.value;
  std::string what = "step '" + step_name_ + "'";
  switch (step.kind) {
    case Step::Kind::kAssign:
      step.assign = LoadAssign(node);
      break;
    case Step::Kind::kCall:
      step.call = LoadCall(body, action.key_node);
      if (const KeyedMap::Entry* compensate = body.Find("compensate")) {
        step.compensate = LoadCallBody(compensate->value, "'compensate' of " + what, false);
      }
      break;
    case Step::Kind::kSwitch:
      step.switch_cases = LoadSwitch(node);
      break;
    case Step::Kind::kFor:
      step.for_loop = LoadFor(node, "'for' of " + what);
      break;
    case Step::Kind::kParallel:
      step.parallel = LoadParallel(node);
      break;
    case Step::Kind::kRaise:
      step.raise = LoadTemplate(node);
      break;
    case Step::Kind::kReturn:
      step.return_value = LoadTemplate(node);
      // A bare `return:` has no node of its own to point at.
      if (node.IsNull()) step.return_value->pos = PosOf(action.key_node);
      break;
    case Step::Kind::kTry:
      step.try_block = LoadTry(body);
      break;
    case Step::Kind::kSteps:
      step.steps = LoadBlock(node, what);
      break;
    case Step::Kind::kTransaction:
      step.transaction = LoadTransaction(node);
      break;
    case Step::Kind::kTcc:
      step.tcc = LoadTcc(node);
      break;
    case Step::Kind::kNext:
      break;
  }
}

void WorkflowLoader::LoadNext(const KeyedMap& body, Step& step) {
  const KeyedMap::Entry* next = body.Find("next");
  if (next == nullptr) return;
  step.next = LoadString(*next, "a step name");
  step.next_pos = next->value.IsNull() ? PosOf(next->key_node) : PosOf(next->value);
}

std::vector<Assignment> WorkflowLoader::LoadAssign(const YAML::Node& node) {
  std::vector<Assignment> assignments;
  if (!node.IsSequence() || node.size() == 0) {
    Error(node, "'assign' must be a non-empty list of single-key maps" + InStep());
    return assignments;
  }
  if (node.size() > kMaxAssignments) {
    Error(node, "step '" + step_name_ + "' has " + std::to_string(node.size()) +
                    " assignments; the limit is " + std::to_string(kMaxAssignments));
  }

  for (const YAML::Node& item : node) {
    if (!item.IsMap() || item.size() != 1) {
      Error(item, "an assignment must be a map with one key, the variable" + InStep());
      continue;
    }
    auto entry = item.begin();
    Assignment assignment;
    assignment.target_text = LoadString(entry->first, "a variable to assign");
    assignment.pos = PosOf(entry->first);
    Result<AssignTarget> target = ParseAssignTarget(assignment.target_text);
    if (!target.ok()) {
      Error(entry->first, "bad assignment target '" + assignment.target_text + "'" + InStep() +
                              ": " + target.message());
    } else {
      assignment.target = std::move(target.value());
    }
    assignment.value = LoadTemplate(entry->second);
    assignments.push_back(std::move(assignment));
  }
  return assignments;
}

CallSpec WorkflowLoader::LoadCall(const KeyedMap& body, const YAML::Node& call_key) {
  CallSpec call;
  call.pos = PosOf(call_key);
  call.function = LoadString(*body.Find("call"), "a function or workflow name");

  if (const KeyedMap::Entry* args = body.Find("args")) {
    if (args->value.IsMap()) {
      for (auto it = args->value.begin(); it != args->value.end(); ++it) {
        call.args.emplace_back(LoadString(it->first, "an argument name"), LoadTemplate(it->second));
      }
    } else if (!args->value.IsNull()) {
      Error(args->value, "'args' must be a map of argument names to values" + InStep());
    }
  }
  if (const KeyedMap::Entry* result = body.Find("result")) {
    call.result = LoadName(*result, "the 'result' variable");
  }
  return call;
}

CallSpec WorkflowLoader::LoadCallBody(const YAML::Node& node, std::string_view what,
                                      bool allow_result) {
  KeyedMap body = LoadKeyedMap(node, what);
  if (allow_result) {
    CheckKeys(body, {"call", "args", "result"}, what);
  } else {
    CheckKeys(body, {"call", "args"}, what);
  }
  if (!Require(body, "call", node, what)) return CallSpec{};
  return LoadCall(body, body.Find("call")->key_node);
}

std::vector<SwitchCase> WorkflowLoader::LoadSwitch(const YAML::Node& node) {
  std::vector<SwitchCase> cases;
  if (!node.IsSequence() || node.size() == 0) {
    Error(node, "'switch' must be a non-empty list of conditions" + InStep());
    return cases;
  }
  if (node.size() > kMaxSwitchConditions) {
    Error(node, "step '" + step_name_ + "' has " + std::to_string(node.size()) +
                    " switch conditions; the limit is " + std::to_string(kMaxSwitchConditions));
  }

  for (const YAML::Node& arm : node) {
    std::string what = "a switch condition of step '" + step_name_ + "'";
    KeyedMap keys = LoadKeyedMap(arm, what);
    if (!arm.IsMap() || !Require(keys, "condition", arm, what)) continue;

    SwitchCase switch_case;
    switch_case.pos = PosOf(arm);
    switch_case.condition = LoadTemplate(keys.Find("condition")->value);
    CheckCondition(switch_case.condition);
    auto body = std::make_shared<Step>();
    body->pos = switch_case.pos;
    LoadBody(keys, BodyRole::kSwitchArm, *body);
    switch_case.body = std::move(body);
    cases.push_back(std::move(switch_case));
  }
  return cases;
}

ForSpec WorkflowLoader::LoadFor(const YAML::Node& node, std::string_view what) {
  ForSpec spec;
  KeyedMap keys = LoadKeyedMap(node, what);
  if (!node.IsMap()) return spec;
  CheckKeys(keys, {"value", "index", "in", "range", "steps"}, what);

  if (Require(keys, "value", node, what)) {
    spec.value = LoadName(*keys.Find("value"), "the loop variable");
  }
  if (const KeyedMap::Entry* index = keys.Find("index")) {
    spec.index = LoadName(*index, "the loop index");
  }
  const KeyedMap::Entry* in = keys.Find("in");
  const KeyedMap::Entry* range = keys.Find("range");
  if (in != nullptr && range != nullptr) {
    Error(range->key_node, std::string(what) + " has both 'in' and 'range'");
  } else if (in == nullptr && range == nullptr) {
    Error(node, std::string(what) + " needs 'in' or 'range'");
  }
  if (in != nullptr) {
    spec.in = LoadTemplate(in->value);
    CheckForIn(*spec.in, what);
  }
  if (range != nullptr) {
    spec.range = LoadTemplate(range->value);
    CheckRange(*spec.range, what);
  }
  if (Require(keys, "steps", node, what)) spec.steps = LoadBlock(keys.Find("steps")->value, what);
  return spec;
}

void WorkflowLoader::CheckForIn(const Template& in, std::string_view what) {
  // A list with expressions inside is still a list; only a literal of another kind is wrong.
  if (in.kind != Template::Kind::kLiteral || in.literal.is_list()) return;
  Error(in.pos, "'in' of " + std::string(what) + " must be a list or an expression; got " +
                    in.literal.TypeName());
}

void WorkflowLoader::CheckCondition(const Template& condition) {
  if (condition.kind == Template::Kind::kExpression) return;
  if (condition.kind == Template::Kind::kLiteral && condition.literal.is_bool()) return;
  std::string got = condition.kind == Template::Kind::kLiteral
                        ? std::string(condition.literal.TypeName())
                        : (condition.kind == Template::Kind::kList ? "list" : "map");
  Error(condition.pos,
        "a switch condition" + InStep() + " must be an expression ${...} or a boolean; got " + got);
}

void WorkflowLoader::CheckRange(const Template& range, std::string_view what) {
  // An expression is checked when it runs; a literal can be checked now.
  if (range.kind == Template::Kind::kExpression) return;
  const Value& value = range.literal;
  bool ok = range.kind == Template::Kind::kLiteral && value.is_list() &&
            value.AsList().size() == 2 && value.AsList()[0].is_number() &&
            value.AsList()[1].is_number();
  if (!ok) {
    Error(range.pos, "'range' of " + std::string(what) + " must be a list of two numbers");
  }
}

ParallelSpec WorkflowLoader::LoadParallel(const YAML::Node& node) {
  ParallelSpec spec;
  std::string what = "'parallel' of step '" + step_name_ + "'";
  KeyedMap keys = LoadKeyedMap(node, what);
  if (!node.IsMap()) return spec;
  CheckKeys(keys, {"shared", "concurrency_limit", "exception_policy", "branches", "for"}, what);

  if (const KeyedMap::Entry* shared = keys.Find("shared")) {
    spec.shared = LoadNameList(shared->value, "shared variables");
  }
  if (const KeyedMap::Entry* limit = keys.Find("concurrency_limit")) {
    spec.concurrency_limit = LoadTemplate(limit->value);
    CheckNumber(*spec.concurrency_limit, "'concurrency_limit'", true, false);
  }
  if (const KeyedMap::Entry* policy = keys.Find("exception_policy")) {
    spec.exception_policy = LoadString(*policy, "an exception policy");
    if (spec.exception_policy != "continueAll") {
      Error(policy->value, "unknown exception_policy '" + spec.exception_policy + "'" + InStep() +
                               " (the only policy is 'continueAll')");
    }
  }

  const KeyedMap::Entry* branches = keys.Find("branches");
  const KeyedMap::Entry* loop = keys.Find("for");
  if ((branches == nullptr) == (loop == nullptr)) {
    Error(node, what + " needs exactly one of 'branches' and 'for'");
  }
  if (branches != nullptr) spec.branches = LoadBranches(branches->value);
  if (loop != nullptr) spec.for_loop = LoadFor(loop->value, "'for' of " + what);
  return spec;
}

std::vector<std::pair<std::string, Block>> WorkflowLoader::LoadBranches(const YAML::Node& node) {
  std::vector<std::pair<std::string, Block>> branches;
  if (!node.IsSequence() || node.size() == 0) {
    Error(node, "'branches' must be a non-empty list of named branches" + InStep());
    return branches;
  }

  if (node.size() < kMinParallelBranches || node.size() > kMaxParallelBranches) {
    Error(node, "step '" + step_name_ + "' has " + std::to_string(node.size()) +
                    " parallel branches; a parallel step has " +
                    std::to_string(kMinParallelBranches) + " to " +
                    std::to_string(kMaxParallelBranches) + " (use a parallel for for more)");
  }

  for (const YAML::Node& item : node) {
    if (!item.IsMap() || item.size() != 1) {
      Error(item, "a branch must be a map with one key, the branch name" + InStep());
      continue;
    }
    auto entry = item.begin();
    std::string name = LoadString(entry->first, "a branch name");
    std::string what = "branch '" + name + "'" + InStep();
    for (const auto& [earlier, block] : branches) {
      if (earlier == name) Error(entry->first, "duplicate branch name '" + name + "'" + InStep());
    }
    KeyedMap keys = LoadKeyedMap(entry->second, what);
    CheckKeys(keys, {"steps"}, what);
    Block block;
    if (entry->second.IsMap() && Require(keys, "steps", entry->first, what)) {
      block = LoadBlock(keys.Find("steps")->value, what);
    }
    branches.emplace_back(std::move(name), std::move(block));
  }
  return branches;
}

TrySpec WorkflowLoader::LoadTry(const KeyedMap& body) {
  TrySpec spec;
  spec.steps = LoadTryBody(body.Find("try")->value);
  if (const KeyedMap::Entry* retry = body.Find("retry")) spec.retry = LoadRetry(retry->value);
  if (const KeyedMap::Entry* except = body.Find("except")) {
    spec.except = LoadExcept(except->value);
  }
  return spec;
}

Block WorkflowLoader::LoadTryBody(const YAML::Node& node) {
  std::string what = "'try' of step '" + step_name_ + "'";
  if (!node.IsMap()) {
    Error(node, what + " must be a map: a step body or 'steps'");
    return Block{};
  }
  if (node.size() == 1 && node["steps"]) return LoadBlock(node["steps"], what);

  // An inline body: one unnamed step, so that a retry re-runs it like a block.
  auto step = std::make_shared<Step>();
  step->pos = PosOf(node);
  LoadBody(LoadKeyedMap(node, what), BodyRole::kTryBody, *step);
  Block block;
  block.steps.push_back(std::move(step));
  return block;
}

RetrySpec WorkflowLoader::LoadRetry(const YAML::Node& node) {
  RetrySpec spec;
  spec.pos = PosOf(node);
  std::string what = "'retry' of step '" + step_name_ + "'";
  if (node.IsScalar()) {
    spec.policy = LoadTemplate(node);
    if (spec.policy->kind != Template::Kind::kExpression) {
      Error(node, what + " must be a policy expression such as ${http.default_retry} or a map");
    }
    return spec;
  }

  KeyedMap keys = LoadKeyedMap(node, what);
  CheckKeys(keys, {"predicate", "max_retries", "backoff"}, what);
  if (const KeyedMap::Entry* predicate = keys.Find("predicate")) {
    spec.predicate = LoadTemplate(predicate->value);
    if (spec.predicate->kind != Template::Kind::kExpression) {
      Error(predicate->value.IsNull() ? predicate->key_node : predicate->value,
            "the predicate of " + what +
                " must be an expression naming a predicate, such as "
                "${http.default_retry_predicate} or ${my_subworkflow}");
    }
  }
  if (const KeyedMap::Entry* max_retries = keys.Find("max_retries")) {
    spec.max_retries = LoadTemplate(max_retries->value);
    CheckNumber(*spec.max_retries, "'max_retries'", true, true);
  }
  if (const KeyedMap::Entry* backoff = keys.Find("backoff")) LoadBackoff(backoff->value, spec);
  return spec;
}

void WorkflowLoader::LoadBackoff(const YAML::Node& node, RetrySpec& retry) {
  std::string what = "'backoff' of step '" + step_name_ + "'";
  KeyedMap keys = LoadKeyedMap(node, what);
  CheckKeys(keys, {"initial_delay", "max_delay", "multiplier"}, what);
  struct Field {
    std::string_view key;
    std::optional<Template>* slot;
    bool zero_allowed;  // a delay may be zero; a multiplier of zero would stop the backoff
  };
  for (Field field : {Field{"initial_delay", &retry.initial_delay, true},
                      Field{"max_delay", &retry.max_delay, true},
                      Field{"multiplier", &retry.multiplier, false}}) {
    const KeyedMap::Entry* entry = keys.Find(field.key);
    if (entry == nullptr) continue;
    *field.slot = LoadTemplate(entry->value);
    std::string what = "'";  // appended piecewise: g++ 12 warns falsely about "'" + string
    what.append(field.key).append("'");
    CheckNumber(**field.slot, what, false, field.zero_allowed);
  }
}

void WorkflowLoader::CheckNumber(const Template& value, std::string_view what, bool integer,
                                 bool zero_allowed) {
  if (value.kind == Template::Kind::kExpression) return;
  const Value& literal = value.literal;
  bool ok = value.kind == Template::Kind::kLiteral && literal.is_number() &&
            (!integer || literal.is_int()) &&
            (zero_allowed ? literal.AsNumber() >= 0 : literal.AsNumber() > 0);
  if (ok) return;
  std::string expected = std::string(zero_allowed ? "a non-negative " : "a positive ") +
                         (integer ? "integer" : "number");
  std::string got = value.kind == Template::Kind::kLiteral ? literal.TypeName() : "a list or map";
  if (value.kind == Template::Kind::kLiteral && literal.is_number()) {
    got = literal.is_int() ? std::to_string(literal.AsInt()) : FormatDouble(literal.AsDouble());
  }
  Error(value.pos, std::string(what) + InStep() + " must be " + expected + "; got " + got);
}

ExceptSpec WorkflowLoader::LoadExcept(const YAML::Node& node) {
  ExceptSpec spec;
  spec.pos = PosOf(node);
  std::string what = "'except' of step '" + step_name_ + "'";
  KeyedMap keys = LoadKeyedMap(node, what);
  if (!node.IsMap()) return spec;
  CheckKeys(keys, {"as", "steps"}, what);

  if (const KeyedMap::Entry* as = keys.Find("as")) {
    spec.as = LoadName(*as, "the error variable");
  }
  if (Require(keys, "steps", node, what)) spec.steps = LoadBlock(keys.Find("steps")->value, what);
  return spec;
}

TransactionSpec WorkflowLoader::LoadTransaction(const YAML::Node& node) {
  TransactionSpec spec;
  std::string what = "'transaction' of step '" + step_name_ + "'";
  KeyedMap keys = LoadKeyedMap(node, what);
  if (!node.IsMap()) return spec;
  CheckKeys(keys, {"timeout", "steps"}, what);

  if (const KeyedMap::Entry* timeout = keys.Find("timeout")) {
    spec.timeout = LoadTemplate(timeout->value);
    CheckNumber(*spec.timeout, "the 'timeout' (seconds) of the transaction", false, false);
  }
  if (Require(keys, "steps", node, what)) spec.steps = LoadBlock(keys.Find("steps")->value, what);
  return spec;
}

TccSpec WorkflowLoader::LoadTcc(const YAML::Node& node) {
  TccSpec spec;
  std::string what = "'tcc' of step '" + step_name_ + "'";
  KeyedMap keys = LoadKeyedMap(node, what);
  if (!node.IsMap()) return spec;
  CheckKeys(keys, {"try", "confirm", "cancel"}, what);

  struct Phase {
    std::string_view key;
    CallSpec* call;
  };
  for (Phase phase : {Phase{"try", &spec.try_call}, Phase{"confirm", &spec.confirm},
                      Phase{"cancel", &spec.cancel}}) {
    if (!Require(keys, phase.key, node, what)) continue;
    std::string phase_what = "'" + std::string(phase.key) + "' of " + what;
    *phase.call = LoadCallBody(keys.Find(phase.key)->value, phase_what, true);
  }
  return spec;
}

}  // namespace atomflow::lang
