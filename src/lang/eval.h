// The expression language: parsing `${...}` bodies and evaluating them against variables.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "lang/error.h"
#include "value/value.h"

namespace atomflow::lang {

// A parsed expression. Immutable and shareable between threads once built.
class Expr;

// What an expression needs from the interpreter while it evaluates.
class EvalHost {
 public:
  virtual ~EvalHost() = default;

  // The variable's value, or nullptr when no variable has that name.
  virtual const Value* Lookup(std::string_view name) const = 0;
  // The same for a caller that reads the name again and again: a host whose variables are a
  // Map tries the hinted position first (see KeyHint).
  virtual const Value* Lookup(std::string_view name, const KeyHint& hint) const {
    (void)hint;
    return Lookup(name);
  }

  // True when name is a subworkflow of the running workflow.
  virtual bool IsSubworkflow(std::string_view name) const = 0;

  // Calls a function the evaluator does not compute itself: a subworkflow (positional args),
  // or a standard-library function with an effect (sys.now, sys.get_env, uuid.generate).
  // Throws RaisedError on failure.
  virtual Value CallHost(std::string_view name, std::vector<Value> args) = 0;

  // The host's variables when they are exactly one Map (Lookup reads nothing else); null
  // otherwise. The scalar path reads a variable there without a virtual call.
  const Map* variables() const { return variables_; }

 protected:
  const Map* variables_ = nullptr;
};

// Parses the text between "${" and "}". The error message says what is wrong and the column
// within the expression (1-based), e.g. "unexpected ')' at column 7".
Result<std::shared_ptr<const Expr>> ParseExpression(std::string_view text);

// Evaluates expr. Throws RaisedError with the documented tags (KeyError, IndexError,
// TypeError, ValueError, ZeroDivisionError, ...) on failure.
Value Evaluate(const Expr& expr, EvalHost& host);

// True when evaluating expr may call EvalHost::CallHost: it calls a function that is not a
// pure standard-library one (a subworkflow, an effect function, or an unknown name). An
// expression without such calls can be evaluated where the interpreter cannot suspend.
bool NeedsHost(const Expr& expr);

// The names an expression reads: root variables (the `a` of `a.b[1]`) and called function
// names (dotted, e.g. "text.split", or a subworkflow name). For deploy-time checks.
struct ExprNames {
  std::vector<std::string> variables;
  std::vector<std::string> functions;
};
ExprNames CollectNames(const Expr& expr);

// The target of an assignment: `a`, `a.b`, `a["k"]`, `a[i + 1].c`.
struct AssignTarget {
  struct Accessor {
    std::string field;                  // set for `.field`
    std::shared_ptr<const Expr> index;  // set for `[expr]`
  };
  std::string root;
  KeyHint root_hint;  // where the root variable was last found
  std::vector<Accessor> path;
  bool calls_host = false;  // an index expression may call the host (see NeedsHost)
};
Result<AssignTarget> ParseAssignTarget(std::string_view text);

// A reference to a function used as a value, e.g. `predicate: ${http.default_retry_predicate}`
// or `${my_predicate_subworkflow}`. Encoded as the map {"$function": name}.
Value FunctionRef(std::string name);
std::optional<std::string> AsFunctionRef(const Value& value);

// The standard library's functions without effects, callable from expressions and from call
// steps. Params are the documented argument names, in order; a call step's named args map onto
// them.
struct FunctionSignature {
  std::string name;                 // "text.split"
  std::vector<std::string> params;  // {"source", "separator"}
  size_t required = 0;              // leading params that must be given
  bool blocking = false;            // http.*, sys.sleep, sys.log: only from call steps
  bool effect = false;              // sys.now, sys.get_env, uuid.generate: via CallHost
};
const FunctionSignature* FindFunction(std::string_view name);

// Calls a pure standard-library function with positional args. Throws RaisedError.
Value CallPureFunction(std::string_view name, std::vector<Value> args);

}  // namespace atomflow::lang
