// SqlExecutor: the pool threads, the idle connections, and SQL outcomes as workflow values.
#include "connectors/sql_executor.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "lang/error.h"

namespace atomflow::connectors {

namespace {

using engine::EffectOutcome;

EffectOutcome ArgsError(const std::string& message) {
  return EffectOutcome::Failure(lang::MakeError("TypeError", "atomflow.sql.exec: " + message));
}

// The statement's first `count` words, upper-cased, past white space and comments.
std::vector<std::string> LeadingWords(const std::string& sql, size_t count) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < sql.size() && words.size() < count) {
    if (std::isspace(static_cast<unsigned char>(sql[i]))) {
      ++i;
    } else if (sql.compare(i, 2, "--") == 0) {
      size_t end = sql.find('\n', i);
      i = end == std::string::npos ? sql.size() : end + 1;
    } else if (sql.compare(i, 2, "/*") == 0) {
      size_t end = sql.find("*/", i + 2);
      i = end == std::string::npos ? sql.size() : end + 2;
    } else {
      std::string word;
      while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i]))) {
        word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
      }
      if (word.empty()) break;
      words.push_back(std::move(word));
    }
  }
  return words;
}

// The transaction-control command a statement is, or "": Atomflow begins and ends (or
// prepares) the statements' transaction, and a COMMIT among them would land their effects
// outside the branch, where no abort can undo them.
std::string TransactionControl(const std::string& sql) {
  std::vector<std::string> words = LeadingWords(sql, 2);
  if (words.empty()) return "";
  const std::string& first = words[0];
  std::string second = words.size() > 1 ? words[1] : "";
  if (first == "BEGIN" || first == "COMMIT" || first == "END" || first == "ABORT") return first;
  if (first == "START" && second == "TRANSACTION") return "START TRANSACTION";
  if (first == "ROLLBACK" && second != "TO") return "ROLLBACK";
  if (first == "PREPARE" && second == "TRANSACTION") return "PREPARE TRANSACTION";
  return "";
}

Result<SqlStatement> ParseStatement(const Value& value, size_t number) {
  std::string where = "statement " + std::to_string(number);
  if (value.is_string()) return SqlStatement{value.AsString(), {}};
  if (!value.is_map()) return Status::Error(where + " must be a string or {sql, params}");
  const Value* sql = value.AsMap().Find("sql");
  if (sql == nullptr || !sql->is_string()) return Status::Error(where + ": 'sql' must be text");
  SqlStatement statement{sql->AsString(), {}};
  const Value* params = value.AsMap().Find("params");
  if (params != nullptr && !params->is_null()) {
    if (!params->is_list()) return Status::Error(where + ": 'params' must be a list");
    statement.params = params->AsList();
  }
  return statement;
}

// {missing} of COMMIT/ROLLBACK PREPARED.
EffectOutcome FinishOutcome(const SqlOutcome& outcome, bool missing, const std::string& database) {
  if (!outcome.ok()) return SqlEffectOutcome(outcome, database);
  return EffectOutcome::Success(Value(Map{{"missing", Value(missing)}}));
}

}  // namespace

EffectOutcome SqlEffectOutcome(const SqlOutcome& outcome, const std::string& database) {
  if (outcome.kind == SqlOutcome::Kind::kUnknown) {
    Map error =
        lang::MakeError("ConnectionError", "database '" + database + "': " + outcome.message)
            .AsMap();
    error.Set("database", Value(database));
    return EffectOutcome::Failure(Value(std::move(error)));
  }
  if (outcome.kind == SqlOutcome::Kind::kDefinite) {
    Map error =
        lang::MakeError("SqlError", "database '" + database + "': " + outcome.message).AsMap();
    error.Set("database", Value(database));
    error.Set("sqlstate", Value(outcome.sqlstate));
    error.Set("statement", Value(static_cast<int64_t>(outcome.statement)));
    return EffectOutcome::Failure(Value(std::move(error)));
  }
  Value last = outcome.results.empty()
                   ? Value(Map{{"rows", Value(List{})}, {"row_count", Value(int64_t{0})}})
                   : outcome.results.back();
  return EffectOutcome::Success(Value(Map{{"results", Value(outcome.results)},
                                          {"rows", *last.AsMap().Find("rows")},
                                          {"row_count", *last.AsMap().Find("row_count")}}));
}

Result<SqlTask> SqlExecutor::ParseExecArgs(const Value& args) {
  SqlTask task;
  const Value* database = args.is_map() ? args.AsMap().Find("database") : nullptr;
  if (database == nullptr || !database->is_string() || database->AsString().empty()) {
    return Status::Error("'database' must name a configured database");
  }
  task.database = database->AsString();
  const Value* statements = args.AsMap().Find("statements");
  if (statements == nullptr || !statements->is_list() || statements->AsList().empty()) {
    return Status::Error("'statements' must be a non-empty list");
  }
  for (const Value& value : statements->AsList()) {
    Result<SqlStatement> statement = ParseStatement(value, task.statements.size() + 1);
    if (!statement.ok()) return statement.status();
    if (std::string control = TransactionControl(statement->sql); !control.empty()) {
      return Status::Error("statement " + std::to_string(task.statements.size() + 1) + ": " +
                           control +
                           " is not allowed: atomflow runs the statements in one transaction "
                           "of its own and ends it (put the work in a transaction: block to "
                           "make it atomic with other steps)");
    }
    task.statements.push_back(std::move(statement).value());
  }
  return task;
}

SqlExecutor::SqlExecutor(DatabaseCatalog catalog)
    : catalog_(std::move(catalog)),
      max_threads_(static_cast<size_t>(std::max(1, catalog_.pool_size()))) {}

