// TokenStore: API tokens made from random bytes, kept as SHA-256 hashes in the store file.
#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <utility>

#include "store/sqlite_statement.h"

namespace atomflow::server {

namespace {

using store::ExecSql;
using store::Statement;

constexpr int kBusyTimeoutMs = 10000;
constexpr size_t kTokenBytes = 32;
constexpr size_t kMaxNameLength = 64;
constexpr char kTokenPrefix[] = "afk_";
// last_used_ms is a convenience for operators: written at most once a minute per token, so
// that authenticating does not make every request a write to the store file.
constexpr int64_t kLastUsedResolutionMs = 60000;

constexpr char kCreateTable[] = R"sql(
CREATE TABLE IF NOT EXISTS api_tokens (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  last_used_ms INTEGER
))sql";

constexpr std::array<const char*, 4> kRoleNames = {"viewer", "invoker", "deployer", "admin"};

int64_t NowMs() {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  for (size_t i = 0; i < size; ++i) {
    text.push_back(kDigits[bytes[i] >> 4]);
    text.push_back(kDigits[bytes[i] & 0xf]);
  }
  return text;
}

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return Hex(digest, sizeof(digest));
}

// RFC 3339 UTC with milliseconds, as the REST API writes times.
std::string FormatTime(int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  size_t size = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + size, sizeof(text) - size, ".%03dZ", static_cast<int>(ms % 1000));
  return text;
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (unsigned char c : name) {
    if (!std::isalnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// The token of an Authorization header "Bearer afk_...", or "" when there is none.
std::string_view BearerToken(std::string_view header) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return {};
  }
  std::string_view token = header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.rfind(kTokenPrefix, 0) != 0) return {};
  return token;
}

Status Unauthenticated() {
  return Status::Unauthenticated(
      "a valid API token is required: Authorization: Bearer <token> (atomflow tokens create)");
}

}  // namespace

Result<Role> ParseRole(std::string_view text) {
  for (size_t i = 0; i < kRoleNames.size(); ++i) {
    if (text == kRoleNames[i]) return static_cast<Role>(i);
  }
  return Status::InvalidArgument("unknown role '" + std::string(text) +
                                 "': expected viewer, invoker, deployer or admin");
}

std::string RoleName(Role role) { return kRoleNames[static_cast<size_t>(role)]; }

TokenStore::~TokenStore() { sqlite3_close_v2(db_); }

Result<std::unique_ptr<TokenStore>> TokenStore::Open(const std::string& store_path) {
  std::filesystem::path folder = std::filesystem::path(store_path).parent_path();
  std::error_code error;
  if (!folder.empty() && !std::filesystem::is_directory(folder, error)) {
    return Status::Error("cannot open store " + store_path + ": folder " + folder.string() +
                         " does not exist");
  }
  sqlite3* db = nullptr;
  int code =
      sqlite3_open_v2(store_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  std::unique_ptr<TokenStore> tokens(new TokenStore(db));
  if (code != SQLITE_OK) {
    return Status::Error("cannot open store " + store_path + ": " + sqlite3_errstr(code));
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);

  Status status = ExecSql(db, "PRAGMA journal_mode=WAL");
  if (status.ok()) status = ExecSql(db, kCreateTable);
  if (!status.ok()) return Status::Error("store " + store_path + ": " + status.message());
  return tokens;
}

Result<std::string> TokenStore::Create(const std::string& name, Role role) {
  if (!ValidName(name)) {
    return Status::InvalidArgument(
        "a token name is 1 to 64 letters, digits, '-', '_' and '.', got '" + name + "'");
  }
  unsigned char random[kTokenBytes];
  if (RAND_bytes(random, sizeof(random)) != 1) return Status::Error("no random bytes for a token");
  std::string token = kTokenPrefix + Hex(random, sizeof(random));
  OPENSSL_cleanse(random, sizeof(random));

  std::lock_guard<std::mutex> lock(mutex_);
  Result<Statement> insert = Statement::Prepare(
      db_, "INSERT INTO api_tokens (name, role, hash, created_ms) VALUES (?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  insert->Bind(1, name).Bind(2, RoleName(role)).Bind(3, Sha256Hex(token)).Bind(4, NowMs());
  Result<int> inserted = insert->Run();
  if (!inserted.ok()) {
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return Status::AlreadyExists("a token named '" + name + "' exists (revoke it first)");
    }
    return inserted.status();
  }
  return token;
}

// Every stored hash is compared, each in constant time, so neither the time taken nor its
// variation tells how much of a guessed token was right or which row it matched.
Result<Role> TokenStore::Authenticate(std::string_view authorization_header) {
  std::string_view token = BearerToken(authorization_header);
  if (token.empty()) return Unauthenticated();
  std::string hash = Sha256Hex(token);

  std::lock_guard<std::mutex> lock(mutex_);
  Result<Statement> select =
      Statement::Prepare(db_, "SELECT name, role, hash, last_used_ms FROM api_tokens");
  if (!select.ok()) return select.status();
  std::string matched_name;
  std::string matched_role;
  int64_t last_used_ms = 0;
  while (true) {
    Result<bool> row = select->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    std::string stored = select->Text(2);
    bool equal =
        stored.size() == hash.size() && CRYPTO_memcmp(stored.data(), hash.data(), hash.size()) == 0;
    if (equal) {
      matched_name = select->Text(0);
      matched_role = select->Text(1);
      last_used_ms = select->Int(3);
    }
  }
  select->Reset();
  if (matched_name.empty()) return Unauthenticated();

  Result<Role> role = ParseRole(matched_role);
  if (!role.ok()) return Status::Error("token '" + matched_name + "' has an unknown role");
  int64_t now = NowMs();
  if (now - last_used_ms >= kLastUsedResolutionMs) {
    Result<Statement> touch =
        Statement::Prepare(db_, "UPDATE api_tokens SET last_used_ms = ? WHERE name = ?");
    if (touch.ok()) (void)touch->Bind(1, now).Bind(2, matched_name).Run();  // best effort
  }
  return role;
}

Status TokenStore::Revoke(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  Result<Statement> remove = Statement::Prepare(db_, "DELETE FROM api_tokens WHERE name = ?");
  if (!remove.ok()) return remove.status();
  remove->Bind(1, name);
  Result<int> changed = remove->Run();
  if (!changed.ok()) return changed.status();
  if (*changed == 0) return Status::NotFound("no token named '" + name + "'");
  return Status::Ok();
}

Result<Json> TokenStore::List() {
  std::lock_guard<std::mutex> lock(mutex_);
  Result<Statement> select = Statement::Prepare(
      db_, "SELECT name, role, created_ms, last_used_ms FROM api_tokens ORDER BY name");
  if (!select.ok()) return select.status();
  Json tokens = Json::array();
  while (true) {
    Result<bool> row = select->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Json token = {{"name", select->Text(0)},
                  {"role", select->Text(1)},
                  {"createTime", FormatTime(select->Int(2))}};
    if (!select->IsNull(3)) token["lastUseTime"] = FormatTime(select->Int(3));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

}  // namespace atomflow::server
