// SqliteStore: opening and schema, the write queue, and the group-committing writer thread.
#include "store/sqlite_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <string_view>
#include <utility>

#include "common/metrics.h"

namespace atomflow::store {
namespace {

// Bump when the schema changes; a store written by a newer build is refused, not guessed at.
constexpr int64_t kSchemaVersion = 4;

constexpr int kBusyTimeoutMs = 10000;

// WAL pages after a commit that wake the checkpointer; SQLite's own autocheckpoint default.
constexpr int kCheckpointPages = 1000;

// The layout documented in docs/journal.md. A new file gets the version 2 layout and then the
// same upgrades an old file gets, all in the transaction that records the schema version, so a
// crash while creating or upgrading leaves the file as it was.
constexpr std::string_view kCreateSchema = R"sql(
CREATE TABLE executions (
  id TEXT PRIMARY KEY,
  workflow_name TEXT NOT NULL,
  source_file TEXT NOT NULL,
  source TEXT NOT NULL,
  argument TEXT NOT NULL,
  state TEXT NOT NULL,
  result TEXT NOT NULL,
  error TEXT NOT NULL,
  start_time_ms INTEGER NOT NULL,
  end_time_ms INTEGER NOT NULL,
  owner TEXT NOT NULL,
  revision_id TEXT NOT NULL DEFAULT '',
  service_account TEXT NOT NULL DEFAULT '',
  labels TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX executions_by_start ON executions (start_time_ms);
CREATE INDEX executions_by_state ON executions (state, start_time_ms);
CREATE TABLE journal (
  execution_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  payload TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
INSERT INTO schema_version (version) VALUES (2);
)sql";

// Version 2 adds what a deployed workflow's execution records; version 1 rows get defaults.
constexpr char kUpgradeFrom1[] = R"sql(
ALTER TABLE executions ADD COLUMN revision_id TEXT NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN service_account TEXT NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
INSERT INTO schema_version (version) VALUES (2);
)sql";

// Version 3 adds deployed workflows and their revisions, indexes for the API's execution
// queries (of a workflow, by start time and id), and per-state counts of executions kept by
// triggers so that metrics need not count every row. Journal reads of one kind use the
// primary key (execution_id, seq) and filter by kind: an index on kind measured 10-40% slower
// appends, and appends are the engine's hot path.
constexpr char kUpgradeFrom2[] = R"sql(
CREATE TABLE workflows (
  name TEXT PRIMARY KEY,
  revision_id TEXT NOT NULL,
  source TEXT NOT NULL,
  description TEXT NOT NULL,
  labels TEXT NOT NULL,
  service_account TEXT NOT NULL,
  create_time_ms INTEGER NOT NULL,
  update_time_ms INTEGER NOT NULL,
  revision_create_time_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE workflow_revisions (
  workflow_name TEXT NOT NULL,
  number INTEGER NOT NULL,
  revision_id TEXT NOT NULL,
  source TEXT NOT NULL,
  description TEXT NOT NULL,
  labels TEXT NOT NULL,
  service_account TEXT NOT NULL,
  revision_create_time_ms INTEGER NOT NULL,
  PRIMARY KEY (workflow_name, number),
  UNIQUE (workflow_name, revision_id)
) WITHOUT ROWID;
DROP INDEX executions_by_start;
CREATE INDEX executions_by_start ON executions (start_time_ms, id);
CREATE INDEX executions_by_workflow ON executions (workflow_name, start_time_ms, id);
CREATE TABLE execution_counts (
  state TEXT PRIMARY KEY,
  count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER execution_counts_insert AFTER INSERT ON executions BEGIN
  INSERT INTO execution_counts (state, count) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER execution_counts_update AFTER UPDATE OF state ON executions
WHEN OLD.state IS NOT NEW.state BEGIN
  UPDATE execution_counts SET count = count - 1 WHERE state = OLD.state;
  INSERT INTO execution_counts (state, count) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER execution_counts_delete AFTER DELETE ON executions BEGIN
  UPDATE execution_counts SET count = count - 1 WHERE state = OLD.state;
END;
INSERT INTO execution_counts (state, count)
  SELECT state, COUNT(*) FROM executions GROUP BY state;
INSERT INTO schema_version (version) VALUES (3);
)sql";

// Version 4 keeps the journal in append order. Keyed by (execution_id, seq), every commit added
// a row at the tail of each running execution's key range, dirtying a page per few executions;
// now rows go to the end of one table and an index of small integers finds an execution's
// rows. Each execution gets a number (old rows: their rowid, which no VACUUM has changed yet
// since it is read in the same transaction). Journal rows all belong to an execution: an
// append of an unknown one is refused, and executions are never deleted.
constexpr char kUpgradeFrom3[] = R"sql(
ALTER TABLE executions ADD COLUMN number INTEGER;
UPDATE executions SET number = rowid;
CREATE UNIQUE INDEX executions_by_number ON executions (number);
CREATE TABLE journal_v4 (
  execution_number INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  payload TEXT NOT NULL,
  time_ms INTEGER NOT NULL
);
INSERT INTO journal_v4 (execution_number, seq, kind, key, payload, time_ms)
  SELECT e.number, j.seq, j.kind, j.key, j.payload, j.time_ms
  FROM journal j JOIN executions e ON e.id = j.execution_id ORDER BY e.number, j.seq;
DROP TABLE journal;
ALTER TABLE journal_v4 RENAME TO journal;
CREATE UNIQUE INDEX journal_by_execution ON journal (execution_number, seq);
CREATE VIEW journal_entries AS
  SELECT e.id AS execution_id, j.seq, j.kind, j.key, j.payload, j.time_ms
  FROM journal j JOIN executions e ON e.number = j.execution_number;
INSERT INTO schema_version (version) VALUES (4);
)sql";

int64_t NowMs() {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Status CheckFolder(const std::string& path) {
  std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (folder.empty()) return Status::Ok();

  std::error_code error;
  if (std::filesystem::is_directory(folder, error)) return Status::Ok();
  return Status::Error("folder " + folder.string() + " does not exist");
}

// Journals hold arguments and results, which may be private: a new store file is readable by
// its owner only (SQLite gives its -wal and -shm files the same mode).
void CreatePrivately(const std::string& path) {
  int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) close(fd);
}

// Each of the store's connections is used by one thread at a time (the writer, the
// checkpointer, or a reader under read_mutex_), so SQLite's per-connection mutex, taken on
// every call, only costs: NOMUTEX leaves it out.
Result<Connection> OpenConnection(const std::string& path) {
  StopSqliteMemoryStatistics();
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int code = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Connection db(raw);
  if (code != SQLITE_OK) {
    return Status::Error(raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(code));
  }

  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
  return db;
}

// WAL lets readers run beside the writer; FULL syncs the WAL on every commit, which is what
// makes an acknowledged write survive a power loss, not only a process crash.
Status ConfigureWriter(sqlite3* db) {
  Result<Statement> mode = Statement::Prepare(db, "PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode.status();

  Result<bool> row = mode->Step();
  if (!row.ok()) return row.status();
  if (!*row || mode->Text(0) != "wal") return Status::Error("the file cannot use WAL mode");
  mode->Reset();

  Status status = ExecSql(db, "PRAGMA synchronous=FULL");
  if (!status.ok()) return status;

  // The writer touches the right edge of the journal's B-tree and the execution rows of what
  // runs now; 16 MB (negative: KiB) keeps those pages cached between commits instead of
  // reading them back, where the default 2 MB did not hold one commit's pages. 64 MB was no
  // faster in durable_txn and cost every process 48 MB more.
  status = ExecSql(db, "PRAGMA cache_size=-16384");
  if (!status.ok()) return status;

  // The undo records of a statement (Finish's, whose trigger may abort it) and of a savepoint
  // (a claim of many executions) went to a temporary file once they passed 64 KB, and that
  // file then took a write system call on every later Finish of the batch. They are kept in
  // memory instead; they only ever matter until their statement or savepoint ends.
  return ExecSql(db, "PRAGMA temp_store=MEMORY");
}

Result<int64_t> ReadSchemaVersion(sqlite3* db) {
  Result<Statement> select = Statement::Prepare(db, "SELECT MAX(version) FROM schema_version");
  if (!select.ok()) return select.status();

  Result<bool> row = select->Step();
  if (!row.ok()) return row.status();
  return select->IsNull(0) ? 0 : select->Int(0);
}

Status CreateOrCheckSchema(sqlite3* db) {
  Status status = ExecSql(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)");
  if (!status.ok()) return status;

  Result<int64_t> version = ReadSchemaVersion(db);
  if (!version.ok()) return version.status();
  if (*version > kSchemaVersion) {
    return Status::Error("its schema version " + std::to_string(*version) +
                         " is newer than this atomflow supports (" +
                         std::to_string(kSchemaVersion) + "); use a newer atomflow");
  }

  // Each step brings the file from one version to a later one, inside the caller's transaction.
  struct Step {
    int64_t from, to;
    std::string_view sql;
  };
  constexpr Step kSteps[] = {
      {0, 2, kCreateSchema}, {1, 2, kUpgradeFrom1}, {2, 3, kUpgradeFrom2}, {3, 4, kUpgradeFrom3}};
  int64_t at = *version;
  for (const Step& step : kSteps) {
    if (step.from != at) continue;
    status = ExecSql(db, step.sql);
    if (!status.ok()) return status;
    at = step.to;
  }
  return Status::Ok();
}

// Checks or creates the schema in one write transaction, so that two processes opening a new
// file at once cannot both create it.
Status EnsureSchema(sqlite3* db) {
  Status status = ExecSql(db, "BEGIN IMMEDIATE");
  if (!status.ok()) return status;

  status = CreateOrCheckSchema(db);
  if (!status.ok()) {
    (void)ExecSql(db, "ROLLBACK");
    return status;
  }
  return ExecSql(db, "COMMIT");
}

// The condition under which Finish may still end an execution: a terminal state is final.
constexpr std::string_view kNotEnded =
    "state <> 'SUCCEEDED' AND state <> 'FAILED' AND state <> 'CANCELLED'";

Status NotFound(const std::string& execution_id) {
  return Status::NotFound("execution " + execution_id + " not found");
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  // Without this, a connection URL would quietly become the name of a new SQLite file.
  if (path.rfind("postgres://", 0) == 0 || path.rfind("postgresql://", 0) == 0) {
    return Status::InvalidArgument(
        "a PostgreSQL store is not available yet: --store takes the path of a SQLite file");
  }
  Result<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(path);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(store).value());
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path) {
  std::unique_ptr<SqliteStore> store(new SqliteStore(path));
  Status status = CheckFolder(path);
  if (status.ok()) CreatePrivately(path);
  if (status.ok()) status = store->OpenConnections();
  if (status.ok()) status = store->PrepareStatements();
  if (!status.ok()) return Status::Error("cannot open store " + path + ": " + status.message());

  store->completer_ = std::thread([raw = store.get()] { raw->CompletionLoop(); });
  store->writer_ = std::thread([raw = store.get()] { raw->WriterLoop(); });
  store->checkpointer_ = std::thread([raw = store.get()] { raw->CheckpointLoop(); });
  return store;
}

Status SqliteStore::OpenConnections() {
  Result<Connection> writer = OpenConnection(path_);
  if (!writer.ok()) return writer.status();
  writer_db_ = std::move(writer).value();

  Status status = ConfigureWriter(writer_db_.get());
  if (status.ok()) status = EnsureSchema(writer_db_.get());
  if (!status.ok()) return status;

  Result<Connection> checkpointer = OpenConnection(path_);
  if (!checkpointer.ok()) return checkpointer.status();
  checkpoint_db_ = std::move(checkpointer).value();
  // Replaces the writer's autocheckpoint, which ran each checkpoint (copying pages into the
  // file and syncing it) inside a commit, while every execution waited for that commit.
  sqlite3_wal_hook(writer_db_.get(), &SqliteStore::OnWalCommit, this);

  Result<Connection> reader = OpenConnection(path_);
  if (!reader.ok()) return reader.status();
  reader_db_ = std::move(reader).value();
  return ExecSql(reader_db_.get(), "PRAGMA query_only=ON");
}

int SqliteStore::OnWalCommit(void* store, sqlite3*, const char*, int wal_pages) {
  if (wal_pages < kCheckpointPages) return SQLITE_OK;
  auto* self = static_cast<SqliteStore*>(store);
  {
    std::lock_guard lock(self->checkpoint_mutex_);
    self->checkpoint_due_ = true;
  }
  self->checkpoint_wanted_.notify_one();
  return SQLITE_OK;
}

// PASSIVE: copies what no reader still needs and never blocks the writer. A checkpoint that
// could not copy everything (busy, or readers) is simply retried after a later commit; the WAL
// is restarted from its start by the writer once a checkpoint has copied it all. A crash
// during a checkpoint loses nothing: the WAL still holds every committed frame.
void SqliteStore::CheckpointLoop() {
  std::unique_lock lock(checkpoint_mutex_);
  while (true) {
    checkpoint_wanted_.wait(lock, [this] { return checkpoint_stop_ || checkpoint_due_; });
    if (checkpoint_stop_) return;
    checkpoint_due_ = false;
    lock.unlock();
    (void)sqlite3_wal_checkpoint_v2(checkpoint_db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                    nullptr, nullptr);
    lock.lock();
  }
}

Status SqliteStore::PrepareStatements() {
  constexpr std::string_view kColumns = kExecutionColumns;
  std::string select = "SELECT " + std::string(kColumns) + ", number FROM executions ";
  WriterStatements& w = writer_statements_;
  ReaderStatements& r = reader_statements_;

  Status status = PrepareAll(
      writer_db_.get(),
      {{&w.begin, "BEGIN IMMEDIATE"},
       {&w.commit, "COMMIT"},
       {&w.rollback, "ROLLBACK"},
       // MAX(number) reads the last entry of executions_by_number; the write lock makes it
       // safe against another process's creates.
       {&w.insert_execution,
        "INSERT INTO executions (" + std::string(kColumns) +
            ", number) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
            "(SELECT IFNULL(MAX(number), 0) + 1 FROM executions)) RETURNING number, rowid"},
       {&w.insert_journal,
        "INSERT INTO journal (execution_number, seq, kind, key, payload, time_ms) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
       {&w.journal_tail,
        "SELECT e.number, e.rowid, "
        "(SELECT MAX(seq) FROM journal WHERE execution_number = e.number) "
        "FROM executions e WHERE e.id = ?1"},
       {&w.journal_last_seq, "SELECT IFNULL(MAX(seq), 0) FROM journal WHERE execution_number = ?1"},
       // "state <> ... AND ..." rather than NOT IN (...): SQLite builds NOT IN's list as a
       // temporary b-tree on every run of the statement, a fifth of the time of each Finish
       // in a measurement of 50,000 of them.
       {&w.finish,
        "UPDATE executions SET state = ?2, result = ?3, error = ?4, end_time_ms = ?5, "
        "owner = '' WHERE id = ?1 AND " +
            std::string(kNotEnded)},
       // By the cached rowid, checked against the number (see JournalTail::rowid).
       {&w.finish_row,
        "UPDATE executions SET state = ?3, result = ?4, error = ?5, end_time_ms = ?6, "
        "owner = '' WHERE rowid = ?1 AND number = ?2 AND " +
            std::string(kNotEnded)},
       {&w.owner, "SELECT owner, state FROM executions WHERE id = ?1"},
       {&w.owner_by_id, "SELECT rowid, number, owner, state FROM executions WHERE id = ?1"},
       {&w.owner_by_number, "SELECT rowid, number, owner, state FROM executions WHERE number = ?1"},
       {&w.set_owner, "UPDATE executions SET owner = ?2 WHERE id = ?1"},
       // By a rowid read in the same write transaction, so it is current.
       {&w.set_owner_row, "UPDATE executions SET owner = ?2 WHERE rowid = ?1"}});
  if (!status.ok()) return status;

  status =
      PrepareAll(reader_db_.get(),
                 {{&r.get_execution, select + "WHERE id = ?1"},
                  {&r.list_all, select + "ORDER BY start_time_ms DESC, rowid DESC LIMIT ?1"},
                  {&r.list_by_state,
                   select + "WHERE state = ?1 ORDER BY start_time_ms DESC, rowid DESC LIMIT ?2"},
                  {&r.read_journal,
                   "SELECT seq, kind, key, payload, time_ms FROM journal WHERE execution_number "
                   "= (SELECT number FROM executions WHERE id = ?1) ORDER BY seq"},
                  {&r.read_journal_by_number,
                   "SELECT seq, kind, key, payload, time_ms FROM journal WHERE execution_number "
                   "= ?1 ORDER BY seq"},
                  {&r.count_by_state,
                   "SELECT state, count FROM execution_counts WHERE count > 0 ORDER BY state"},
                  {&r.read_journal_kind,
                   "SELECT seq, kind, key, payload, time_ms FROM journal WHERE execution_number "
                   "= (SELECT number FROM executions WHERE id = ?1) AND kind = ?2 AND seq > ?3 "
                   "ORDER BY seq LIMIT ?4"}});
  if (!status.ok()) return status;

  return PrepareWorkflowStatements();
}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  queue_ready_.notify_one();
  if (writer_.joinable()) writer_.join();

  // After the writer: every batch it handed over still gets its callbacks.
  {
    std::lock_guard lock(completion_mutex_);
    completion_stop_ = true;
  }
  completion_ready_.notify_one();
  if (completer_.joinable()) completer_.join();

  {
    std::lock_guard lock(checkpoint_mutex_);
    checkpoint_stop_ = true;
  }
  checkpoint_wanted_.notify_one();
  if (checkpointer_.joinable()) checkpointer_.join();
}

// ---- The write queue ----

void SqliteStore::Enqueue(WriteOp op) {
  {
    std::lock_guard lock(queue_mutex_);
    queue_.push_back(std::move(op));
  }
  queue_ready_.notify_one();
}

Status SqliteStore::EnqueueAndWait(std::function<Status()> apply) {
  // Waiting on the writer from the thread of its callbacks would wait forever.
  if (std::this_thread::get_id() == completer_.get_id()) {
    return Status::Error("a blocking store call was made from a store callback");
  }

  std::promise<Status> outcome;
  std::future<Status> future = outcome.get_future();
  WriteOp op;
  op.apply = std::move(apply);
  op.done = [&outcome](const Status& status) { outcome.set_value(status); };
  Enqueue(std::move(op));
  return future.get();
}

void SqliteStore::WriterLoop() {
  std::unique_lock lock(queue_mutex_);
  while (true) {
    queue_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything queued has been written

    std::vector<WriteOp> batch;
    batch.swap(queue_);
    lock.unlock();
    RunBatch(batch);
    lock.lock();
  }
}

void SqliteStore::RunBatch(std::vector<WriteOp>& batch) {
  std::vector<Status> outcomes(batch.size());
  Status committed = ApplyBatch(batch, outcomes);

  // A failed batch rolled back every seq it handed out; re-read them on next use. Its
  // asynchronous creates did not happen, and their executions may have more writes queued.
  if (!committed.ok()) {
    tails_.clear();
    for (const WriteOp& op : batch) {
      if (op.is_async_create) refused_.insert(op.execution_id);
    }
    outcomes.assign(batch.size(), committed);
  }

  // Counted before any callback runs, so a caller woken by one sees stats that include it.
  uint64_t appended = 0;
  for (size_t i = 0; i < batch.size(); ++i) appended += batch[i].is_append && outcomes[i].ok();
  appends_ += appended;

  std::unique_lock lock(completion_mutex_);
  finished_.push_back(FinishedBatch{std::move(batch), std::move(outcomes)});
  uint64_t handed = ++batches_handed_;
  completion_ready_.notify_one();
  if (serial_callbacks_) {
    completion_done_.wait(lock, [this, handed] { return batches_completed_ >= handed; });
  }
}

void SqliteStore::CompletionLoop() {
  std::unique_lock lock(completion_mutex_);
  while (true) {
    completion_ready_.wait(lock, [this] { return completion_stop_ || !finished_.empty(); });
    if (finished_.empty()) return;  // stopping, and every callback has run

    std::vector<FinishedBatch> ready;
    ready.swap(finished_);
    lock.unlock();
    for (FinishedBatch& finished : ready) {
      for (size_t i = 0; i < finished.ops.size(); ++i) {
        if (finished.ops[i].done) finished.ops[i].done(finished.outcomes[i]);
      }
    }
    size_t count = ready.size();
    ready.clear();  // the ops' strings are freed here, off the writer thread
    lock.lock();
    batches_completed_ += count;
    completion_done_.notify_all();
  }
}

// Applies every op of the batch in one transaction. An op that fails on its own (a duplicate
// id, an unknown execution) fails alone; a failure that aborted the transaction, or a failed
// COMMIT, fails the whole batch.
Status SqliteStore::ApplyBatch(std::vector<WriteOp>& batch, std::vector<Status>& outcomes) {
  bool writes = false;
  for (const WriteOp& op : batch) {
    writes = writes || (op.apply != nullptr && !op.writes_nothing) || op.is_append;
  }
  if (!writes) {
    // Only flush markers and ops on the writer's memory: nothing to commit.
    for (WriteOp& op : batch) {
      if (op.apply != nullptr) (void)op.apply();
    }
    return Status::Ok();
  }

  static metrics::Histogram* const commit_seconds = metrics::Registry::Global().GetHistogram(
      "atomflow_journal_commit_seconds", "Time of one group commit of the store's writer.",
      metrics::DurationBuckets());
  auto started = std::chrono::steady_clock::now();
  WriterStatements& w = writer_statements_;
  ScopedReset reset_begin(w.begin);
  Result<int> begun = w.begin.Run();
  if (!begun.ok()) return begun.status();

  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].is_append) {
      outcomes[i] = ApplyAppend(batch[i]);
    } else if (batch[i].apply != nullptr) {
      outcomes[i] = batch[i].apply();
    } else {
      continue;
    }
    if (!outcomes[i].ok() && sqlite3_get_autocommit(writer_db_.get())) return outcomes[i];
  }

  ScopedReset reset_commit(w.commit);
  Result<int> done = w.commit.Run();
  if (!done.ok()) {
    ScopedReset reset_rollback(w.rollback);
    (void)w.rollback.Run();
    return done.status();
  }
  ++commits_;
  commit_seconds->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return Status::Ok();
}

