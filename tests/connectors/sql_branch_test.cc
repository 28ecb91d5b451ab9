// atomflow.sql.exec against a real PostgreSQL: the executor on its own (commit, typed rows,
// definite and unknown failures, prepare and finish by gid, as many at once as its pool allows),
// and prepared branches through the real engine, where two databases and a staged file commit
// or abort together.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "connectors/connectors.h"
#include "connectors/databases.h"
#include "connectors/sql_executor.h"
#include "connectors/sql_recovery.h"
#include "lang/ast.h"
#include "support/postgres_server.h"
#include "support/workflow_check.h"

namespace atomflow::connectors {
namespace {

namespace fs = std::filesystem;
using engine::EffectOutcome;

// One server per test process, started on first use and stopped at exit.
atomflow::testing::PostgresServer& Server() {
  atomflow::testing::PostgresServer& server = atomflow::testing::SharedPostgresServer();
  EXPECT_EQ(server.start_error(), "");
  return server;
}

DatabaseCatalog Catalog(const std::string& yaml) {
  Result<DatabaseCatalog> catalog = DatabaseCatalog::Parse(yaml, "test atomflow.yaml");
  EXPECT_TRUE(catalog.ok()) << catalog.message();
  return catalog.ok() ? *catalog : DatabaseCatalog();
}

EffectOutcome RunTask(SqlExecutor& executor, SqlTask task) {
  std::promise<EffectOutcome> promise;
  executor.Submit(std::move(task), [&](EffectOutcome outcome) { promise.set_value(outcome); });
  return promise.get_future().get();
}

SqlTask Task(SqlTask::Kind kind, std::vector<SqlStatement> statements, std::string xid = "") {
  SqlTask task;
  task.kind = kind;
  task.database = "registry";
  task.statements = std::move(statements);
  task.xid = std::move(xid);
  return task;
}

std::string Tag(const EffectOutcome& outcome) {
  const Value* tags = outcome.value.AsMap().Find("tags");
  return tags != nullptr ? tags->AsList()[0].AsString() : "";
}

// Regression: a COMMIT among a prepared branch's statements committed them outside the branch,
// so the transaction's abort left them applied. Transaction control is refused up front.
TEST(SqlExecutorTest, TransactionControlStatementsAreRefused) {
  auto parse = [](const std::string& sql) {
    return SqlExecutor::ParseExecArgs(
        Value(Map{{"database", Value("registry")},
                  {"statements", Value(List{Value("INSERT INTO t VALUES (1)"), Value(sql)})}}));
  };
  for (const char* control : {"COMMIT", "  commit;", "-- done\nEND", "/* x */ Rollback", "ABORT",
                              "BEGIN", "start transaction", "PREPARE TRANSACTION 'x'"}) {
    Result<SqlTask> task = parse(control);
    ASSERT_FALSE(task.ok()) << control;
    EXPECT_NE(task.message().find("statement 2: "), std::string::npos) << task.message();
    EXPECT_NE(task.message().find("is not allowed"), std::string::npos) << task.message();
  }
  for (const char* allowed : {"SAVEPOINT a", "ROLLBACK TO SAVEPOINT a", "RELEASE SAVEPOINT a",
                              "PREPARE q AS SELECT 1", "SELECT 'COMMIT'", "UPDATE t SET v = 1"}) {
    EXPECT_TRUE(parse(allowed).ok()) << allowed;
  }
}

// Regression: a prepare waiting on a row lock held up its transaction's abort (the abort's
// ROLLBACK PREPARED runs after it) past the transaction's timeout and a Ctrl-C, for as long as
// the lock was held. Cancelling the prepare stops its statement on the server.
TEST(SqlExecutorTest, CancelStopsAPrepareWaitingOnALock) {
  ASSERT_EQ(Server().CreateDatabase("cancelled"), "");
  std::string uri = Server().Uri("cancelled");
  SqlExecutor executor(Catalog("databases:\n  registry: \"" + uri + "\"\n"));
  ASSERT_TRUE(
      RunTask(executor, Task(SqlTask::Kind::kExec, {{"CREATE TABLE t (k TEXT PRIMARY KEY)", {}}}))
          .ok);
  PGconn* holder = PQconnectdb(uri.c_str());
  ASSERT_EQ(PQstatus(holder), CONNECTION_OK);
  PQclear(PQexec(holder, "BEGIN"));
  PQclear(PQexec(holder, "INSERT INTO t VALUES ('k')"));  // holds the key until it ends

  const std::string xid = "atomflow:cancel-test:release#1:1";
  std::promise<EffectOutcome> promise;
  executor.Submit(Task(SqlTask::Kind::kPrepare, {{"INSERT INTO t VALUES ('k')", {}}}, xid),
                  [&](EffectOutcome outcome) { promise.set_value(outcome); });
  PGconn* watcher = PQconnectdb(uri.c_str());
  ASSERT_EQ(PQstatus(watcher), CONNECTION_OK);
  for (std::string waiting; waiting != "1";) {  // until the prepare's insert waits on the lock
    PGresult* result = PQexec(watcher,
                              "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                              "'Lock' AND datname = 'cancelled'");
    waiting = PQgetvalue(result, 0, 0);
    PQclear(result);
    if (waiting != "1") std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  executor.Cancel(xid);
  EffectOutcome outcome = promise.get_future().get();

  EXPECT_FALSE(outcome.ok);
  EXPECT_NE(DebugString(outcome.value).find("cancel"), std::string::npos)
      << DebugString(outcome.value);
  PQclear(PQexec(holder, "ROLLBACK"));
  PQfinish(holder);
  PQfinish(watcher);
  Result<std::unique_ptr<SqlConnection>> connection = SqlConnection::Open(uri);
  ASSERT_TRUE(connection.ok());
  Result<std::vector<std::string>> prepared = (*connection)->ListPrepared("atomflow:cancel");
  ASSERT_TRUE(prepared.ok());
  EXPECT_TRUE(prepared->empty());
}

TEST(SqlExecutorTest, RunsPreparesFinishesAndClassifiesFailures) {
  ASSERT_EQ(Server().CreateDatabase("executor"), "");
  SqlExecutor executor(Catalog("databases:\n  registry: \"" + Server().Uri("executor") +
                               "\"\n  down: \"postgresql://u:pw-secret@127.0.0.1:1/x"
                               "?connect_timeout=2\"\n"));

  // Committed statements, with the last one's rows at the top level.
  EffectOutcome run = RunTask(
      executor, Task(SqlTask::Kind::kExec, {{"CREATE TABLE t (k TEXT PRIMARY KEY, v INT)", {}},
                                            {"INSERT INTO t VALUES ($1, $2)", {"a", 1}},
                                            {"SELECT k, v FROM t", {}}}));
  ASSERT_TRUE(run.ok) << DebugString(run.value);
  const Map& result = run.value.AsMap();
  EXPECT_EQ(result.Find("results")->AsList().size(), 3u);
  EXPECT_EQ(result.Find("row_count")->AsInt(), 1);
  EXPECT_EQ(result.Find("rows")->AsList()[0].AsMap().Find("v")->AsInt(), 1);

  // A SQL error is definite: tagged, with the SQLSTATE and the statement's number.
  EffectOutcome failed = RunTask(
      executor,
      Task(SqlTask::Kind::kExec, {{"SELECT 1", {}}, {"INSERT INTO t VALUES ('a', 2)", {}}}));
  ASSERT_FALSE(failed.ok);
  EXPECT_EQ(Tag(failed), "SqlError");
  EXPECT_EQ(failed.value.AsMap().Find("sqlstate")->AsString(), "23505");
  EXPECT_EQ(failed.value.AsMap().Find("statement")->AsInt(), 2);

  // Prepared under a gid: invisible until COMMIT PREPARED; a second commit reports missing.
  const std::string xid = "atomflow:exec-1:release#1:1";
  SqlTask prepare = Task(SqlTask::Kind::kPrepare, {{"INSERT INTO t VALUES ('b', 2)", {}}}, xid);
  ASSERT_TRUE(RunTask(executor, prepare).ok);
  EXPECT_EQ(Server().Query("executor", "SELECT count(*) FROM t"), "1");
  // A resumed prepare replaces what an earlier process may have prepared under the gid.
  prepare.resumed = true;
  EffectOutcome again = RunTask(executor, prepare);
  ASSERT_TRUE(again.ok) << DebugString(again.value);
  EffectOutcome commit = RunTask(executor, Task(SqlTask::Kind::kCommitPrepared, {}, xid));
  ASSERT_TRUE(commit.ok);
  EXPECT_FALSE(commit.value.AsMap().Find("missing")->AsBool());
  EXPECT_EQ(Server().Query("executor", "SELECT count(*) FROM t"), "2");
  commit = RunTask(executor, Task(SqlTask::Kind::kCommitPrepared, {}, xid));
  EXPECT_TRUE(commit.value.AsMap().Find("missing")->AsBool());
  EffectOutcome rollback = RunTask(executor, Task(SqlTask::Kind::kRollbackPrepared, {}, xid));
  EXPECT_TRUE(rollback.ok && rollback.value.AsMap().Find("missing")->AsBool());

  // A rollback sent while its gid's prepare still runs waits for it instead of overtaking it
  // (a transaction timeout cuts a prepare off and aborts at once).
  const std::string late = "atomflow:exec-2:release#1:1";
  std::promise<EffectOutcome> prepared_late;
  executor.Submit(Task(SqlTask::Kind::kPrepare,
                       {{"SELECT pg_sleep(0.3)", {}}, {"INSERT INTO t VALUES ('c', 3)", {}}}, late),
                  [&](EffectOutcome outcome) { prepared_late.set_value(outcome); });
  EffectOutcome undone = RunTask(executor, Task(SqlTask::Kind::kRollbackPrepared, {}, late));
  EXPECT_TRUE(prepared_late.get_future().get().ok);
  ASSERT_TRUE(undone.ok);
  EXPECT_FALSE(undone.value.AsMap().Find("missing")->AsBool());
  EXPECT_EQ(Server().Query("postgres", "SELECT count(*) FROM pg_prepared_xacts"), "0");

  // A refused connection is unknown; its message hides the password.
  SqlTask refused = Task(SqlTask::Kind::kExec, {{"SELECT 1", {}}});
  refused.database = "down";
  EffectOutcome down = RunTask(executor, refused);
  EXPECT_EQ(Tag(down), "ConnectionError");
  EXPECT_EQ(DebugString(down.value).find("pw-secret"), std::string::npos);

  // An unknown name is a definite mistake that names it.
  SqlTask unknown = Task(SqlTask::Kind::kExec, {{"SELECT 1", {}}});
  unknown.database = "nope";
  EffectOutcome missing_db = RunTask(executor, unknown);
  EXPECT_EQ(Tag(missing_db), "ValueError");
  EXPECT_NE(DebugString(missing_db.value).find("'nope'"), std::string::npos);
}

// Polls `sql` on database `name` until it answers `expected`; false after 30 s.
bool Eventually(const std::string& name, const std::string& sql, const std::string& expected) {
  for (int attempt = 0; attempt < 300; ++attempt) {
    if (Server().Query(name, sql) == expected) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// Regression: the executor ran at most two operations at once whatever the load, so every
// branch beyond the second waited for a thread while PostgreSQL sat idle.
TEST(SqlExecutorTest, RunsAsManyOperationsAtOnceAsThePoolAllowsAndNoMore) {
  ASSERT_EQ(Server().CreateDatabase("pool"), "");
  DatabaseCatalog catalog =
      Catalog("databases:\n  registry: \"" + Server().Uri("pool") + "\"\nsql:\n  pool_size: 3\n");
  PGconn* holder = PQconnectdb(Server().Uri("pool").c_str());
  ASSERT_EQ(PQstatus(holder), CONNECTION_OK) << PQerrorMessage(holder);
  PQclear(PQexec(holder, "SELECT pg_advisory_lock(42)"));
  const std::string others = " AND pid <> " + std::to_string(PQbackendPID(holder));

  // Five operations that each wait for the lock the test holds: three run at once (one per
  // pool thread, each on its own connection) and two wait for a thread.
  {
    SqlExecutor executor(catalog);
    std::vector<std::promise<EffectOutcome>> done(5);
    for (std::promise<EffectOutcome>& each : done) {
      executor.Submit(Task(SqlTask::Kind::kExec, {{"SELECT pg_advisory_xact_lock(42)", {}}}),
                      [&each](EffectOutcome outcome) { each.set_value(outcome); });
    }
    EXPECT_TRUE(Eventually("postgres",
                           "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                           "NOT granted",
                           "3"));
    PQclear(PQexec(holder, "SELECT pg_advisory_unlock(42)"));
    for (std::promise<EffectOutcome>& each : done) EXPECT_TRUE(each.get_future().get().ok);

    // The last two reused the first three's connections: a database never has more
    // connections than the pool has threads.
    EXPECT_EQ(
        Server().Query("postgres",
                       "SELECT count(*) FROM pg_stat_activity WHERE datname = 'pool'" + others),
        "3");
  }
  PQfinish(holder);
}

// Two databases and a staged file in one transaction; `fail` raises after every branch is in.
const char kReleaseWorkflow[] = R"yaml(
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - stage_model:
                call: atomflow.files.write
                args:
                  path: ${args.path}
                  content: "weights"
            - register:
                call: atomflow.sql.exec
                args:
                  database: registry
                  statements:
                    - {sql: "INSERT INTO models VALUES ($1, $2)", params: ["cancer", 3]}
                    - "SELECT name, version FROM models"
                result: registered
            - audit:
                call: atomflow.sql.exec
                args: {database: audit, statements: ["INSERT INTO events VALUES ('released')"]}
            - smoke_test:
                switch:
                  - condition: ${args.fail}
                    raise: "smoke test failed"
    - done:
        return: ${registered.rows[0].version}
)yaml";

// A prepare that fails definitely aborts the transaction even when the workflow catches it.
const char kCaughtFailureWorkflow[] = R"yaml(
main:
  steps:
    - release:
        transaction:
          steps:
            - register:
                call: atomflow.sql.exec
                args: {database: registry, statements: ["INSERT INTO models VALUES ('x', 1)"]}
            - bad:
                try:
                  call: atomflow.sql.exec
                  args: {database: audit, statements: ["INSERT INTO no_such_table VALUES (1)"]}
                except:
                  as: e
                  steps:
                    - ignore:
                        assign:
                          - ignored: ${e.sqlstate}
    - done:
        return: "not reached"
)yaml";

// Outside a transaction: committed at once; a SQL error carries its SQLSTATE.
const char kPlainWorkflow[] = R"yaml(
main:
  steps:
    - insert:
        call: atomflow.sql.exec
        args: {database: audit, statements: ["INSERT INTO events VALUES ('plain')"]}
    - duplicate:
        try:
          call: atomflow.sql.exec
          args: {database: audit, statements: ["SELECT 1", "SELECT * FROM missing_table"]}
        except:
          as: e
          steps:
            - report:
                return: '${[e.tags[0], e.sqlstate, e.statement]}'
)yaml";

class SqlBranchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"registry", "audit"}) {
      ASSERT_EQ(Server().CreateDatabase(name), "");
    }
    ASSERT_EQ(
        Server().Query("registry", "CREATE TABLE models (name TEXT PRIMARY KEY, version INT)"), "");
    ASSERT_EQ(Server().Query("audit", "CREATE TABLE events (what TEXT)"), "");
    catalog_ = Catalog("databases:\n  registry: \"" + Server().Uri("registry") + "\"\n  audit: \"" +
                       Server().Uri("audit") + "\"\n");
  }

  store::ExecutionRecord Run(const char* source, Value argument) {
    Result<std::shared_ptr<const lang::Workflow>> workflow =
        lang::LoadWorkflow("release.yaml", source);
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    return atomflow::testing::RunToEnd(*workflow, std::move(argument), dir_.path(),
                                       ConnectorsFactory(catalog_), &progress_);
  }

  std::string Rows(const std::string& database, const std::string& table) {
    return Server().Query(database, "SELECT count(*) FROM " + table);
  }

  std::string Prepared() {
    return Server().Query("postgres",
                          "SELECT count(*) FROM "
                          "pg_prepared_xacts");
  }

  DatabaseCatalog catalog_;
  atomflow::testing::TempDir dir_;
  atomflow::testing::RecordingProgress progress_;
};

