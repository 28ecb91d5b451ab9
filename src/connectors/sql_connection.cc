// SqlConnection: libpq statements, prepared transactions, and typed result rows.
#include "connectors/sql_connection.h"

#include <cstdlib>
#include <optional>
#include <string_view>

namespace atomflow::connectors {

namespace {

// Type oids of the built-in types results are converted from (pg_type.dat); libpq ships no
// header for them without the server's development files.
constexpr Oid kBoolOid = 16;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kOidOid = 26;
constexpr Oid kJsonOid = 114;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kNumericOid = 1700;
constexpr Oid kJsonbOid = 3802;

// SQLSTATE 42704 undefined_object: what COMMIT/ROLLBACK PREPARED answer for an unknown gid.
constexpr char kUndefinedObject[] = "42704";

// A parameter as PostgreSQL text; nullopt for SQL NULL.
std::optional<std::string> ParamText(const Value& value) {
  switch (value.type()) {
    case Value::Type::kNull:
      return std::nullopt;
    case Value::Type::kBool:
      return std::string(value.AsBool() ? "true" : "false");
    case Value::Type::kInt:
      return std::to_string(value.AsInt());
    case Value::Type::kString:
      return value.AsString();
    case Value::Type::kBytes:
      return value.AsBytes();
    default: {
      Result<Json> json = ToJson(value);
      if (json.ok()) return json->dump();
      return DebugString(value);
    }
  }
}

Value CellValue(PGresult* result, int row, int column) {
  if (PQgetisnull(result, row, column)) return Value();
  const char* text = PQgetvalue(result, row, column);
  switch (PQftype(result, column)) {
    case kBoolOid:
      return Value(text[0] == 't');
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid:
    case kOidOid:
      return Value(static_cast<int64_t>(std::strtoll(text, nullptr, 10)));
    case kFloat4Oid:
    case kFloat8Oid:
    case kNumericOid:
      return Value(std::strtod(text, nullptr));
    case kJsonOid:
    case kJsonbOid: {
      Json json = Json::parse(text, nullptr, false);
      return json.is_discarded() ? Value(std::string(text)) : FromJson(json);
    }
    default:
      return Value(std::string(text));
  }
}

// {"rows": [{column: value}], "row_count": n} of one statement's result.
Value ResultValue(PGresult* result) {
  List rows;
  int columns = PQnfields(result);
  for (int row = 0; row < PQntuples(result); ++row) {
    Map cells;
    for (int column = 0; column < columns; ++column) {
      cells.Set(PQfname(result, column), CellValue(result, row, column));
    }
    rows.push_back(Value(std::move(cells)));
  }
  const char* affected = PQcmdTuples(result);
  int64_t count =
      affected[0] != '\0' ? std::strtoll(affected, nullptr, 10) : static_cast<int64_t>(rows.size());
  return Value(Map{{"rows", Value(std::move(rows))}, {"row_count", Value(count)}});
}

// Deletes a PGresult when it goes out of scope.
struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

}  // namespace

SqlOutcome SqlOutcome::Definite(std::string message, std::string sqlstate) {
  SqlOutcome outcome;
  outcome.kind = Kind::kDefinite;
  outcome.message = std::move(message);
  outcome.sqlstate = std::move(sqlstate);
  return outcome;
}

SqlOutcome SqlOutcome::Unknown(std::string message) {
  SqlOutcome outcome;
  outcome.kind = Kind::kUnknown;
  outcome.message = std::move(message);
  return outcome;
}

std::string QuoteLiteral(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    quoted.push_back(c);
    if (c == '\'') quoted.push_back('\'');
  }
  quoted.push_back('\'');
  return quoted;
}

namespace {

// The password of a connection string, "" when it has none. False when libpq cannot parse
// the string: its parse error quotes the bad part, which may be the password itself.
bool PasswordOf(const std::string& conninfo, std::string* password) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  if (options == nullptr) return false;
  for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
    if (std::string_view(option->keyword) == "password" && option->val != nullptr) {
      *password = option->val;
    }
  }
  PQconninfoFree(options);
  return true;
}

// A connection error as libpq words it, with the password cut out wherever it appears.
std::string Redacted(std::string message, const std::string& password) {
  while (!message.empty() && message.back() == '\n') message.pop_back();
  if (password.empty()) return message;
  for (size_t at = message.find(password); at != std::string::npos;
       at = message.find(password, at)) {
    message.replace(at, password.size(), "***");
  }
  return message;
}

}  // namespace

Result<std::unique_ptr<SqlConnection>> SqlConnection::Open(const std::string& conninfo,
                                                           int connect_timeout_seconds) {
  std::string password;
  if (!PasswordOf(conninfo, &password)) {
    return Status::Error(
        "cannot connect to PostgreSQL: the connection string is malformed "
        "(libpq cannot parse it; check its percent-encoding and quoting)");
  }
  // The timeout comes first, so that the expanded conninfo's own connect_timeout wins.
  std::string timeout = std::to_string(connect_timeout_seconds);
  const char* keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {timeout.c_str(), conninfo.c_str(), nullptr};
  PGconn* conn = connect_timeout_seconds > 0 ? PQconnectdbParams(keywords, values, 1)
                                             : PQconnectdb(conninfo.c_str());
  if (conn == nullptr) return Status::Error("cannot allocate a PostgreSQL connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = Redacted(PQerrorMessage(conn), password);
    PQfinish(conn);
    return Status::Error("cannot connect to PostgreSQL: " + message);
  }
  return std::unique_ptr<SqlConnection>(new SqlConnection(conn));
}

