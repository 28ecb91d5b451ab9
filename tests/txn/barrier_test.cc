// The participant barrier against a real PostgreSQL: each branch operation's business write
// runs exactly once, a cancel before its try is empty and refuses the late try, and two
// connections racing the same operation apply it once. gtest_discover_tests runs every TEST in
// its own process (and so its own server): the out-of-order cases share a few TESTs.
#include "txn/barrier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "support/postgres_server.h"

namespace atomflow::txn {
namespace {

using Connection = std::unique_ptr<PGconn, decltype(&PQfinish)>;

// One PostgreSQL server per test process; a database with the barrier table and a `writes`
// log of business writes per test.
class BarrierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = &atomflow::testing::SharedPostgresServer();
    ASSERT_EQ(server_->start_error(), "");
    database_ = atomflow::testing::TestDatabaseName();
    ASSERT_EQ(server_->CreateDatabase(database_), "");
    conn_ = Connect();
    ASSERT_EQ(PQstatus(conn_.get()), CONNECTION_OK);
    ASSERT_TRUE(Barrier::CreateTable(conn_.get()).ok());
    Status created = Exec(conn_.get(), "CREATE TABLE writes (op TEXT, gid TEXT, branch TEXT)");
    ASSERT_TRUE(created.ok()) << created.message();
  }

  Connection Connect() const {
    return Connection(PQconnectdb(server_->Uri(database_).c_str()), &PQfinish);
  }

  static Status Exec(PGconn* connection, const std::string& sql) {
    PGresult* result = PQexec(connection, sql.c_str());
    bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    return ok ? Status::Ok() : Status::Error(PQerrorMessage(connection));
  }

  // Runs op behind the barrier; its business write logs the op in `writes`.
  BarrierResult Run(PGconn* connection, const std::string& gid, const std::string& op,
                    const std::string& branch = "b1") {
    Result<BarrierResult> result = Barrier::Run(connection, gid, branch, op, [&](PGconn* inside) {
      return Exec(inside,
                  "INSERT INTO writes VALUES ('" + op + "', '" + gid + "', '" + branch + "')");
    });
    EXPECT_TRUE(result.ok()) << result.message();
    return result.ok() ? *result : BarrierResult::kRejected;
  }

  // How many times op's business write ran for gid.
  int Writes(const std::string& gid, const std::string& op) const {
    return std::stoi(server_->Query(
        database_, "SELECT count(*) FROM writes WHERE gid = '" + gid + "' AND op = '" + op + "'"));
  }

  std::string Reason(const std::string& gid, const std::string& op) const {
    return server_->Query(database_, "SELECT reason FROM atomflow_barrier WHERE gid = '" + gid +
                                         "' AND op = '" + op + "'");
  }

  atomflow::testing::PostgresServer* server_ = nullptr;
  std::string database_;
  Connection conn_{nullptr, &PQfinish};
};

TEST_F(BarrierTest, InOrderOperationsApplyOnceAndRepeatsAreDuplicates) {
  // try then confirm, each retried: the business writes run once.
  EXPECT_EQ(Run(conn_.get(), "g1", "try"), BarrierResult::kApplied);
  EXPECT_EQ(Run(conn_.get(), "g1", "try"), BarrierResult::kDuplicate);
  EXPECT_EQ(Run(conn_.get(), "g1", "confirm"), BarrierResult::kApplied);
  EXPECT_EQ(Run(conn_.get(), "g1", "confirm"), BarrierResult::kDuplicate);
  EXPECT_EQ(Writes("g1", "try"), 1);
  EXPECT_EQ(Writes("g1", "confirm"), 1);

  // try then cancel: the cancel undoes a real try, so its business write runs, once.
  EXPECT_EQ(Run(conn_.get(), "g2", "try"), BarrierResult::kApplied);
  EXPECT_EQ(Run(conn_.get(), "g2", "cancel"), BarrierResult::kApplied);
  EXPECT_EQ(Run(conn_.get(), "g2", "cancel"), BarrierResult::kDuplicate);
  // A try retried after its cancel repeats one that ran: answered as done, nothing runs.
  EXPECT_EQ(Run(conn_.get(), "g2", "try"), BarrierResult::kDuplicate);
  EXPECT_EQ(Writes("g2", "try"), 1);
  EXPECT_EQ(Writes("g2", "cancel"), 1);

  // Saga operations behave the same: action then compensate.
  EXPECT_EQ(Run(conn_.get(), "g3", "action"), BarrierResult::kApplied);
  EXPECT_EQ(Run(conn_.get(), "g3", "compensate"), BarrierResult::kApplied);
  EXPECT_EQ(Run(conn_.get(), "g3", "compensate"), BarrierResult::kDuplicate);
  EXPECT_EQ(Writes("g3", "compensate"), 1);

  // Branches of one transaction are apart.
  EXPECT_EQ(Run(conn_.get(), "g1", "try", "b2"), BarrierResult::kApplied);
}

