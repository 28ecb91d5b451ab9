// Recovery: the time from opening the engine to every one of 100,000 ACTIVE executions that a
// killed process left (each past one answered HTTP call and waiting in a second) being
// replayed and running again, against a plain loop that reads and decodes the same
// executions and journals from the same file.
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "common/log.h"
#include "store/store.h"

namespace atomflow::bench {
namespace {

constexpr char kWorkflow[] = R"yaml(
main:
  steps:
    - lookup:
        call: http.get
        args: {url: "http://participant/fast"}
        result: found
    - pick:
        assign:
          - code: ${found.code}
    - work:
        call: http.post
        args: {url: "http://participant/hold", body: {code: "${code}"}}
    - done:
        return: ${code}
)yaml";

// Executions the killed process really ran; the rest are copies of their rows under new ids.
constexpr int64_t kRealExecutions = 500;

// Answers /fast at once; /hold only when `answer_hold` (the recovering process), else never
// (the process that will be killed). Counts the /hold calls it saw.
class RecoveryParticipant : public engine::EffectHandler {
 public:
  RecoveryParticipant(engine::IoLoop* loop, bool answer_hold)
      : loop_(loop), answer_hold_(answer_hold) {}
  void Perform(const engine::EffectRequest& request, engine::EffectContext,
               std::function<void(engine::EffectOutcome)> done) override {
    const Value* url = request.args.AsMap().Find("url");
    bool hold = url != nullptr && url->AsString().find("/hold") != std::string::npos;
    if (hold) ++hold_calls_;
    if (hold && !answer_hold_) return;  // stays in flight until the process dies
    loop_->Post([done = std::move(done)] {
      done(engine::EffectOutcome::Success(
          Value(Map{{"code", Value(int64_t{200})}, {"body", Value(Map{})}})));
    });
  }
  void Cancel(const std::string&, const engine::EffectRequest&) override {}
  static std::atomic<int64_t> hold_calls_;

