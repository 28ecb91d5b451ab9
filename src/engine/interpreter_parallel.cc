// The interpreter's parallel step: branches and parallel for loops run as strands of one
// execution, with shared variables, a concurrency limit and UnhandledBranchError.
//
// Each branch (or iteration) is a coroutine on its own Strand, owned by the ParallelRun in the
// parallel step's coroutine frame. The step starts up to concurrency_limit branches, suspends,
// and is resumed by the last branch to end. Branches interleave only where they wait for an
// effect; see Execution for how that interleaving is journaled and replayed.
#include <algorithm>
#include <cmath>

#include "engine/engine.h"
#include "engine/execution.h"
#include "engine/interpreter.h"

namespace atomflow::engine {

namespace {

constexpr int64_t kMaxConcurrency = 20;  // branches and iterations of one step running at once
constexpr int kMaxParallelDepth = 2;     // parallel steps inside parallel steps
constexpr size_t kMaxBranchErrors = 100;

int ParallelDepthOf(const lang::Block& block);

// How deeply parallel steps nest in step, not following calls (those are checked when they
// run): 0 without a parallel step, 1 for a parallel step whose branches hold none, ...
int ParallelDepthOf(const lang::Step& step) {
  int inner = ParallelDepthOf(step.steps);
  for (const lang::SwitchCase& arm : step.switch_cases) {
    inner = std::max(inner, ParallelDepthOf(*arm.body));
  }
  if (step.for_loop) inner = std::max(inner, ParallelDepthOf(step.for_loop->steps));
  if (step.try_block) {
    inner = std::max(inner, ParallelDepthOf(step.try_block->steps));
    if (step.try_block->except) {
      inner = std::max(inner, ParallelDepthOf(step.try_block->except->steps));
    }
  }
  if (step.transaction) inner = std::max(inner, ParallelDepthOf(step.transaction->steps));
  if (!step.parallel) return inner;
  for (const auto& [name, branch] : step.parallel->branches) {
    inner = std::max(inner, ParallelDepthOf(branch));
  }
  if (step.parallel->for_loop)
    inner = std::max(inner, ParallelDepthOf(step.parallel->for_loop->steps));
  return inner + 1;
}

int ParallelDepthOf(const lang::Block& block) {
  int depth = 0;
  for (const auto& step : block.steps) depth = std::max(depth, ParallelDepthOf(*step));
  return depth;
}

std::string MessageOf(const Value& error) {
  if (error.is_string()) return error.AsString();
  if (error.is_map()) {
    const Value* message = error.AsMap().Find("message");
    if (message != nullptr && message->is_string()) return message->AsString();
  }
  return DebugString(error);
}

}  // namespace

// One branch or iteration: its strand, its scope (a copy of the enclosing frame whose shared
// variables are kept in step with it) and how it ended.
struct Interpreter::ParallelBranch {
  std::string id;  // the branch name, or the iteration index
  int64_t index = 0;
  const lang::Block* block = nullptr;
  Value value;  // parallel for: the iteration's value
  Strand strand;
  std::unique_ptr<Frame> frame;
  std::optional<Task<int>> task;
  std::optional<Value> error;  // the unhandled error the branch raised
  std::exception_ptr failure;  // cancellation or a broken replay: ends the whole step
};

// One run of a parallel step. Lives in the step's coroutine frame until every branch ended.
struct Interpreter::ParallelRun {
  const lang::Step* step = nullptr;
  const lang::ParallelSpec* spec = nullptr;
  Frame* frame = nullptr;  // the enclosing scope
  Strand* strand = nullptr;
  Strand branch_template;  // the registers every branch starts with
  std::coroutine_handle<> parent;
  std::string key;  // the step's key in its strand: the prefix of its branches' keys
  std::vector<std::unique_ptr<ParallelBranch>> branches;
  std::shared_ptr<const std::unordered_set<std::string>> read_only;
  size_t limit = kMaxConcurrency;
  size_t next = 0;  // the next branch to start
  size_t running = 0;
  bool broken = false;  // a `break` ended the parallel for loop: start no more iterations