TEST_F(BarrierTest, CancelBeforeTryIsEmptyAndRefusesTheLateTry) {
  EXPECT_EQ(Run(conn_.get(), "g1", "cancel"), BarrierResult::kEmpty);
  EXPECT_EQ(Writes("g1", "cancel"), 0) << "an empty cancel has nothing to undo";
  EXPECT_EQ(Reason("g1", "try"), "guard");
  EXPECT_EQ(Reason("g1", "cancel"), "empty");
  // Remembered: a repeated cancel is a duplicate; the late try is refused, every time.
  EXPECT_EQ(Run(conn_.get(), "g1", "cancel"), BarrierResult::kDuplicate);
  EXPECT_EQ(Run(conn_.get(), "g1", "try"), BarrierResult::kRejected);
  EXPECT_EQ(Run(conn_.get(), "g1", "try"), BarrierResult::kRejected);
  EXPECT_EQ(Writes("g1", "try"), 0);
  EXPECT_EQ(Barrier::HttpStatus(BarrierResult::kRejected), 409);

  // The saga twin: a compensate before its action refuses the late action.
  EXPECT_EQ(Run(conn_.get(), "g2", "compensate"), BarrierResult::kEmpty);
  EXPECT_EQ(Run(conn_.get(), "g2", "action"), BarrierResult::kRejected);
  EXPECT_EQ(Writes("g2", "action"), 0);

  // A failed business write leaves no barrier row: the operation can be retried.
  Result<BarrierResult> failed = Barrier::Run(
      conn_.get(), "g3", "b1", "try", [](PGconn*) { return Status::Error("no GPUs left"); });
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(Reason("g3", "try"), "");
  EXPECT_EQ(Run(conn_.get(), "g3", "try"), BarrierResult::kApplied);

  Result<BarrierResult> unknown =
      Barrier::Run(conn_.get(), "g4", "b1", "prepare", [](PGconn*) { return Status::Ok(); });
  EXPECT_FALSE(unknown.ok());
}

TEST_F(BarrierTest, ConcurrentDuplicatesApplyExactlyOnce) {
  // Two connections race the same operation, many times over; the primary key serialises
  // them, so exactly one applies and the other sees a duplicate.
  constexpr int kRounds = 20;
  Connection other = Connect();
  ASSERT_EQ(PQstatus(other.get()), CONNECTION_OK);
  for (int round = 0; round < kRounds; ++round) {
    std::string gid = "race" + std::to_string(round);
    for (const char* op : {"try", "confirm"}) {
      std::atomic<int> applied{0};
      auto racer = [&](PGconn* connection) {
        if (Run(connection, gid, op) == BarrierResult::kApplied) ++applied;
      };
      std::thread first(racer, conn_.get());
      std::thread second(racer, other.get());
      first.join();
      second.join();
      EXPECT_EQ(applied.load(), 1) << gid << " " << op;
      EXPECT_EQ(Writes(gid, op), 1) << gid << " " << op;
    }
  }

  // A try racing its cancel: whichever wins, the try's write is undone or never happens.
  for (int round = 0; round < kRounds; ++round) {
    std::string gid = "undo" + std::to_string(round);
    BarrierResult tried = BarrierResult::kApplied;
    BarrierResult cancelled = BarrierResult::kApplied;
    std::thread first([&] { tried = Run(conn_.get(), gid, "try"); });
    std::thread second([&] { cancelled = Run(other.get(), gid, "cancel"); });
    first.join();
    second.join();
    if (tried == BarrierResult::kApplied) {
      EXPECT_EQ(cancelled, BarrierResult::kApplied) << gid;
      EXPECT_EQ(Writes(gid, "cancel"), 1) << gid;
    } else {
      EXPECT_EQ(tried, BarrierResult::kRejected) << gid;
      EXPECT_EQ(cancelled, BarrierResult::kEmpty) << gid;
      EXPECT_EQ(Writes(gid, "try"), 0) << gid;
    }
  }
}

}  // namespace
}  // namespace atomflow::txn
