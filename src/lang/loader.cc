// Loading a workflow file: reading it, parsing the YAML, the two document forms, routines and
// params; then the deploy-time checks of validate.h.
#include "lang/loader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lang/validate.h"

namespace atomflow::lang {

const KeyedMap::Entry* KeyedMap::Find(std::string_view key) const {
  for (const Entry& entry : entries_) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

SourcePos PosOf(const YAML::Node& node) {
  YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.line < 0) return SourcePos{1, 1};
  return SourcePos{mark.line + 1, mark.column + 1};
}

namespace {

const char* ShapeName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return "a string";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "nothing";
  }
}

// Parses YAML (JSON is YAML) into a node; syntax errors become positioned diagnostics.
std::optional<YAML::Node> ParseYaml(const std::string& text, Diagnostics& diagnostics) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    diagnostics.Error(SourcePos{e.mark.line + 1, e.mark.column + 1}, e.msg);
  } catch (const YAML::Exception& e) {
    diagnostics.Error(SourcePos{1, 1}, e.what());
  }
  return std::nullopt;
}

// Bounds on the document once its aliases are followed. yaml-cpp's parser already refuses text
// nested a few hundred levels deep, and a 128 KiB file holds far fewer nodes than this.
constexpr int kMaxYamlDepth = 1000;
constexpr size_t kMaxYamlNodes = 1000000;

// An alias may refer to a node that contains it (`&a [1, *a]`), which makes the document
// infinitely deep, or aliases of aliases may expand it exponentially; yaml-cpp builds either
// without complaint. Walking the document here, bounded in depth and in nodes, refuses it
// before the loader's recursive reading could exhaust the stack or the memory.
bool BoundedYaml(const YAML::Node& node, int depth, size_t& nodes, Diagnostics& diagnostics) {
  if (depth > kMaxYamlDepth || ++nodes > kMaxYamlNodes) {
    diagnostics.Error(PosOf(node),
                      "the document is too deep or too large once its aliases are followed "
                      "(an alias that refers to a node containing it?)");
    return false;
  }
  if (node.IsSequence()) {
    for (const YAML::Node& item : node) {
      if (!BoundedYaml(item, depth + 1, nodes, diagnostics)) return false;
    }
  } else if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!BoundedYaml(it->first, depth + 1, nodes, diagnostics)) return false;
      if (!BoundedYaml(it->second, depth + 1, nodes, diagnostics)) return false;
    }
  }
  return true;
}

}  // namespace

void WorkflowLoader::LoadDocument(const YAML::Node& root, Workflow& workflow) {
  if (root.IsSequence()) {
    Routine main;
    main.name = "main";
    main.pos = PosOf(root);
    main.steps = LoadBlock(root, "the workflow");
    workflow.routines.emplace("main", std::move(main));
    return;
  }
  if (!root.IsMap()) {
    Error(root, std::string("expected a map of workflows or a sequence of steps; got ") +
                    ShapeName(root));
    return;
  }
  LoadRoutines(root, workflow);
}

void WorkflowLoader::LoadRoutines(const YAML::Node& root, Workflow& workflow) {
  for (auto it = root.begin(); it != root.end(); ++it) {
    std::string name = LoadName(it->first, "a workflow name");
    if (name.empty()) continue;
    if (workflow.routines.count(name) != 0) {
      Error(it->first, "duplicate workflow '" + name + "'");
      continue;
    }
    workflow.routines.emplace(name, LoadRoutine(name, it->first, it->second));
  }

  if (workflow.routines.count("main") == 0) {
    Error(root, "the workflow has no 'main' (a map of workflows must define main)");
  }
}

