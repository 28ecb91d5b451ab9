// Two-phase commit: transactions per second of one SQL branch on each of two PostgreSQL
// databases through the engine (prepared branches, journaled decision, COMMIT PREPARED),
// against a hand-written libpq client doing the same BEGIN / INSERT / PREPARE TRANSACTION /
// COMMIT PREPARED work at the same concurrency on the same server.
#include <libpq-fe.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "common/log.h"
#include "connectors/connectors.h"
#include "connectors/databases.h"
#include "postgres.h"

namespace atomflow::bench {
namespace {

constexpr char kWorkflow[] = R"yaml(
main:
  steps:
    - transfer:
        transaction:
          steps:
            - debit:
                call: atomflow.sql.exec
                args:
                  database: bank_a
                  statements:
                    - sql: INSERT INTO moves (amount) VALUES ($1)
                      params: [-5]
            - credit:
                call: atomflow.sql.exec
                args:
                  database: bank_b
                  statements:
                    - sql: INSERT INTO moves (amount) VALUES ($1)
                      params: [5]
    - done:
        return: "ok"
)yaml";

constexpr int kConcurrency = 32;  // executions (engine) or client threads (baseline) at once

void MustExec(PGconn* conn, const std::string& sql) {
  PGresult* result = PQexec(conn, sql.c_str());
  if (PQresultStatus(result) != PGRES_COMMAND_OK) Fail(sql + ": " + PQresultErrorMessage(result));
  PQclear(result);
}

void MustInsert(PGconn* conn, const char* amount) {
  const char* values[] = {amount};
  PGresult* result = PQexecParams(conn, "INSERT INTO moves (amount) VALUES ($1)", 1, nullptr,
                                  values, nullptr, nullptr, 0);
  if (PQresultStatus(result) != PGRES_COMMAND_OK) Fail(PQresultErrorMessage(result));
  PQclear(result);
}

PGconn* MustConnect(const std::string& uri) {
  PGconn* conn = PQconnectdb(uri.c_str());
  if (PQstatus(conn) != CONNECTION_OK) Fail(PQerrorMessage(conn));
  return conn;
}

// The same work by hand: per transaction, a prepared INSERT on each database, then COMMIT
// PREPARED on each, from `concurrency` threads with a connection per database each.
double BaselineSeconds(const BenchPostgres& server, int64_t count, int concurrency) {
  std::atomic<int64_t> next{0};
  std::vector<std::thread> threads;
  double start = Now();
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      PGconn* a = MustConnect(server.Uri("bank_a"));
      PGconn* b = MustConnect(server.Uri("bank_b"));
      for (int64_t i = next++; i < count; i = next++) {
        std::string gid = "baseline:" + std::to_string(t) + ":" + std::to_string(i);
        MustExec(a, "BEGIN");
        MustInsert(a, "-5");
        MustExec(a, "PREPARE TRANSACTION '" + gid + ":1'");
        MustExec(b, "BEGIN");
        MustInsert(b, "5");
        MustExec(b, "PREPARE TRANSACTION '" + gid + ":2'");
        MustExec(a, "COMMIT PREPARED '" + gid + ":1'");
        MustExec(b, "COMMIT PREPARED '" + gid + ":2'");
      }
      PQfinish(a);
      PQfinish(b);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return Now() - start;
}

// `concurrency` client threads each start an execution and wait for its durable end.
double EngineSeconds(engine::Engine& engine, const std::shared_ptr<const lang::Workflow>& workflow,
                     int64_t count, int concurrency) {
  std::atomic<int64_t> next{0};
  std::vector<std::thread> threads;
  double start = Now();
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      for (int64_t i = next++; i < count; i = next++) {
        Result<std::string> id = engine.Start(workflow, Value());
        if (!id.ok()) Fail("start: " + id.message());
        store::ExecutionRecord record = engine.Wait(*id);
        if (record.state != "SUCCEEDED") Fail("execution ended " + record.error);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return Now() - start;
}

void Run() {
  log::Init("warn");
  BenchPostgres server;
  std::string failed = server.Start();
  if (!failed.empty()) Fail(failed);
  for (const char* database : {"bank_a", "bank_b"}) {
    std::string answer = server.Query("postgres", std::string("CREATE DATABASE ") + database);
    if (answer.rfind("ERROR", 0) == 0) Fail(answer);
    answer = server.Query(database, "CREATE TABLE moves (id bigserial PRIMARY KEY, amount int)");
    if (answer.rfind("ERROR", 0) == 0) Fail(answer);
  }

  std::string config = "databases:\n  bank_a: \"" + server.Uri("bank_a") + "\"\n  bank_b: \"" +
                       server.Uri("bank_b") + "\"\n";
  // ATOMFLOW_BENCH_SQL_POOL sets atomflow.yaml's sql.pool_size (default: the engine's own).
  const char* pool = std::getenv("ATOMFLOW_BENCH_SQL_POOL");
  if (pool != nullptr && *pool != '\0') config += std::string("sql:\n  pool_size: ") + pool + "\n";
  Result<connectors::DatabaseCatalog> catalog =
      connectors::DatabaseCatalog::Parse(config, "bench atomflow.yaml");
  if (!catalog.ok()) Fail(catalog.message());

  int64_t count = Scaled(4000, 400);
  TempDir temp;
  engine::EngineOptions options;
  options.store_path = temp.path() + "/atomflow.db";
  SilentProgress progress;
  Result<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Open(options, connectors::ConnectorsFactory(*catalog), &progress);
  if (!engine.ok()) Fail(engine.message());
  std::shared_ptr<const lang::Workflow> workflow = MustLoad("two_phase_commit.yaml", kWorkflow);

  BaselineSeconds(server, count / 10, kConcurrency);  // warm up the server and its caches
  EngineSeconds(**engine, workflow, count / 10, kConcurrency);
  double baseline_seconds = BaselineSeconds(server, count, kConcurrency);
  store::StoreStats before = (*engine)->store()->stats();
  double engine_seconds = EngineSeconds(**engine, workflow, count, kConcurrency);
  store::StoreStats after = (*engine)->store()->stats();

  // One transaction at a time: with no group commit to share, the store's commits per
  // transaction are the commit cycles each transaction waits for, and the latencies say how
  // much of a transaction is PostgreSQL's and how much the engine's.
  int64_t serial = Scaled(200, 50);
  double serial_baseline_ms = BaselineSeconds(server, serial, 1) * 1000 / serial;
  store::StoreStats serial_before = (*engine)->store()->stats();
  double serial_engine_ms = EngineSeconds(**engine, workflow, serial, 1) * 1000 / serial;
  store::StoreStats serial_after = (*engine)->store()->stats();
  engine->reset();

  std::string prepared = server.Query("bank_a", "SELECT count(*) FROM pg_prepared_xacts");
  Json details = {{"transactions", count},
                  {"concurrency", kConcurrency},
                  {"branches_per_transaction", 2},
                  {"postgres", "fsync=on, synchronous_commit=on (server defaults)"},
                  {"left_prepared", prepared},
                  {"sql_pool_size", catalog->pool_size()},
                  {"journal_commits_per_transaction",
                   static_cast<double>(after.commits - before.commits) / count},
                  {"serial_commits_per_transaction",
                   static_cast<double>(serial_after.commits - serial_before.commits) / serial},
                  {"serial_ms_per_transaction", serial_engine_ms},
                  {"serial_baseline_ms_per_transaction", serial_baseline_ms}};
  PrintFigure("two_phase_commit", count / engine_seconds, count / baseline_seconds,
              "transactions/s", details);
}

}  // namespace
}  // namespace atomflow::bench

int main() {
  atomflow::bench::Run();
  return 0;
}
