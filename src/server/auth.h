// API tokens and roles of `atomflow serve`: tokens are kept as SHA-256 hashes in the store file.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::server {

// What a token may do. Each role includes the ones before it, so `role >= Role::kInvoker`
// asks "may this caller run executions".
enum class Role { kViewer = 0, kInvoker = 1, kDeployer = 2, kAdmin = 3 };

// "viewer", "invoker", "deployer", "admin"; InvalidArgument naming the valid roles otherwise.
Result<Role> ParseRole(std::string_view text);
std::string RoleName(Role role);

// The API tokens of one store file, in its table `api_tokens(name PRIMARY KEY, role, hash,
// created_ms, last_used_ms)`, through a SQLite connection of its own (the engine's store has
// another one on the same file). A token is `afk_` followed by 64 hex digits of 32 random
// bytes; only its SHA-256 (hex) is stored, and it is shown once, by Create. Authenticate reads
// the table on every call (nothing is cached), so a revoked token fails at once, in this
// process and in any other on the same file. Thread safe: one mutex around the connection.
class TokenStore {
 public:
  ~TokenStore();
  TokenStore(const TokenStore&) = delete;
  TokenStore& operator=(const TokenStore&) = delete;

  // Opens (and creates when needed) the table in the SQLite file at store_path.
  static Result<std::unique_ptr<TokenStore>> Open(const std::string& store_path);

  // A new token for `name` (letters, digits, '-', '_', '.', at most 64): the token, shown once.
  // AlreadyExists when the name is taken; InvalidArgument for a bad name.
  Result<std::string> Create(const std::string& name, Role role);

  // The role of the token in an Authorization header ("Bearer afk_..."). Unauthenticated when
  // the header is missing, malformed, or names no live token; the message never repeats it.
  Result<Role> Authenticate(std::string_view authorization_header);

  // Removes the token `name`; NotFound when there is none.
  Status Revoke(const std::string& name);

  // [{"name", "role", "createTime", "lastUseTime"}], by name; never a hash.
  Result<Json> List();

 private:
  explicit TokenStore(sqlite3* db) : db_(db) {}

  std::mutex mutex_;
  sqlite3* db_;  // owned; closed by the destructor
};

}  // namespace atomflow::server
