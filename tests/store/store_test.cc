// Tests of the SQLite store on real files: records, journals, group commit, claims, crashes.
#include "store/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/secret_store.h"
#include "store_file_test.h"

namespace atomflow::store {
namespace {

using ::testing::HasSubstr;

ExecutionRecord MakeRecord(const std::string& id, int64_t start_time_ms,
                           const std::string& state = "ACTIVE") {
  ExecutionRecord record;
  record.id = id;
  record.workflow_name = "pipeline";
  record.source_file = "pipeline.yaml";
  record.source = "main:\n  steps:\n    - done:\n        return: 1\n";
  record.argument = R"({"run": 7})";
  record.state = state;
  record.start_time_ms = start_time_ms;
  return record;
}

JournalEntry MakeEntry(const std::string& key, Json payload = {}) {
  JournalEntry entry;
  entry.kind = "result";
  entry.key = key;
  entry.payload = std::move(payload);
  entry.time_ms = 1234;
  return entry;
}

std::vector<int64_t> Seqs(const std::vector<JournalEntry>& entries) {
  std::vector<int64_t> seqs;
  seqs.reserve(entries.size());
  for (const JournalEntry& entry : entries) seqs.push_back(entry.seq);
  return seqs;
}

std::vector<int64_t> OneTo(int64_t last) {
  std::vector<int64_t> seqs;
  seqs.reserve(last);
  for (int64_t seq = 1; seq <= last; ++seq) seqs.push_back(seq);
  return seqs;
}

class StoreTest : public StoreFileTest {
 protected:
  // Appends one entry and waits until it is durable.
  static Status AppendAndWait(Store& store, const std::string& id, JournalEntry entry) {
    std::promise<Status> durable;
    store.Append(id, std::move(entry),
                 [&durable](const Status& status) { durable.set_value(status); });
    return durable.get_future().get();
  }

  // Owner strings of two other processes on this host, for the claim tests: live_owner_ of a
  // child that waits until KillLiveOwner, dead_owner_ of one that has exited.
  void ForkOtherOwners() {
    live_ = fork();
    ASSERT_GE(live_, 0);
    if (live_ == 0) {
      while (true) pause();
    }
    pid_t dead = fork();
    ASSERT_GE(dead, 0);
    if (dead == 0) _exit(0);
    ASSERT_EQ(waitpid(dead, nullptr, 0), dead);
    std::string mine = ProcessOwner();
    std::string host = mine.substr(0, mine.rfind(':'));
    live_owner_ = host + ":" + std::to_string(live_);
    dead_owner_ = host + ":" + std::to_string(dead);
  }

  void KillLiveOwner() {
    ASSERT_EQ(kill(live_, SIGKILL), 0);
    ASSERT_EQ(waitpid(live_, nullptr, 0), live_);
  }

  pid_t live_ = -1;
  std::string live_owner_;
  std::string dead_owner_;
};

TEST_F(StoreTest, CreateGetAndListNewestFirst) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e2", 200, "SUCCEEDED")).ok());
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e3", 300)).ok());

  Result<ExecutionRecord> e2 = store->GetExecution("e2");
  ASSERT_TRUE(e2.ok()) << e2.message();
  EXPECT_EQ(e2->workflow_name, "pipeline");
  EXPECT_EQ(e2->source_file, "pipeline.yaml");
  EXPECT_EQ(e2->source, MakeRecord("x", 0).source);
  EXPECT_EQ(e2->argument, R"({"run": 7})");
  EXPECT_EQ(e2->state, "SUCCEEDED");
  EXPECT_EQ(e2->start_time_ms, 200);
  EXPECT_EQ(e2->end_time_ms, 0);
  EXPECT_EQ(e2->owner, "");