Routine WorkflowLoader::LoadRoutine(const std::string& name, const YAML::Node& key,
                                    const YAML::Node& body) {
  Routine routine;
  routine.name = name;
  routine.pos = PosOf(key);

  std::string what = "workflow '" + name + "'";
  if (!body.IsMap()) {
    Error(key,
          "expected " + what + " to be a map with 'params' and 'steps'; got " + ShapeName(body));
    return routine;
  }
  KeyedMap keys = LoadKeyedMap(body, what);
  CheckKeys(keys, {"params", "steps"}, what);

  if (const KeyedMap::Entry* params = keys.Find("params")) {
    routine.params = LoadParams(name, params->value);
  }
  if (Require(keys, "steps", key, what)) {
    routine.steps = LoadBlock(keys.Find("steps")->value, what);
  }
  return routine;
}

std::vector<Param> WorkflowLoader::LoadParams(const std::string& routine, const YAML::Node& node) {
  std::vector<Param> params;
  if (!node.IsSequence()) {
    Error(node, "params of workflow '" + routine + "' must be a list");
    return params;
  }

  for (const YAML::Node& item : node) {
    Param param;
    if (item.IsMap() && item.size() == 1) {
      auto entry = item.begin();
      param.name = LoadName(entry->first, "a param name");
      param.default_value = LoadTemplate(entry->second);
    } else {
      param.name = LoadName(item, "a param name");
    }
    for (const Param& earlier : params) {
      if (!param.name.empty() && earlier.name == param.name) {
        Error(item, "duplicate param '" + param.name + "' in workflow '" + routine + "'");
      }
    }
    params.push_back(std::move(param));
  }

  if (routine == "main" && params.size() > kMaxMainParams) {
    Error(node, "main takes at most one param (the execution argument); got " +
                    std::to_string(params.size()));
  } else if (params.size() > kMaxSubworkflowParams) {
    Error(node, "workflow '" + routine + "' has " + std::to_string(params.size()) +
                    " params; the limit is " + std::to_string(kMaxSubworkflowParams));
  }
  return params;
}

Result<std::shared_ptr<const Workflow>> LoadWorkflow(const std::string& file,
                                                     const std::string& text) {
  Diagnostics diagnostics(file);
  if (text.size() > kMaxSourceBytes) {
    diagnostics.Error(SourcePos{1, 1}, "the source is " + std::to_string(text.size()) +
                                           " bytes; the limit is " +
                                           std::to_string(kMaxSourceBytes) + " (128 KB)");
    return diagnostics.ToStatus();
  }

  size_t bad = 0;
  if (!IsValidUtf8(text, &bad)) {
    std::string_view before(text.data(), bad);
    int line = 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    size_t line_start = before.rfind('\n');
    int column =
        static_cast<int>(bad - (line_start == std::string_view::npos ? 0 : line_start + 1));
    diagnostics.Error(SourcePos{line, column + 1}, "the file is not valid UTF-8 here");
    return diagnostics.ToStatus();
  }

  std::optional<YAML::Node> root = ParseYaml(text, diagnostics);
  if (!root) return diagnostics.ToStatus();
  size_t nodes = 0;
  if (!BoundedYaml(*root, 0, nodes, diagnostics)) return diagnostics.ToStatus();

  auto workflow = std::make_shared<Workflow>();
  workflow->file = file;
  workflow->source = text;
  WorkflowLoader loader(diagnostics);
  loader.LoadDocument(*root, *workflow);

  // The checks run on a tree with structural errors too, so that one load reports every
  // problem; the tree holds whatever loaded, and the checks read only what is there.
  ValidateWorkflow(*workflow, diagnostics);
  if (!diagnostics.ok()) return diagnostics.ToStatus();
  return std::shared_ptr<const Workflow>(std::move(workflow));
}

Result<std::shared_ptr<const Workflow>> LoadWorkflowFile(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return Status::Error("cannot read " + path + ": " + std::strerror(EISDIR));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("cannot read " + path + ": " + std::strerror(errno));

  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Error("cannot read " + path + ": " + std::strerror(errno));
  return LoadWorkflow(path, text.str());
}

}  // namespace atomflow::lang
