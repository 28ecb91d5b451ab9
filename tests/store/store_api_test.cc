// Tests of what the SQLite store keeps for `atomflow serve`: deployed workflows and their
// revisions, paged and filtered execution queries, counts by state, journal reads by kind, and
// the upgrade of older store files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "store/store.h"
#include "store_file_test.h"

namespace atomflow::store {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

ExecutionRecord MakeExecution(const std::string& id, const std::string& workflow,
                              int64_t start_time_ms, const std::string& state = "ACTIVE") {
  ExecutionRecord record;
  record.id = id;
  record.workflow_name = workflow;
  record.source_file = workflow + ".yaml";
  record.source = "main:\n  steps:\n    - done:\n        return: 1\n";
  record.argument = "{}";
  record.state = state;
  record.start_time_ms = start_time_ms;
  return record;
}

WorkflowRecord MakeWorkflow(const std::string& name, const std::string& revision_id,
                            int64_t time_ms) {
  WorkflowRecord record;
  record.name = name;
  record.revision_id = revision_id;
  record.source = "main:\n  steps:\n    - done:\n        return: \"" + revision_id + "\"\n";
  record.description = "the " + name + " workflow";
  record.labels = R"({"team":"ml"})";
  record.service_account = "trainer";
  record.create_time_ms = record.update_time_ms = record.revision_create_time_ms = time_ms;
  return record;
}

std::vector<std::string> Ids(const std::vector<ExecutionRecord>& records) {
  std::vector<std::string> ids;
  for (const ExecutionRecord& record : records) ids.push_back(record.id);
  return ids;
}

std::vector<std::string> Revisions(const std::vector<WorkflowRecord>& records) {
  std::vector<std::string> ids;
  for (const WorkflowRecord& record : records) ids.push_back(record.revision_id);
  return ids;
}

class StoreApiTest : public StoreFileTest {
 protected:
  // Every page of the query, followed by cursor, concatenated.
  static std::vector<std::string> AllPages(Store& store, ExecutionQuery query) {
    std::vector<std::string> ids;
    while (true) {
      Result<std::vector<ExecutionRecord>> page = store.QueryExecutions(query);
      EXPECT_TRUE(page.ok()) << page.message();
      if (!page.ok() || page->empty()) return ids;
      for (const ExecutionRecord& record : *page) ids.push_back(record.id);
      query.cursor_start_time_ms = page->back().start_time_ms;
      query.cursor_id = page->back().id;
    }
  }

  static Status FinishAndWait(Store& store, const std::string& id, const std::string& state) {
    std::promise<Status> durable;
    store.Finish(id, state, "null", "", [&](const Status& status) { durable.set_value(status); });
    return durable.get_future().get();
  }

  static Status AppendAndWait(Store& store, const std::string& id, const std::string& kind,
                              const std::string& key) {
    JournalEntry entry;
    entry.kind = kind;
    entry.key = key;
    entry.payload = Json{{"key", key}};
    std::promise<Status> durable;
    store.Append(id, entry, [&](const Status& status) { durable.set_value(status); });
    return durable.get_future().get();
  }

  // Writes path_ in the layout atomflow wrote before schema version 2, with `rows` inserted.
  bool WriteVersionOneFile(const std::string& rows) {
    constexpr const char* kVersionOne = R"sql(
    CREATE TABLE schema_version (version INTEGER);
    CREATE TABLE executions (id TEXT PRIMARY KEY, workflow_name TEXT NOT NULL,
      source_file TEXT NOT NULL, source TEXT NOT NULL, argument TEXT NOT NULL,
      state TEXT NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
      start_time_ms INTEGER NOT NULL, end_time_ms INTEGER NOT NULL, owner TEXT NOT NULL);
    CREATE INDEX executions_by_start ON executions (start_time_ms);
    CREATE INDEX executions_by_state ON executions (state, start_time_ms);
    CREATE TABLE journal (execution_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
      key TEXT NOT NULL, payload TEXT NOT NULL, time_ms INTEGER NOT NULL,
      PRIMARY KEY (execution_id, seq)) WITHOUT ROWID;
    INSERT INTO schema_version (version) VALUES (1);
    )sql";
    sqlite3* db = nullptr;
    if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) return false;
    std::string sql = std::string(kVersionOne) + rows;
    bool written = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    if (!written) ADD_FAILURE() << sqlite3_errmsg(db);
    sqlite3_close(db);
    return written;
  }
};

