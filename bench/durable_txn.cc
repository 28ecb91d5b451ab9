// Durable transactions: global transactions per second through the engine, each with three
// compensable branches on the in-process no-op participant, journaled on SQLite
// (synchronous=FULL), against a plain loop that appends the same journal bytes per
// transaction to the same file with the same number of commits; and the p99 latency at half
// the measured throughput.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "common/log.h"

namespace atomflow::bench {
namespace {

// Three branches, as in a reserve/charge/ship saga; each action and compensation is an
// http.post that the no-op participant answers at once.
constexpr char kWorkflow[] = R"yaml(
main:
  steps:
    - order:
        transaction:
          steps:
            - reserve:
                call: http.post
                args: {url: "http://participant/reserve", body: {item: 7}}
                compensate:
                  call: http.post
                  args: {url: "http://participant/unreserve", body: {item: 7}}
            - charge:
                call: http.post
                args: {url: "http://participant/charge", body: {amount: 12}}
                compensate:
                  call: http.post
                  args: {url: "http://participant/refund", body: {amount: 12}}
            - ship:
                call: http.post
                args: {url: "http://participant/ship", body: {item: 7}}
                compensate:
                  call: http.post
                  args: {url: "http://participant/unship", body: {item: 7}}
    - done:
        return: "ok"
)yaml";

// Threads calling Engine::Start at once; ATOMFLOW_BENCH_TXN_STARTERS overrides it. Start does
// not wait for the row's commit here (StartOptions::on_durable), so a few threads keep the
// window full; 96 only spent CPU waking each other.
int Starters() {
  const char* text = std::getenv("ATOMFLOW_BENCH_TXN_STARTERS");
  int starters = text != nullptr ? std::atoi(text) : 0;
  return starters > 0 ? starters : 8;
}
constexpr int64_t kWindow = 2048;  // executions in flight at most

// What one load run measured.
struct LoadRun {
  int64_t transactions = 0;
  double seconds = 0;
  std::vector<double> latencies_ms;
};

// Starts `count` executions from Starters() threads, at most kWindow in flight, paced at `rate`
// starts per second (0: as fast as the engine takes them). One waiter collects outcomes in
// start order, so a latency is from the Start call to the moment the outcome was durable and
// seen (an execution finishing before an older one is seen with it: slightly pessimistic).
LoadRun RunLoad(engine::Engine& engine, const std::shared_ptr<const lang::Workflow>& workflow,
                int64_t count, double rate) {
  std::vector<std::string> ids(count);
  std::vector<double> started(count, 0);
  std::vector<std::atomic<bool>> ready(count);
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  std::condition_variable changed;
  int64_t in_flight = 0;
  double t0 = Now();

  std::vector<std::thread> starters;
  int starter_count = Starters();
  for (int s = 0; s < starter_count; ++s) {
    starters.emplace_back([&] {
      for (;;) {
        int64_t i = 0;
        {
          // The slot is taken before the index, so what is in flight is always the oldest
          // not yet collected: the waiter, collecting in order, never waits for a start whose
          // thread waits for a slot (a deadlock once Start stopped waiting for its commit).
          std::unique_lock<std::mutex> lock(mutex);
          changed.wait(lock, [&] { return in_flight < kWindow; });
          i = next++;
          if (i >= count) break;
          ++in_flight;
        }
        if (rate > 0) {
          double due = t0 + static_cast<double>(i) / rate;
          double wait = due - Now();
          if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
        }
        started[i] = Now();
        // Returns once the execution runs; its row becomes durable with its first intent.
        engine::StartOptions options;
        options.on_durable = [](const Status& status) {
          if (!status.ok()) Fail("start: " + status.message());
        };
        Result<std::string> id = engine.Start(workflow, Value(), options);
        if (!id.ok()) Fail("start: " + id.message());
        {
          // Under the lock, so the waiter cannot miss the wake-up between check and wait.
          std::lock_guard<std::mutex> lock(mutex);
          ids[i] = *id;
          ready[i] = true;
        }
        changed.notify_all();
      }
    });
  }

  LoadRun run;
  run.transactions = count;
  for (int64_t i = 0; i < count; ++i) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] { return ready[i].load(); });
    }
    store::ExecutionRecord record = engine.Wait(ids[i]);
    if (record.state != "SUCCEEDED") Fail("execution " + ids[i] + " ended " + record.error);
    run.latencies_ms.push_back((Now() - started[i]) * 1000);
    {
      std::lock_guard<std::mutex> lock(mutex);
      --in_flight;
    }
    changed.notify_all();
  }
  run.seconds = Now() - t0;
  for (std::thread& starter : starters) starter.join();
  return run;
}