TEST_F(SqlBranchTest, TwoDatabasesAndAFileCommitOrAbortTogether) {
  std::string model = (dir_.path() / "models" / "model.bin").string();

  // Aborted by a later step: no rows anywhere, no file, nothing left prepared.
  store::ExecutionRecord aborted =
      Run(kReleaseWorkflow, Value(Map{{"path", Value(model)}, {"fail", Value(true)}}));
  EXPECT_EQ(aborted.state, "FAILED");
  EXPECT_NE(aborted.error.find("TransactionAborted"), std::string::npos) << aborted.error;
  EXPECT_EQ(Rows("registry", "models"), "0");
  EXPECT_EQ(Rows("audit", "events"), "0");
  EXPECT_FALSE(fs::exists(model));
  EXPECT_EQ(Prepared(), "0");

  // Committed: both rows and the file; the workflow saw the prepared statement's rows.
  store::ExecutionRecord committed =
      Run(kReleaseWorkflow, Value(Map{{"path", Value(model)}, {"fail", Value(false)}}));
  ASSERT_EQ(committed.state, "SUCCEEDED") << committed.error;
  EXPECT_EQ(committed.result, "3");
  EXPECT_EQ(Rows("registry", "models"), "1");
  EXPECT_EQ(Rows("audit", "events"), "1");
  EXPECT_TRUE(fs::exists(model));
  EXPECT_EQ(Prepared(), "0");

  // A definite prepare failure, caught inside the block, still aborts it.
  Server().Query("registry", "DELETE FROM models");
  store::ExecutionRecord caught = Run(kCaughtFailureWorkflow, Value());
  EXPECT_EQ(caught.state, "FAILED");
  EXPECT_NE(caught.error.find("TransactionAborted"), std::string::npos) << caught.error;
  EXPECT_NE(caught.error.find("42P01"), std::string::npos) << caught.error;
  EXPECT_EQ(Rows("registry", "models"), "0");
  EXPECT_EQ(Prepared(), "0");

  // Outside a transaction.
  store::ExecutionRecord plain = Run(kPlainWorkflow, Value());
  ASSERT_EQ(plain.state, "SUCCEEDED") << plain.error;
  EXPECT_EQ(plain.result, R"(["SqlError","42P01",2])");
  EXPECT_EQ(Rows("audit", "events"), "2");

  // The journal names databases, never their connection strings.
  Result<std::unique_ptr<store::Store>> store =
      store::OpenSqliteStore((dir_.path() / "atomflow.db").string());
  ASSERT_TRUE(store.ok());
  Result<std::vector<store::JournalEntry>> journal = (*store)->ReadJournal(committed.id);
  ASSERT_TRUE(journal.ok());
  for (const store::JournalEntry& entry : *journal) {
    EXPECT_EQ(entry.payload.dump().find("postgresql://"), std::string::npos) << entry.payload;
  }
  auto on = [](std::string database) {
    return [database](const std::string& journaled) { return journaled == database; };
  };
  const std::string gid = "atomflow:" + committed.id + ":release#1:";
  EXPECT_TRUE(JournalCommits(*journal, gid + "2", on("registry")));
  EXPECT_FALSE(JournalCommits(*journal, gid + "9", on("registry")));
  // The same gid on another database is not the journaled branch: a process that died before
  // its branch record was durable may have prepared it there, and its replay chose registry.
  EXPECT_FALSE(JournalCommits(*journal, gid + "2", on("audit")));

  // A prepared transaction of an execution this store does not know may be another store's:
  // skipped, unless the caller says no other store uses the database; then it rolls back.
  SqlConnection* raw = nullptr;
  Result<std::unique_ptr<SqlConnection>> conn = SqlConnection::Open(Server().Uri("registry"));
  ASSERT_TRUE(conn.ok());
  raw = conn->get();
  ASSERT_TRUE(raw->RunPrepared({{"INSERT INTO models VALUES ('orphan', 1)", {}}},
                               "atomflow:no-such-execution:release#1:1")
                  .ok());
  std::vector<PreparedResolution> resolved = ResolvePreparedTransactions(**store, catalog_);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].outcome, "skipped (unknown to this store)");
  EXPECT_EQ(Prepared(), "1");
  resolved = ResolvePreparedTransactions(**store, catalog_, /*roll_back_unknown=*/true);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].outcome, "rolled back");
  EXPECT_EQ(Prepared(), "0");
  EXPECT_EQ(Rows("registry", "models"), "0");
}

