// SqlConnection against a real PostgreSQL started for this test binary: committed statements,
// typed rows, definite failures that change nothing, and prepared transactions that survive
// their connection and are finished by gid.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "connectors/sql_connection.h"
#include "support/postgres_server.h"

namespace atomflow::connectors {
namespace {

// One server for the whole binary; each test gets a fresh database.
class SqlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = &atomflow::testing::SharedPostgresServer();
    ASSERT_EQ(server_->start_error(), "");
    database_ = atomflow::testing::TestDatabaseName();
    ASSERT_EQ(server_->CreateDatabase(database_), "");
    Result<std::unique_ptr<SqlConnection>> opened = SqlConnection::Open(server_->Uri(database_));
    ASSERT_TRUE(opened.ok()) << opened.message();
    conn_ = std::move(opened).value();
    SqlOutcome created = conn_->Run(
        {{"CREATE TABLE models (name TEXT PRIMARY KEY, version INT, score DOUBLE PRECISION, "
          "live BOOLEAN, meta JSONB)",
          {}}});
    ASSERT_TRUE(created.ok()) << created.message;
  }

  std::string Count() const { return server_->Query(database_, "SELECT count(*) FROM models"); }

  atomflow::testing::PostgresServer* server_ = nullptr;
  std::string database_;
  std::unique_ptr<SqlConnection> conn_;
};

const char kInsert[] = "INSERT INTO models VALUES ($1, $2, $3, $4, $5)";

TEST_F(SqlTest, RunCommitsAndReturnsTypedRows) {
  SqlOutcome inserted = conn_->Run({{kInsert,
                                     {Value("cancer"), Value(int64_t{3}), Value(0.986), Value(true),
                                      Value(Map{{"owner", Value("ml")}})}}});
  ASSERT_TRUE(inserted.ok()) << inserted.message;
  EXPECT_EQ(inserted.results[0].AsMap().Find("row_count")->AsInt(), 1);

  SqlOutcome selected = conn_->Run({{"SELECT * FROM models WHERE name = $1", {Value("cancer")}}});
  ASSERT_TRUE(selected.ok()) << selected.message;
  const List& rows = selected.results[0].AsMap().Find("rows")->AsList();
  ASSERT_EQ(rows.size(), 1u);
  const Map& row = rows[0].AsMap();
  EXPECT_EQ(row.Find("name")->AsString(), "cancer");
  EXPECT_EQ(row.Find("version")->AsInt(), 3);
  EXPECT_DOUBLE_EQ(row.Find("score")->AsDouble(), 0.986);
  EXPECT_TRUE(row.Find("live")->AsBool());
  EXPECT_EQ(row.Find("meta")->AsMap().Find("owner")->AsString(), "ml");
}

TEST_F(SqlTest, NullParameterIsSqlNull) {
  SqlOutcome inserted = conn_->Run({{kInsert, {Value("m"), Value(), Value(), Value(), Value()}}});
  ASSERT_TRUE(inserted.ok()) << inserted.message;
  EXPECT_EQ(server_->Query(database_, "SELECT count(*) FROM models WHERE version IS NULL"), "1");
}

TEST_F(SqlTest, FailedStatementRollsBackTheWholeRun) {
  SqlOutcome failed =
      conn_->Run({{kInsert, {Value("a"), Value(int64_t{1}), Value(), Value(), Value()}},
                  {"INSERT INTO no_such_table VALUES (1)", {}}});
  EXPECT_EQ(failed.kind, SqlOutcome::Kind::kDefinite);
  EXPECT_EQ(failed.sqlstate, "42P01");
  EXPECT_NE(failed.message.find("statement 2"), std::string::npos) << failed.message;
  EXPECT_EQ(Count(), "0");

  // The connection is usable again after the failure.
  SqlOutcome again = conn_->Run({{"SELECT 1 AS one", {}}});
  ASSERT_TRUE(again.ok()) << again.message;
}