TEST_F(StoreApiTest, PagesReturnEveryExecutionOnceInOrder) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  // Many executions share a start time, so the cursor must break ties by id.
  std::vector<std::tuple<int64_t, std::string>> train;
  for (int i = 0; i < 230; ++i) {
    std::string id = "e" + std::to_string(1000 + (i * 37) % 230);
    int64_t start = 1000 + i / 4;
    std::string workflow = i % 3 == 0 ? "report" : "train";
    ASSERT_TRUE(store->CreateExecution(MakeExecution(id, workflow, start)).ok());
    if (workflow == "train") train.emplace_back(start, id);
  }
  std::sort(train.begin(), train.end());
  std::vector<std::string> oldest_first;
  for (const auto& [start, id] : train) oldest_first.push_back(id);
  std::vector<std::string> newest_first(oldest_first.rbegin(), oldest_first.rend());

  ExecutionQuery query;
  query.workflow_name = "train";
  query.limit = 7;
  EXPECT_EQ(AllPages(*store, query), newest_first);
  query.oldest_first = true;
  EXPECT_EQ(AllPages(*store, query), oldest_first);

  ExecutionQuery everything;
  everything.limit = 50;
  std::vector<std::string> all = AllPages(*store, everything);
  EXPECT_EQ(all.size(), 230u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 230u);
}

