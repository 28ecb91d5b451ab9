// The syntax tree of a workflow: routines, blocks of steps, and value templates, each node with
// its position in the source file. Built once by the loader, then shared read-only by every
// execution of the workflow.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lang/eval.h"
#include "lang/source_pos.h"
#include "value/value.h"

namespace atomflow::lang {

// A value from the file that may hold `${...}` expressions at any depth, map keys included.
// A subtree without expressions is a kLiteral holding its final value, so rendering it costs
// nothing.
struct Template {
  enum class Kind { kLiteral, kExpression, kList, kMap };

  Kind kind = Kind::kLiteral;
  Value literal;                                       // kLiteral
  std::shared_ptr<const Expr> expression;              // kExpression
  std::string expression_text;                         // kExpression: the text between ${ and }
  std::vector<Template> items;                         // kList
  std::vector<std::pair<Template, Template>> entries;  // kMap: key, value
  SourcePos pos;
  bool calls_host = true;  // kExpression: NeedsHost(*expression), set by the loader
};

// Renders a template: evaluates its expressions. Throws RaisedError.
Value Render(const Template& tmpl, EvalHost& host);
// True when rendering tmpl never calls EvalHost::CallHost (see NeedsHost), so it cannot need
// the interpreter to suspend.
bool IsPure(const Template& tmpl);

struct Step;

// An ordered list of named steps, with an index from name to position for jumps.
struct Block {
  std::vector<std::shared_ptr<const Step>> steps;
  std::unordered_map<std::string, size_t> index;
};

struct Assignment {
  std::string target_text;  // as written, for messages
  AssignTarget target;
  Template value;
  SourcePos pos;
};

// A call: of a subworkflow, a standard-library function (http.get, sys.log, text.split, ...)
// or an atomflow.* effect (atomflow.jobs.run, atomflow.files.write, ...).
struct CallSpec {
  std::string function;
  std::vector<std::pair<std::string, Template>> args;  // in file order
  std::string result;  // variable that receives the result; empty when none
  SourcePos pos;
};

struct SwitchCase {
  Template condition;
  std::shared_ptr<const Step> body;  // the arm's own keys, as an unnamed step
  SourcePos pos;
};

struct ForSpec {
  std::string value;
  std::string index;   // empty when none
  KeyHint value_hint;  // where the loop's variables were last found in the frame
  KeyHint index_hint;
  std::optional<Template> in;     // `in:` list
  std::optional<Template> range;  // `range: [a, b]`, inclusive
  Block steps;
};

struct ParallelSpec {
  std::vector<std::string> shared;
  std::optional<Template> concurrency_limit;
  std::string exception_policy;  // "continueAll" (the only documented policy) or empty
  std::vector<std::pair<std::string, Block>> branches;
  std::optional<ForSpec> for_loop;
};

struct RetrySpec {
  std::optional<Template> policy;  // `retry: ${http.default_retry}`: the whole policy
  std::optional<Template> predicate;
  std::optional<Template> max_retries;
  std::optional<Template> initial_delay;
  std::optional<Template> max_delay;
  std::optional<Template> multiplier;
  SourcePos pos;
};

struct ExceptSpec {
  std::string as;  // empty when the error is not bound
  Block steps;
  SourcePos pos;
};

struct TrySpec {
  Block steps;  // an inline try body becomes a one-step block
  std::optional<RetrySpec> retry;
  std::optional<ExceptSpec> except;
};

// A try-confirm-cancel branch of a transaction (three calls to the participant).
struct TccSpec {
  CallSpec try_call;
  CallSpec confirm;
  CallSpec cancel;
};

// A `transaction:` block: every effect inside lands, or every effect is undone.
struct TransactionSpec {
  std::optional<Template> timeout;  // seconds
  Block steps;
};

struct Step {
  enum class Kind {
    kAssign,
    kCall,
    kSwitch,
    kFor,
    kParallel,
    kRaise,
    kReturn,
    kTry,
    kSteps,
    kNext,
    kTransaction,
    kTcc
  };

  std::string name;  // empty for a switch arm's body
  Kind kind = Kind::kNext;
  SourcePos pos;

  std::vector<Assignment> assign;              // kAssign
  std::optional<CallSpec> call;                // kCall
  std::optional<CallSpec> compensate;          // kCall inside a transaction: its undo
  std::vector<SwitchCase> switch_cases;        // kSwitch
  std::optional<ForSpec> for_loop;             // kFor
  std::optional<ParallelSpec> parallel;        // kParallel
  std::optional<Template> raise;               // kRaise
  std::optional<Template> return_value;        // kReturn (a bare `return:` returns null)
  std::optional<TrySpec> try_block;            // kTry
  Block steps;                                 // kSteps
  std::optional<TransactionSpec> transaction;  // kTransaction
  std::optional<TccSpec> tcc;                  // kTcc
  std::string next;                            // jump after the step: a step name, end, break,
                                               // continue; empty when none
  SourcePos next_pos;
};

struct Param {
  std::string name;
  std::optional<Template> default_value;  // absent: the param is required
};

struct Routine {
  std::string name;
  std::vector<Param> params;
  Block steps;
  SourcePos pos;
};

// A loaded, checked workflow. `main` is always present.
struct Workflow {
  std::string file;  // the name used in messages
  std::string source;
  std::map<std::string, Routine> routines;

  const Routine& main() const { return routines.at("main"); }
  const Routine* FindRoutine(std::string_view name) const {
    auto it = routines.find(std::string(name));
    return it == routines.end() ? nullptr : &it->second;
  }
};

// Parses a workflow file (YAML or JSON, either form) and runs the deploy-time checks.
// Errors read "FILE:LINE:COLUMN: what is wrong".
Result<std::shared_ptr<const Workflow>> LoadWorkflow(const std::string& file,
                                                     const std::string& text);
Result<std::shared_ptr<const Workflow>> LoadWorkflowFile(const std::string& path);

}  // namespace atomflow::lang