  auto ids = [](const std::vector<ExecutionRecord>& records) {
    std::vector<std::string> result;
    result.reserve(records.size());
    for (const ExecutionRecord& record : records) result.push_back(record.id);
    return result;
  };
  Result<std::vector<ExecutionRecord>> all = store->ListExecutions("", 0);
  ASSERT_TRUE(all.ok()) << all.message();
  EXPECT_THAT(ids(*all), ::testing::ElementsAre("e3", "e2", "e1"));
  EXPECT_THAT(ids(*store->ListExecutions("ACTIVE", 10)), ::testing::ElementsAre("e3", "e1"));
  EXPECT_THAT(ids(*store->ListExecutions("", 2)), ::testing::ElementsAre("e3", "e2"));
}

TEST_F(StoreTest, UnknownAndDuplicateExecutionsAreErrors) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());

  Status duplicate = store->CreateExecution(MakeRecord("e1", 100));
  EXPECT_FALSE(duplicate.ok());
  EXPECT_THAT(duplicate.message(), HasSubstr("cannot create execution e1"));
  EXPECT_EQ(store->GetExecution("nope").message(), "execution nope not found");

  // An append to an unknown execution fails alone; the one beside it in the queue lands.
  std::promise<Status> unknown;
  store->Append("nope", MakeEntry("main/1"),
                [&](const Status& status) { unknown.set_value(status); });
  EXPECT_TRUE(AppendAndWait(*store, "e1", MakeEntry("main/1")).ok());
  EXPECT_EQ(unknown.get_future().get().message(), "execution nope not found");
  EXPECT_THAT(Seqs(*store->ReadJournal("e1")), ::testing::ElementsAre(1));
}

TEST_F(StoreTest, ConcurrentAppendsGetGaplessSeqsAndShareCommits) {
  constexpr int64_t kThreads = 8;
  constexpr int64_t kPerThread = 500;
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("even", 1)).ok());
  ASSERT_TRUE(store->CreateExecution(MakeRecord("odd", 2)).ok());

  std::atomic<int> durable{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int64_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string id = t % 2 == 0 ? "even" : "odd";
      for (int64_t i = 0; i < kPerThread; ++i) {
        store->Append(id, MakeEntry(std::to_string(t) + "/" + std::to_string(i), {{"i", i}}),
                      [&](const Status& status) { ++(status.ok() ? durable : failed); });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_EQ(durable.load(), kThreads * kPerThread);
  EXPECT_EQ(failed.load(), 0);

  for (const std::string& id : std::vector<std::string>{"even", "odd"}) {
    Result<std::vector<JournalEntry>> journal = store->ReadJournal(id);
    ASSERT_TRUE(journal.ok()) << journal.message();
    EXPECT_EQ(Seqs(*journal), OneTo(kThreads / 2 * kPerThread)) << id;

    // Seq follows call order, so each thread's entries keep their order.
    std::map<std::string, int64_t> last_i;
    for (const JournalEntry& entry : *journal) {
      std::string thread = entry.key.substr(0, entry.key.find('/'));
      int64_t i = entry.payload["i"].get<int64_t>();
      if (last_i.count(thread) != 0) {
        EXPECT_EQ(i, last_i[thread] + 1) << entry.key;
      }
      last_i[thread] = i;
    }
  }

  StoreStats stats = store->stats();
  EXPECT_EQ(stats.appends, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.commits, stats.appends) << "appends were not batched into shared commits";
}

TEST_F(StoreTest, FinishComesAfterEarlierAppendsAndIsFinal) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());

  std::mutex mutex;
  std::vector<std::string> order;
  auto record = [&](const std::string& what) {
    return [&, what](const Status& status) {
      std::lock_guard lock(mutex);
      order.push_back(status.ok() ? what : what + ": " + status.message());
    };
  };
  for (int i = 1; i <= 3; ++i) {
    store->Append("e1", MakeEntry("main/" + std::to_string(i)),
                  record("append " + std::to_string(i)));
  }
  store->Finish("e1", "SUCCEEDED", R"({"x":1})", "", record("finish"));
  store->Finish("e1", "FAILED", "", R"({"message":"late"})", record("late finish"));
  store->Finish("nope", "FAILED", "", "", record("unknown finish"));
  ASSERT_TRUE(store->Flush().ok());

  EXPECT_THAT(order, ::testing::ElementsAre("append 1", "append 2", "append 3", "finish",
                                            "late finish: execution e1 has already finished",
                                            "unknown finish: execution nope not found"));
  Result<ExecutionRecord> e1 = store->GetExecution("e1");
  ASSERT_TRUE(e1.ok()) << e1.message();
  EXPECT_EQ(e1->state, "SUCCEEDED");
  EXPECT_EQ(e1->result, R"({"x":1})");
  EXPECT_EQ(e1->error, "");
  EXPECT_GT(e1->end_time_ms, 0);
  EXPECT_THAT(Seqs(*store->ReadJournal("e1")), ::testing::ElementsAre(1, 2, 3));
}

