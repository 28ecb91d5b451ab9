// Runs blocking PostgreSQL work (libpq) on its own thread pool, so that neither the I/O loop
// nor the engine's workers ever wait on a database.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "connectors/databases.h"
#include "connectors/sql_connection.h"
#include "engine/effect.h"

namespace atomflow::connectors {

// What one atomflow.sql.* effect asks of a database.
struct SqlTask {
  enum class Kind { kExec, kPrepare, kCommitPrepared, kRollbackPrepared };
  Kind kind = Kind::kExec;
  std::string database;  // a catalog name, never a connection string
  std::vector<SqlStatement> statements;
  std::string xid;       // the PostgreSQL gid of a prepared branch
  bool resumed = false;  // a prepare an earlier process may already have made
};

// A pool of up to catalog.pool_size() threads and, per database, a pool of idle connections.
// Threads start on demand (a task queued while every thread is busy starts one, up to the
// limit) and live until the destructor, so a process that runs no SQL has none, and one that
// runs N operations at once (N <= pool size) keeps N in flight: each libpq call blocks its
// thread for a whole round trip (PREPARE TRANSACTION and COMMIT waiting for the server's WAL
// flush), and PostgreSQL shares one flush among the commits that arrive together. Submit
// queues a task; a pool thread takes a connection (opening one when none is idle), runs the
// task and calls done with the effect's outcome from that thread. A thread holds one
// connection at a time, so a database has at most pool-size connections open (busy and idle).
// A connection that broke is dropped, never reused. Tasks on one gid run in submission order: a
// ROLLBACK PREPARED sent while the prepare of its gid still runs (the transaction's timeout cut the
// prepare off) waits for it, so it cannot overtake the prepare and leave the gid prepared. Thread
// safe. The destructor finishes the queued tasks first.
class SqlExecutor {
 public:
  explicit SqlExecutor(DatabaseCatalog catalog);
  ~SqlExecutor();
  SqlExecutor(const SqlExecutor&) = delete;
  SqlExecutor& operator=(const SqlExecutor&) = delete;

  void Submit(SqlTask task, std::function<void(engine::EffectOutcome)> done);

  // Stops the prepare of gid `xid` early (its transaction's timeout passed, or the execution
  // was cancelled): a running one has its statement cancelled on the server (it fails, and the
  // work is rolled back), a queued one fails as soon as it starts. A statement waiting on a
  // lock would otherwise hold up the abort's ROLLBACK PREPARED, which runs after it.
  void Cancel(const std::string& xid);

  // Builds a task from atomflow.sql.exec's args {database, statements}; an error names what is
  // wrong with them.
  static Result<SqlTask> ParseExecArgs(const Value& args);

  const DatabaseCatalog& catalog() const { return catalog_; }

 private:
  struct Queued {
    SqlTask task;
    std::function<void(engine::EffectOutcome)> done;
  };

  void StartThreadIfNeeded();  // mutex_ held
  void ThreadLoop();
  void Finished(const std::string& xid);
  engine::EffectOutcome Run(const SqlTask& task);
  engine::EffectOutcome RunOn(SqlConnection& connection, const SqlTask& task);
  Result<std::unique_ptr<SqlConnection>> Acquire(const std::string& database,
                                                 const std::string& conninfo);
  void Release(const std::string& database, std::unique_ptr<SqlConnection> connection);

  const DatabaseCatalog catalog_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Queued> queue_;
  // Gids with a task running or queued, and the tasks on them that wait their turn.
  std::map<std::string, std::deque<Queued>> busy_;
  // Gids whose prepare is running, and what cancels its statement; gids cancelled before theirs
  // started.
  std::map<std::string, std::shared_ptr<PGcancel>> running_;
  std::set<std::string> cancelled_;
  std::map<std::string, std::vector<std::unique_ptr<SqlConnection>>> idle_;  // by database
  bool stopping_ = false;
  const size_t max_threads_;
  size_t idle_threads_ = 0;           // threads waiting for a task
  std::vector<std::thread> threads_;  // grows under mutex_ until stopping_
};

// The outcome of a SQL operation as the workflow sees it: {results, rows, row_count}, a
// SqlError (definite: tags, sqlstate, statement) or a ConnectionError (unknown).
engine::EffectOutcome SqlEffectOutcome(const SqlOutcome& outcome, const std::string& database);

}  // namespace atomflow::connectors