  bool done() const { return running == 0 && (broken || next == branches.size()); }
};

Task<Flow> Interpreter::RunParallel(const lang::Step& step, Frame& frame) {
  const lang::ParallelSpec& spec = *step.parallel;
  if (parallel_depth_ + ParallelDepthOf(step) > kMaxParallelDepth) {
    lang::Raise("ParallelNestingError", "parallel step '" + step.name +
                                            "' nests parallel steps deeper than " +
                                            std::to_string(kMaxParallelDepth) + " levels");
  }
  for (const std::string& name : spec.shared) {
    if (frame.vars().Find(name) == nullptr) {
      lang::Raise("KeyError", "shared variable '" + name + "' of parallel step '" + step.name +
                                  "' is not defined: assign it before the step");
    }
  }
  int limit = co_await ConcurrencyLimit(spec, frame);
  List values;
  if (spec.for_loop) values = co_await IterationValues(*spec.for_loop, frame);

  ParallelRun run;
  run.step = &step;
  run.spec = &spec;
  run.frame = &frame;
  run.strand = &execution_->current_strand();
  run.limit = static_cast<size_t>(limit);
  run.key = execution_->NewStrandKey();
  SaveRegisters(run.branch_template);
  run.branch_template.error_step.clear();
  run.branch_template.error_trace.reset();
  run.branch_template.parallel_depth = parallel_depth_ + 1;
  run.branch_template.shielded = execution_->shielded();

  auto read_only = std::make_shared<std::unordered_set<std::string>>();
  for (const auto& [name, value] : frame.vars()) read_only->insert(name);
  for (const std::string& name : spec.shared) read_only->erase(name);
  run.read_only = std::move(read_only);

  for (size_t i = 0; i < spec.branches.size(); ++i) {
    auto branch = std::make_unique<ParallelBranch>();
    branch->id = spec.branches[i].first;
    branch->index = static_cast<int64_t>(i);
    branch->block = &spec.branches[i].second;
    run.branches.push_back(std::move(branch));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    auto branch = std::make_unique<ParallelBranch>();
    branch->id = std::to_string(i);
    branch->index = static_cast<int64_t>(i);
    branch->block = &spec.for_loop->steps;
    branch->value = std::move(values[i]);
    run.branches.push_back(std::move(branch));
  }

  if (!run.branches.empty()) {
    StartBranches(run);
    JoinAwaiter join(&run.parent);
    co_await join;
  }

  // Branches that were cancelled, or whose replay broke, end the step the same way.
  List errors;
  size_t failed = 0;
  for (const auto& branch : run.branches) {
    if (branch->failure) std::rethrow_exception(branch->failure);
    if (!branch->error) continue;
    ++failed;
    if (errors.size() >= kMaxBranchErrors) continue;
    errors.emplace_back(
        Map{{"id", branch->id}, {"index", branch->index}, {"error", *branch->error}});
  }
  if (failed == 0) co_return Flow::Normal();

  const Map& first = errors.front().AsMap();
  std::string what = spec.for_loop ? "iterations" : "branches";
  std::string message = "UnhandledBranchError: " + std::to_string(failed) + " of " +
                        std::to_string(run.branches.size()) + " " + what + " of parallel step '" +
                        step.name + "' raised an unhandled error; " +
                        (spec.for_loop ? "iteration " : "branch ") + first.Find("id")->AsString() +
                        ": " + MessageOf(*first.Find("error"));
  throw lang::RaisedError(Value(Map{{"message", message},
                                    {"tags", Value(List{"UnhandledBranchError"})},
                                    {"branches", Value(std::move(errors))}}));
}

// concurrency_limit: a positive integer, at most (and by default) kMaxConcurrency.
Task<int> Interpreter::ConcurrencyLimit(const lang::ParallelSpec& spec, Frame& frame) {
  if (!spec.concurrency_limit) co_return static_cast<int>(kMaxConcurrency);
  Value limit = co_await Eval(*spec.concurrency_limit, frame);
  if (!limit.is_int()) {
    lang::Raise("TypeError",
                std::string("concurrency_limit must be an integer, got ") + limit.TypeName());
  }
  if (limit.AsInt() < 1) {
    lang::Raise("ValueError",
                "concurrency_limit must be positive, got " + std::to_string(limit.AsInt()));
  }
  co_return static_cast<int>(std::min(limit.AsInt(), kMaxConcurrency));
}

Task<List> Interpreter::IterationValues(const lang::ForSpec& loop, Frame& frame) {
  if (loop.in) {
    Value in = co_await Eval(*loop.in, frame);
    if (!in.is_list()) {
      lang::Raise("TypeError", std::string("for: 'in' must be a list, got ") + in.TypeName());
    }
    co_return in.AsList();
  }
  Value range = co_await Eval(*loop.range, frame);
  co_return RangeValues(range);
}

// Starts branches in order while the concurrency limit allows. A started branch only waits in
// the execution's ready queue: it runs once the strand that started it suspends.
void Interpreter::StartBranches(ParallelRun& run) {
  while (!run.broken && run.next < run.branches.size() && run.running < run.limit) {
    StartBranch(run, *run.branches[run.next++]);
  }
}

void Interpreter::StartBranch(ParallelRun& run, ParallelBranch& branch) {
  ++run.running;
  branch.frame = std::make_unique<Frame>(*run.frame);
  branch.frame->memo.clear();
  branch.frame->memo_used = 0;
  branch.frame->set_read_only(run.read_only);
  if (const lang::ForSpec* loop = run.spec->for_loop ? &*run.spec->for_loop : nullptr) {
    branch.frame->vars().Set(loop->value, branch.value);
    if (!loop->index.empty()) branch.frame->vars().Set(loop->index, branch.index);
  }

  Strand& strand = branch.strand;
  strand = run.branch_template;
  strand.parent = run.strand;
  strand.prefix = run.key + "." + branch.id + ":";
  Frame* outer = run.frame;
  Frame* own = branch.frame.get();
  const std::vector<std::string>* shared = &run.spec->shared;
  strand.sync_in = [outer, own, shared] {
    for (const std::string& name : *shared) {
      if (const Value* value = outer->vars().Find(name)) own->vars().Set(name, *value);
    }
  };
  strand.sync_out = [outer, own, shared] {
    for (const std::string& name : *shared) {
      if (const Value* value = own->vars().Find(name)) outer->vars().Set(name, *value);
    }
  };

  branch.task.emplace(RunBranch(run, branch));
  execution_->Schedule(branch.task->handle(), &strand);
}

// A branch ends at the end of its steps. `next: end` ends it early; in a parallel for loop
// `continue` ends the iteration and `break` also keeps later iterations from starting. A
// `return` cannot leave a branch: the branches run concurrently, so there is no single value
// to return, and GCW rejects it.
Task<int> Interpreter::RunBranch(ParallelRun& run, ParallelBranch& branch) {
  try {
    Flow flow = co_await RunBlock(*branch.block, *branch.frame);
    if (flow.kind == Flow::Kind::kBreak) run.broken = true;
    if (flow.kind == Flow::Kind::kReturn) {
      lang::Raise("SystemError", "a return cannot leave a parallel branch (in parallel step '" +
                                     run.step->name + "')");
    }
    if (flow.kind == Flow::Kind::kJump) {
      lang::Raise("SystemError", "jump target '" + *flow.target + "' not found in its branch");
    }
  } catch (const lang::RaisedError& raised) {
    branch.error = raised.payload();
  } catch (...) {
    branch.failure = std::current_exception();
  }
  EndBranch(run);
  co_return 0;
}

// Frees the branch's place under the concurrency limit; the last branch to end wakes the step.
void Interpreter::EndBranch(ParallelRun& run) {
  --run.running;
  StartBranches(run);
  if (run.done()) execution_->Schedule(run.parent, run.strand);
}

// Inside a branch the enclosing scope's variables are read-only copies unless `shared`: GCW
// rejects such an assignment when the workflow is deployed; here it fails the branch.
void Interpreter::CheckWritable(const lang::Step& step, const Frame& frame) const {
  const std::unordered_set<std::string>& read_only = *frame.read_only();
  auto check = [&](const std::string& root) {
    if (root.empty() || read_only.count(root) == 0) return;
    lang::Raise("SystemError", "step '" + step.name + "' assigns '" + root +
                                   "', a variable of the scope around the parallel step; "
                                   "branches can only read it unless it is listed in 'shared'");
  };
  for (const lang::Assignment& assignment : step.assign) check(assignment.target.root);
  if (step.call) check(step.call->result);
}

}  // namespace atomflow::engine