TEST_F(StoreTest, ReopenKeepsEverythingAndSeqContinues) {
  std::atomic<int> durable{0};
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());
    // Not flushed: closing the store must still write these and run their callbacks.
    for (int i = 1; i <= 3; ++i) {
      store->Append("e1", MakeEntry("main/" + std::to_string(i)),
                    [&](const Status& status) { durable += status.ok() ? 1 : 0; });
    }
  }
  EXPECT_EQ(durable.load(), 3);

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<ExecutionRecord> e1 = store->GetExecution("e1");
  ASSERT_TRUE(e1.ok()) << e1.message();
  EXPECT_EQ(e1->state, "ACTIVE");
  ASSERT_TRUE(AppendAndWait(*store, "e1", MakeEntry("main/4")).ok());
  ASSERT_TRUE(AppendAndWait(*store, "e1", MakeEntry("main/5")).ok());

  Result<std::vector<JournalEntry>> journal = store->ReadJournal("e1");
  ASSERT_TRUE(journal.ok()) << journal.message();
  EXPECT_THAT(Seqs(*journal), ::testing::ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(journal->back().key, "main/5");
}

TEST_F(StoreTest, NestedJsonPayloadRoundTrips) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());
  Json payload = Json::parse(
      R"({"request": {"url": "http://x/y", "body": [1, 2.5, {"deep": [null, true, "é\n"]}]},
          "big": -9007199254740993, "empty": {}, "none": []})");

  JournalEntry entry = MakeEntry("main/3", payload);
  entry.kind = "intent";
  ASSERT_TRUE(AppendAndWait(*store, "e1", entry).ok());

  Result<std::vector<JournalEntry>> journal = store->ReadJournal("e1");
  ASSERT_TRUE(journal.ok()) << journal.message();
  ASSERT_EQ(journal->size(), 1u);
  EXPECT_EQ((*journal)[0].payload, payload);
  EXPECT_EQ((*journal)[0].kind, "intent");
  EXPECT_EQ((*journal)[0].key, "main/3");
  EXPECT_EQ((*journal)[0].time_ms, 1234);
}

TEST_F(StoreTest, ClaimRefusesALiveOwnerAndTakesOverADeadOne) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    while (true) pause();  // a live process on this host, until the test kills it
  }
  std::string mine = ProcessOwner();
  std::string host = mine.substr(0, mine.rfind(':'));
  std::string childs = host + ":" + std::to_string(child);

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());
  EXPECT_TRUE(*store->Claim("e1", childs));
  EXPECT_FALSE(*store->Claim("e1", mine));
  EXPECT_EQ(store->GetExecution("e1")->owner, childs);

  ASSERT_EQ(kill(child, SIGKILL), 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_TRUE(*store->Claim("e1", mine));
  EXPECT_EQ(store->GetExecution("e1")->owner, mine);

  EXPECT_TRUE(store->Release("e1", childs).ok());
  EXPECT_EQ(store->GetExecution("e1")->owner, mine) << "a non-owner released it";
  EXPECT_TRUE(store->Release("e1", mine).ok());
  EXPECT_EQ(store->GetExecution("e1")->owner, "");
  EXPECT_EQ(store->Claim("nope", mine).message(), "execution nope not found");
}

