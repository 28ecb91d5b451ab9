// The Store interface: durable execution records and their append-only journals.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::store {

// One execution as the store keeps it. JSON-valued fields hold JSON text.
struct ExecutionRecord {
  std::string id;
  std::string workflow_name;
  std::string source_file;
  std::string source;    // the workflow text the execution runs
  std::string argument;  // JSON text
  std::string state;     // ACTIVE, SUCCEEDED, FAILED, CANCELLED
  std::string result;    // JSON text, empty if none
  std::string error;     // JSON text, empty if none
  int64_t start_time_ms = 0;
  int64_t end_time_ms = 0;  // 0 while active
  std::string owner;        // "hostname:pid" of the process driving it, empty when none
  // Set when the execution runs a deployed workflow (atomflow serve); empty for `run`.
  std::string revision_id;      // the workflow revision it runs, e.g. "000002-3fa"
  std::string service_account;  // the identity whose secrets its effects may use
  std::string labels = "{}";    // JSON text: a map of string labels
  // The store's own key of the execution, set by the reads that return records, 0 when unset
  // (the SQLite store: executions.number). ReadListedJournals finds journals by it.
  int64_t number = 0;
};

// One record of an execution's journal.
struct JournalEntry {
  int64_t seq = 0;   // assigned by the store, per execution, from 1; ignored by Append
  std::string kind;  // "intent", "result", "branch", "decision", "log", ...
  std::string key;   // the effect key, e.g. "main/3"
  Json payload;
  int64_t time_ms = 0;
  // For Append only: when not empty, the payload's JSON text, written as it is (payload is then
  // ignored), for a writer that builds the text faster than a Json would serialise it.
  std::string payload_text;
};

// One revision of a deployed workflow; the workflow's own fields are the latest revision's.
struct WorkflowRecord {
  std::string name;
  std::string revision_id;  // "000001-a3f": six-digit counter, 3 hex digits of the source hash
  std::string source;       // sourceContents
  std::string description;
  std::string labels = "{}";  // JSON text
  std::string service_account;
  int64_t create_time_ms = 0;           // when the workflow was first deployed
  int64_t update_time_ms = 0;           // when it last changed
  int64_t revision_create_time_ms = 0;  // when this revision was made
};

// One term of an executions filter. field: "state", "revision_id", "start_time_ms",
// "end_time_ms"; op: "=", "!=", "<", "<=", ">", ">="; value: text, or milliseconds.
struct ExecutionFilter {
  std::string field;
  std::string op;
  std::string value;
};

// A page of executions: of one workflow or all, filtered, ordered by (start_time_ms, id).
struct ExecutionQuery {
  std::string workflow_name;             // empty: every workflow
  std::vector<ExecutionFilter> filters;  // ANDed
  // Page cursor: the last row of the previous page; empty id: from the start.
  int64_t cursor_start_time_ms = 0;
  std::string cursor_id;
  bool oldest_first = false;  // default newest first (start_time_ms, id)
  int limit = 100;
};

// Counters that let tests and benchmarks see group commit at work.
struct StoreStats {
  uint64_t appends = 0;  // journal entries in committed transactions
  uint64_t commits = 0;  // committed write transactions
};

// Durable home of executions and journals. Every method is thread safe. Writes are queued
// to one writer that commits many of them in one transaction; the on_durable callbacks run,
// in commit order, on one callback thread once the transaction holding the write committed
// (or failed), so they must be quick and must not call the blocking methods
// (CreateExecution, Flush, Claim, ClaimMany, Release), which wait for that same thread.
class Store {
 public:
  virtual ~Store() = default;

  // Records a new execution; durable when it returns. Fails if the id is taken.
  [[nodiscard]] virtual Status CreateExecution(const ExecutionRecord& record) = 0;

  // Queues a new execution; on_durable receives whether its row committed. Appends and the
  // Finish of the execution queued after this call are ordered after it, so they may be
  // queued at once, before the outcome is known. If the create fails (the id is taken, the
  // disk is full), every later Append and Finish of that id in this process is refused
  // (FailedPrecondition), so nothing of the unborn execution ever lands, not even in the
  // journal of an older execution with the same id.
  virtual void CreateExecutionAsync(ExecutionRecord record,
                                    std::function<void(Status)> on_durable) = 0;

  // Queues a journal entry. Its seq is the next one of the execution, in call order.
  virtual void Append(const std::string& execution_id, JournalEntry entry,
                      std::function<void(Status)> on_durable) = 0;

  // Ends an execution (state, result and error JSON text) and clears its owner; ordered
  // after the execution's earlier appends.
  virtual void Finish(const std::string& execution_id, std::string state, std::string result,
                      std::string error, std::function<void(Status)> on_durable) = 0;

  // Blocks until every write queued before the call is durable.
  [[nodiscard]] virtual Status Flush() = 0;

  // On: the next group commit waits until every callback of the last one has run. For crash
  // tests: a fault point in a callback then kills the process with the journal exactly as it
  // was when that write became durable, not with whatever the writer committed meanwhile.
  virtual void SetSerialCallbacks(bool on) = 0;

  [[nodiscard]] virtual Result<ExecutionRecord> GetExecution(const std::string& id) = 0;

