// Reading atomflow.yaml: the file's text and its top-level sections, shared by the catalogs.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>

#include "common/status.h"

namespace atomflow::connectors {

// The text of the configuration file; nullopt when it cannot be read and was not required
// (the user did not name it with --config).
Result<std::optional<std::string>> ReadConfigFile(const std::string& path, bool required);

// The map under `key` at the top of a configuration file's text, or a null node when the file
// is empty or has no such key. A top-level key that is no section (a misspelled `databses:`)
// is an error, so that a mistake cannot leave a section silently empty. config_path only
// names the file in messages, which quote positions, never values.
Result<YAML::Node> ConfigSection(const std::string& text, const std::string& config_path,
                                 const std::string& key);

// "PATH:LINE:COLUMN" for a node of the file at config_path, for messages.
std::string ConfigPosition(const std::string& config_path, const YAML::Node& node);

}  // namespace atomflow::connectors