TEST_F(StoreApiTest, FiltersAreAndedAndValuesAreBoundNotSpliced) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (int i = 1; i <= 6; ++i) {
    ExecutionRecord record = MakeExecution("e" + std::to_string(i), "train", i * 100);
    record.revision_id = i <= 3 ? "000001-abc" : "000002-def";
    ASSERT_TRUE(store->CreateExecution(record).ok());
  }
  ASSERT_TRUE(FinishAndWait(*store, "e2", "FAILED").ok());
  ASSERT_TRUE(FinishAndWait(*store, "e5", "FAILED").ok());
  ASSERT_TRUE(FinishAndWait(*store, "e6", "SUCCEEDED").ok());

  auto query = [&](std::vector<ExecutionFilter> filters) {
    ExecutionQuery q;
    q.workflow_name = "train";
    q.filters = std::move(filters);
    Result<std::vector<ExecutionRecord>> found = store->QueryExecutions(q);
    EXPECT_TRUE(found.ok()) << found.message();
    return found.ok() ? Ids(*found) : std::vector<std::string>{"error"};
  };
  EXPECT_THAT(query({{"state", "=", "FAILED"}}), ElementsAre("e5", "e2"));
  EXPECT_THAT(query({{"state", "!=", "ACTIVE"}, {"revision_id", "=", "000002-def"}}),
              ElementsAre("e6", "e5"));
  EXPECT_THAT(query({{"start_time_ms", ">", "200"}, {"start_time_ms", "<=", "400"}}),
              ElementsAre("e4", "e3"));
  // Running executions have no end time, so no end-time comparison matches them.
  EXPECT_THAT(query({{"end_time_ms", ">", "0"}}), ElementsAre("e6", "e5", "e2"));
  EXPECT_THAT(query({{"end_time_ms", "<", "99999999999999"}}), ElementsAre("e6", "e5", "e2"));
  EXPECT_THAT(query({{"state", "=", "FAILED' OR '1'='1"}}), ElementsAre());

  auto rejected = [&](ExecutionFilter filter) {
    ExecutionQuery q;
    q.filters = {std::move(filter)};
    return store->QueryExecutions(q).status();
  };
  Status field = rejected({"argument", "=", "x"});
  EXPECT_EQ(field.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(field.message(), HasSubstr("'argument'"));
  EXPECT_EQ(rejected({"state", "LIKE", "A%"}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rejected({"state", "= 'x' OR 1=1 --", "x"}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rejected({"start_time_ms", ">", "yesterday"}).code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreApiTest, CountsByStateFollowFinishAndSurviveReopen) {
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    for (int i = 1; i <= 5; ++i) {
      ASSERT_TRUE(store->CreateExecution(MakeExecution("e" + std::to_string(i), "w", i)).ok());
    }
    ASSERT_TRUE(FinishAndWait(*store, "e1", "SUCCEEDED").ok());
    ASSERT_TRUE(FinishAndWait(*store, "e2", "FAILED").ok());
    ASSERT_TRUE(FinishAndWait(*store, "e3", "SUCCEEDED").ok());
    // A late Finish of an ended execution changes nothing, counts included.
    EXPECT_FALSE(FinishAndWait(*store, "e3", "FAILED").ok());
  }
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<std::vector<std::pair<std::string, int64_t>>> counts = store->CountExecutionsByState();
  ASSERT_TRUE(counts.ok()) << counts.message();
  EXPECT_THAT(*counts, ElementsAre(Pair("ACTIVE", 2), Pair("FAILED", 1), Pair("SUCCEEDED", 2)));
}

TEST_F(StoreApiTest, JournalReadByKindPagesBySeq) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeExecution("e1", "w", 1)).ok());
  for (int i = 1; i <= 10; ++i) {
    std::string kind = i % 3 == 0 ? "log" : "step";
    ASSERT_TRUE(AppendAndWait(*store, "e1", kind, "main/" + std::to_string(i)).ok());
  }

  auto seqs = [&](const std::string& kind, int64_t after, int limit) {
    Result<std::vector<JournalEntry>> entries = store->ReadJournalKind("e1", kind, after, limit);
    EXPECT_TRUE(entries.ok()) << entries.message();
    std::vector<int64_t> result;
    for (const JournalEntry& entry : *entries) {
      EXPECT_EQ(entry.kind, kind);
      EXPECT_EQ(entry.payload["key"], entry.key);
      result.push_back(entry.seq);
    }
    return result;
  };
  EXPECT_THAT(seqs("log", 0, 0), ElementsAre(3, 6, 9));
  EXPECT_THAT(seqs("step", 0, 3), ElementsAre(1, 2, 4));
  EXPECT_THAT(seqs("step", 4, 3), ElementsAre(5, 7, 8));
  EXPECT_THAT(seqs("step", 8, 0), ElementsAre(10));
  EXPECT_THAT(seqs("decision", 0, 0), ElementsAre());
}

TEST_F(StoreApiTest, WorkflowRevisionsAreKeptNewestFirst) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateWorkflow(MakeWorkflow("train", "000001-aaa", 100)).ok());
  Status duplicate = store->CreateWorkflow(MakeWorkflow("train", "000001-bbb", 150));
  EXPECT_EQ(duplicate.code(), StatusCode::kAlreadyExists);

  WorkflowRecord second = MakeWorkflow("train", "000002-bbb", 200);
  second.service_account = "deployer";
  ASSERT_TRUE(store->UpdateWorkflow(second, /*new_revision=*/true).ok());
  WorkflowRecord relabelled = second;
  relabelled.description = "now described";
  relabelled.update_time_ms = 300;
  ASSERT_TRUE(store->UpdateWorkflow(relabelled, /*new_revision=*/false).ok());
  ASSERT_TRUE(store->UpdateWorkflow(MakeWorkflow("train", "000003-ccc", 400), true).ok());

  Result<WorkflowRecord> latest = store->GetWorkflow("train");
  ASSERT_TRUE(latest.ok()) << latest.message();
  EXPECT_EQ(latest->revision_id, "000003-ccc");
  EXPECT_EQ(latest->create_time_ms, 100);
  EXPECT_EQ(latest->update_time_ms, 400);
  EXPECT_EQ(latest->source, MakeWorkflow("train", "000003-ccc", 0).source);

  Result<WorkflowRecord> old = store->GetWorkflow("train", "000002-bbb");
  ASSERT_TRUE(old.ok()) << old.message();
  EXPECT_EQ(old->service_account, "deployer");
  EXPECT_EQ(old->description, "now described");
  EXPECT_EQ(old->revision_create_time_ms, 200);
  EXPECT_EQ(old->create_time_ms, 100);
  EXPECT_EQ(store->GetWorkflow("train", "000009-zzz").status().code(), StatusCode::kNotFound);

  EXPECT_THAT(Revisions(*store->ListRevisions("train", 0, 0)),
              ElementsAre("000003-ccc", "000002-bbb", "000001-aaa"));
  EXPECT_THAT(Revisions(*store->ListRevisions("train", 1, 1)), ElementsAre("000002-bbb"));
  EXPECT_THAT(Revisions(*store->ListRevisions("train", 5, 10)), ElementsAre());
}