// What the engine wrote for its transactions, read back from the file.
struct Written {
  int64_t rows = 0;   // journal rows, plus one execution row and its update per execution
  int64_t bytes = 0;  // text of every column written
  int64_t executions = 0;
};

int64_t QueryInt(sqlite3* db, const char* sql) {
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) != SQLITE_OK) Fail(sqlite3_errmsg(db));
  int64_t value = sqlite3_step(statement) == SQLITE_ROW ? sqlite3_column_int64(statement, 0) : 0;
  sqlite3_finalize(statement);
  return value;
}

void Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    Fail(std::string("sqlite: ") + (error ? error : "?"));
  }
}

Written MeasureWritten(const std::string& path) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  Written written;
  written.executions = QueryInt(db, "SELECT count(*) FROM executions");
  written.rows = QueryInt(db, "SELECT count(*) FROM journal") + 2 * written.executions;
  written.bytes =
      QueryInt(db,
               "SELECT sum(8 + length(kind) + length(key) + length(payload) + 16) FROM journal") +
      QueryInt(db,
               "SELECT sum(length(id) * 2 + length(workflow_name) + length(source_file) + "
               "length(source) + length(argument) + length(state) * 2 + length(result) + "
               "length(error) + length(owner) + length(labels) + 16) FROM executions");
  sqlite3_close(db);
  return written;
}

