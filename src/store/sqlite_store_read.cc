// SqliteStore reads: executions and journals, on the reader connection.
#include <charconv>
#include <utility>
#include <variant>

#include "store/sqlite_store.h"

namespace atomflow::store {
namespace {

// Columns in the order of kExecutionColumns, then the execution's number.
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
  record.number = row.Int(14);
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
  std::string_view payload = row.TextView(3);
  entry.payload = Json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  entry.time_ms = row.Int(4);
  if (entry.payload.is_discarded()) {
    return Status::Error("journal entry " + std::to_string(entry.seq) + " of execution " +
                         execution_id + " is corrupt: its payload is not JSON");
  }
  return entry;
}

// Appends the rows `select` returns to `journal`.
Status AppendJournalRows(Statement& select, const std::string& execution_id,
                         std::vector<JournalEntry>& journal) {
  while (true) {
    Result<bool> row = select.Step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();

    Result<JournalEntry> entry = ReadJournalRow(select, execution_id);
    if (!entry.ok()) return entry.status();
    journal.push_back(std::move(entry).value());
  }
}

// An executions filter field and the column it compares.
struct FilterColumn {
  std::string_view field;
  std::string_view column;
  bool milliseconds;  // the value is an integer number of milliseconds, else text
};
constexpr FilterColumn kFilterColumns[] = {{"state", "state", false},
                                           {"revision_id", "revision_id", false},
                                           {"start_time_ms", "start_time_ms", true},
                                           {"end_time_ms", "end_time_ms", true}};
constexpr std::string_view kFilterOps[] = {"=", "!=", "<", "<=", ">", ">="};

// SQL text made only of fixed fragments, and the values to bind to its ?s in order.
struct BoundSql {
  std::string sql;
  std::vector<std::variant<std::string, int64_t>> values;
};

const FilterColumn* FindFilterColumn(std::string_view field) {
  for (const FilterColumn& column : kFilterColumns) {
    if (column.field == field) return &column;
  }
  return nullptr;
}

bool IsFilterOp(std::string_view op) {
  for (std::string_view known : kFilterOps) {
    if (known == op) return true;
  }
  return false;
}

// Appends " AND column op ?" for one term; the op is one of kFilterOps, never caller text.
Status AddFilterTerm(const ExecutionFilter& filter, BoundSql& query) {
  const FilterColumn* column = FindFilterColumn(filter.field);
  if (column == nullptr) {
    return Status::InvalidArgument("executions cannot be filtered by '" + filter.field + "'");
  }
  if (!IsFilterOp(filter.op)) {
    return Status::InvalidArgument("unknown filter operator '" + filter.op + "'");
  }
  query.sql += " AND " + std::string(column->column) + " " + filter.op + " ?";
  if (!column->milliseconds) {
    query.values.emplace_back(filter.value);
    return Status::Ok();
  }

  int64_t number = 0;
  const char* end = filter.value.data() + filter.value.size();
  auto [stop, error] = std::from_chars(filter.value.data(), end, number);
  if (error != std::errc() || stop != end) {
    return Status::InvalidArgument("the " + filter.field + " filter value '" + filter.value +
                                   "' is not a number of milliseconds");
  }
  query.values.emplace_back(number);

  // A running execution has no end time yet (0), so no end-time comparison matches it.
  if (column->field == "end_time_ms") query.sql += " AND end_time_ms != 0";
  return Status::Ok();
}

Result<BoundSql> BuildExecutionQuery(const ExecutionQuery& query) {
  BoundSql bound;
  bound.sql = "SELECT " + std::string(kExecutionColumns) + ", number FROM executions WHERE 1";
  if (!query.workflow_name.empty()) {
    bound.sql += " AND workflow_name = ?";
    bound.values.emplace_back(query.workflow_name);
  }
  for (const ExecutionFilter& filter : query.filters) {
    Status status = AddFilterTerm(filter, bound);
    if (!status.ok()) return status;
  }

  // Rows strictly after the previous page's last one, in the page order.
  const char* direction = query.oldest_first ? " ASC" : " DESC";
  if (!query.cursor_id.empty()) {
    bound.sql += query.oldest_first ? " AND (start_time_ms, id) > (?, ?)"
                                    : " AND (start_time_ms, id) < (?, ?)";
    bound.values.emplace_back(query.cursor_start_time_ms);
    bound.values.emplace_back(query.cursor_id);
  }
  bound.sql += std::string(" ORDER BY start_time_ms") + direction + ", id" + direction;
  bound.sql += " LIMIT ?";
  bound.values.emplace_back(static_cast<int64_t>(query.limit > 0 ? query.limit : -1));
  return bound;
}

void BindAll(const BoundSql& bound, Statement& statement) {
  for (size_t i = 0; i < bound.values.size(); ++i) {
    int index = static_cast<int>(i) + 1;
    std::visit([&](const auto& value) { statement.Bind(index, value); }, bound.values[i]);
  }
}

}  // namespace