// ---- Writes ----

Status SqliteStore::CreateExecution(const ExecutionRecord& record) {
  // The caller learns of a failure before it can append, so nothing needs refusing.
  return EnqueueAndWait([this, &record] { return ApplyCreate(record, false); });
}

void SqliteStore::CreateExecutionAsync(ExecutionRecord record,
                                       std::function<void(Status)> on_durable) {
  WriteOp op;
  op.execution_id = record.id;
  op.is_async_create = true;
  op.apply = [this, record = std::move(record)] { return ApplyCreate(record, true); };
  op.done = std::move(on_durable);
  Enqueue(std::move(op));
}

void SqliteStore::Append(const std::string& execution_id, JournalEntry entry,
                         std::function<void(Status)> on_durable) {
  WriteOp op;
  op.is_append = true;
  op.execution_id = execution_id;
  op.kind = std::move(entry.kind);
  op.key = std::move(entry.key);
  // Values are encoded losslessly before they get here (ToJournalJson); what else a payload
  // holds (a log line, a message) is text for people, where a replaced byte costs nothing.
  // Serialised here, on the caller's thread: the writer is the one serial resource.
  if (!entry.payload_text.empty()) {
    op.payload = std::move(entry.payload_text);
  } else {
    op.payload = entry.payload.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  op.time_ms = entry.time_ms;
  op.done = std::move(on_durable);
  Enqueue(std::move(op));
}

void SqliteStore::Finish(const std::string& execution_id, std::string state, std::string result,
                         std::string error, std::function<void(Status)> on_durable) {
  WriteOp op;
  op.apply = [this, execution_id, state = std::move(state), result = std::move(result),
              error = std::move(error)] { return ApplyFinish(execution_id, state, result, error); };
  op.done = std::move(on_durable);
  Enqueue(std::move(op));
}

Status SqliteStore::Flush() {
  // A marker with no write: it completes once every op queued before it has committed.
  return EnqueueAndWait(nullptr);
}

Result<bool> SqliteStore::Claim(const std::string& execution_id, const std::string& owner) {
  bool claimed = false;
  Status status = EnqueueAndWait([&] { return ApplyClaim(execution_id, owner, claimed); });
  if (!status.ok()) return status;
  return claimed;
}

Result<std::vector<bool>> SqliteStore::ClaimMany(const std::vector<std::string>& ids,
                                                 const std::string& owner) {
  std::vector<bool> claimed(ids.size(), false);
  if (ids.empty()) return claimed;

  // Whole or not at all: a failed claim must not leave some of them owned and unreported.
  Status status = EnqueueAndWait(
      [&] { return ApplyAtomically([&] { return ApplyClaimMany(ids, owner, claimed); }); });
  if (!status.ok()) return status;
  return claimed;
}

Result<std::vector<bool>> SqliteStore::ClaimListed(
    const std::vector<const ExecutionRecord*>& records, const std::string& owner) {
  std::vector<bool> claimed(records.size(), false);
  if (records.empty()) return claimed;

  // Whole or not at all, as ClaimMany.
  Status status = EnqueueAndWait(
      [&] { return ApplyAtomically([&] { return ApplyClaimListed(records, owner, claimed); }); });
  if (!status.ok()) return status;
  return claimed;
}

// The journal read of claimed executions knew where each journal ended. Queued behind the
// claims and ahead of any append the caller makes after the read, so it only fills in a tail
// that no append has read yet; a failed batch drops it with every cached tail.
void SqliteStore::QueueJournalEnds(const std::vector<const ExecutionRecord*>& records,
                                   const Journals& journals) {
  std::vector<std::pair<std::string, int64_t>> ends;
  ends.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    int64_t last_seq = journals[i].empty() ? 0 : journals[i].back().seq;
    ends.emplace_back(records[i]->id, last_seq);
  }

  WriteOp op;
  op.writes_nothing = true;
  op.apply = [this, ends = std::move(ends)] {
    for (const auto& [execution_id, last_seq] : ends) {
      auto cached = tails_.find(execution_id);
      if (cached != tails_.end() && cached->second.next_seq == 0) {
        cached->second.next_seq = last_seq + 1;
      }
    }
    return Status::Ok();
  };
  Enqueue(std::move(op));
}

