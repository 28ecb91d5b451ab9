// SqliteStore reads: executions and journals, on the reader connection.
#include <utility>

#include "store/sqlite_store.h"

namespace atomflow::store {
namespace {

// Columns in the order of kColumns in sqlite_store.cc.
ExecutionRecord ReadExecutionRow(const Statement& row) {
  ExecutionRecord record;
  record.id = row.Text(0);
  record.workflow_name = row.Text(1);
  record.source_file = row.Text(2);
  record.source = row.Text(3);
  record.argument = row.Text(4);
  record.state = row.Text(5);
  record.result = row.Text(6);
  record.error = row.Text(7);
  record.start_time_ms = row.Int(8);
  record.end_time_ms = row.Int(9);
  record.owner = row.Text(10);
  record.revision_id = row.Text(11);
  record.service_account = row.Text(12);
  record.labels = row.Text(13);
  return record;
}

Result<std::vector<ExecutionRecord>> ReadExecutionRows(Statement& select) {
  std::vector<ExecutionRecord> records;
  while (true) {
    Result<bool> row = select.Step();
    if (!row.ok()) return row.status();
    if (!*row) return records;
    records.push_back(ReadExecutionRow(select));
  }
}

// A payload that is not JSON means the file was damaged outside the store: say which entry.
Result<JournalEntry> ReadJournalRow(const Statement& row, const std::string& execution_id) {
  JournalEntry entry;
  entry.seq = row.Int(0);
  entry.kind = row.Text(1);
  entry.key = row.Text(2);
  entry.payload = Json::parse(row.Text(3), nullptr, /*allow_exceptions=*/false);
  entry.time_ms = row.Int(4);
  if (entry.payload.is_discarded()) {
    return Status::Error("journal entry " + std::to_string(entry.seq) + " of execution " +
                         execution_id + " is corrupt: its payload is not JSON");
  }
  return entry;
}

}  // namespace

Result<ExecutionRecord> SqliteStore::GetExecution(const std::string& id) {
  std::lock_guard lock(read_mutex_);
  Statement& select = reader_statements_.get_execution;
  ScopedReset reset(select);
  select.Bind(1, id);

  Result<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::Error("execution " + id + " not found");
  return ReadExecutionRow(select);
}

Result<std::vector<ExecutionRecord>> SqliteStore::ListExecutions(std::string_view state_filter,
                                                                 int limit) {
  // SQLite reads a negative LIMIT as "no limit".
  int64_t row_limit = limit > 0 ? limit : -1;
  std::lock_guard lock(read_mutex_);
  if (state_filter.empty()) {
    Statement& select = reader_statements_.list_all;
    ScopedReset reset(select);
    select.Bind(1, row_limit);
    return ReadExecutionRows(select);
  }

  Statement& select = reader_statements_.list_by_state;
  ScopedReset reset(select);
  select.Bind(1, state_filter).Bind(2, row_limit);
  return ReadExecutionRows(select);
}

Result<std::vector<JournalEntry>> SqliteStore::ReadJournal(const std::string& execution_id) {
  std::lock_guard lock(read_mutex_);
  Statement& select = reader_statements_.read_journal;
  ScopedReset reset(select);
  select.Bind(1, execution_id);

  std::vector<JournalEntry> entries;
  while (true) {
    Result<bool> row = select.Step();
    if (!row.ok()) return row.status();
    if (!*row) return entries;

    Result<JournalEntry> entry = ReadJournalRow(select, execution_id);
    if (!entry.ok()) return entry.status();
    entries.push_back(std::move(entry).value());
  }
}

}  // namespace atomflow::store
