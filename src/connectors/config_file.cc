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

Result<YAML::Node> ConfigSection(const std::string& text, const std::string& config_path,
                                 const std::string& key) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& error) {
    // The parser's message quotes no values, only positions.
    return Status::Error(config_path + ": not valid YAML: " + error.msg);
  }
  if (!root.IsDefined() || root.IsNull()) return YAML::Node(YAML::NodeType::Null);
  if (!root.IsMap()) return Status::Error(config_path + ": expected a map at the top");
  YAML::Node section = root[key];
  if (!section || section.IsNull()) return YAML::Node(YAML::NodeType::Null);
  if (!section.IsMap()) return Status::Error(config_path + ": '" + key + "' must be a map");
  return section;
}

}  // namespace atomflow::connectors
