// Tests of API tokens: made once, kept only as hashes, checked on every request, revoked at
// once, and the `atomflow tokens` commands that manage them.
#include "server/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/workflow_check.h"

namespace atomflow::server {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every byte SQLite keeps for the store: the file and its write-ahead log.
std::string StoreBytes(const std::string& store_path) {
  return ReadBytes(store_path) + ReadBytes(store_path + "-wal");
}

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<TokenStore>> tokens = TokenStore::Open(StorePath());
    ASSERT_TRUE(tokens.ok()) << tokens.message();
    tokens_ = std::move(tokens).value();
  }

  std::string StorePath() const { return (dir_.path() / "atomflow.db").string(); }

  std::string MakeToken(const std::string& name, Role role) {
    Result<std::string> token = tokens_->Create(name, role);
    EXPECT_TRUE(token.ok()) << token.message();
    return token.ok() ? *token : "";
  }

  atomflow::testing::TempDir dir_;
  std::unique_ptr<TokenStore> tokens_;
};

TEST(RoleTest, NamesRoundTripAndEachRoleIncludesTheOnesBefore) {
  for (Role role : {Role::kViewer, Role::kInvoker, Role::kDeployer, Role::kAdmin}) {
    Result<Role> parsed = ParseRole(RoleName(role));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, role);
  }
  EXPECT_GT(Role::kAdmin, Role::kDeployer);
  EXPECT_GT(Role::kDeployer, Role::kInvoker);
  EXPECT_GT(Role::kInvoker, Role::kViewer);
  Result<Role> bad = ParseRole("root");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("viewer, invoker, deployer or admin"));
}

TEST_F(TokenStoreTest, TokenAuthenticatesWithItsRole) {
  std::string deployer = MakeToken("ci", Role::kDeployer);
  std::string viewer = MakeToken("dashboard", Role::kViewer);

  EXPECT_THAT(deployer, MatchesRegex("afk_[0-9a-f]{64}"));
  EXPECT_NE(deployer, viewer);
  Result<Role> role = tokens_->Authenticate("Bearer " + deployer);
  ASSERT_TRUE(role.ok()) << role.message();
  EXPECT_EQ(*role, Role::kDeployer);
  role = tokens_->Authenticate("bearer  " + viewer);  // the scheme is case-insensitive
  ASSERT_TRUE(role.ok()) << role.message();
  EXPECT_EQ(*role, Role::kViewer);
}

TEST_F(TokenStoreTest, WrongOrMalformedTokensAreUnauthenticatedWithoutEchoingThem) {
  std::string token = MakeToken("ci", Role::kAdmin);
  std::string wrong = token;
  wrong.back() = wrong.back() == '0' ? '1' : '0';

  for (const std::string& header :
       {"Bearer " + wrong, std::string(""), std::string("Bearer "), "Basic " + token, token,
        "Bearer " + token.substr(4), "Bearer " + token + "x"}) {
    Result<Role> role = tokens_->Authenticate(header);
    ASSERT_FALSE(role.ok()) << header;
    EXPECT_EQ(role.status().code(), StatusCode::kUnauthenticated) << header;
    EXPECT_THAT(role.message(), Not(HasSubstr(token.substr(4, 16))));
  }
}

TEST_F(TokenStoreTest, StoreFileHoldsOnlyTheHash) {
  std::string token = MakeToken("ci", Role::kInvoker);

  std::string bytes = StoreBytes(StorePath());
  EXPECT_THAT(bytes, Not(HasSubstr(token)));
  EXPECT_THAT(bytes, Not(HasSubstr(token.substr(4))));
  Result<Json> list = tokens_->List();
  ASSERT_TRUE(list.ok()) << list.message();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0]["name"], "ci");
  EXPECT_EQ((*list)[0]["role"], "invoker");
  EXPECT_THAT((*list)[0]["createTime"].get<std::string>(), MatchesRegex("20..-..-..T.*Z"));
  EXPECT_FALSE((*list)[0].contains("hash"));
  EXPECT_THAT(list->dump(), Not(HasSubstr(token.substr(4, 16))));
}