TEST_F(SqlTest, PreparedTransactionOutlivesItsConnectionAndCommitsByGid) {
  const std::string gid = "atomflow:exec-1:release#1:register";
  SqlOutcome prepared = conn_->RunPrepared(
      {{kInsert, {Value("cancer"), Value(int64_t{1}), Value(), Value(), Value()}}}, gid);
  ASSERT_TRUE(prepared.ok()) << prepared.message;
  conn_.reset();            // the preparing session ends; the prepared transaction stays
  EXPECT_EQ(Count(), "0");  // not visible before the commit

  Result<std::unique_ptr<SqlConnection>> other = SqlConnection::Open(server_->Uri(database_));
  ASSERT_TRUE(other.ok());
  Result<std::vector<std::string>> listed = (*other)->ListPrepared("atomflow:exec-1:");
  ASSERT_TRUE(listed.ok()) << listed.message();
  EXPECT_EQ(*listed, std::vector<std::string>{gid});

  bool missing = true;
  SqlOutcome committed = (*other)->CommitPrepared(gid, &missing);
  ASSERT_TRUE(committed.ok()) << committed.message;
  EXPECT_FALSE(missing);
  EXPECT_EQ(Count(), "1");

  // A second commit finds nothing: reported as missing, which only the journal can judge.
  committed = (*other)->CommitPrepared(gid, &missing);
  EXPECT_TRUE(committed.ok());
  EXPECT_TRUE(missing);
}

TEST_F(SqlTest, RollbackPreparedDiscardsTheWork) {
  const std::string gid = "atomflow:exec-2:release#1:register";
  ASSERT_TRUE(
      conn_->RunPrepared({{kInsert, {Value("x"), Value(), Value(), Value(), Value()}}}, gid).ok());
  bool missing = true;
  SqlOutcome rolled = conn_->RollbackPrepared(gid, &missing);
  ASSERT_TRUE(rolled.ok()) << rolled.message;
  EXPECT_FALSE(missing);
  EXPECT_EQ(Count(), "0");
  Result<std::vector<std::string>> listed = conn_->ListPrepared("atomflow:");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(SqlTest, PreparingAGidTwiceFailsDefinitelyAndKeepsTheFirst) {
  const std::string gid = "atomflow:exec-3:t#1:b";
  ASSERT_TRUE(
      conn_->RunPrepared({{kInsert, {Value("one"), Value(), Value(), Value(), Value()}}}, gid)
          .ok());
  SqlOutcome second =
      conn_->RunPrepared({{kInsert, {Value("two"), Value(), Value(), Value(), Value()}}}, gid);
  EXPECT_EQ(second.kind, SqlOutcome::Kind::kDefinite);

  bool missing = true;
  ASSERT_TRUE(conn_->CommitPrepared(gid, &missing).ok());
  EXPECT_EQ(server_->Query(database_, "SELECT string_agg(name, ',') FROM models"), "one");
}

TEST_F(SqlTest, GidWithQuoteIsQuotedNotInjected) {
  const std::string gid = "atomflow:it's";
  ASSERT_TRUE(
      conn_->RunPrepared({{kInsert, {Value("q"), Value(), Value(), Value(), Value()}}}, gid).ok());
  bool missing = true;
  ASSERT_TRUE(conn_->RollbackPrepared(gid, &missing).ok());
  EXPECT_FALSE(missing);
}

TEST(SqlConnectTest, RefusedConnectionSaysWhereAndHidesThePassword) {
  Result<std::unique_ptr<SqlConnection>> opened =
      SqlConnection::Open("postgresql://app:s3cret-pw@127.0.0.1:1/registry?connect_timeout=2");
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.message().find("127.0.0.1"), std::string::npos) << opened.message();
  EXPECT_EQ(opened.message().find("s3cret-pw"), std::string::npos) << opened.message();
}

// Regression: libpq's parse error quoted the malformed part of the string, which was the
// password, and it went into the execution's error and the journal.
TEST(SqlConnectTest, MalformedConnectionStringNeverQuotesThePassword) {
  Result<std::unique_ptr<SqlConnection>> opened =
      SqlConnection::Open("postgresql://app:S3cret%ZZpassword@127.0.0.1:1/registry");
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.message().find("malformed"), std::string::npos) << opened.message();
  EXPECT_EQ(opened.message().find("S3cret"), std::string::npos) << opened.message();
}

TEST(SqlQuoteTest, DoublesQuotes) { EXPECT_EQ(QuoteLiteral("a'b"), "'a''b'"); }

}  // namespace
}  // namespace atomflow::connectors
