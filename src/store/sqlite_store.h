// The SQLite implementation of Store: WAL, synchronous=FULL, one group-committing writer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "store/sqlite_statement.h"
#include "store/store.h"

namespace atomflow::store {

// The columns of an execution row, in the order every execution read returns them.
inline constexpr std::string_view kExecutionColumns =
    "id, workflow_name, source_file, source, argument, state, result, error, start_time_ms, "
    "end_time_ms, owner, revision_id, service_account, labels";

// A Store over one SQLite file (layout and crash behaviour: docs/journal.md).
//
// Ownership: owns three connections, one for the writer thread, one for readers (WAL lets
// them run side by side) and one for the checkpointer thread, and three threads: the writer,
// the checkpointer and the callback thread. The checkpointer copies the WAL back into the
// file beside the writer (PASSIVE checkpoints, woken by the writer's commits once the WAL is
// large), so no commit pays for one. Every write, blocking or not, is a WriteOp on one FIFO
// queue; the writer swaps the whole queue out, applies it inside one BEGIN IMMEDIATE ...
// COMMIT (one fsync for the lot), and hands the batch to the callback thread, which runs
// the callbacks in commit order. Queue order is call order, which gives per-execution seq
// order and Finish-after-Append for free. Thread safety: all public methods may be called
// from any thread; reads serialize on read_mutex_. The destructor writes everything still
// queued, runs its callbacks, and joins.
class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  ~SqliteStore() override;

  Status CreateExecution(const ExecutionRecord& record) override;
  void CreateExecutionAsync(ExecutionRecord record,
                            std::function<void(Status)> on_durable) override;
  void Append(const std::string& execution_id, JournalEntry entry,
              std::function<void(Status)> on_durable) override;
  void Finish(const std::string& execution_id, std::string state, std::string result,
              std::string error, std::function<void(Status)> on_durable) override;
  Status Flush() override;
  void SetSerialCallbacks(bool on) override { serial_callbacks_ = on; }

  Result<ExecutionRecord> GetExecution(const std::string& id) override;
  Result<std::vector<ExecutionRecord>> ListExecutions(std::string_view state_filter,
                                                      int limit) override;
  Result<std::vector<JournalEntry>> ReadJournal(const std::string& execution_id) override;
  Result<std::vector<std::vector<JournalEntry>>> ReadJournals(
      const std::vector<std::string>& ids) override;
  Result<std::vector<std::vector<JournalEntry>>> ReadListedJournals(
      const std::vector<const ExecutionRecord*>& records) override;

  Result<bool> Claim(const std::string& execution_id, const std::string& owner) override;
  Result<std::vector<bool>> ClaimMany(const std::vector<std::string>& ids,
                                      const std::string& owner) override;
  Result<std::vector<bool>> ClaimListed(const std::vector<const ExecutionRecord*>& records,
                                        const std::string& owner) override;
  Status Release(const std::string& execution_id, const std::string& owner) override;

  // sqlite_store_workflows.cc
  Status CreateWorkflow(const WorkflowRecord& record) override;
  Status UpdateWorkflow(const WorkflowRecord& record, bool new_revision) override;
  Result<WorkflowRecord> GetWorkflow(const std::string& name,
                                     const std::string& revision_id) override;
  Result<std::vector<WorkflowRecord>> ListWorkflows(const std::string& after_name,
                                                    int limit) override;
  Result<std::vector<WorkflowRecord>> ListRevisions(const std::string& name, int offset,
                                                    int limit) override;
  Status DeleteWorkflow(const std::string& name) override;

  // sqlite_store_read.cc
  Result<std::vector<ExecutionRecord>> QueryExecutions(const ExecutionQuery& query) override;
  Result<std::vector<std::pair<std::string, int64_t>>> CountExecutionsByState() override;
  Result<std::vector<JournalEntry>> ReadJournalKind(const std::string& execution_id,
                                                    const std::string& kind, int64_t after_seq,
                                                    int limit) override;

