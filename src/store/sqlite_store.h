// The SQLite implementation of Store: WAL, synchronous=FULL, one group-committing writer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "store/sqlite_statement.h"
#include "store/store.h"

namespace atomflow::store {

// A Store over one SQLite file (layout and crash behaviour: docs/store.md).
//
// Ownership: owns two connections, one for the writer thread and one for readers (WAL lets
// them run side by side), and the writer thread itself. Every write, blocking or not, is a
// WriteOp on one FIFO queue; the writer swaps the whole queue out, applies it inside one
// BEGIN IMMEDIATE ... COMMIT (one fsync for the lot), then runs the callbacks. Queue order
// is call order, which gives per-execution seq order and Finish-after-Append for free.
// Thread safety: all public methods may be called from any thread; reads serialize on
// read_mutex_. The destructor writes everything still queued, runs its callbacks, and joins.
class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  ~SqliteStore() override;

  Status CreateExecution(const ExecutionRecord& record) override;
  void Append(const std::string& execution_id, JournalEntry entry,
              std::function<void(Status)> on_durable) override;
  void Finish(const std::string& execution_id, std::string state, std::string result,
              std::string error, std::function<void(Status)> on_durable) override;
  Status Flush() override;

  Result<ExecutionRecord> GetExecution(const std::string& id) override;
  Result<std::vector<ExecutionRecord>> ListExecutions(std::string_view state_filter,
                                                      int limit) override;
  Result<std::vector<JournalEntry>> ReadJournal(const std::string& execution_id) override;

  Result<bool> Claim(const std::string& execution_id, const std::string& owner) override;
  Status Release(const std::string& execution_id, const std::string& owner) override;

  StoreStats stats() const override;

 private:
  // One queued write. `apply` runs on the writer thread inside the batch transaction (null
  // for a flush marker); `done` receives apply's own failure, else the batch's outcome.
  struct WriteOp {
    std::function<Status()> apply;
    std::function<void(Status)> done;
    bool is_append = false;
  };

  // Statements of the writer connection; used only by the writer thread.
  struct WriterStatements {
    Statement begin, commit, rollback;
    Statement insert_execution, insert_journal, journal_tail;
    Statement finish, owner, set_owner;
  };

  // Statements of the reader connection; used under read_mutex_.
  struct ReaderStatements {
    Statement get_execution, list_all, list_by_state, read_journal;
  };

  explicit SqliteStore(std::string path) : path_(std::move(path)) {}

  Status OpenConnections();
  Status PrepareStatements();

  void Enqueue(WriteOp op);
  Status EnqueueAndWait(std::function<Status()> apply);
  void WriterLoop();
  void RunBatch(std::vector<WriteOp>& batch);
  Status ApplyBatch(std::vector<WriteOp>& batch, std::vector<Status>& outcomes);

  Status ApplyCreate(const ExecutionRecord& record);
  Status ApplyAppend(const std::string& execution_id, const JournalEntry& entry);
  Result<int64_t> NextSeq(const std::string& execution_id);
  Status ApplyFinish(const std::string& execution_id, const std::string& state,
                     const std::string& result, const std::string& error);
  Status ApplyClaim(const std::string& execution_id, const std::string& owner, bool& claimed);
  Status ApplyRelease(const std::string& execution_id, const std::string& owner);
  Result<std::string> CurrentOwner(const std::string& execution_id);

  std::string path_;  // never changes after construction

  // Declared before the statements so that statements are finalized first.
  Connection writer_db_;
  Connection reader_db_;
  WriterStatements writer_statements_;
  ReaderStatements reader_statements_;
  std::mutex read_mutex_;

  std::mutex queue_mutex_;
  std::condition_variable queue_ready_;
  std::vector<WriteOp> queue_;  // guarded by queue_mutex_
  bool stopping_ = false;       // guarded by queue_mutex_

  // The next seq of each execution that appended in this process. Writer thread only;
  // cleared when a batch fails, since the seqs it handed out were rolled back.
  std::unordered_map<std::string, int64_t> next_seq_;

  std::atomic<uint64_t> appends_{0};
  std::atomic<uint64_t> commits_{0};
  std::thread writer_;
};

}  // namespace atomflow::store