TEST_F(StoreTest, ClaimManyRefusesLiveOwnersTakesOverDeadOnesAndSkipsUnknownIds) {
  ASSERT_NO_FATAL_FAILURE(ForkOtherOwners());
  std::string mine = ProcessOwner();
  const std::string& lives = live_owner_;
  const std::string& died = dead_owner_;

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const char* id : {"held", "orphan", "free", "other-host", "mine"}) {
    ASSERT_TRUE(store->CreateExecution(MakeRecord(id, 100)).ok());
  }
  ASSERT_TRUE(*store->Claim("held", lives));
  ASSERT_TRUE(*store->Claim("orphan", died));
  ASSERT_TRUE(*store->Claim("other-host", "some-other-host.invalid:1"));
  ASSERT_TRUE(*store->Claim("mine", mine));
  uint64_t commits = store->stats().commits;

  Result<std::vector<bool>> claimed =
      store->ClaimMany({"held", "orphan", "nope", "free", "other-host", "mine"}, mine);
  ASSERT_TRUE(claimed.ok()) << claimed.message();
  EXPECT_EQ(*claimed, (std::vector<bool>{false, true, false, true, true, true}));
  EXPECT_EQ(store->stats().commits, commits + 1) << "one write transaction for the lot";

  EXPECT_EQ(store->GetExecution("held")->owner, lives);
  for (const char* id : {"orphan", "free", "other-host", "mine"}) {
    EXPECT_EQ(store->GetExecution(id)->owner, mine) << id;
  }
  EXPECT_EQ(store->GetExecution("nope").status().code(), StatusCode::kNotFound);
  Result<std::vector<bool>> none = store->ClaimMany({}, mine);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  ASSERT_NO_FATAL_FAILURE(KillLiveOwner());
  claimed = store->ClaimMany({"held"}, mine);
  ASSERT_TRUE(claimed.ok()) << claimed.message();
  EXPECT_EQ(*claimed, std::vector<bool>{true});
  EXPECT_EQ(store->GetExecution("held")->owner, mine);
}

TEST_F(StoreTest, ClaimManyRefusesExecutionsNoLongerActive) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("running", 100)).ok());
  ASSERT_TRUE(store->CreateExecution(MakeRecord("ended", 200)).ok());
  store->Finish("ended", "SUCCEEDED", "1", "", nullptr);
  ASSERT_TRUE(store->Flush().ok());

  std::string mine = ProcessOwner();
  Result<std::vector<bool>> claimed = store->ClaimMany({"running", "ended"}, mine);
  ASSERT_TRUE(claimed.ok()) << claimed.message();
  EXPECT_EQ(*claimed, (std::vector<bool>{true, false}));
  EXPECT_EQ(store->GetExecution("running")->owner, mine);
  EXPECT_EQ(store->GetExecution("ended")->owner, "") << "an ended execution was claimed";
}

TEST_F(StoreTest, FinishChangesOnlyHowTheExecutionEndedAndKeepsItsSource) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExecutionRecord created = MakeRecord("e1", 100);
  created.owner = ProcessOwner();
  created.revision_id = "000002-3fa";
  created.service_account = "robot";
  created.labels = R"({"team":"ml"})";
  ASSERT_TRUE(store->CreateExecution(created).ok());
  ASSERT_TRUE(AppendAndWait(*store, "e1", MakeEntry("1")).ok());
  store->Finish("e1", "FAILED", "", R"({"message":"boom"})", nullptr);
  ASSERT_TRUE(store->Flush().ok());

  Result<ExecutionRecord> e1 = store->GetExecution("e1");
  ASSERT_TRUE(e1.ok()) << e1.message();
  EXPECT_EQ(e1->state, "FAILED");
  EXPECT_EQ(e1->error, R"({"message":"boom"})");
  EXPECT_EQ(e1->owner, "") << "Finish clears the owner";
  EXPECT_GT(e1->end_time_ms, 0);
  EXPECT_EQ(e1->source, created.source) << "the source is what a later resume would run";
  EXPECT_EQ(e1->source_file, created.source_file);
  EXPECT_EQ(e1->argument, created.argument);
  EXPECT_EQ(e1->workflow_name, created.workflow_name);
  EXPECT_EQ(e1->start_time_ms, 100);
  EXPECT_EQ(e1->revision_id, "000002-3fa");
  EXPECT_EQ(e1->service_account, "robot");
  EXPECT_EQ(e1->labels, R"({"team":"ml"})");
  EXPECT_EQ(e1->number, 1);
}

