// ReadConfigFile and ConfigSection.
#include "connectors/config_file.h"

#include <fstream>
#include <sstream>

namespace atomflow::connectors {

Result<std::optional<std::string>> ReadConfigFile(const std::string& path, bool required) {
  std::ifstream in(path);
  if (!in) {
    if (required) return Status::Error("cannot read the configuration file " + path);
    return std::optional<std::string>();
  }
  std::stringstream text;
  text << in.rdbuf();
  return std::optional<std::string>(text.str());
}

namespace {

// The sections atomflow.yaml may have, in the order messages list them.
constexpr const char* kSections[] = {"databases", "identities", "sql"};

std::string Position(const std::string& config_path, const YAML::Mark& mark) {
  if (mark.is_null()) return config_path;
  return config_path + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

Status CheckSectionNames(const YAML::Node& root, const std::string& config_path) {
  for (const auto& entry : root) {
    std::string name = entry.first.IsScalar() ? entry.first.Scalar() : "";
    bool known = false;
    for (const char* section : kSections) known = known || name == section;
    if (known) continue;
    std::string shown = entry.first.IsScalar() ? "'" + name + "'" : "a key that is not a name";
    return Status::Error(ConfigPosition(config_path, entry.first) + ": unknown section " + shown +
                         " (the sections are databases, identities and sql)");
  }
  return Status::Ok();
}

}  // namespace

std::string ConfigPosition(const std::string& config_path, const YAML::Node& node) {
  return Position(config_path, node.Mark());
}

Result<YAML::Node> ConfigSection(const std::string& text, const std::string& config_path,
                                 const std::string& key) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& error) {
    // The parser's message quotes no values, only positions.
    return Status::Error(Position(config_path, error.mark) + ": not valid YAML: " + error.msg);
  }
  if (!root.IsDefined() || root.IsNull()) return YAML::Node(YAML::NodeType::Null);
  if (!root.IsMap()) {
    return Status::Error(ConfigPosition(config_path, root) + ": expected a map at the top");
  }
  if (Status names = CheckSectionNames(root, config_path); !names.ok()) return names;
  YAML::Node section = root[key];
  if (!section || section.IsNull()) return YAML::Node(YAML::NodeType::Null);
  if (!section.IsMap()) {
    return Status::Error(ConfigPosition(config_path, section) + ": '" + key + "' must be a map");
  }
  return section;
}

}  // namespace atomflow::connectors