SqlExecutor::~SqlExecutor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  // No thread starts once stopping_ is set, so threads_ no longer changes.
  for (std::thread& thread : threads_) thread.join();
}

// A queued task that no idle thread will take starts a thread, up to the pool size. A thread
// woken but not yet running counts as idle, so a burst of submits starts one thread per task
// beyond the idle ones, never more.
void SqlExecutor::StartThreadIfNeeded() {
  if (stopping_ || threads_.size() >= max_threads_ || queue_.size() <= idle_threads_) return;
  threads_.emplace_back([this] { ThreadLoop(); });
}

void SqlExecutor::Submit(SqlTask task, std::function<void(EffectOutcome)> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!task.xid.empty()) {
      auto [busy, first] = busy_.try_emplace(task.xid);
      if (!first) {
        busy->second.push_back(Queued{std::move(task), std::move(done)});
        return;
      }
    }
    queue_.push_back(Queued{std::move(task), std::move(done)});
    StartThreadIfNeeded();
  }
  ready_.notify_one();
}

void SqlExecutor::Cancel(const std::string& xid) {
  std::shared_ptr<PGcancel> canceller;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto running = running_.find(xid);
    if (running == running_.end()) {
      if (busy_.count(xid) != 0) cancelled_.insert(xid);  // queued: fails when it starts
      return;
    }
    canceller = running->second;
  }
  // PQcancel opens a connection of its own: not on the caller's (the I/O loop's) thread.
  std::thread([canceller] { SqlConnection::RequestCancel(canceller); }).detach();
}

// The task on xid ended: the next one waiting on the same gid may run.
void SqlExecutor::Finished(const std::string& xid) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto busy = busy_.find(xid);
    if (busy == busy_.end()) return;
    if (busy->second.empty()) {
      busy_.erase(busy);
      cancelled_.erase(xid);  // a cancel that came after its prepare had run
      return;
    }
    queue_.push_back(std::move(busy->second.front()));
    busy->second.pop_front();
    StartThreadIfNeeded();
  }
  ready_.notify_one();
}

void SqlExecutor::ThreadLoop() {
  for (;;) {
    Queued queued;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++idle_threads_;
      ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      --idle_threads_;
      if (queue_.empty()) return;  // stopping, and nothing left to run
      queued = std::move(queue_.front());
      queue_.pop_front();
    }
    EffectOutcome outcome = Run(queued.task);
    if (!queued.task.xid.empty()) Finished(queued.task.xid);
    queued.done(std::move(outcome));
  }
}

EffectOutcome SqlExecutor::Run(const SqlTask& task) {
  // An unknown name is a mistake in the workflow or the configuration: a definite failure.
  Result<std::string> conninfo = catalog_.ConnectionString(task.database);
  if (!conninfo.ok()) {
    return EffectOutcome::Failure(lang::MakeError("ValueError", conninfo.message()));
  }
  Result<std::unique_ptr<SqlConnection>> connection = Acquire(task.database, *conninfo);
  if (!connection.ok()) {
    return SqlEffectOutcome(SqlOutcome::Unknown(connection.message()), task.database);
  }
  bool prepare = task.kind == SqlTask::Kind::kPrepare;
  if (prepare) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_.erase(task.xid) != 0) {
      Release(task.database, std::move(connection).value());
      return SqlEffectOutcome(SqlOutcome::Definite("cancelled before it started", "57014"),
                              task.database);
    }
    running_[task.xid] = (*connection)->canceller();
  }
  EffectOutcome outcome = RunOn(**connection, task);
  if (prepare) {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.erase(task.xid);
  }
  Release(task.database, std::move(connection).value());
  return outcome;
}

EffectOutcome SqlExecutor::RunOn(SqlConnection& connection, const SqlTask& task) {
  bool missing = false;
  switch (task.kind) {
    case SqlTask::Kind::kExec:
      return SqlEffectOutcome(connection.Run(task.statements), task.database);
    case SqlTask::Kind::kPrepare: {
      if (task.resumed) {
        // The earlier process may have prepared this gid before it died; its result never
        // reached the journal and nothing was decided, so it is rolled back and done again.
        SqlOutcome rolled = connection.RollbackPrepared(task.xid, &missing);
        if (!rolled.ok()) return SqlEffectOutcome(rolled, task.database);
      }
      return SqlEffectOutcome(connection.RunPrepared(task.statements, task.xid), task.database);
    }
    case SqlTask::Kind::kCommitPrepared: {
      SqlOutcome outcome = connection.CommitPrepared(task.xid, &missing);
      return FinishOutcome(outcome, missing, task.database);
    }
    case SqlTask::Kind::kRollbackPrepared: {
      SqlOutcome outcome = connection.RollbackPrepared(task.xid, &missing);
      return FinishOutcome(outcome, missing, task.database);
    }
  }
  return ArgsError("unknown SQL operation");
}

Result<std::unique_ptr<SqlConnection>> SqlExecutor::Acquire(const std::string& database,
                                                            const std::string& conninfo) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::unique_ptr<SqlConnection>>& idle = idle_[database];
    while (!idle.empty()) {
      std::unique_ptr<SqlConnection> connection = std::move(idle.back());
      idle.pop_back();
      if (connection->healthy()) return connection;
    }
  }
  return SqlConnection::Open(conninfo);
}

void SqlExecutor::Release(const std::string& database, std::unique_ptr<SqlConnection> connection) {
  if (!connection->healthy()) return;  // a broken connection is closed, never reused
  std::lock_guard<std::mutex> lock(mutex_);
  idle_[database].push_back(std::move(connection));
}

}  // namespace atomflow::connectors
