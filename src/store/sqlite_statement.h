// A thin owner of SQLite connections and prepared statements for the SQLite store.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace atomflow::store {

// Closes a connection; used as the deleter of Connection.
struct ConnectionCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Connection = std::unique_ptr<sqlite3, ConnectionCloser>;

// Runs SQL that returns no rows (pragmas, schema, BEGIN/COMMIT) on `db`.
[[nodiscard]] Status ExecSql(sqlite3* db, std::string_view sql);

// One prepared statement, owned; finalized on destruction, before its connection closes.
// Not thread safe: each statement is used by one thread at a time (the writer thread, or a
// reader under the store's read lock). Binding starts after Reset(); ScopedReset ends each use
// so that no statement keeps a read snapshot open between uses.
class Statement {
 public:
  Statement() = default;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  ~Statement();

  static Result<Statement> Prepare(sqlite3* db, std::string_view sql);

  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, int64_t number);
  // Binds text without SQLite copying it: `text` must stay unchanged until Reset, which clears
  // the binding. For large values on the writer's hot path (journal payloads).
  Statement& BindUncopied(int index, std::string_view text);

  // Advances one row: true while a row is ready, false when done.
  Result<bool> Step();

  // Steps a statement that returns no rows; the number of rows it changed.
  Result<int> Run();

  std::string Text(int column) const;
  // The text without a copy; valid until the next Step or Reset of the statement.
  std::string_view TextView(int column) const;
  int64_t Int(int column) const;
  bool IsNull(int column) const;

  void Reset();

 private:
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Status Error(int code) const;

  sqlite3_stmt* stmt_ = nullptr;
  int bind_error_ = SQLITE_OK;  // the first failed bind, reported by Step
};

// Prepares each (statement, sql) pair on `db`; stops at the first failure.
[[nodiscard]] Status PrepareAll(
    sqlite3* db, std::initializer_list<std::pair<Statement*, std::string_view>> statements);

// Resets a statement when a scope that used it ends.
class ScopedReset {
 public:
  explicit ScopedReset(Statement& statement) : statement_(statement) { statement_.Reset(); }
  ~ScopedReset() { statement_.Reset(); }
  ScopedReset(const ScopedReset&) = delete;
  ScopedReset& operator=(const ScopedReset&) = delete;

 private:
  Statement& statement_;
};

}  // namespace atomflow::store