// Regression guard for the cached rowid: a VACUUM by another process may renumber the rows of
// `executions`, and a Finish by a stale rowid must neither end another execution nor fail.
TEST_F(StoreTest, FinishAfterAnotherProcessRenumberedTheRowsEndsTheRightExecution) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("first", 100)).ok());
  ASSERT_TRUE(store->CreateExecution(MakeRecord("second", 200)).ok());
  ExecOnFile(
      "UPDATE executions SET rowid = rowid + 100; "
      "UPDATE executions SET rowid = 1 WHERE id = 'second'");

  store->Finish("first", "SUCCEEDED", "7", "", nullptr);
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_EQ(store->GetExecution("first")->state, "SUCCEEDED");
  EXPECT_EQ(store->GetExecution("first")->result, "7");
  EXPECT_EQ(store->GetExecution("second")->state, "ACTIVE") << "the stale rowid's new row ended";
  EXPECT_EQ(store->GetExecution("second")->result, "");
}

TEST_F(StoreTest, ClaimListedFindsRowsByNumberWithClaimManysRules) {
  ASSERT_NO_FATAL_FAILURE(ForkOtherOwners());
  std::string mine = ProcessOwner();
  const std::string& lives = live_owner_;

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const char* id : {"orphan", "free", "ended", "held"}) {
    ASSERT_TRUE(store->CreateExecution(MakeRecord(id, 100)).ok());
  }
  ASSERT_TRUE(*store->Claim("orphan", dead_owner_));
  ASSERT_TRUE(*store->Claim("held", lives));
  Result<std::vector<ExecutionRecord>> listed = store->ListExecutions("ACTIVE", 0);
  ASSERT_TRUE(listed.ok()) << listed.message();
  store->Finish("ended", "CANCELLED", "", "", nullptr);
  ASSERT_TRUE(store->Flush().ok());

  // Newest first: held, ended, free, orphan; plus a record the store never returned (number
  // 0), claimed by its id, and an unknown one.
  ASSERT_EQ(listed->size(), 4u);
  ASSERT_EQ((*listed)[0].id, "held");
  ExecutionRecord unnumbered = MakeRecord("free", 100);
  ExecutionRecord unknown = MakeRecord("nope", 100);
  Result<std::vector<bool>> claimed = store->ClaimListed(
      {&(*listed)[0], &(*listed)[1], &(*listed)[2], &(*listed)[3], &unnumbered, &unknown}, mine);
  ASSERT_TRUE(claimed.ok()) << claimed.message();
  EXPECT_EQ(*claimed, (std::vector<bool>{false, false, true, true, true, false}));
  EXPECT_EQ(store->GetExecution("held")->owner, lives);
  EXPECT_EQ(store->GetExecution("ended")->owner, "") << "an ended execution was claimed";
  EXPECT_EQ(store->GetExecution("free")->owner, mine);
  EXPECT_EQ(store->GetExecution("orphan")->owner, mine);

  ASSERT_NO_FATAL_FAILURE(KillLiveOwner());
  claimed = store->ClaimListed({&(*listed)[0]}, mine);
  ASSERT_TRUE(claimed.ok()) << claimed.message();
  EXPECT_EQ(*claimed, std::vector<bool>{true});
  EXPECT_EQ(store->GetExecution("held")->owner, mine);
}

