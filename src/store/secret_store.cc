// SecretStore: AES-256-GCM sealed secrets in the store file, under a key kept beside it.
#include "store/secret_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "store/sqlite_statement.h"
#include "store/store.h"

namespace atomflow::store {

namespace {

constexpr int kBusyTimeoutMs = 10000;
constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kMaxNameLength = 64;
constexpr char kKeyVariable[] = "ATOMFLOW_SECRET_KEY";

// One row per secret. nonce and ciphertext (with the GCM tag at its end) are hex text.
constexpr char kCreateTable[] = R"sql(
CREATE TABLE IF NOT EXISTS secrets (
  name TEXT PRIMARY KEY,
  nonce TEXT NOT NULL,
  ciphertext TEXT NOT NULL,
  update_time_ms INTEGER NOT NULL
))sql";

int64_t NowMs() {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  for (unsigned char byte : bytes) {
    text.push_back(kDigits[byte >> 4]);
    text.push_back(kDigits[byte & 0xf]);
  }
  return text;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The bytes of hex text; false when it is not hex.
bool Unhex(std::string_view text, std::string* bytes) {
  if (text.size() % 2 != 0) return false;
  bytes->clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    int high = HexDigit(text[i]);
    int low = HexDigit(text[i + 1]);
    if (high < 0 || low < 0) return false;
    bytes->push_back(static_cast<char>(high * 16 + low));
  }
  return true;
}

std::string Trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  size_t end = text.find_last_not_of(" \t\r\n");
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

std::string KeyPath(const std::string& store_path) { return store_path + ".key"; }

// The key from hex text; `where` names its origin in the message (the text is never quoted).
Result<std::string> KeyFromHex(const std::string& text, const std::string& where) {
  std::string key;
  if (!Unhex(Trim(text), &key) || key.size() != kKeyBytes) {
    return Status::Error(where + " must hold 64 hex digits (a 32-byte key)");
  }
  return key;
}

// The key file's key; "" when there is no file. A file others may read is refused, as ssh
// refuses a private key others may read.
Result<std::string> ReadKeyFile(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) return std::string();
  if ((info.st_mode & 077) != 0) {
    return Status::Error("the secret key file " + path +
                         " may be read by other users; run chmod 600 " + path);
  }
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read the secret key file " + path);
  std::stringstream text;
  text << in.rdbuf();
  return KeyFromHex(text.str(), "the secret key file " + path);
}

// Writes a new random key to path, mode 0600. The key is written to a temporary file and
// linked into place, so a reader never sees half a key; when another process linked its key
// first, that key is the one used.
Result<std::string> CreateKeyFile(const std::string& path) {
  std::string key(kKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), kKeyBytes) != 1) {
    return Status::Error("no random bytes for a secret key");
  }
  std::string temp = path + ".tmp." + std::to_string(getpid());
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Error("cannot create the secret key file " + path);
  std::string text = Hex(key) + "\n";
  bool written =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  close(fd);
  bool linked = written && link(temp.c_str(), path.c_str()) == 0;
  int link_error = errno;
  unlink(temp.c_str());
  if (linked) return key;
  if (written && link_error == EEXIST) return ReadKeyFile(path);
  return Status::Error("cannot write the secret key file " + path);
}

// The key ATOMFLOW_SECRET_KEY gives, else the key file's; "" when neither exists yet.
Result<std::string> LoadKey(const std::string& store_path) {
  const char* variable = std::getenv(kKeyVariable);
  if (variable != nullptr && *variable != '\0') {
    return KeyFromHex(variable, std::string("the environment variable ") + kKeyVariable);
  }
  return ReadKeyFile(KeyPath(store_path));
}

struct Sealed {
  std::string nonce;
  std::string ciphertext;  // with the tag at its end
};

// AES-256-GCM with the name as associated data.
Result<Sealed> Seal(const std::string& key, const std::string& name, const std::string& value) {
  Sealed sealed;
  sealed.nonce.assign(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(sealed.nonce.data()), kNonceBytes) != 1) {
    return Status::Error("no random bytes for a nonce");
  }
  sealed.ciphertext.assign(value.size() + kTagBytes, '\0');
  auto* out = reinterpret_cast<unsigned char*>(sealed.ciphertext.data());
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int length = 0;
  int final_length = 0;
  bool ok =
      EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.data()),
                         reinterpret_cast<const unsigned char*>(sealed.nonce.data())) == 1 &&
      EVP_EncryptUpdate(ctx, nullptr, &length, reinterpret_cast<const unsigned char*>(name.data()),
                        static_cast<int>(name.size())) == 1 &&
      EVP_EncryptUpdate(ctx, out, &length, reinterpret_cast<const unsigned char*>(value.data()),
                        static_cast<int>(value.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx, out + length, &final_length) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, out + value.size()) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return Status::Error("the secret could not be encrypted");
  return sealed;
}

// The value, or an error when the tag does not match (another key, or an altered row).
Result<std::string> Unseal(const std::string& key, const std::string& name, const Sealed& sealed) {
  if (sealed.nonce.size() != kNonceBytes || sealed.ciphertext.size() < kTagBytes) {
    return Status::Error("secret '" + name + "' is damaged in the store");
  }
  size_t size = sealed.ciphertext.size() - kTagBytes;
  std::string value(size, '\0');
  std::string tag = sealed.ciphertext.substr(size);
  auto* out = reinterpret_cast<unsigned char*>(value.data());
  const auto* in = reinterpret_cast<const unsigned char*>(sealed.ciphertext.data());
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int length = 0;
  int final_length = 0;
  bool ok =
      EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.data()),
                         reinterpret_cast<const unsigned char*>(sealed.nonce.data())) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &length, reinterpret_cast<const unsigned char*>(name.data()),
                        static_cast<int>(name.size())) == 1 &&
      EVP_DecryptUpdate(ctx, out, &length, in, static_cast<int>(size)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1 &&
      EVP_DecryptFinal_ex(ctx, out + length, &final_length) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    return Status::Error("secret '" + name +
                         "' does not open with this secret key (was the key file replaced?)");
  }
  return value;
}

