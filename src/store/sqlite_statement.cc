// Prepared statements and plain SQL execution over the SQLite C API.
#include "store/sqlite_statement.h"

#include <utility>

namespace atomflow::store {

Status ExecSql(sqlite3* db, std::string_view sql) {
  char* message = nullptr;
  std::string text(sql);
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, &message) == SQLITE_OK) {
    return Status::Ok();
  }

  std::string reason = message != nullptr ? message : sqlite3_errmsg(db);
  sqlite3_free(message);
  return Status::Error(reason);
}

Statement::Statement(Statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), bind_error_(other.bind_error_) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
    bind_error_ = other.bind_error_;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Result<Statement> Statement::Prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int code = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (code != SQLITE_OK) {
    return Status::Error(std::string(sqlite3_errmsg(db)) + " in: " + std::string(sql));
  }
  return Statement(stmt);
}

namespace {

int BindText(sqlite3_stmt* stmt, int index, std::string_view text, sqlite3_destructor_type copy) {
  // An empty view may have no data pointer, which SQLite would store as NULL, not "".
  const char* data = text.data() != nullptr ? text.data() : "";
  return sqlite3_bind_text(stmt, index, data, static_cast<int>(text.size()), copy);
}

}  // namespace

Statement& Statement::Bind(int index, std::string_view text) {
  int code = BindText(stmt_, index, text, SQLITE_TRANSIENT);
  if (bind_error_ == SQLITE_OK) bind_error_ = code;
  return *this;
}

Statement& Statement::BindUncopied(int index, std::string_view text) {
  int code = BindText(stmt_, index, text, SQLITE_STATIC);
  if (bind_error_ == SQLITE_OK) bind_error_ = code;
  return *this;
}

Statement& Statement::Bind(int index, int64_t number) {
  int code = sqlite3_bind_int64(stmt_, index, number);
  if (bind_error_ == SQLITE_OK) bind_error_ = code;
  return *this;
}

Result<bool> Statement::Step() {
  if (bind_error_ != SQLITE_OK) return Error(bind_error_);

  int code = sqlite3_step(stmt_);
  if (code == SQLITE_ROW) return true;
  if (code == SQLITE_DONE) return false;
  return Error(code);
}

Result<int> Statement::Run() {
  Result<bool> stepped = Step();
  if (!stepped.ok()) return stepped.status();
  return sqlite3_changes(sqlite3_db_handle(stmt_));
}

std::string Statement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return "";
  return {reinterpret_cast<const char*>(text),
          static_cast<size_t>(sqlite3_column_bytes(stmt_, column))};
}

std::string_view Statement::TextView(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  return {reinterpret_cast<const char*>(text),
          static_cast<size_t>(sqlite3_column_bytes(stmt_, column))};
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = SQLITE_OK;
}

Status Statement::Error(int code) const {
  // sqlite3_errmsg describes the latest failure on the connection; the code names this one.
  std::string message = sqlite3_errmsg(sqlite3_db_handle(stmt_));
  if (message == "not an error") message = sqlite3_errstr(code);
  return Status::Error(message);
}

Status PrepareAll(sqlite3* db,
                  std::initializer_list<std::pair<Statement*, std::string_view>> statements) {
  for (const auto& [statement, sql] : statements) {
    Result<Statement> prepared = Statement::Prepare(db, sql);
    if (!prepared.ok()) return prepared.status();
    *statement = std::move(prepared).value();
  }
  return Status::Ok();
}

}  // namespace atomflow::store