// After a restart, the journal read of claimed executions tells the writer where each journal
// ends: appends must continue there, with or without that read, and after a Finish.
TEST_F(StoreTest, AppendsAfterAClaimContinueEachJournalAtItsNextSeq) {
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    for (const char* id : {"read", "unread", "empty"}) {
      ASSERT_TRUE(store->CreateExecution(MakeRecord(id, 100)).ok());
    }
    for (int i = 1; i <= 3; ++i) {
      ASSERT_TRUE(AppendAndWait(*store, "read", MakeEntry(std::to_string(i))).ok());
      ASSERT_TRUE(AppendAndWait(*store, "unread", MakeEntry(std::to_string(i))).ok());
    }
  }

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<std::vector<ExecutionRecord>> listed = store->ListExecutions("ACTIVE", 0);
  ASSERT_TRUE(listed.ok()) << listed.message();
  std::map<std::string, const ExecutionRecord*> by_id;
  for (const ExecutionRecord& record : *listed) by_id[record.id] = &record;
  ASSERT_EQ(by_id.size(), 3u);
  Result<std::vector<bool>> claimed =
      store->ClaimListed({by_id["read"], by_id["unread"], by_id["empty"]}, ProcessOwner());
  ASSERT_TRUE(claimed.ok()) << claimed.message();
  ASSERT_EQ(*claimed, (std::vector<bool>{true, true, true}));
  Result<std::vector<std::vector<JournalEntry>>> journals =
      store->ReadListedJournals({by_id["read"], by_id["empty"]});
  ASSERT_TRUE(journals.ok()) << journals.message();

  for (const char* id : {"read", "unread", "empty"}) {
    ASSERT_TRUE(AppendAndWait(*store, id, MakeEntry("after")).ok()) << id;
    ASSERT_TRUE(AppendAndWait(*store, id, MakeEntry("after 2")).ok()) << id;
  }
  EXPECT_THAT(Seqs(*store->ReadJournal("read")), ::testing::ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(Seqs(*store->ReadJournal("unread")), ::testing::ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(Seqs(*store->ReadJournal("empty")), ::testing::ElementsAre(1, 2));
  EXPECT_EQ(store->ReadJournal("read")->back().key, "after 2");

  store->Finish("read", "SUCCEEDED", "1", "", nullptr);
  ASSERT_TRUE(store->Flush().ok());
  ASSERT_TRUE(AppendAndWait(*store, "read", MakeEntry("operator")).ok());
  EXPECT_THAT(Seqs(*store->ReadJournal("read")), ::testing::ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(store->GetExecution("read")->state, "SUCCEEDED");
}

TEST_F(StoreTest, ReadJournalsReadsEachJournalInSeqOrder) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(store->CreateExecution(MakeRecord(id, 100)).ok());
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(AppendAndWait(*store, "a", MakeEntry("main/" + std::to_string(i))).ok());
    if (i < 2) {
      ASSERT_TRUE(AppendAndWait(*store, "c", MakeEntry("c/" + std::to_string(i))).ok());
    }
  }

  Result<std::vector<std::vector<JournalEntry>>> journals =
      store->ReadJournals({"c", "b", "a", "nope"});
  ASSERT_TRUE(journals.ok()) << journals.message();
  ASSERT_EQ(journals->size(), 4u);
  EXPECT_THAT(Seqs((*journals)[0]), ::testing::ElementsAre(1, 2));
  EXPECT_EQ((*journals)[0][1].key, "c/1");
  EXPECT_TRUE((*journals)[1].empty());
  EXPECT_THAT(Seqs((*journals)[2]), ::testing::ElementsAre(1, 2, 3));
  EXPECT_TRUE((*journals)[3].empty()) << "an unknown id has an empty journal, as in ReadJournal";
  Result<std::vector<std::vector<JournalEntry>>> none = store->ReadJournals({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(StoreTest, ListedRecordsCarryTheirNumbersAndTheirJournalsAreReadByThem) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(store->CreateExecution(MakeRecord(id, 100)).ok());
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(AppendAndWait(*store, "a", MakeEntry("a/" + std::to_string(i))).ok());
    if (i < 2) {
      ASSERT_TRUE(AppendAndWait(*store, "c", MakeEntry("c/" + std::to_string(i))).ok());
    }
  }
  EXPECT_EQ(store->GetExecution("a")->number, 1);
  EXPECT_EQ(store->GetExecution("c")->number, 3);

  // Newest first: c (3), b (2), a (1); plus a record the store never returned (number 0), read
  // by its id, and one of an unknown id.
  Result<std::vector<ExecutionRecord>> listed = store->ListExecutions("ACTIVE", 0);
  ASSERT_TRUE(listed.ok()) << listed.message();
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].number, 3);
  EXPECT_EQ((*listed)[2].number, 1);
  ExecutionRecord unnumbered = MakeRecord("a", 100);
  ExecutionRecord unknown = MakeRecord("nope", 100);
  Result<std::vector<std::vector<JournalEntry>>> journals = store->ReadListedJournals(
      {&(*listed)[0], &(*listed)[1], &(*listed)[2], &unnumbered, &unknown});
  ASSERT_TRUE(journals.ok()) << journals.message();
  ASSERT_EQ(journals->size(), 5u);
  EXPECT_THAT(Seqs((*journals)[0]), ::testing::ElementsAre(1, 2));
  EXPECT_EQ((*journals)[0][1].key, "c/1");
  EXPECT_EQ((*journals)[0][1].time_ms, 1234);
  EXPECT_TRUE((*journals)[1].empty());
  EXPECT_THAT(Seqs((*journals)[2]), ::testing::ElementsAre(1, 2, 3));
  EXPECT_EQ((*journals)[2][2].key, "a/2");
  EXPECT_THAT(Seqs((*journals)[3]), ::testing::ElementsAre(1, 2, 3));
  EXPECT_TRUE((*journals)[4].empty());
  Result<std::vector<std::vector<JournalEntry>>> none = store->ReadListedJournals({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(StoreTest, ACorruptPayloadNamesItsEntryWhicheverWayTheJournalIsRead) {
  {
    std::unique_ptr<Store> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());
    ASSERT_TRUE(AppendAndWait(*store, "e1", MakeEntry("main/0", {{"ok", true}})).ok());
    ASSERT_TRUE(AppendAndWait(*store, "e1", MakeEntry("main/1", {{"ok", true}})).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE journal SET payload = '{\"ok\": tru' WHERE seq = 2", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto error = [](const auto& read) { return read.ok() ? std::string("read") : read.message(); };
  const std::string expected =
      "journal entry 2 of execution e1 is corrupt: its payload is not JSON";
  EXPECT_EQ(error(store->ReadJournal("e1")), expected);
  EXPECT_EQ(error(store->ReadJournals({"e1"})), expected);
  Result<std::vector<ExecutionRecord>> listed = store->ListExecutions("ACTIVE", 0);
  ASSERT_TRUE(listed.ok() && listed->size() == 1u);
  EXPECT_EQ(error(store->ReadListedJournals({&(*listed)[0]})), expected);
}

// SQLite counted every allocation under one process-wide mutex in `serve` and `run`, which open
// the secrets before the store: only the process's first connection may turn the counting off.
TEST_F(StoreTest, SecretsOpenedBeforeTheStoreLeaveSqliteMemoryCountingOff) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process, where SQLite is unused
  EXPECT_EXIT(
      {
        Result<std::unique_ptr<SecretStore>> secrets = SecretStore::Open(path_);
        if (!secrets.ok()) std::_Exit(2);
        std::unique_ptr<Store> store = OpenStore();
        if (store == nullptr || !store->CreateExecution(MakeRecord("e1", 100)).ok()) {
          std::_Exit(3);
        }
        std::_Exit(sqlite3_memory_used() == 0 ? 0 : 1);  // 0: nothing was counted
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(StoreTest, OwnerOnAnotherHostIsTakenOver) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());
  ASSERT_TRUE(*store->Claim("e1", "some-other-host.invalid:1"));
  EXPECT_TRUE(*store->Claim("e1", ProcessOwner()));
}

TEST_F(StoreTest, MissingFolderIsAClearError) {
  std::string path = dir_ + "/no/such/folder/atomflow.db";
  Result<std::unique_ptr<Store>> store = OpenSqliteStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.message(),
            "cannot open store " + path + ": folder " + dir_ + "/no/such/folder does not exist");
}

TEST_F(StoreTest, FileThatIsNotAStoreIsAClearError) {
  { std::ofstream(path_) << "this is not a database, it is a text file of some length\n"; }
  Result<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.message(), HasSubstr("cannot open store " + path_ + ": "));
}

TEST_F(StoreTest, NewerSchemaVersionIsRefused) {
  ASSERT_NE(OpenStore(), nullptr);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  Result<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.message(), HasSubstr("cannot open store " + path_));
  EXPECT_THAT(store.message(), HasSubstr("schema version 99 is newer"));
}