TEST_F(TokenStoreTest, RevokedTokenFailsAtOnceEvenInAnotherProcessesStore) {
  std::string token = MakeToken("ci", Role::kAdmin);
  Result<std::unique_ptr<TokenStore>> other = TokenStore::Open(StorePath());
  ASSERT_TRUE(other.ok()) << other.message();
  ASSERT_TRUE((*other)->Authenticate("Bearer " + token).ok());

  ASSERT_TRUE(tokens_->Revoke("ci").ok());

  Result<Role> role = (*other)->Authenticate("Bearer " + token);
  ASSERT_FALSE(role.ok());
  EXPECT_EQ(role.status().code(), StatusCode::kUnauthenticated);
  EXPECT_FALSE(tokens_->Authenticate("Bearer " + token).ok());
  Status again = tokens_->Revoke("ci");
  EXPECT_EQ(again.code(), StatusCode::kNotFound);
}

TEST_F(TokenStoreTest, NamesAreUniqueAndChecked) {
  MakeToken("ci", Role::kAdmin);

  Result<std::string> duplicate = tokens_->Create("ci", Role::kViewer);
  ASSERT_FALSE(duplicate.ok());
  EXPECT_EQ(duplicate.status().code(), StatusCode::kAlreadyExists);
  for (const std::string& bad : {std::string(""), std::string(65, 'a'), std::string("a b")}) {
    Result<std::string> token = tokens_->Create(bad, Role::kViewer);
    ASSERT_FALSE(token.ok()) << bad;
    EXPECT_EQ(token.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST_F(TokenStoreTest, AuthenticatesFromManyThreadsAtOnce) {
  std::string token = MakeToken("ci", Role::kInvoker);
  std::vector<std::thread> threads;
  std::atomic<int> accepted = 0;

  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 50; ++j) {
        Result<Role> role = tokens_->Authenticate("Bearer " + token);
        if (role.ok() && *role == Role::kInvoker) ++accepted;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(accepted.load(), 400);
}

// The binary's `tokens` commands on the same store: the token goes to stdout once, and works.
TEST_F(TokenStoreTest, TokensCommandsCreateListAndRevoke) {
  std::string out = (dir_.path() / "out.txt").string();
  std::string err = (dir_.path() / "err.txt").string();
  std::string prefix = std::string(ATOMFLOW_BINARY) + " tokens ";
  std::string store = " --store " + StorePath();

  ASSERT_EQ(
      std::system((prefix + "create ops --role admin" + store + " >" + out + " 2>" + err).c_str()),
      0)
      << ReadBytes(err);
  std::string token = ReadBytes(out);
  while (!token.empty() && token.back() == '\n') token.pop_back();
  EXPECT_THAT(token, MatchesRegex("afk_[0-9a-f]{64}"));
  EXPECT_THAT(ReadBytes(err), Not(HasSubstr(token)));
  Result<Role> role = tokens_->Authenticate("Bearer " + token);
  ASSERT_TRUE(role.ok()) << role.message();
  EXPECT_EQ(*role, Role::kAdmin);

  ASSERT_EQ(std::system((prefix + "list --json" + store + " >" + out).c_str()), 0);
  Json listed = Json::parse(ReadBytes(out));
  ASSERT_EQ(listed["tokens"].size(), 1u);
  EXPECT_EQ(listed["tokens"][0]["name"], "ops");
  EXPECT_THAT(listed.dump(), Not(HasSubstr(token.substr(4))));

  EXPECT_NE(std::system((prefix + "create x --role root" + store + " 2>" + err).c_str()), 0);
  EXPECT_THAT(ReadBytes(err), HasSubstr("unknown role 'root'"));
  ASSERT_EQ(std::system((prefix + "revoke ops" + store + " 2>" + err).c_str()), 0);
  EXPECT_FALSE(tokens_->Authenticate("Bearer " + token).ok());
}

}  // namespace
}  // namespace atomflow::server