Status SqliteStore::Release(const std::string& execution_id, const std::string& owner) {
  return EnqueueAndWait([&] { return ApplyRelease(execution_id, owner); });
}

StoreStats SqliteStore::stats() const { return {appends_.load(), commits_.load()}; }

// ---- What each write does inside the batch transaction (writer thread only) ----

Status SqliteStore::ApplyCreate(const ExecutionRecord& record, bool async) {
  // A second create of an id refused before would revive its queued writes; refuse it too.
  if (async && refused_.count(record.id) != 0) {
    return Status::FailedPrecondition("cannot create execution " + record.id +
                                      ": an earlier create of it failed");
  }

  Statement& insert = writer_statements_.insert_execution;
  ScopedReset reset(insert);
  insert.Bind(1, record.id).Bind(2, record.workflow_name).Bind(3, record.source_file);
  insert.BindUncopied(4, record.source).BindUncopied(5, record.argument).Bind(6, record.state);
  insert.Bind(7, record.result).Bind(8, record.error).Bind(9, record.start_time_ms);
  insert.Bind(10, record.end_time_ms).Bind(11, record.owner).Bind(12, record.revision_id);
  insert.Bind(13, record.service_account).Bind(14, record.labels);

  Result<bool> inserted = insert.Step();
  if (!inserted.ok()) {
    // Its writes may already be queued behind it (CreateExecutionAsync): none may land, not
    // even on an older execution that holds the same id.
    if (async) refused_.insert(record.id);
    return Status::Error("cannot create execution " + record.id + ": " + inserted.message());
  }
  assert(*inserted);  // RETURNING gives the row of every insert that succeeded

  // A new execution has no journal yet: its first append needs no look-up.
  tails_[record.id] = JournalTail{insert.Int(0), insert.Int(1), 1};
  return Status::Ok();
}

