// The catalog of named databases: workflows say `database: registry`, and the connection
// string comes from atomflow.yaml, the secret store or an ATOMFLOW_DATABASE_<NAME> variable.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace atomflow::store {
class SecretStore;
}  // namespace atomflow::store

namespace atomflow::connectors {

// Where one configured database's connection string comes from: written in the file, held by
// an environment variable the file names (`{secret_env: VAR}`), or by a secret of the secret
// store (`{secret: NAME}`), so that the secret stays out of the file.
struct DatabaseSource {
  std::string conninfo;    // set when the file holds the connection string
  std::string secret_env;  // set when an environment variable holds it
  std::string secret;      // set when the secret store holds it
};

// Resolves database names to libpq connection strings, and says how many SQL operations may
// run at once (`sql: {pool_size: N}`). An environment variable
// ATOMFLOW_DATABASE_<NAME> (the name upper-cased, other characters as '_') overrides the
// file. Connection strings are secrets: no message of this class repeats one. Immutable after
// Load (and set_secrets), so thread safe; `{secret: NAME}` is read from the secret store each
// time a connection string is asked for.
class DatabaseCatalog {
 public:
  DatabaseCatalog() = default;

  // Reads `databases:` from config_path. A missing file is an empty catalog unless required
  // (the user named it with --config); a malformed one is an error.
  static Result<DatabaseCatalog> Load(const std::string& config_path, bool required);
  // Parses the text of an atomflow.yaml; config_path only names it in messages.
  static Result<DatabaseCatalog> Parse(const std::string& text, const std::string& config_path);

  // The connection string of database `name`, or an error that names the database and every
  // place that was looked in.
  Result<std::string> ConnectionString(const std::string& name) const;

  // Every database name known: the file's, and those only the environment defines (in lower
  // case). Recovery visits each of them.
  std::vector<std::string> Names() const;

  // The environment variable that overrides database `name`.
  static std::string OverrideVariable(const std::string& name);

  // The most SQL operations in flight at once (`sql: {pool_size: N}`, kDefaultPoolSize when
  // unset): SqlExecutor's threads, and so the most connections open per database.
  int pool_size() const { return pool_size_; }
  void set_pool_size(int pool_size) { pool_size_ = pool_size; }
  static constexpr int kDefaultPoolSize = 32;
  static constexpr int kMaxPoolSize = 1024;

  // Where `{secret: NAME}` databases are read from; shared with the other connectors.
  void set_secrets(std::shared_ptr<store::SecretStore> secrets) { secrets_ = std::move(secrets); }

 private:
  std::string config_path_;  // for messages; empty when no file was read
  std::map<std::string, DatabaseSource> sources_;
  int pool_size_ = kDefaultPoolSize;
  std::shared_ptr<store::SecretStore> secrets_;
};

}  // namespace atomflow::connectors