  StoreStats stats() const override;

 private:
  // One queued write. An append, the hot path, carries its entry inline with the payload
  // already JSON text (serialised on the appending thread, not by the one writer); any other
  // write is `apply`, run on the writer thread inside the batch transaction; neither is a
  // flush marker. `done` receives the op's own failure, else the batch's outcome.
  struct WriteOp {
    std::function<Status()> apply;
    std::function<void(Status)> done;
    bool is_append = false;
    bool is_async_create = false;  // its failure refuses the execution's later writes
    bool writes_nothing = false;   // `apply` only updates the writer's memory (tails_)
    std::string execution_id;      // of an append or an asynchronous create
    std::string kind, key, payload;
    int64_t time_ms = 0;
  };

  // Whether an owner is a live local process, asked once per owner during one write.
  using LivenessCache = std::unordered_map<std::string, bool>;

  // Statements of the writer connection; used only by the writer thread.
  struct WriterStatements {
    Statement begin, commit, rollback;
    Statement insert_execution, insert_journal, journal_tail, journal_last_seq;
    Statement finish, finish_row, owner, owner_by_id, owner_by_number, set_owner, set_owner_row;
  };

  // Statements of the reader connection; used under read_mutex_.
  struct ReaderStatements {
    Statement get_execution, list_all, list_by_state, read_journal, read_journal_by_number;
    Statement count_by_state, read_journal_kind;
  };

  // Workflow statements (sqlite_store_workflows.cc): the writer's, then the reader's.
  struct WorkflowStatements {
    Statement savepoint, release, rollback_to;
    Statement exists, insert_workflow, update_workflow, insert_revision, update_revision;
    Statement delete_workflow, delete_revisions;
    Statement get_latest, get_revision, list_workflows, list_revisions, reader_exists;
  };

  explicit SqliteStore(std::string path) : path_(std::move(path)) {}

  Status OpenConnections();
  Status PrepareStatements();
  Status PrepareWorkflowStatements();

  // sqlite3_wal_hook of the writer connection: wakes the checkpointer once the WAL is large.
  static int OnWalCommit(void* store, sqlite3* db, const char* name, int wal_pages);
  void CheckpointLoop();

  // A committed (or failed) batch whose callbacks have yet to run, with each op's outcome.
  struct FinishedBatch {
    std::vector<WriteOp> ops;
    std::vector<Status> outcomes;
  };

  void Enqueue(WriteOp op);
  Status EnqueueAndWait(std::function<Status()> apply);
  void WriterLoop();
  void CompletionLoop();
  void RunBatch(std::vector<WriteOp>& batch);
  Status ApplyBatch(std::vector<WriteOp>& batch, std::vector<Status>& outcomes);

  Status ApplyCreate(const ExecutionRecord& record, bool async);
  Status ApplyAppend(const WriteOp& op);
  Status CheckNotRefused(const std::string& execution_id) const;
  // Where the execution's row is and its next journal entry goes; see tails_.
  struct JournalTail {
    int64_t number = 0;  // executions.number, the journal's key for the execution
    // The row's rowid when it was last read, a hint only: a VACUUM by another process may
    // renumber rows, so a write by rowid also checks the number and falls back to the id.
    int64_t rowid = 0;
    int64_t next_seq = 0;  // the seq its next entry gets; 0: not known yet, read on first use
  };
  Result<JournalTail*> Tail(const std::string& execution_id);
  Status ApplyFinish(const std::string& execution_id, const std::string& state,
                     const std::string& result, const std::string& error);
  Result<bool> FinishCachedRow(const std::string& execution_id, const std::string& state,
                               const std::string& result, const std::string& error,
                               int64_t end_time_ms);
  Status ApplyClaim(const std::string& execution_id, const std::string& owner, bool& claimed);
  Status ApplyClaimMany(const std::vector<std::string>& ids, const std::string& owner,
                        std::vector<bool>& claimed);
  Status ApplyClaimListed(const std::vector<const ExecutionRecord*>& records,
                          const std::string& owner, std::vector<bool>& claimed);
  // One execution of a ClaimMany or ClaimListed: `select` is bound and returns
  // (rowid, number, owner, state); true when the execution is now `owner`'s.
  Result<bool> ClaimOne(Statement& select, const std::string& execution_id,
                        const std::string& owner, LivenessCache& live);
  Status ApplyRelease(const std::string& execution_id, const std::string& owner);
  Result<std::string> CurrentOwner(const std::string& execution_id);
  // Runs `read` in one read transaction (one snapshot for all its journals), holding
  // read_mutex_.
  using Journals = std::vector<std::vector<JournalEntry>>;
  Result<Journals> ReadInTransaction(const std::function<Result<Journals>()>& read);
  // ReadJournals' and ReadListedJournals' reads, inside the read transaction.
  Result<Journals> ReadJournalsLocked(const std::vector<std::string>& ids);
  Result<Journals> ReadListedJournalsLocked(const std::vector<const ExecutionRecord*>& records);
  // Queues, behind everything already queued, where each journal of a ReadListedJournals
  // ended, for executions whose tail a claim cached without it.
  void QueueJournalEnds(const std::vector<const ExecutionRecord*>& records,
                        const Journals& journals);