Status SqliteStore::CheckNotRefused(const std::string& execution_id) const {
  if (refused_.empty() || refused_.count(execution_id) == 0) return Status::Ok();
  return Status::FailedPrecondition("execution " + execution_id +
                                    " was never created: its create failed");
}

Status SqliteStore::ApplyAppend(const WriteOp& op) {
  Status refused = CheckNotRefused(op.execution_id);
  if (!refused.ok()) return refused;

  Result<JournalTail*> tail = Tail(op.execution_id);
  if (!tail.ok()) return tail.status();

  Statement& insert = writer_statements_.insert_journal;
  ScopedReset reset(insert);
  insert.Bind(1, (*tail)->number).Bind(2, (*tail)->next_seq).BindUncopied(3, op.kind);
  insert.BindUncopied(4, op.key).BindUncopied(5, op.payload).Bind(6, op.time_ms);
  Result<int> inserted = insert.Run();
  if (!inserted.ok()) return inserted.status();

  // Advance only once the row is in, so a failed insert leaves no gap.
  ++(*tail)->next_seq;
  return Status::Ok();
}

// The cached tail of the execution's journal; the first append in this process reads where
// the journal ended (after a restart it continues from there) and caches it. A claim caches
// the number without the end, which the recovery's journal read usually fills in
// (QueueJournalEnds); else it is read here, by number.
Result<SqliteStore::JournalTail*> SqliteStore::Tail(const std::string& execution_id) {
  auto cached = tails_.find(execution_id);
  if (cached != tails_.end() && cached->second.next_seq > 0) return &cached->second;
  if (cached != tails_.end()) {
    Statement& last = writer_statements_.journal_last_seq;
    ScopedReset reset(last);
    last.Bind(1, cached->second.number);
    Result<bool> row = last.Step();
    if (!row.ok()) return row.status();
    cached->second.next_seq = last.Int(0) + 1;  // an aggregate always returns its row
    return &cached->second;
  }

  Statement& tail = writer_statements_.journal_tail;
  ScopedReset reset(tail);
  tail.Bind(1, execution_id);
  Result<bool> row = tail.Step();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound(execution_id);
  // MAX(seq) is NULL (read as 0) for an empty journal.
  JournalTail found{tail.Int(0), tail.Int(1), tail.Int(2) + 1};
  return &tails_.emplace(execution_id, found).first->second;
}

