// A connection to one PostgreSQL database (libpq) and the operations atomflow.sql.exec and the
// two-phase-commit branch need: run statements in one local transaction, either committed at
// once or prepared under a global transaction id, and finish or list prepared transactions.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::connectors {

// One statement with its positional parameters ($1, $2, ...). Parameters travel as text:
// strings as they are, numbers and booleans in PostgreSQL's literal syntax, lists and maps as
// JSON, null as SQL NULL.
struct SqlStatement {
  std::string sql;
  std::vector<Value> params;
};

// How a SQL operation ended. A definite failure (the server answered with an error) means
// the work did not happen; an unknown one (the connection broke or could not be made) means
// it may or may not have, so the caller retries or asks the server.
struct SqlOutcome {
  enum class Kind { kOk, kDefinite, kUnknown };
  Kind kind = Kind::kOk;
  std::string message;   // empty when ok
  std::string sqlstate;  // the server's SQLSTATE for a definite failure
  int statement = 0;     // 1-based number of the statement that failed; 0 for none
  // For each statement: {"rows": [maps], "row_count": int}.
  List results;

  bool ok() const { return kind == Kind::kOk; }
  static SqlOutcome Definite(std::string message, std::string sqlstate);
  static SqlOutcome Unknown(std::string message);
};

// An open libpq connection. Not thread safe: one caller at a time. Every call is blocking, so
// the engine runs them off the I/O loop (see SqlExecutor).
class SqlConnection {
 public:
  // conninfo is a libpq connection string or URI. The error never repeats the password.
  // connect_timeout_seconds, when above 0, bounds the connection attempt unless conninfo sets
  // its own `connect_timeout` (libpq's default is to wait for the operating system).
  static Result<std::unique_ptr<SqlConnection>> Open(const std::string& conninfo,
                                                     int connect_timeout_seconds = 0);
  ~SqlConnection();
  SqlConnection(const SqlConnection&) = delete;
  SqlConnection& operator=(const SqlConnection&) = delete;

  // Runs the statements in one local transaction and commits it.
  SqlOutcome Run(const std::vector<SqlStatement>& statements);
  // Runs the statements in one local transaction and prepares it as `gid` (PREPARE
  // TRANSACTION): the work is durable on the server and waits for CommitPrepared or
  // RollbackPrepared. Preparing a gid that is already prepared fails definitely.
  SqlOutcome RunPrepared(const std::vector<SqlStatement>& statements, const std::string& gid);

  // COMMIT PREPARED / ROLLBACK PREPARED. `*missing` is set when the server has no prepared
  // transaction by that name (finished before, or never prepared): only the caller's journal
  // can say which, so it is not an error here.
  SqlOutcome CommitPrepared(const std::string& gid, bool* missing);
  SqlOutcome RollbackPrepared(const std::string& gid, bool* missing);

  // The gids of this database's prepared transactions that start with prefix.
  Result<std::vector<std::string>> ListPrepared(const std::string& prefix);

  // False once the connection broke; such a connection is dropped, never reused.
  bool healthy() const;

  // What cancels the statement running on this connection from another thread
  // (RequestCancel); it stays usable after the connection is gone.
  std::shared_ptr<PGcancel> canceller() const { return canceller_; }
  // Asks the server to cancel whatever `canceller` names is running; blocks for a round trip
  // on a connection of its own, so callers run it off the I/O loop.
  static void RequestCancel(const std::shared_ptr<PGcancel>& canceller);

 private:
  explicit SqlConnection(PGconn* conn)
      : conn_(conn), canceller_(PQgetCancel(conn), [](PGcancel* c) { PQfreeCancel(c); }) {}

  SqlOutcome Exec(const std::string& sql);
  SqlOutcome ExecStatements(const std::vector<SqlStatement>& statements);
  SqlOutcome FinishPrepared(const char* verb, const std::string& gid, bool* missing);
  SqlOutcome Failure(PGresult* result, const std::string& what);
  void RollbackQuietly();

  PGconn* conn_;
  std::shared_ptr<PGcancel> canceller_;
};

// A gid as a PostgreSQL string literal ('...' with quotes doubled): PREPARE TRANSACTION takes
// no parameters.
std::string QuoteLiteral(const std::string& text);

}  // namespace atomflow::connectors