 private:
  engine::IoLoop* loop_;
  bool answer_hold_;
};
std::atomic<int64_t> RecoveryParticipant::hold_calls_{0};

engine::Engine::HandlerFactory Factory(bool answer_hold) {
  return [answer_hold](engine::IoLoop* loop, const engine::EngineOptions&) {
    return std::unique_ptr<engine::EffectHandler>(new RecoveryParticipant(loop, answer_hold));
  };
}

void WaitUntil(const std::function<bool()>& done, const char* what) {
  double deadline = Now() + 900;
  while (!done()) {
    if (Now() > deadline) Fail(std::string("timed out waiting for ") + what);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// In a child process: runs kRealExecutions until each waits in its second call, makes the
// journal durable, and dies by SIGKILL, as a crashed server would.
void CrashWithActiveExecutions(const std::string& path) {
  pid_t child = fork();
  if (child == 0) {
    SilentProgress progress;
    engine::EngineOptions options;
    options.store_path = path;
    Result<std::unique_ptr<engine::Engine>> engine =
        engine::Engine::Open(options, Factory(false), &progress);
    if (!engine.ok()) Fail(engine.message());
    StartMany(**engine, MustLoad("recovery.yaml", kWorkflow), kRealExecutions, 64);
    WaitUntil([] { return RecoveryParticipant::hold_calls_.load() >= kRealExecutions; },
              "the executions to reach their second call");
    Status flushed = (*engine)->store()->Flush();
    (void)flushed;
    kill(getpid(), SIGKILL);
  }
  int status = 0;
  waitpid(child, &status, 0);
}

void Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    Fail(std::string("sqlite: ") + (error ? error : "?") + " in " + sql);
  }
}

// Copies the real executions' rows under new ids until `count` executions are ACTIVE. The
// journals of this workflow hold no execution id, so each copy is what the engine would
// have written for it.
void CopyExecutions(const std::string& path, int64_t count) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  Exec(db, "PRAGMA journal_mode=WAL");
  Exec(db, "BEGIN");
  Exec(db, "CREATE TEMP TABLE copies (n INTEGER PRIMARY KEY)");
  int64_t rounds = (count + kRealExecutions - 1) / kRealExecutions;
  Exec(db, "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < " +
               std::to_string(rounds - 1) + ") INSERT INTO copies SELECT n FROM c");
  Exec(db,
       "CREATE TEMP TABLE originals AS SELECT id FROM executions WHERE state = 'ACTIVE' "
       "ORDER BY id");
  std::string new_id = "substr(e.id, 1, 24) || printf('%012d', c.n * 1000 + o.rowid)";
  // Numbers above every real one, as the store would give them (executions.number).
  std::string new_number = "(" + std::to_string(count) + " + c.n * 1000 + o.rowid)";
  Exec(db,
       "INSERT INTO executions SELECT " + new_id +
           ", e.workflow_name, e.source_file, e.source, e.argument, e.state, e.result, e.error, "
           "e.start_time_ms, e.end_time_ms, e.owner, e.revision_id, e.service_account, e.labels, " +
           new_number + " FROM executions e JOIN originals o ON o.id = e.id CROSS JOIN copies c");
  Exec(db, "INSERT INTO journal SELECT " + new_number +
               ", j.seq, j.kind, j.key, j.payload, j.time_ms FROM journal j JOIN executions e ON "
               "e.number = j.execution_number JOIN originals o ON o.id = e.id CROSS JOIN copies c");
  Exec(db, "COMMIT");
  Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

// CPU seconds (user and system) of every thread of this process so far; the killed child's
// are not counted. Wall time on a shared machine moves with its neighbours, CPU time less.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& time) { return time.tv_sec + time.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// The baseline: reads every ACTIVE execution and its journal, and parses each payload.
double BaselineSeconds(const std::string& path, int64_t* executions, int64_t* entries_read) {
  double start = Now();
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* list = nullptr;
  sqlite3_stmt* journal = nullptr;
  sqlite3_prepare_v2(db,
                     "SELECT id, source, argument, number FROM executions WHERE state = 'ACTIVE'",
                     -1, &list, nullptr);
  sqlite3_prepare_v2(db,
                     "SELECT seq, kind, key, payload, time_ms FROM journal WHERE "
                     "execution_number = ?1 ORDER BY seq",
                     -1, &journal, nullptr);
  int64_t count = 0;
  int64_t entries = 0;
  while (sqlite3_step(list) == SQLITE_ROW) {
    ++count;
    // The id is what the engine keeps of the row to resume it; read it as the engine does.
    std::string id = reinterpret_cast<const char*>(sqlite3_column_text(list, 0));
    sqlite3_bind_int64(journal, 1, sqlite3_column_int64(list, 3));
    while (sqlite3_step(journal) == SQLITE_ROW) {
      Json payload = Json::parse(reinterpret_cast<const char*>(sqlite3_column_text(journal, 3)));
      entries += payload.is_object();
    }
    sqlite3_reset(journal);
  }
  sqlite3_finalize(list);
  sqlite3_finalize(journal);
  sqlite3_close(db);
  *executions = count;
  *entries_read = entries;
  return Now() - start;
}

void Run() {
  log::Init("warn");
  // This program opens the file itself (the copies, the baseline) before the engine does; in
  // `atomflow serve` the store's or the secrets' connection is the process's first.
  store::StopSqliteMemoryStatistics();
  int64_t count = Scaled(100000, kRealExecutions);
  TempDir temp;
  std::string path = temp.path() + "/atomflow.db";
  CrashWithActiveExecutions(path);
  CopyExecutions(path, count);

  int64_t active = 0;
  int64_t entries = 0;
  BaselineSeconds(path, &active, &entries);  // warms the OS page cache for both
  double baseline = BaselineSeconds(path, &active, &entries);

  RecoveryParticipant::hold_calls_ = 0;
  SilentProgress progress;
  double start = Now();
  double cpu_start = ProcessCpuSeconds();
  engine::EngineOptions options;
  options.store_path = path;
  Result<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Open(options, Factory(true), &progress);
  if (!engine.ok()) Fail(engine.message());
  Result<std::vector<std::string>> resumed = (*engine)->Recover();
  if (!resumed.ok()) Fail(resumed.message());
  double recovered = Now();
  WaitUntil([&] { return RecoveryParticipant::hold_calls_.load() >= active; },
            "every execution to be running again");
  double running = Now();
  double running_cpu = ProcessCpuSeconds() - cpu_start;
  for (const std::string& id : *resumed) {
    store::ExecutionRecord record = (*engine)->Wait(id);
    if (record.state != "SUCCEEDED") Fail("a resumed execution ended " + record.error);
  }
  double finished = Now();

  Json details = {{"active_executions", active},
                  {"resumed", resumed->size()},
                  {"recover_call_seconds", recovered - start},
                  {"all_finished_seconds", finished - start},
                  {"cpu_seconds_until_running", running_cpu},
                  {"journal_entries_per_execution",
                   static_cast<double>(entries) / std::max<int64_t>(1, active)}};
  PrintFigure("recovery", running - start, baseline, "seconds", details);
  std::error_code error;
  std::filesystem::remove_all(temp.path(), error);
  std::_Exit(0);  // no orderly teardown of 100,000 executions
}

}  // namespace
}  // namespace atomflow::bench

int main() {
  atomflow::bench::Run();
  return 0;
}