  // Newest first; an empty filter lists every state; limit <= 0 means no limit.
  [[nodiscard]] virtual Result<std::vector<ExecutionRecord>> ListExecutions(
      std::string_view state_filter, int limit) = 0;

  // The durable journal of an execution, in seq order.
  [[nodiscard]] virtual Result<std::vector<JournalEntry>> ReadJournal(
      const std::string& execution_id) = 0;

  // ReadJournal for many executions (element i is ids[i]'s journal); fails as a whole. This
  // default reads them one by one; a store may read them in one go.
  [[nodiscard]] virtual Result<std::vector<std::vector<JournalEntry>>> ReadJournals(
      const std::vector<std::string>& ids);

  // ReadJournals for records this store returned (element i is records[i]'s journal); fails
  // as a whole. A store may find each journal by what it put in the record (its number)
  // rather than look the id up; this default reads them by id. For the executions that
  // ClaimListed gave the caller, a store may also keep where each journal ended, so that the
  // next append continues it without a look-up: the caller owns them, so nothing else
  // appends to them meanwhile.
  [[nodiscard]] virtual Result<std::vector<std::vector<JournalEntry>>> ReadListedJournals(
      const std::vector<const ExecutionRecord*>& records);

  // Makes `owner` the driver of the execution, unless a live process on this host other than
  // `owner` holds it: then returns false. Owners on other hosts are taken over.
  [[nodiscard]] virtual Result<bool> Claim(const std::string& execution_id,
                                           const std::string& owner) = 0;

  // Claim for many executions in one write transaction: element i is true when ids[i] is now
  // driven by `owner`, false when a live local process holds it, it is no longer ACTIVE, or
  // there is no such execution.
  [[nodiscard]] virtual Result<std::vector<bool>> ClaimMany(const std::vector<std::string>& ids,
                                                            const std::string& owner) = 0;

  // ClaimMany for records this store returned (element i is records[i]'s claim). A store may
  // find each row by what it put in the record (its number) rather than look the id up; this
  // default claims them by id.
  [[nodiscard]] virtual Result<std::vector<bool>> ClaimListed(
      const std::vector<const ExecutionRecord*>& records, const std::string& owner);

  // Clears the owner if it is `owner`; releasing an execution held by another is a no-op.
  [[nodiscard]] virtual Status Release(const std::string& execution_id,
                                       const std::string& owner) = 0;

  // Deployed workflows (atomflow serve). Writes are durable when they return.
  // Stores the workflow and record as its first revision; AlreadyExists if the name is taken.
  [[nodiscard]] virtual Status CreateWorkflow(const WorkflowRecord& record) = 0;
  // Replaces the workflow's fields; with new_revision also appends record as a new revision.
  // NotFound if there is no such workflow.
  [[nodiscard]] virtual Status UpdateWorkflow(const WorkflowRecord& record, bool new_revision) = 0;
  // The latest revision, or the one named; NotFound.
  [[nodiscard]] virtual Result<WorkflowRecord> GetWorkflow(const std::string& name,
                                                           const std::string& revision_id = "") = 0;
  // By name, names after after_name; limit <= 0 means no limit.
  [[nodiscard]] virtual Result<std::vector<WorkflowRecord>> ListWorkflows(
      const std::string& after_name, int limit) = 0;
  // Newest first; NotFound if there is no such workflow.
  [[nodiscard]] virtual Result<std::vector<WorkflowRecord>> ListRevisions(const std::string& name,
                                                                          int offset,
                                                                          int limit) = 0;
  // Removes the workflow and its revisions (its executions stay); NotFound.
  [[nodiscard]] virtual Status DeleteWorkflow(const std::string& name) = 0;

  // One page of executions; InvalidArgument for an unknown filter field or op.
  [[nodiscard]] virtual Result<std::vector<ExecutionRecord>> QueryExecutions(
      const ExecutionQuery& query) = 0;
  // (state, count) for every state that has executions, by state.
  [[nodiscard]] virtual Result<std::vector<std::pair<std::string, int64_t>>>
  CountExecutionsByState() = 0;
  // Journal entries of one kind ("step", "log"), seq > after_seq, at most limit (<= 0: all).
  [[nodiscard]] virtual Result<std::vector<JournalEntry>> ReadJournalKind(
      const std::string& execution_id, const std::string& kind, int64_t after_seq, int limit) = 0;

  virtual StoreStats stats() const = 0;

  // Whether processes on several hosts share this store, each owning executions by a lease
  // that can expire while its holder still runs. The engine then makes every intent durable
  // before its effect leaves, so that a holder that lost its lease (its writes are fenced) can
  // send nothing; a store whose owners are local processes, alive or gone, need not.
  virtual bool SharedByHosts() const { return false; }
};

// "hostname:pid" of the calling process, the owner string Claim expects.
std::string ProcessOwner();

// True when `owner` ("hostname:pid") names a process that is alive on this host.
bool IsLiveLocalOwner(std::string_view owner);

// Turns off SQLite's process-wide allocation counting, which takes one mutex on every SQLite
// allocation and free, contended between the store's writer and its readers. Only possible
// before the process opens its first SQLite connection: OpenSqliteStore and SecretStore::Open
// call it, and a program that opens SQLite files of its own before them calls it first.
void StopSqliteMemoryStatistics();

// Opens (creating if needed) the SQLite store at `path`; its folder must exist.
[[nodiscard]] Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace atomflow::store
