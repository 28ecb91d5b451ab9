// Tests of txn::ListTransactions and txn::FindTransaction over journals in a real SQLite store.
#include "txn/txn_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <future>
#include <string>
#include <vector>

namespace atomflow::txn {
namespace {

using ::testing::ElementsAre;

class TxnViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/txn_view_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    Result<std::unique_ptr<store::Store>> opened = store::OpenSqliteStore(dir_ + "/atomflow.db");
    ASSERT_TRUE(opened.ok()) << opened.message();
    store_ = std::move(opened).value();
  }

  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void AddExecution(const std::string& id, int64_t start_time_ms) {
    store::ExecutionRecord record;
    record.id = id;
    record.workflow_name = "release";
    record.source_file = "release.yaml";
    record.argument = "{}";
    record.state = "ACTIVE";
    record.start_time_ms = start_time_ms;
    ASSERT_TRUE(store_->CreateExecution(record).ok());
  }

  void Append(const std::string& id, const std::string& kind, Json payload, int64_t time_ms) {
    store::JournalEntry entry;
    entry.kind = kind;
    entry.key = "main/1";
    entry.payload = std::move(payload);
    entry.time_ms = time_ms;
    std::promise<Status> durable;
    store_->Append(id, entry, [&](const Status& status) { durable.set_value(status); });
    ASSERT_TRUE(durable.get_future().get().ok());
  }

  // A transaction with one branch; ended in `state` unless state is empty.
  void AddTransaction(const std::string& id, const std::string& step, int n,
                      const std::string& state, int64_t time_ms) {
    std::string gid = id + ":" + step + "#" + std::to_string(n);
    Append(id, "txn_begin", {{"gid", gid}, {"step", step}}, time_ms);
    Append(id, "branch", {{"gid", gid}, {"branch", "b1"}, {"kind", "compensable"}}, time_ms);
    if (!state.empty()) Append(id, "txn_end", {{"gid", gid}, {"state", state}}, time_ms + 1);
  }

  static std::vector<std::string> Gids(const Json& transactions) {
    std::vector<std::string> gids;
    for (const Json& txn : transactions) gids.push_back(txn.value("gid", ""));
    return gids;
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(TxnViewTest, ListsNewestFirstFilteredAndPaged) {
  AddExecution("e1", 100);
  AddTransaction("e1", "pay", 1, "COMMITTED", 110);
  AddTransaction("e1", "pay", 2, "ABORTED", 120);
  AddExecution("e2", 200);  // no transactions
  Append("e2", "log", {{"text", "hello"}}, 210);
  AddExecution("e3", 300);
  AddTransaction("e3", "ship", 1, "", 310);

  Result<Json> all = ListTransactions(*store_, "", 0, 0);
  ASSERT_TRUE(all.ok()) << all.message();
  EXPECT_THAT(Gids(*all), ElementsAre("e3:ship#1", "e1:pay#2", "e1:pay#1"));
  EXPECT_EQ((*all)[0]["state"], "ACTIVE");
  EXPECT_EQ((*all)[0]["begin_time"], "1970-01-01T00:00:00.310Z");

  EXPECT_THAT(Gids(*ListTransactions(*store_, "ABORTED", 0, 10)), ElementsAre("e1:pay#2"));
  EXPECT_THAT(Gids(*ListTransactions(*store_, "", 1, 1)), ElementsAre("e1:pay#2"));
  EXPECT_THAT(Gids(*ListTransactions(*store_, "", 3, 10)), ElementsAre());
}

TEST_F(TxnViewTest, FindsOneTransactionByGid) {
  AddExecution("e1", 100);
  AddTransaction("e1", "pay", 1, "COMMITTED", 110);

  Result<Json> found = FindTransaction(*store_, "e1:pay#1");
  ASSERT_TRUE(found.ok()) << found.message();
  EXPECT_EQ((*found)["state"], "COMMITTED");
  EXPECT_EQ((*found)["execution"], "e1");
  EXPECT_EQ((*found)["branches"][0]["compensated"], false);

  for (const char* gid : {"e1:pay#2", "e9:pay#1", "no-such-gid"}) {
    EXPECT_EQ(FindTransaction(*store_, gid).status().code(), StatusCode::kNotFound) << gid;
  }
}

}  // namespace
// The folded shapes (docs/journal.md, "Folded records"): an action's intent that carries its
// compensable branch's pending record, and a saga commit's decision that carries its end.
TEST_F(TxnViewTest, ReadsFoldedBranchIntentsAndDecisionsThatEndTheTransaction) {
  AddExecution("e1", 100);
  std::string gid = "e1:pay#1";
  Append("e1", "txn_begin", {{"gid", gid}, {"step", "pay"}}, 110);
  Append("e1", "intent",
         {{"function", "http.post"},
          {"step", "charge"},
          {"args", {{"url", "http://bank/charge"}}},
          {"gid", gid},
          {"branch", gid + "#1"},
          {"op", "action"},
          {"compensate", "http.delete"}},
         111);

  Result<Json> found = FindTransaction(*store_, gid);
  ASSERT_TRUE(found.ok()) << found.message();
  EXPECT_EQ((*found)["state"], "ACTIVE");
  ASSERT_EQ((*found)["branches"].size(), 1u);
  const Json& pending = (*found)["branches"][0];
  EXPECT_EQ(pending["branch"], gid + "#1");
  EXPECT_EQ(pending["kind"], "compensable");
  EXPECT_EQ(pending["step"], "charge");
  EXPECT_EQ(pending["outcome"], "unknown");
  EXPECT_EQ(pending["undo"]["function"], "http.delete");
  EXPECT_EQ(pending["compensated"], false);

  Append("e1", "branch",
         {{"gid", gid},
          {"branch", gid + "#1"},
          {"kind", "compensable"},
          {"step", "charge"},
          {"undo", {{"function", "http.delete"}, {"args", {{"url", "http://bank/charge/7"}}}}},
          {"staged", nullptr}},
         112);
  Append("e1", "decision",
         {{"gid", gid},
          {"step", "pay"},
          {"decision", "COMMIT"},
          {"branches", 1},
          {"cause", nullptr},
          {"state", "COMMITTED"},
          {"end_key", "r3"}},
         113);
  found = FindTransaction(*store_, gid);
  ASSERT_TRUE(found.ok()) << found.message();
  EXPECT_EQ((*found)["state"], "COMMITTED");
  EXPECT_EQ((*found)["decision"], "COMMIT");
  EXPECT_EQ((*found)["end_time"], "1970-01-01T00:00:00.113Z");
  ASSERT_EQ((*found)["branches"].size(), 1u);
  EXPECT_FALSE((*found)["branches"][0].contains("outcome"));
}

}  // namespace atomflow::txn