Status SqliteStore::ApplyFinish(const std::string& execution_id, const std::string& state,
                                const std::string& result, const std::string& error) {
  Status refused = CheckNotRefused(execution_id);
  if (!refused.ok()) return refused;

  // Only the state, result, error, end time and owner change; SQLite still writes the row
  // whole, but finding it by its cached rowid skips the look-up of the id.
  int64_t end_time_ms = NowMs();
  Result<bool> by_row = FinishCachedRow(execution_id, state, result, error, end_time_ms);
  if (!by_row.ok()) return by_row.status();
  if (*by_row) return Status::Ok();

  Statement& finish = writer_statements_.finish;
  ScopedReset reset(finish);
  finish.Bind(1, execution_id).Bind(2, state).Bind(3, result).Bind(4, error);
  finish.Bind(5, end_time_ms);
  Result<int> changed = finish.Run();
  if (!changed.ok()) return changed.status();
  if (*changed == 1) {
    // A finished execution rarely appends again (an operator's retry); that reads the tail.
    tails_.erase(execution_id);
    return Status::Ok();
  }

  // Nothing changed: either no such execution, or it had already ended (a terminal state is
  // final, so a late Finish cannot overwrite how it ended).
  Result<std::string> owner = CurrentOwner(execution_id);
  if (!owner.ok()) return owner.status();
  return Status::Error("execution " + execution_id + " has already finished");
}