TEST_F(StoreTest, BlockingCallFromACallbackFailsInsteadOfHanging) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateExecution(MakeRecord("e1", 100)).ok());
  std::promise<Status> flushed;
  store->Append("e1", MakeEntry("main/1"),
                [&](const Status&) { flushed.set_value(store->Flush()); });
  EXPECT_THAT(flushed.get_future().get().message(), HasSubstr("from a store callback"));
}

// The child appends a stream of entries and reports each one acknowledged durable down a
// pipe; once enough are acknowledged it is SIGKILLed from inside a callback, with more
// appends queued and a batch possibly half-written. Every acknowledged entry must survive.
TEST_F(StoreTest, CrashKeepsEveryAcknowledgedEntry) {
  constexpr int kAppends = 5000;
  constexpr int kKillAfter = 1000;
  std::array<int, 2> pipe_fds{};
  ASSERT_EQ(pipe(pipe_fds.data()), 0);

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    Result<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
    if (!store.ok() || !(*store)->CreateExecution(MakeRecord("crash", 1)).ok()) _exit(2);
    std::atomic<int> acknowledged{0};
    for (int64_t seq = 1; seq <= kAppends; ++seq) {
      (*store)->Append("crash", MakeEntry("k/" + std::to_string(seq)),
                       [&, seq](const Status& status) {
                         if (!status.ok()) _exit(3);
                         if (write(pipe_fds[1], &seq, sizeof(seq)) != sizeof(seq)) _exit(4);
                         if (++acknowledged == kKillAfter) raise(SIGKILL);
                       });
    }
    while (true) pause();
  }

  close(pipe_fds[1]);
  std::set<int64_t> acknowledged;
  int64_t seq = 0;
  while (read(pipe_fds[0], &seq, sizeof(seq)) == sizeof(seq)) acknowledged.insert(seq);
  close(pipe_fds[0]);
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wait_status)) << "child exited with " << WEXITSTATUS(wait_status);
  ASSERT_GE(acknowledged.size(), size_t{kKillAfter});

  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  Result<std::vector<JournalEntry>> journal = store->ReadJournal("crash");
  ASSERT_TRUE(journal.ok()) << journal.message();
  ASSERT_GE(journal->size(), acknowledged.size());
  EXPECT_EQ(Seqs(*journal), OneTo(static_cast<int64_t>(journal->size())));
  for (int64_t acked : acknowledged) {
    EXPECT_EQ((*journal)[acked - 1].key, "k/" + std::to_string(acked));
  }

  // The journal goes on where the crashed process left it.
  ASSERT_TRUE(AppendAndWait(*store, "crash", MakeEntry("after")).ok());
  EXPECT_EQ(store->ReadJournal("crash")->back().seq, static_cast<int64_t>(journal->size()) + 1);
}