SqlConnection::~SqlConnection() { PQfinish(conn_); }

bool SqlConnection::healthy() const { return PQstatus(conn_) == CONNECTION_OK; }

void SqlConnection::RequestCancel(const std::shared_ptr<PGcancel>& canceller) {
  if (canceller == nullptr) return;
  char error[256];
  PQcancel(canceller.get(), error, sizeof(error));  // a failure only means nothing was running
}

SqlOutcome SqlConnection::Failure(PGresult* result, const std::string& what) {
  if (!healthy()) return SqlOutcome::Unknown(what + ": the connection broke");
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary =
      result != nullptr ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string message = primary != nullptr ? primary : PQerrorMessage(conn_);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  // No SQLSTATE means libpq itself failed (out of memory, protocol trouble): unknown.
  if (state == nullptr) return SqlOutcome::Unknown(what + ": " + message);
  return SqlOutcome::Definite(what + ": " + message, state);
}

SqlOutcome SqlConnection::Exec(const std::string& sql) {
  ResultPtr result(PQexec(conn_, sql.c_str()));
  ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return SqlOutcome();
  return Failure(result.get(), sql);
}

SqlOutcome SqlConnection::ExecStatements(const std::vector<SqlStatement>& statements) {
  SqlOutcome outcome;
  for (size_t i = 0; i < statements.size(); ++i) {
    const SqlStatement& statement = statements[i];
    std::vector<std::optional<std::string>> texts;
    for (const Value& param : statement.params) texts.push_back(ParamText(param));
    std::vector<const char*> values;
    for (const auto& text : texts) values.push_back(text ? text->c_str() : nullptr);

    ResultPtr result(PQexecParams(conn_, statement.sql.c_str(), static_cast<int>(values.size()),
                                  nullptr, values.data(), nullptr, nullptr, 0));
    ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      SqlOutcome failed = Failure(result.get(), "statement " + std::to_string(i + 1));
      failed.statement = static_cast<int>(i + 1);
      return failed;
    }
    // A statement that ended the transaction Run or RunPrepared began (a COMMIT written in a
    // way the argument check did not recognise) is refused before anything else runs.
    if (PQtransactionStatus(conn_) != PQTRANS_INTRANS) {
      SqlOutcome escaped = SqlOutcome::Definite(
          "statement " + std::to_string(i + 1) + " ended atomflow's transaction", "");
      escaped.statement = static_cast<int>(i + 1);
      return escaped;
    }
    outcome.results.push_back(ResultValue(result.get()));
  }
  return outcome;
}

void SqlConnection::RollbackQuietly() {
  if (!healthy()) return;
  ResultPtr result(PQexec(conn_, "ROLLBACK"));
}

SqlOutcome SqlConnection::Run(const std::vector<SqlStatement>& statements) {
  SqlOutcome begun = Exec("BEGIN");
  if (!begun.ok()) return begun;

  SqlOutcome outcome = ExecStatements(statements);
  if (!outcome.ok()) {
    RollbackQuietly();
    return outcome;
  }

  // A COMMIT whose answer is lost may or may not have happened: Failure reports it unknown.
  SqlOutcome committed = Exec("COMMIT");
  if (!committed.ok()) return committed;
  return outcome;
}

SqlOutcome SqlConnection::RunPrepared(const std::vector<SqlStatement>& statements,
                                      const std::string& gid) {
  SqlOutcome begun = Exec("BEGIN");
  if (!begun.ok()) return begun;

  SqlOutcome outcome = ExecStatements(statements);
  if (!outcome.ok()) {
    RollbackQuietly();
    return outcome;
  }

  // A PREPARE that fails has already rolled the transaction back: nothing is left to undo.
  SqlOutcome prepared = Exec("PREPARE TRANSACTION " + QuoteLiteral(gid));
  if (!prepared.ok()) return prepared;
  return outcome;
}

SqlOutcome SqlConnection::FinishPrepared(const char* verb, const std::string& gid, bool* missing) {
  *missing = false;
  SqlOutcome outcome = Exec(std::string(verb) + " PREPARED " + QuoteLiteral(gid));
  if (outcome.kind == SqlOutcome::Kind::kDefinite && outcome.sqlstate == kUndefinedObject) {
    *missing = true;
    return SqlOutcome();
  }
  return outcome;
}

SqlOutcome SqlConnection::CommitPrepared(const std::string& gid, bool* missing) {
  return FinishPrepared("COMMIT", gid, missing);
}

SqlOutcome SqlConnection::RollbackPrepared(const std::string& gid, bool* missing) {
  return FinishPrepared("ROLLBACK", gid, missing);
}

Result<std::vector<std::string>> SqlConnection::ListPrepared(const std::string& prefix) {
  const char* sql =
      "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
      "AND starts_with(gid, $1) ORDER BY prepared";
  const char* values[] = {prefix.c_str()};
  ResultPtr result(PQexecParams(conn_, sql, 1, nullptr, values, nullptr, nullptr, 0));
  if (!result || PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    return Status::Error(Failure(result.get(), "listing prepared transactions").message);
  }
  std::vector<std::string> gids;
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    gids.emplace_back(PQgetvalue(result.get(), row, 0));
  }
  return gids;
}

}  // namespace atomflow::connectors
