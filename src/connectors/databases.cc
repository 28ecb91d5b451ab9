// DatabaseCatalog: atomflow.yaml's `databases:` and the ATOMFLOW_DATABASE_* overrides.
#include "connectors/databases.h"

#include <libpq-fe.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "connectors/config_file.h"
#include "connectors/identities.h"
#include "store/secret_store.h"

extern char** environ;

namespace atomflow::connectors {

namespace {

constexpr char kOverridePrefix[] = "ATOMFLOW_DATABASE_";

// True when libpq can parse text as a connection string (a postgresql:// URI or key=value
// pairs). Its message is not shown: it may quote the text, password included.
bool IsConnectionString(const std::string& text) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(text.c_str(), &error);
  if (options != nullptr) PQconninfoFree(options);
  if (error != nullptr) PQfreemem(error);
  return options != nullptr;
}

// One `databases:` entry: a string, or a map with `secret_env` or `secret`.
Result<DatabaseSource> ParseSource(const std::string& name, const YAML::Node& node,
                                   const std::string& config_path) {
  DatabaseSource source;
  std::string where = ConfigPosition(config_path, node) + ": database '" + name + "'";
  if (node.IsScalar()) {
    source.conninfo = node.as<std::string>();
    if (IsConnectionString(source.conninfo)) return source;
    return Status::Error(where +
                         " is not a PostgreSQL connection string (postgresql://USER@HOST/DB "
                         "or key=value pairs such as 'host=db dbname=registry')");
  }
  if (node.IsMap() && node.size() == 1 && node["secret_env"] && node["secret_env"].IsScalar()) {
    source.secret_env = node["secret_env"].as<std::string>();
    return source;
  }
  if (node.IsMap() && node.size() == 1 && node["secret"] && node["secret"].IsScalar()) {
    source.secret = node["secret"].as<std::string>();
    if (store::SecretStore::ValidName(source.secret)) return source;
    return Status::Error(where + ": '" + source.secret +
                         "' is not a secret name (1 to 64 of a-z, 0-9, '-', '_')");
  }
  return Status::Error(where +
                       " must be a connection string, {secret: NAME} or {secret_env: VARIABLE}");
}

// `sql: {pool_size: N}`: an integer from 1 to kMaxPoolSize; kDefaultPoolSize when absent.
Result<int> ParsePoolSize(const std::string& text, const std::string& config_path) {
  Result<YAML::Node> sql = ConfigSection(text, config_path, "sql");
  if (!sql.ok()) return sql.status();
  if (sql->IsNull()) return DatabaseCatalog::kDefaultPoolSize;
  for (const auto& entry : *sql) {
    std::string key = entry.first.as<std::string>();
    if (key != "pool_size") {
      return Status::Error(ConfigPosition(config_path, entry.first) + ": 'sql' has no setting '" +
                           key + "' (the only one is pool_size)");
    }
  }
  const std::string range = "an integer from 1 to " +
                            std::to_string(DatabaseCatalog::kMaxPoolSize) +
                            " (the SQL operations run at once; default " +
                            std::to_string(DatabaseCatalog::kDefaultPoolSize) + ")";
  YAML::Node node = (*sql)["pool_size"];
  if (!node || node.IsNull()) return DatabaseCatalog::kDefaultPoolSize;
  long long size = 0;
  if (!node.IsScalar() || !YAML::convert<long long>::decode(node, size) || size < 1 ||
      size > DatabaseCatalog::kMaxPoolSize) {
    std::string shown = node.IsScalar() ? "'" + node.Scalar() + "'" : "a map or a list";
    return Status::Error(ConfigPosition(config_path, node) + ": sql.pool_size must be " + range +
                         ", not " + shown);
  }
  return static_cast<int>(size);
}

}  // namespace

std::string DatabaseCatalog::OverrideVariable(const std::string& name) {
  std::string variable = kOverridePrefix;
  for (char c : name) {
    unsigned char byte = static_cast<unsigned char>(c);
    variable.push_back(std::isalnum(byte) ? static_cast<char>(std::toupper(byte)) : '_');
  }
  return variable;
}

Result<DatabaseCatalog> DatabaseCatalog::Load(const std::string& config_path, bool required) {
  Result<std::optional<std::string>> text = ReadConfigFile(config_path, required);
  if (!text.ok()) return text.status();
  std::string absolute = std::filesystem::absolute(config_path).string();
  if (!*text) {
    DatabaseCatalog empty;
    empty.config_path_ = absolute;
    return empty;
  }
  return Parse(**text, absolute);
}

Result<DatabaseCatalog> DatabaseCatalog::Parse(const std::string& text,
                                               const std::string& config_path) {
  DatabaseCatalog catalog;
  catalog.config_path_ = config_path;
  Result<int> pool_size = ParsePoolSize(text, config_path);
  if (!pool_size.ok()) return pool_size.status();
  catalog.pool_size_ = *pool_size;
  Result<YAML::Node> databases = ConfigSection(text, config_path, "databases");
  if (!databases.ok()) return databases.status();
  if (databases->IsNull()) return catalog;
  for (const auto& entry : *databases) {
    std::string name = entry.first.as<std::string>();
    Result<DatabaseSource> source = ParseSource(name, entry.second, config_path);
    if (!source.ok()) return source.status();
    catalog.sources_[name] = std::move(source).value();
  }
  return catalog;
}

Result<std::string> DatabaseCatalog::ConnectionString(const std::string& name) const {
  std::string variable = OverrideVariable(name);
  const char* overridden = std::getenv(variable.c_str());
  if (overridden != nullptr && *overridden != '\0') return std::string(overridden);

  auto found = sources_.find(name);
  if (found == sources_.end()) {
    std::string file = config_path_.empty() ? "atomflow.yaml" : config_path_;
    std::error_code error;
    std::string where = std::filesystem::exists(file, error)
                            ? "it is not under 'databases:' in " + file
                            : "there is no " + file + " to name it";
    return Status::Error("unknown database '" + name + "': " + where + " and " + variable +
                         " is not set");
  }
  const DatabaseSource& source = found->second;
  if (!source.secret.empty()) {
    return ResolveSecret(SecretRef{source.secret, ""}, secrets_.get(), "database '" + name + "'");
  }
  if (source.secret_env.empty()) return source.conninfo;
  const char* secret = std::getenv(source.secret_env.c_str());
  if (secret == nullptr || *secret == '\0') {
    return Status::Error("database '" + name + "': the environment variable " + source.secret_env +
                         " (its secret_env in " + config_path_ + ") is not set");
  }
  return std::string(secret);
}

std::vector<std::string> DatabaseCatalog::Names() const {
  std::set<std::string> names;
  std::set<std::string> covered;  // override variables of the file's names
  for (const auto& [name, source] : sources_) {
    names.insert(name);
    covered.insert(OverrideVariable(name));
  }
  const size_t prefix_size = sizeof(kOverridePrefix) - 1;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string text = *entry;
    size_t equals = text.find('=');
    if (text.rfind(kOverridePrefix, 0) != 0 || equals == std::string::npos) continue;
    std::string variable = text.substr(0, equals);
    if (covered.count(variable) || equals == prefix_size) continue;
    std::string name = variable.substr(prefix_size);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    names.insert(name);
  }
  return {names.begin(), names.end()};
}

}  // namespace atomflow::connectors