// Regression: a server SIGKILLed and restarted at once found its old executions owned by the
// killed process, which its parent had not reaped yet, and resumed none of them.
TEST(OwnerTest, KilledButUnreapedProcessIsNotALiveOwner) {
  std::string host = ProcessOwner().substr(0, ProcessOwner().rfind(':'));
  EXPECT_TRUE(IsLiveLocalOwner(ProcessOwner()));

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Wait until the child has exited, without reaping it.
  siginfo_t info = {};
  ASSERT_EQ(waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(IsLiveLocalOwner(host + ":" + std::to_string(child)));

  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(IsLiveLocalOwner(host + ":" + std::to_string(child)));
}

TEST(OpenTest, APostgresqlUrlIsRefusedRatherThanTakenForAFileName) {
  Result<std::unique_ptr<Store>> store = OpenSqliteStore("postgresql://localhost/atomflow");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(store.message(), ::testing::HasSubstr("SQLite file"));
  EXPECT_FALSE(std::filesystem::exists("postgresql:"));
}

// Journals hold arguments and results: a new store file must not be readable by others.
TEST(OpenTest, ANewStoreFileIsReadableByItsOwnerOnly) {
  std::filesystem::path folder =
      std::filesystem::temp_directory_path() / ("atomflow-mode-" + std::to_string(getpid()));
  std::filesystem::create_directories(folder);
  std::string path = (folder / "atomflow.db").string();
  {
    Result<std::unique_ptr<Store>> store = OpenSqliteStore(path);
    ASSERT_TRUE(store.ok()) << store.message();
  }
  std::filesystem::perms perms = std::filesystem::status(path).permissions();
  EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
            std::filesystem::perms::none);
  std::filesystem::remove_all(folder);
}

}  // namespace
}  // namespace atomflow::store