// Finish by the rowid of the execution's cached tail: true when it ended the execution; false
// when there is no cached rowid or the row there is not this execution's unfinished one (a
// VACUUM renumbered the rows, or it had ended), for the look-up by id to decide.
Result<bool> SqliteStore::FinishCachedRow(const std::string& execution_id, const std::string& state,
                                          const std::string& result, const std::string& error,
                                          int64_t end_time_ms) {
  auto cached = tails_.find(execution_id);
  if (cached == tails_.end() || cached->second.rowid == 0) return false;

  Statement& finish = writer_statements_.finish_row;
  ScopedReset reset(finish);
  finish.Bind(1, cached->second.rowid).Bind(2, cached->second.number).Bind(3, state);
  finish.BindUncopied(4, result).BindUncopied(5, error).Bind(6, end_time_ms);
  Result<int> changed = finish.Run();
  if (!changed.ok()) return changed.status();
  if (*changed != 1) return false;

  // A finished execution rarely appends again (an operator's retry); that reads the tail.
  tails_.erase(cached);
  return true;
}

Result<std::string> SqliteStore::CurrentOwner(const std::string& execution_id) {
  Statement& select = writer_statements_.owner;
  ScopedReset reset(select);
  select.Bind(1, execution_id);
  Result<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound(execution_id);
  return select.Text(0);
}

