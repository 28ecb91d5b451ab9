// Named secrets (HTTP credentials, database connection strings), encrypted in the store file.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace atomflow::store {

// A secret's name and when it was last set; never its value.
struct SecretInfo {
  std::string name;
  int64_t update_time_ms = 0;
};

// The secrets of one store file, in its table `secrets(name PRIMARY KEY, nonce, ciphertext,
// update_time_ms)`, through a SQLite connection of its own. Each value is sealed with
// AES-256-GCM under a fresh 96-bit nonce, the secret's name as associated data (a row copied
// under another name does not open). The 32-byte key is ATOMFLOW_SECRET_KEY (64 hex digits)
// when set, else the file `<store path>.key`, made with mode 0600 on first use: the store file
// alone reveals no secret. Names are [a-z0-9_-]{1,64}. No message of this class contains a
// value. Thread safe: one mutex around the connection.
class SecretStore {
 public:
  ~SecretStore();
  SecretStore(const SecretStore&) = delete;
  SecretStore& operator=(const SecretStore&) = delete;

  // Opens (and creates when needed) the table in the SQLite file at store_path, and the key.
  static Result<std::unique_ptr<SecretStore>> Open(const std::string& store_path);

  // Sets secret `name` to value, replacing any earlier value. InvalidArgument for a bad name.
  Status Set(const std::string& name, const std::string& value);
  // The value of secret `name`; NotFound when there is none; an error when it does not open
  // under this key (the key file was replaced).
  Result<std::string> Get(const std::string& name);
  // Every secret's name and update time, by name.
  Result<std::vector<SecretInfo>> List();
  // Removes secret `name`; NotFound when there is none.
  Status Delete(const std::string& name);

  // True when name is a valid secret name.
  static bool ValidName(const std::string& name);

 private:
  SecretStore(sqlite3* db, std::string key) : db_(db), key_(std::move(key)) {}

  std::mutex mutex_;
  sqlite3* db_;             // owned; closed by the destructor
  std::string key_;         // 32 bytes; empty until a key exists (made by the first Set)
  std::string store_path_;  // the key file is store_path_ + ".key"
};

}  // namespace atomflow::store