// The baseline: one thread appends `rows_per_txn` rows of the same total size per transaction
// to a table shaped like the journal, in the same file, WAL and synchronous=FULL like the
// store, committing `commits` times in all, as the engine's group commit did.
// With random_ids the ids are random like the engine's UUIDs (inserts land all over the
// journal's B-tree); without, they grow (appends at its right edge).
double BaselineSeconds(const std::string& path, int64_t transactions, int64_t rows_per_txn,
                       int64_t bytes_per_txn, int64_t commits, bool random_ids) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  Exec(db, "PRAGMA journal_mode=WAL");
  Exec(db, "PRAGMA synchronous=FULL");
  std::string table = random_ids ? "baseline_random" : "baseline";
  Exec(db,
       "CREATE TABLE " + table +
           " (execution_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT "
           "NULL, key TEXT NOT NULL, payload TEXT NOT NULL, time_ms INTEGER NOT NULL, PRIMARY KEY "
           "(execution_id, seq)) WITHOUT ROWID");
  sqlite3_stmt* insert = nullptr;
  std::string insert_sql = "INSERT INTO " + table + " VALUES (?1, ?2, 'result', ?3, ?4, ?5)";
  sqlite3_prepare_v2(db, insert_sql.c_str(), -1, &insert, nullptr);
  std::mt19937_64 random(42);
  // Each row: a 36-byte id, a kind and key of about 10 bytes, and the rest as payload.
  int64_t payload_bytes = std::max<int64_t>(1, bytes_per_txn / rows_per_txn - 36 - 16 - 10);
  std::string payload(payload_bytes, 'x');

  double start = Now();
  int64_t done_commits = 0;
  Exec(db, "BEGIN IMMEDIATE");
  for (int64_t t = 0; t < transactions; ++t) {
    char id[48];
    uint64_t high = random_ids ? random() : static_cast<uint64_t>(t);
    snprintf(id, sizeof(id), "%016llx-4000-8000-000000000000",
             static_cast<unsigned long long>(high));
    for (int64_t r = 0; r < rows_per_txn; ++r) {
      sqlite3_bind_text(insert, 1, id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(insert, 2, r + 1);
      std::string key = std::to_string(r + 1);
      sqlite3_bind_text(insert, 3, key.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(insert, 4, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
      sqlite3_bind_int64(insert, 5, 1764800000000 + t);
      if (sqlite3_step(insert) != SQLITE_DONE) Fail(sqlite3_errmsg(db));
      sqlite3_reset(insert);
    }
    // Commit whenever the engine's share of commits up to this transaction says so.
    int64_t due = (t + 1) * commits / transactions;
    while (done_commits < due) {
      Exec(db, "COMMIT");
      Exec(db, "BEGIN IMMEDIATE");
      ++done_commits;
    }
  }
  Exec(db, "COMMIT");
  double seconds = Now() - start;
  sqlite3_finalize(insert);
  sqlite3_close(db);
  return seconds;
}

void Run() {
  log::Init("warn");
  TempDir temp;
  std::string path = temp.path() + "/atomflow.db";
  std::shared_ptr<const lang::Workflow> workflow = MustLoad("durable_txn.yaml", kWorkflow);
  int64_t count = Scaled(30000, 2000);

  SilentProgress progress;
  LoadRun full;
  LoadRun half;
  store::StoreStats stats;
  {
    std::unique_ptr<engine::Engine> engine = MustOpen(path, &progress);
    RunLoad(*engine, workflow, std::min<int64_t>(count / 10, 2000), 0);  // warm up
    store::StoreStats before = engine->store()->stats();
    full = RunLoad(*engine, workflow, count, 0);
    store::StoreStats after = engine->store()->stats();
    stats = {after.appends - before.appends, after.commits - before.commits};

    double rate = full.transactions / full.seconds / 2;
    int64_t half_count = std::max<int64_t>(1000, static_cast<int64_t>(rate * 4 * Scale()));
    half = RunLoad(*engine, workflow, half_count, rate);
  }
  Written written = MeasureWritten(path);

  double engine_tps = full.transactions / full.seconds;
  int64_t rows_per_txn = (written.rows + written.executions - 1) / written.executions;
  int64_t bytes_per_txn = written.bytes / written.executions;
  double baseline_seconds =
      BaselineSeconds(path, full.transactions, rows_per_txn, bytes_per_txn, stats.commits, false);
  double random_seconds =
      BaselineSeconds(path, full.transactions, rows_per_txn, bytes_per_txn, stats.commits, true);
  double baseline_tps = full.transactions / baseline_seconds;

  Json details = {{"transactions", full.transactions},
                  {"branches_per_transaction", 3},
                  {"concurrent_starters", Starters()},
                  {"max_in_flight", kWindow},
                  {"commits", stats.commits},
                  {"journal_appends", stats.appends},
                  {"transactions_per_commit",
                   static_cast<double>(full.transactions) / std::max<uint64_t>(1, stats.commits)},
                  {"rows_per_transaction", rows_per_txn},
                  {"bytes_per_transaction", bytes_per_txn},
                  {"baseline_with_random_ids", full.transactions / random_seconds},
                  {"p50_ms_full_load", Percentile(full.latencies_ms, 50)},
                  {"half_load_rate", half.transactions / half.seconds},
                  {"half_load_transactions", half.transactions},
                  {"p50_ms_half_load", Percentile(half.latencies_ms, 50)},
                  {"p99_ms_half_load", Percentile(half.latencies_ms, 99)}};
  PrintFigure("durable_txn", engine_tps, baseline_tps, "transactions/s", details);
}

}  // namespace
}  // namespace atomflow::bench

int main() {
  atomflow::bench::Run();
  return 0;
}