  // Runs a write of several statements so that it applies whole or not at all, even when a
  // later op of the same batch commits.
  Status ApplyAtomically(const std::function<Status()>& apply);
  Status ApplyCreateWorkflow(const WorkflowRecord& record);
  Status ApplyUpdateWorkflow(const WorkflowRecord& record, bool new_revision);
  Status ApplyInsertRevision(const WorkflowRecord& record);
  Status ApplyDeleteWorkflow(const std::string& name);
  Result<bool> WorkflowExists(Statement& exists, const std::string& name);

  std::string path_;  // never changes after construction

  // Declared before the statements so that statements are finalized first.
  Connection writer_db_;
  Connection reader_db_;
  Connection checkpoint_db_;  // used only by the checkpointer thread
  WriterStatements writer_statements_;
  ReaderStatements reader_statements_;
  WorkflowStatements workflow_statements_;
  std::mutex read_mutex_;

  std::mutex queue_mutex_;
  std::condition_variable queue_ready_;
  std::vector<WriteOp> queue_;  // guarded by queue_mutex_
  bool stopping_ = false;       // guarded by queue_mutex_

  // The journal tail of each unfinished execution that was created, claimed or appended in
  // this process. Writer thread only; an entry goes at Finish; all are cleared when a batch
  // fails, since the numbers and seqs it handed out were rolled back.
  std::unordered_map<std::string, JournalTail> tails_;

  // Ids whose asynchronous create failed: their appends and Finish are refused for the life
  // of the store, since they may have been queued before the failure was known. Writer thread
  // only; grows only with failed creates.
  std::unordered_set<std::string> refused_;

  std::atomic<uint64_t> appends_{0};
  std::atomic<uint64_t> commits_{0};
  std::thread writer_;

  // Callbacks run on a thread of their own, in commit order, so that the writer starts the
  // next commit while the engine reacts to the last one (the callbacks and the freeing of
  // each op's strings were about a sixth of the writer's time).
  std::mutex completion_mutex_;
  std::condition_variable completion_ready_;
  std::condition_variable completion_done_;
  std::vector<FinishedBatch> finished_;  // guarded by completion_mutex_
  bool completion_stop_ = false;         // guarded by completion_mutex_
  uint64_t batches_handed_ = 0;          // guarded by completion_mutex_
  uint64_t batches_completed_ = 0;       // guarded by completion_mutex_
  std::atomic<bool> serial_callbacks_{false};
  std::thread completer_;

  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wanted_;
  bool checkpoint_due_ = false;   // guarded by checkpoint_mutex_
  bool checkpoint_stop_ = false;  // guarded by checkpoint_mutex_
  std::thread checkpointer_;
};

}  // namespace atomflow::store