TEST_F(StoreApiTest, WorkflowsListByNameAndDeleteLeavesExecutions) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const char* name : {"delta", "alpha", "charlie", "bravo"}) {
    ASSERT_TRUE(store->CreateWorkflow(MakeWorkflow(name, "000001-abc", 1)).ok());
  }
  ASSERT_TRUE(store->CreateExecution(MakeExecution("e1", "bravo", 5)).ok());

  auto names = [](const std::vector<WorkflowRecord>& records) {
    std::vector<std::string> result;
    for (const WorkflowRecord& record : records) result.push_back(record.name);
    return result;
  };
  EXPECT_THAT(names(*store->ListWorkflows("", 2)), ElementsAre("alpha", "bravo"));
  EXPECT_THAT(names(*store->ListWorkflows("bravo", 2)), ElementsAre("charlie", "delta"));
  EXPECT_TRUE(store->ListWorkflows("delta", 2)->empty());

  ASSERT_TRUE(store->DeleteWorkflow("bravo").ok());
  EXPECT_EQ(store->GetWorkflow("bravo").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->ListRevisions("bravo", 0, 10).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->DeleteWorkflow("bravo").code(), StatusCode::kNotFound);
  EXPECT_EQ(store->UpdateWorkflow(MakeWorkflow("bravo", "000002-abc", 9), true).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store->ListWorkflows("", 0)->size(), 3u);
  EXPECT_EQ(store->GetExecution("e1")->workflow_name, "bravo");
  EXPECT_EQ(store->GetExecution("e9").status().code(), StatusCode::kNotFound);

  // Deployed again under the same name, it starts a new history.
  ASSERT_TRUE(store->CreateWorkflow(MakeWorkflow("bravo", "000001-fff", 10)).ok());
  EXPECT_THAT(Revisions(*store->ListRevisions("bravo", 0, 0)), ElementsAre("000001-fff"));
}

TEST_F(StoreApiTest, VersionOneFileIsUpgradedAndKeepsItsExecutions) {
  ASSERT_TRUE(WriteVersionOneFile(R"sql(
    INSERT INTO executions VALUES ('old1', 'train', 'train.yaml', 'src', '{}', 'SUCCEEDED',
      '1', '', 100, 200, '');
    INSERT INTO executions VALUES ('old2', 'train', 'train.yaml', 'src', '{}', 'FAILED',
      '', '{}', 300, 400, '');
    INSERT INTO journal VALUES ('old1', 1, 'log', 'main/1', '{"text":"hi"}', 150);
  )sql"));

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<ExecutionRecord> old = store->GetExecution("old1");
  ASSERT_TRUE(old.ok()) << old.message();
  EXPECT_EQ(old->state, "SUCCEEDED");
  EXPECT_EQ(old->revision_id, "");
  EXPECT_EQ(old->labels, "{}");

  ExecutionQuery query;
  query.workflow_name = "train";
  EXPECT_THAT(Ids(*store->QueryExecutions(query)), ElementsAre("old2", "old1"));
  EXPECT_THAT(*store->CountExecutionsByState(),
              ElementsAre(Pair("FAILED", 1), Pair("SUCCEEDED", 1)));
  EXPECT_EQ(store->ReadJournalKind("old1", "log", 0, 0)->at(0).payload["text"], "hi");
  EXPECT_TRUE(store->CreateWorkflow(MakeWorkflow("train", "000001-abc", 500)).ok());
  store.reset();

  // Reopening an upgraded file changes nothing.
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetWorkflow("train")->revision_id, "000001-abc");
  EXPECT_EQ(store->CountExecutionsByState()->size(), 2u);
}