Result<ExecutionRecord> SqliteStore::GetExecution(const std::string& id) {
  std::lock_guard lock(read_mutex_);
  Statement& select = reader_statements_.get_execution;
  ScopedReset reset(select);
  select.Bind(1, id);

  Result<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("execution " + id + " not found");
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
  Status read = AppendJournalRows(select, execution_id, entries);
  if (!read.ok()) return read;
  return entries;
}

Result<SqliteStore::Journals> SqliteStore::ReadJournals(const std::vector<std::string>& ids) {
  return ReadInTransaction([&] { return ReadJournalsLocked(ids); });
}

Result<SqliteStore::Journals> SqliteStore::ReadListedJournals(
    const std::vector<const ExecutionRecord*>& records) {
  Result<Journals> journals = ReadInTransaction([&] { return ReadListedJournalsLocked(records); });
  if (journals.ok()) QueueJournalEnds(records, *journals);
  return journals;
}

// One read transaction for the lot: one snapshot, taken once rather than per journal.
Result<SqliteStore::Journals> SqliteStore::ReadInTransaction(
    const std::function<Result<Journals>()>& read) {
  std::lock_guard lock(read_mutex_);
  Status begun = ExecSql(reader_db_.get(), "BEGIN");
  if (!begun.ok()) return begun;

  Result<Journals> journals = read();
  Status ended = ExecSql(reader_db_.get(), "COMMIT");
  if (!journals.ok()) return journals;
  if (!ended.ok()) return ended;
  return journals;
}

Result<SqliteStore::Journals> SqliteStore::ReadJournalsLocked(const std::vector<std::string>& ids) {
  Statement& select = reader_statements_.read_journal;
  Journals journals(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ScopedReset reset(select);
    select.Bind(1, ids[i]);
    Status read = AppendJournalRows(select, ids[i], journals[i]);
    if (!read.ok()) return read;
  }
  return journals;
}

// A record this store read carries executions.number, which never changes once given: the
// journal index is read by it directly, without the look-up of the number by id.
Result<SqliteStore::Journals> SqliteStore::ReadListedJournalsLocked(
    const std::vector<const ExecutionRecord*>& records) {
  Journals journals(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const ExecutionRecord& record = *records[i];
    bool numbered = record.number > 0;
    Statement& select =
        numbered ? reader_statements_.read_journal_by_number : reader_statements_.read_journal;
    ScopedReset reset(select);
    if (numbered) {
      select.Bind(1, record.number);
    } else {
      select.Bind(1, record.id);
    }
    Status read = AppendJournalRows(select, record.id, journals[i]);
    if (!read.ok()) return read;
  }
  return journals;
}

Result<std::vector<ExecutionRecord>> SqliteStore::QueryExecutions(const ExecutionQuery& query) {
  Result<BoundSql> bound = BuildExecutionQuery(query);
  if (!bound.ok()) return bound.status();

  std::lock_guard lock(read_mutex_);
  Result<Statement> select = Statement::Prepare(reader_db_.get(), bound->sql);
  if (!select.ok()) return select.status();
  ScopedReset reset(*select);
  BindAll(*bound, *select);
  return ReadExecutionRows(*select);
}

Result<std::vector<std::pair<std::string, int64_t>>> SqliteStore::CountExecutionsByState() {
  std::lock_guard lock(read_mutex_);
  Statement& select = reader_statements_.count_by_state;
  ScopedReset reset(select);

  std::vector<std::pair<std::string, int64_t>> counts;
  while (true) {
    Result<bool> row = select.Step();
    if (!row.ok()) return row.status();
    if (!*row) return counts;
    counts.emplace_back(select.Text(0), select.Int(1));
  }
}

Result<std::vector<JournalEntry>> SqliteStore::ReadJournalKind(const std::string& execution_id,
                                                               const std::string& kind,
                                                               int64_t after_seq, int limit) {
  std::lock_guard lock(read_mutex_);
  Statement& select = reader_statements_.read_journal_kind;
  ScopedReset reset(select);
  select.Bind(1, execution_id).Bind(2, kind).Bind(3, after_seq);
  select.Bind(4, static_cast<int64_t>(limit > 0 ? limit : -1));

  std::vector<JournalEntry> entries;
  Status read = AppendJournalRows(select, execution_id, entries);
  if (!read.ok()) return read;
  return entries;
}

}  // namespace atomflow::store