// A process that died after sending prepares whose branch records never became durable leaves
// gids the journal does not name; the replay may not reach them again (an input it consumed
// before them answers differently), so they are rolled back before it runs, on every
// database. Gids its branch records name, and other executions' gids, stay.
TEST(SqlRecoveryTest, AResumingExecutionsUnnamedGidsRollBackBeforeItRuns) {
  ASSERT_EQ(Server().CreateDatabase("strays_a"), "");
  ASSERT_EQ(Server().CreateDatabase("strays_b"), "");
  DatabaseCatalog catalog = Catalog("databases:\n  registry: \"" + Server().Uri("strays_a") +
                                    "\"\n  audit: \"" + Server().Uri("strays_b") + "\"\n");
  std::vector<std::unique_ptr<SqlConnection>> connections;
  for (const char* database : {"strays_a", "strays_b"}) {
    Result<std::unique_ptr<SqlConnection>> connection = SqlConnection::Open(Server().Uri(database));
    ASSERT_TRUE(connection.ok()) << connection.message();
    ASSERT_TRUE((*connection)->Run({{"CREATE TABLE t (k TEXT PRIMARY KEY)", {}}}).ok());
    connections.push_back(std::move(connection).value());
  }
  SqlConnection& registry = *connections[0];
  SqlConnection& audit = *connections[1];
  const std::string named = "atomflow:exec-1:release#1:1";
  const std::string unnamed = "atomflow:exec-1:release#1:2";
  const std::string other_execution = "atomflow:exec-2:release#1:1";
  ASSERT_TRUE(registry.RunPrepared({{"INSERT INTO t VALUES ('named')", {}}}, named).ok());
  ASSERT_TRUE(registry.RunPrepared({{"INSERT INTO t VALUES ('unnamed')", {}}}, unnamed).ok());
  ASSERT_TRUE(registry.RunPrepared({{"INSERT INTO t VALUES ('other')", {}}}, other_execution).ok());
  // A gid a branch record names, but on another database than this one (a gid is unique in a
  // whole PostgreSQL server, so here the record names it on registry).
  const std::string named_elsewhere = "atomflow:exec-1:release#1:3";
  ASSERT_TRUE(audit.RunPrepared({{"INSERT INTO t VALUES ('named')", {}}}, named_elsewhere).ok());

  std::vector<PreparedResolution> resolved = RollBackUnjournaledPrepares(
      catalog, {{"exec-1", {{"registry", named}, {"registry", named_elsewhere}}}});

  ASSERT_EQ(resolved.size(), 2u);
  for (const PreparedResolution& resolution : resolved) {
    EXPECT_EQ(resolution.outcome, "rolled back") << resolution.database << " " << resolution.xid;
  }
  Result<std::vector<std::string>> left = registry.ListPrepared("atomflow:");
  ASSERT_TRUE(left.ok());
  std::sort(left->begin(), left->end());
  EXPECT_EQ(*left, (std::vector<std::string>{named, other_execution}));
  Result<std::vector<std::string>> left_on_audit = audit.ListPrepared("atomflow:");
  ASSERT_TRUE(left_on_audit.ok());
  EXPECT_TRUE(left_on_audit->empty());

  // A database that cannot be reached is reported, without a gid, and the others are swept;
  // one the caller skips is not visited at all.
  DatabaseCatalog with_down = Catalog("databases:\n  registry: \"" + Server().Uri("strays_a") +
                                      "\"\n  down: \"postgresql://u@127.0.0.1:1/x\"\n");
  ASSERT_TRUE(registry.RunPrepared({{"INSERT INTO t VALUES ('again')", {}}}, unnamed).ok());
  resolved = RollBackUnjournaledPrepares(with_down, {{"exec-1", {{"registry", named}}}});
  ASSERT_EQ(resolved.size(), 2u);
  EXPECT_EQ(resolved[0].database, "down");
  EXPECT_EQ(resolved[0].xid, "");
  EXPECT_EQ(resolved[0].outcome.rfind("failed: ", 0), 0u) << resolved[0].outcome;
  EXPECT_EQ(resolved[1].xid, unnamed);
  EXPECT_EQ(resolved[1].outcome, "rolled back");
  resolved = RollBackUnjournaledPrepares(with_down, {{"exec-1", {}}}, {"down", "registry"});
  EXPECT_TRUE(resolved.empty());

  // Nothing resuming, or no database configured: nothing is looked at.
  EXPECT_TRUE(RollBackUnjournaledPrepares(catalog, {}).empty());
  EXPECT_TRUE(RollBackUnjournaledPrepares(DatabaseCatalog(), {{"exec-2", {}}}).empty());
  bool missing = false;
  EXPECT_TRUE(registry.RollbackPrepared(named, &missing).ok());
  EXPECT_TRUE(registry.RollbackPrepared(other_execution, &missing).ok());
}

}  // namespace
}  // namespace atomflow::connectors
