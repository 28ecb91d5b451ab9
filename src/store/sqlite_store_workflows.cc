// SqliteStore: deployed workflows and their revisions (tables workflows, workflow_revisions).
#include <utility>

#include "store/sqlite_store.h"

namespace atomflow::store {
namespace {

// The columns a workflow read returns, in the order ReadWorkflowRow expects.
constexpr std::string_view kLatestColumns =
    "name, revision_id, source, description, labels, service_account, create_time_ms, "
    "update_time_ms, revision_create_time_ms";
constexpr std::string_view kRevisionColumns =
    "r.workflow_name, r.revision_id, r.source, r.description, r.labels, r.service_account, "
    "w.create_time_ms, w.update_time_ms, r.revision_create_time_ms";

WorkflowRecord ReadWorkflowRow(const Statement& row) {
  WorkflowRecord record;
  record.name = row.Text(0);
  record.revision_id = row.Text(1);
  record.source = row.Text(2);
  record.description = row.Text(3);
  record.labels = row.Text(4);
  record.service_account = row.Text(5);
  record.create_time_ms = row.Int(6);
  record.update_time_ms = row.Int(7);
  record.revision_create_time_ms = row.Int(8);
  return record;
}

Result<std::vector<WorkflowRecord>> ReadWorkflowRows(Statement& select) {
  std::vector<WorkflowRecord> records;
  while (true) {
    Result<bool> row = select.Step();
    if (!row.ok()) return row.status();
    if (!*row) return records;
    records.push_back(ReadWorkflowRow(select));
  }
}

Status WorkflowNotFound(const std::string& name) {
  return Status::NotFound("workflow " + name + " not found");
}

}  // namespace

Status SqliteStore::PrepareWorkflowStatements() {
  WorkflowStatements& s = workflow_statements_;
  std::string latest = "SELECT " + std::string(kLatestColumns) + " FROM workflows ";
  std::string revisions = "SELECT " + std::string(kRevisionColumns) +
                          " FROM workflow_revisions r JOIN workflows w ON w.name = "
                          "r.workflow_name WHERE r.workflow_name = ?1 ";
  Status status = PrepareAll(
      writer_db_.get(),
      {{&s.savepoint, "SAVEPOINT workflow_write"},
       {&s.release, "RELEASE workflow_write"},
       {&s.rollback_to, "ROLLBACK TO workflow_write"},
       {&s.exists, "SELECT EXISTS (SELECT 1 FROM workflows WHERE name = ?1)"},
       {&s.insert_workflow, "INSERT INTO workflows (" + std::string(kLatestColumns) +
                                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
       {&s.update_workflow,
        "UPDATE workflows SET revision_id = ?2, source = ?3, description = ?4, labels = ?5, "
        "service_account = ?6, update_time_ms = ?7, revision_create_time_ms = ?8 "
        "WHERE name = ?1"},
       {&s.insert_revision,
        "INSERT INTO workflow_revisions (workflow_name, number, revision_id, source, "
        "description, labels, service_account, revision_create_time_ms) VALUES (?1, "
        "(SELECT COALESCE(MAX(number), 0) + 1 FROM workflow_revisions WHERE workflow_name = ?1), "
        "?2, ?3, ?4, ?5, ?6, ?7)"},
       {&s.update_revision,
        "UPDATE workflow_revisions SET description = ?3, labels = ?4 "
        "WHERE workflow_name = ?1 AND revision_id = ?2"},
       {&s.delete_workflow, "DELETE FROM workflows WHERE name = ?1"},
       {&s.delete_revisions, "DELETE FROM workflow_revisions WHERE workflow_name = ?1"}});
  if (!status.ok()) return status;

  return PrepareAll(
      reader_db_.get(),
      {{&s.get_latest, latest + "WHERE name = ?1"},
       {&s.get_revision, revisions + "AND r.revision_id = ?2"},
       {&s.list_workflows, latest + "WHERE name > ?1 ORDER BY name LIMIT ?2"},
       {&s.list_revisions, revisions + "ORDER BY r.number DESC LIMIT ?3 OFFSET ?2"},
       {&s.reader_exists, "SELECT EXISTS (SELECT 1 FROM workflows WHERE name = ?1)"}});
}

// ---- Writes ----

Status SqliteStore::CreateWorkflow(const WorkflowRecord& record) {
  return EnqueueAndWait([this, &record] {
    return ApplyAtomically([this, &record] { return ApplyCreateWorkflow(record); });
  });
}

Status SqliteStore::UpdateWorkflow(const WorkflowRecord& record, bool new_revision) {
  return EnqueueAndWait([this, &record, new_revision] {
    return ApplyAtomically([&] { return ApplyUpdateWorkflow(record, new_revision); });
  });
}

Status SqliteStore::DeleteWorkflow(const std::string& name) {
  return EnqueueAndWait([this, &name] {
    return ApplyAtomically([this, &name] { return ApplyDeleteWorkflow(name); });
  });
}

// A savepoint inside the batch transaction: a failed op undoes its own statements only.
Status SqliteStore::ApplyAtomically(const std::function<Status()>& apply) {
  WorkflowStatements& s = workflow_statements_;
  ScopedReset reset_savepoint(s.savepoint);
  Result<int> begun = s.savepoint.Run();
  if (!begun.ok()) return begun.status();

  Status status = apply();
  if (!status.ok()) {
    ScopedReset reset_rollback(s.rollback_to);
    (void)s.rollback_to.Run();
  }

  // RELEASE ends the savepoint either way; after ROLLBACK TO it keeps nothing.
  ScopedReset reset_release(s.release);
  Result<int> released = s.release.Run();
  if (status.ok() && !released.ok()) return released.status();
  return status;
}

Result<bool> SqliteStore::WorkflowExists(Statement& exists, const std::string& name) {
  ScopedReset reset(exists);
  exists.Bind(1, name);
  Result<bool> row = exists.Step();
  if (!row.ok()) return row.status();
  return *row && exists.Int(0) != 0;
}

Status SqliteStore::ApplyCreateWorkflow(const WorkflowRecord& record) {
  Result<bool> exists = WorkflowExists(workflow_statements_.exists, record.name);
  if (!exists.ok()) return exists.status();
  if (*exists) return Status::AlreadyExists("workflow " + record.name + " already exists");

  Statement& insert = workflow_statements_.insert_workflow;
  ScopedReset reset(insert);
  insert.Bind(1, record.name).Bind(2, record.revision_id).Bind(3, record.source);
  insert.Bind(4, record.description).Bind(5, record.labels).Bind(6, record.service_account);
  insert.Bind(7, record.create_time_ms).Bind(8, record.update_time_ms);
  insert.Bind(9, record.revision_create_time_ms);
  Result<int> inserted = insert.Run();
  if (!inserted.ok()) return inserted.status();

  return ApplyInsertRevision(record);
}

Status SqliteStore::ApplyUpdateWorkflow(const WorkflowRecord& record, bool new_revision) {
  Statement& update = workflow_statements_.update_workflow;
  ScopedReset reset(update);
  update.Bind(1, record.name).Bind(2, record.revision_id).Bind(3, record.source);
  update.Bind(4, record.description).Bind(5, record.labels).Bind(6, record.service_account);
  update.Bind(7, record.update_time_ms).Bind(8, record.revision_create_time_ms);
  Result<int> changed = update.Run();
  if (!changed.ok()) return changed.status();
  if (*changed == 0) return WorkflowNotFound(record.name);

  if (new_revision) return ApplyInsertRevision(record);

  // Without a new revision only description and labels may change; the revision row follows,
  // so that reading the latest revision by id gives what reading the workflow gives.
  Statement& revision = workflow_statements_.update_revision;
  ScopedReset reset_revision(revision);
  revision.Bind(1, record.name).Bind(2, record.revision_id).Bind(3, record.description);
  revision.Bind(4, record.labels);
  return revision.Run().status();
}

Status SqliteStore::ApplyInsertRevision(const WorkflowRecord& record) {
  Statement& insert = workflow_statements_.insert_revision;
  ScopedReset reset(insert);
  insert.Bind(1, record.name).Bind(2, record.revision_id).Bind(3, record.source);
  insert.Bind(4, record.description).Bind(5, record.labels).Bind(6, record.service_account);
  insert.Bind(7, record.revision_create_time_ms);
  Result<int> inserted = insert.Run();
  if (inserted.ok()) return Status::Ok();
  return Status::Error("cannot store revision " + record.revision_id + " of workflow " +
                       record.name + ": " + inserted.message());
}

Status SqliteStore::ApplyDeleteWorkflow(const std::string& name) {
  Statement& remove = workflow_statements_.delete_workflow;
  ScopedReset reset(remove);
  remove.Bind(1, name);
  Result<int> removed = remove.Run();
  if (!removed.ok()) return removed.status();
  if (*removed == 0) return WorkflowNotFound(name);

  Statement& revisions = workflow_statements_.delete_revisions;
  ScopedReset reset_revisions(revisions);
  revisions.Bind(1, name);
  return revisions.Run().status();
}

// ---- Reads ----

Result<WorkflowRecord> SqliteStore::GetWorkflow(const std::string& name,
                                                const std::string& revision_id) {
  std::lock_guard lock(read_mutex_);
  WorkflowStatements& s = workflow_statements_;
  Statement& select = revision_id.empty() ? s.get_latest : s.get_revision;
  ScopedReset reset(select);
  select.Bind(1, name);
  if (!revision_id.empty()) select.Bind(2, revision_id);

  Result<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (*row) return ReadWorkflowRow(select);
  if (revision_id.empty()) return WorkflowNotFound(name);
  return Status::NotFound("revision " + revision_id + " of workflow " + name + " not found");
}

Result<std::vector<WorkflowRecord>> SqliteStore::ListWorkflows(const std::string& after_name,
                                                               int limit) {
  std::lock_guard lock(read_mutex_);
  Statement& select = workflow_statements_.list_workflows;
  ScopedReset reset(select);
  select.Bind(1, after_name).Bind(2, static_cast<int64_t>(limit > 0 ? limit : -1));
  return ReadWorkflowRows(select);
}

Result<std::vector<WorkflowRecord>> SqliteStore::ListRevisions(const std::string& name, int offset,
                                                               int limit) {
  std::lock_guard lock(read_mutex_);
  Statement& select = workflow_statements_.list_revisions;
  ScopedReset reset(select);
  select.Bind(1, name).Bind(2, static_cast<int64_t>(offset > 0 ? offset : 0));
  select.Bind(3, static_cast<int64_t>(limit > 0 ? limit : -1));
  Result<std::vector<WorkflowRecord>> records = ReadWorkflowRows(select);
  if (!records.ok() || !records->empty()) return records;

  // No rows: either no such workflow or an offset past its last revision.
  Result<bool> exists = WorkflowExists(workflow_statements_.reader_exists, name);
  if (!exists.ok()) return exists.status();
  if (!*exists) return WorkflowNotFound(name);
  return records;
}

}  // namespace atomflow::store