Status SqliteStore::ApplyClaim(const std::string& execution_id, const std::string& owner,
                               bool& claimed) {
  Result<std::string> current = CurrentOwner(execution_id);
  if (!current.ok()) return current.status();

  // The batch holds the write lock, so no other process can claim between check and update.
  claimed = *current == owner || !IsLiveLocalOwner(*current);
  if (!claimed || *current == owner) return Status::Ok();

  Statement& update = writer_statements_.set_owner;
  ScopedReset reset(update);
  update.Bind(1, execution_id).Bind(2, owner);
  return update.Run().status();
}

// Claim's rule for each id, in the one batch transaction; an unknown id is false, not an error,
// and so is one no longer ACTIVE (ended by another process since the caller listed it), so
// that the caller may resume what it listed without reading each row again.
Status SqliteStore::ApplyClaimMany(const std::vector<std::string>& ids, const std::string& owner,
                                   std::vector<bool>& claimed) {
  LivenessCache live;
  Statement& select = writer_statements_.owner_by_id;
  for (size_t i = 0; i < ids.size(); ++i) {
    ScopedReset reset(select);
    select.Bind(1, ids[i]);
    Result<bool> mine = ClaimOne(select, ids[i], owner, live);
    if (!mine.ok()) return mine.status();
    claimed[i] = *mine;
  }
  return Status::Ok();
}

