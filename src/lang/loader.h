// The workflow loader's internals: YAML nodes to the syntax tree of lang/ast.h, reporting
// structural errors with their positions. LoadWorkflow (declared in ast.h) is the entry point.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <vector>

#include "lang/ast.h"
#include "lang/limits.h"
#include "lang/loader_diagnostics.h"

namespace atomflow::lang {

// A YAML map's entries in file order, looked up by key text. Keeps the key nodes for positions.
class KeyedMap {
 public:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };

  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  void Add(Entry entry) { entries_.push_back(std::move(entry)); }

 private:
  std::vector<Entry> entries_;
};

// The 1-based position of a node; 1:1 when yaml-cpp knows none (an empty document).
SourcePos PosOf(const YAML::Node& node);

// The key among candidates closest to key by edit distance, or empty when none is close enough
// to be a likely typo.
std::string SuggestKey(std::string_view key, const std::vector<std::string_view>& candidates);

// Builds the syntax tree of one workflow document. Reports every structural error it finds into
// the diagnostics and keeps going, so one load shows as many mistakes as possible; the tree is
// meaningful only when no error was reported. Not thread safe; one loader per document.
class WorkflowLoader {
 public:
  explicit WorkflowLoader(Diagnostics& diagnostics) : diagnostics_(diagnostics) {}

  // Fills workflow.routines from the document root (a map of routines or a list of steps).
  void LoadDocument(const YAML::Node& root, Workflow& workflow);

 private:
  // What a step body is: a named step, a switch arm, or an inline try body.
  enum class BodyRole { kStep, kSwitchArm, kTryBody };

  // loader.cc: routines and params.
  void LoadRoutines(const YAML::Node& root, Workflow& workflow);
  Routine LoadRoutine(const std::string& name, const YAML::Node& key, const YAML::Node& body);
  std::vector<Param> LoadParams(const std::string& routine, const YAML::Node& node);

  // loader_steps.cc: blocks and step bodies.
  Block LoadBlock(const YAML::Node& node, std::string_view what);
  std::shared_ptr<const Step> LoadStep(const YAML::Node& item);
  void LoadBody(const KeyedMap& body, BodyRole role, Step& step);
  bool CheckBodyKeys(const KeyedMap& body, BodyRole role);
  const KeyedMap::Entry* FindAction(const KeyedMap& body);
  void CheckKeyDependencies(const KeyedMap& body);
  void LoadAction(const KeyedMap::Entry& action, const KeyedMap& body, Step& step);
  void LoadNext(const KeyedMap& body, Step& step);
  std::vector<Assignment> LoadAssign(const YAML::Node& node);
  CallSpec LoadCall(const KeyedMap& body, const YAML::Node& call_key);
  std::vector<SwitchCase> LoadSwitch(const YAML::Node& node);
  ForSpec LoadFor(const YAML::Node& node, std::string_view what);
  void CheckRange(const Template& range, std::string_view what);
  void CheckForIn(const Template& in, std::string_view what);
  void CheckCondition(const Template& condition);
  ParallelSpec LoadParallel(const YAML::Node& node);
  std::vector<std::pair<std::string, Block>> LoadBranches(const YAML::Node& node);
  TrySpec LoadTry(const KeyedMap& body);
  Block LoadTryBody(const YAML::Node& node);
  RetrySpec LoadRetry(const YAML::Node& node);
  void LoadBackoff(const YAML::Node& node, RetrySpec& retry);
  // A literal where a number is expected must be one: positive, or non-negative when
  // zero_allowed, and integral when integer; an expression is checked when it runs.
  void CheckNumber(const Template& value, std::string_view what, bool integer, bool zero_allowed);
  ExceptSpec LoadExcept(const YAML::Node& node);
  TransactionSpec LoadTransaction(const YAML::Node& node);
  TccSpec LoadTcc(const YAML::Node& node);
  CallSpec LoadCallBody(const YAML::Node& node, std::string_view what, bool allow_result);

  // loader_template.cc: values, templates, names.
  Template LoadTemplate(const YAML::Node& node);
  Template LoadScalarTemplate(const YAML::Node& node);
  Template LoadListTemplate(const YAML::Node& node);
  Template LoadMapTemplate(const YAML::Node& node);
  Template LoadExpression(const YAML::Node& node, std::string_view body);
  std::string LoadString(const YAML::Node& node, std::string_view what);
  std::string LoadName(const YAML::Node& node, std::string_view what);
  // A map entry's value as a string or name; an empty value is reported at its key, since
  // yaml-cpp places an empty value where the next token starts.
  std::string LoadString(const KeyedMap::Entry& entry, std::string_view what);
  std::string LoadName(const KeyedMap::Entry& entry, std::string_view what);
  std::vector<std::string> LoadNameList(const YAML::Node& node, std::string_view what);
  KeyedMap LoadKeyedMap(const YAML::Node& node, std::string_view what);
  void CheckKeys(const KeyedMap& map, const std::vector<std::string_view>& allowed,
                 std::string_view what);
  bool Require(const KeyedMap& map, std::string_view key, const YAML::Node& at,
               std::string_view what);

  // " in step 'name'" while a step is being loaded, else "".
  std::string InStep() const;
  void Error(const YAML::Node& at, std::string message);
  void Error(SourcePos pos, std::string message);

  Diagnostics& diagnostics_;
  std::string step_name_;  // the named step being loaded, for messages
  int block_depth_ = 0;    // blocks being loaded, outermost first: kMaxStepNesting bounds it
};

}  // namespace atomflow::lang