Status CheckName(const std::string& name) {
  if (SecretStore::ValidName(name)) return Status::Ok();
  return Status::InvalidArgument(
      "a secret name is 1 to 64 lower-case letters, digits, '-' and '_'");
}

}  // namespace

bool SecretStore::ValidName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

SecretStore::~SecretStore() { sqlite3_close_v2(db_); }

Result<std::unique_ptr<SecretStore>> SecretStore::Open(const std::string& store_path) {
  std::filesystem::path folder = std::filesystem::path(store_path).parent_path();
  std::error_code error;
  if (!folder.empty() && !std::filesystem::is_directory(folder, error)) {
    return Status::Error("cannot open store " + store_path + ": folder " + folder.string() +
                         " does not exist");
  }
  Result<std::string> key = LoadKey(store_path);
  if (!key.ok()) return key.status();

  // `serve` and `run` open the secrets before the store: its first connection decides.
  StopSqliteMemoryStatistics();
  sqlite3* db = nullptr;
  int code =
      sqlite3_open_v2(store_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  std::unique_ptr<SecretStore> secrets(new SecretStore(db, std::move(key).value()));
  secrets->store_path_ = store_path;
  if (code != SQLITE_OK) {
    return Status::Error("cannot open store " + store_path + ": " + sqlite3_errstr(code));
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);

  Status status = ExecSql(db, "PRAGMA journal_mode=WAL");
  if (status.ok()) status = ExecSql(db, kCreateTable);
  if (!status.ok()) return Status::Error("store " + store_path + ": " + status.message());
  return secrets;
}

Status SecretStore::Set(const std::string& name, const std::string& value) {
  if (Status valid = CheckName(name); !valid.ok()) return valid;
  std::lock_guard<std::mutex> lock(mutex_);
  if (key_.empty()) {
    Result<std::string> key = CreateKeyFile(KeyPath(store_path_));
    if (!key.ok()) return key.status();
    key_ = std::move(key).value();
  }

  Result<Sealed> sealed = Seal(key_, name, value);
  if (!sealed.ok()) return sealed.status();
  Result<Statement> upsert = Statement::Prepare(
      db_,
      "INSERT INTO secrets (name, nonce, ciphertext, update_time_ms) VALUES (?, ?, ?, ?) "
      "ON CONFLICT (name) DO UPDATE SET nonce = excluded.nonce, "
      "ciphertext = excluded.ciphertext, update_time_ms = excluded.update_time_ms");
  if (!upsert.ok()) return upsert.status();
  upsert->Bind(1, name).Bind(2, Hex(sealed->nonce)).Bind(3, Hex(sealed->ciphertext));
  upsert->Bind(4, NowMs());
  Result<int> changed = upsert->Run();
  return changed.ok() ? Status::Ok() : changed.status();
}

Result<std::string> SecretStore::Get(const std::string& name) {
  if (Status valid = CheckName(name); !valid.ok()) return valid;
  std::lock_guard<std::mutex> lock(mutex_);
  Result<Statement> select =
      Statement::Prepare(db_, "SELECT nonce, ciphertext FROM secrets WHERE name = ?");
  if (!select.ok()) return select.status();
  select->Bind(1, name);
  Result<bool> row = select->Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("no secret named '" + name + "'");

  Sealed sealed;
  if (!Unhex(select->Text(0), &sealed.nonce) || !Unhex(select->Text(1), &sealed.ciphertext)) {
    return Status::Error("secret '" + name + "' is damaged in the store");
  }
  if (key_.empty()) {
    Result<std::string> key = LoadKey(store_path_);  // another process may have made it since
    if (!key.ok()) return key.status();
    if (key->empty()) {
      return Status::Error("secret '" + name + "' cannot be read: the secret key file " +
                           KeyPath(store_path_) + " is missing");
    }
    key_ = std::move(key).value();
  }
  return Unseal(key_, name, sealed);
}

Result<std::vector<SecretInfo>> SecretStore::List() {
  std::lock_guard<std::mutex> lock(mutex_);
  Result<Statement> select =
      Statement::Prepare(db_, "SELECT name, update_time_ms FROM secrets ORDER BY name");
  if (!select.ok()) return select.status();
  std::vector<SecretInfo> secrets;
  while (true) {
    Result<bool> row = select->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    secrets.push_back({select->Text(0), select->Int(1)});
  }
  return secrets;
}

Status SecretStore::Delete(const std::string& name) {
  if (Status valid = CheckName(name); !valid.ok()) return valid;
  std::lock_guard<std::mutex> lock(mutex_);
  Result<Statement> remove = Statement::Prepare(db_, "DELETE FROM secrets WHERE name = ?");
  if (!remove.ok()) return remove.status();
  remove->Bind(1, name);
  Result<int> changed = remove->Run();
  if (!changed.ok()) return changed.status();
  if (*changed == 0) return Status::NotFound("no secret named '" + name + "'");
  return Status::Ok();
}

}  // namespace atomflow::store