// ApplyClaimMany, finding each row by the number its listing carried (an integer index)
// rather than by its id; a record without one is looked up by id.
Status SqliteStore::ApplyClaimListed(const std::vector<const ExecutionRecord*>& records,
                                     const std::string& owner, std::vector<bool>& claimed) {
  LivenessCache live;
  WriterStatements& w = writer_statements_;
  for (size_t i = 0; i < records.size(); ++i) {
    const ExecutionRecord& record = *records[i];
    Statement& select = record.number > 0 ? w.owner_by_number : w.owner_by_id;
    ScopedReset reset(select);
    if (record.number > 0) {
      select.Bind(1, record.number);
    } else {
      select.Bind(1, record.id);
    }
    Result<bool> mine = ClaimOne(select, record.id, owner, live);
    if (!mine.ok()) return mine.status();
    claimed[i] = *mine;
  }
  return Status::Ok();
}

Result<bool> SqliteStore::ClaimOne(Statement& select, const std::string& execution_id,
                                   const std::string& owner, LivenessCache& live) {
  Result<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (!*row || select.TextView(3) != "ACTIVE") return false;

  int64_t rowid = select.Int(0);
  int64_t number = select.Int(1);
  std::string previous = select.Text(2);
  select.Reset();  // no read of the table stays open across the update
  if (previous != owner) {
    // The write lock is held for the whole batch, as in ApplyClaim; liveness is asked once per
    // distinct previous owner.
    auto known = live.find(previous);
    if (known == live.end()) known = live.emplace(previous, IsLiveLocalOwner(previous)).first;
    if (known->second) return false;

    Statement& update = writer_statements_.set_owner_row;
    ScopedReset reset(update);
    update.Bind(1, rowid).Bind(2, owner);
    Result<int> updated = update.Run();
    if (!updated.ok()) return updated.status();
  }

  // The owner resumes it next: its appends and Finish find the row without the id. Where
  // its journal ends is left unknown (0) for the journal read to fill in, or Tail to read.
  tails_.try_emplace(execution_id, JournalTail{number, rowid, 0});
  return true;
}

Status SqliteStore::ApplyRelease(const std::string& execution_id, const std::string& owner) {
  Result<std::string> current = CurrentOwner(execution_id);
  if (!current.ok()) return current.status();
  if (*current != owner) return Status::Ok();

  Statement& update = writer_statements_.set_owner;
  ScopedReset reset(update);
  update.Bind(1, execution_id).Bind(2, std::string_view());
  return update.Run().status();
}

// Nothing here reads SQLite's allocation counts. The call fails once SQLite has initialised
// (a connection was opened first) and the counting then stays.
void StopSqliteMemoryStatistics() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

}  // namespace atomflow::store