TEST_F(StoreApiTest, UpgradeToAppendOrderKeepsEachJournalAndItsTail) {
  // Schema 4 moved journal rows from (execution_id, seq) keys to an execution number: rows of
  // two executions, written interleaved by an old atomflow, must come back whole and in order,
  // and later appends must continue each journal where it ended.
  ASSERT_TRUE(WriteVersionOneFile(R"sql(
    INSERT INTO executions VALUES ('zeta', 'train', 'train.yaml', 'src', '{}', 'ACTIVE',
      '', '', 100, 0, '');
    INSERT INTO executions VALUES ('alpha', 'train', 'train.yaml', 'src', '{}', 'ACTIVE',
      '', '', 200, 0, '');
    INSERT INTO journal VALUES ('alpha', 1, 'intent', 'main/1', '{"n":"a1"}', 210);
    INSERT INTO journal VALUES ('zeta', 1, 'intent', 'main/1', '{"n":"z1"}', 110);
    INSERT INTO journal VALUES ('alpha', 2, 'result', 'main/1', '{"n":"a2"}', 220);
    INSERT INTO journal VALUES ('zeta', 2, 'result', 'main/1', '{"n":"z2"}', 120);
    INSERT INTO journal VALUES ('zeta', 3, 'intent', 'main/2', '{"n":"z3"}', 130);
  )sql"));

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto names = [&](const std::string& id) {
    std::vector<std::string> seen;
    Result<std::vector<JournalEntry>> journal = store->ReadJournal(id);
    EXPECT_TRUE(journal.ok()) << journal.message();
    if (!journal.ok()) return seen;
    for (const JournalEntry& entry : *journal) {
      seen.push_back(std::to_string(entry.seq) + ":" + entry.payload.value("n", entry.key));
    }
    return seen;
  };
  EXPECT_THAT(names("zeta"), ElementsAre("1:z1", "2:z2", "3:z3"));
  EXPECT_THAT(names("alpha"), ElementsAre("1:a1", "2:a2"));

  // Appends after the upgrade, and a new execution's journal, each continue their own tail.
  ASSERT_TRUE(AppendAndWait(*store, "alpha", "result", "main/9").ok());
  ASSERT_TRUE(store->CreateExecution(MakeExecution("omega", "train", 300)).ok());
  ASSERT_TRUE(AppendAndWait(*store, "omega", "intent", "main/1").ok());
  EXPECT_THAT(names("alpha"), ElementsAre("1:a1", "2:a2", "3:main/9"));
  EXPECT_THAT(names("omega"), ElementsAre("1:main/1"));
  EXPECT_THAT(names("zeta"), ElementsAre("1:z1", "2:z2", "3:z3"));
  store.reset();

  // Reopened, the tails are read back from the file; the view people query by id agrees.
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(AppendAndWait(*store, "zeta", "result", "main/2").ok());
  EXPECT_EQ(store->ReadJournal("zeta")->back().seq, 4);
  store.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* select = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT COUNT(*), (SELECT MAX(version) FROM schema_version) FROM "
                               "journal_entries WHERE execution_id = 'zeta'",
                               -1, &select, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(select), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(select, 0), 4);
  EXPECT_EQ(sqlite3_column_int(select, 1), 4);
  sqlite3_finalize(select);
  sqlite3_close(db);
}

}  // namespace
}  // namespace atomflow::store
