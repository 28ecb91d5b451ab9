// Tests of service identities and the secret store: an execution's HTTP calls carry its
// identity's credentials to a real loopback server, and the secret appears nowhere else: not
// in the journal's bytes, the result, the error messages or the logs.
#include "connectors/identities.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "common/log.h"
#include "connectors/connectors.h"
#include "connectors/databases.h"
#include "lang/ast.h"
#include "store/secret_store.h"
#include "support/http_test_server.h"
#include "support/workflow_check.h"

namespace atomflow::connectors {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "tok-9f8e7d6c5b4a3921-do-not-leak";

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Every byte SQLite keeps for a store: the file and its write-ahead log.
std::string StoreBytes(const std::string& store_path) {
  return ReadBytes(store_path) + ReadBytes(store_path + "-wal");
}

// The calls of the identity tests: each result or error is returned, so the test sees what a
// workflow sees.
constexpr char kWorkflow[] = R"yaml(
main:
  params: [args]
  steps:
    - registry:
        call: http.get
        args: {url: '${args.base + "/api/models"}'}
        result: models
    - elsewhere:
        call: http.get
        args: {url: '${args.base + "/other/models"}'}
        result: other
    - own_header:
        call: http.get
        args:
          url: '${args.base + "/api/own"}'
          headers: {authorization: "Bearer the-workflows-own"}
        result: own
    - failing:
        try:
          call: http.get
          args: {url: '${args.base + "/api/fail"}'}
        except:
          as: e
          steps:
            - keep_failure:
                assign:
                  - failure: '${e}'
    - refused:
        try:
          call: http.get
          args: {url: '${args.closed + "/api/models"}'}
        except:
          as: e
          steps:
            - keep_refusal:
                assign:
                  - refusal: '${e}'
    - report:
        call: sys.log
        args: {text: '${"calls done: " + failure.message + " / " + refusal.message}'}
    - done:
        return: {models: '${models.body}', other: '${other.body}', own: '${own.body}',
                 failure: '${failure}', refusal: '${refusal}'}
)yaml";

constexpr char kOneCall[] = R"yaml(
main:
  params: [args]
  steps:
    - registry:
        call: http.get
        args: {url: '${args.base + "/api/models"}'}
        result: models
    - done:
        return: '${models.body}'
)yaml";

constexpr char kSqlCall[] = R"yaml(
main:
  steps:
    - insert:
        try:
          call: atomflow.sql.exec
          args: {database: registry, statements: ["SELECT 1"]}
        except:
          as: e
          steps:
            - give_up:
                return: '${e}'
)yaml";

// A loopback registry that records the Authorization header of each path, an engine over a
// store in a temporary folder, and a secret store on the same file holding the token.
class IdentitiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    httplib::Server& routes = server_.routes();
    for (const char* path : {"/api/models", "/other/models", "/api/own"}) {
      routes.Get(path, [this](const httplib::Request& request, httplib::Response& response) {
        Record(request);
        response.set_content(R"({"models": 3})", "application/json");
      });
    }
    routes.Get("/api/fail", [this](const httplib::Request& request, httplib::Response& response) {
      Record(request);
      response.status = 503;
      response.set_content("registry is down", "text/plain");
    });
    server_.Start();
    closed_port_ = atomflow::testing::ClosedLoopbackPort();

    Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(StorePath());
    ASSERT_TRUE(secrets.ok()) << secrets.message();
    ASSERT_TRUE((*secrets)->Set("registry-token", kSecret).ok());
    std::string dsn = "postgresql://trainer:" + std::string(kSecret) +
                      "@127.0.0.1:" + std::to_string(closed_port_) + "/registry?connect_timeout=5";
    ASSERT_TRUE((*secrets)->Set("registry-dsn", dsn).ok());
  }

  void TearDown() override { engine_.reset(); }

  std::string StorePath() const { return (dir_.path() / "atomflow.db").string(); }
  std::string Base() const { return server_.Url(""); }
  std::string Closed() const { return "http://127.0.0.1:" + std::to_string(closed_port_); }

  std::string Config() const {
    return "identities:\n"
           "  trainer:\n"
           "    http:\n"
           "      - url_prefix: " +
           Base() +
           "/api/\n"
           "        headers: {Authorization: {secret: registry-token, prefix: \"Bearer \"}}\n"
           "      - url_prefix: " +
           Closed() +
           "/api/\n"
           "        headers: {Authorization: {secret: registry-token, prefix: \"Bearer \"}}\n"
           "  forgetful:\n"
           "    http:\n"
           "      - url_prefix: " +
           Base() +
           "/api/\n"
           "        headers: {X-Api-Key: {secret: never-set}}\n"
           "databases:\n"
           "  registry: {secret: registry-dsn}\n";
  }

  void OpenEngine() {
    std::string config_path = (dir_.path() / "atomflow.yaml").string();
    WriteFile(config_path, Config());
    Result<ConnectorsConfig> config = LoadConnectorsConfig(config_path, true, StorePath());
    ASSERT_TRUE(config.ok()) << config.message();
    engine::EngineOptions options;
    options.store_path = StorePath();
    options.workers = 2;
    Result<std::unique_ptr<engine::Engine>> engine =
        engine::Engine::Open(options, ConnectorsFactory(std::move(config).value()), &progress_);
    ASSERT_TRUE(engine.ok()) << engine.message();
    engine_ = std::move(engine).value();
  }

  store::ExecutionRecord Run(const char* source, const std::string& service_account) {
    Result<std::shared_ptr<const lang::Workflow>> workflow =
        lang::LoadWorkflow("train.yaml", source);
    EXPECT_TRUE(workflow.ok()) << workflow.message();
    engine::StartOptions options;
    options.service_account = service_account;
    Value argument = FromJson(Json{{"base", Base()}, {"closed", Closed()}});
    Result<std::string> id = engine_->Start(*workflow, std::move(argument), options);
    EXPECT_TRUE(id.ok()) << id.message();
    if (!id.ok()) return {};
    return engine_->Wait(*id);
  }

  // Everything the execution left: its record, journal, logs, and the store file's bytes.
  std::string Traces(const store::ExecutionRecord& record) {
    std::string text = record.result + record.error + record.argument;
    Result<std::vector<store::JournalEntry>> journal = engine_->store()->ReadJournal(record.id);
    EXPECT_TRUE(journal.ok());
    if (journal.ok()) {
      for (const store::JournalEntry& entry : *journal) text += entry.payload.dump();
    }
    for (const std::string& line : progress_.logs()) text += line + "\n";
    EXPECT_TRUE(engine_->store()->Flush().ok());
    return text + StoreBytes(StorePath());
  }

  std::map<std::string, std::string> Seen() {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }

  void Record(const httplib::Request& request) {
    std::lock_guard<std::mutex> lock(mutex_);
    seen_[request.path] =
        request.has_header("Authorization") ? request.get_header_value("Authorization") : "<none>";
  }

  atomflow::testing::TempDir dir_;
  atomflow::testing::RecordingProgress progress_;
  atomflow::testing::HttpTestServer server_;
  int closed_port_ = 0;
  std::mutex mutex_;
  std::map<std::string, std::string> seen_;  // path -> Authorization header
  std::unique_ptr<engine::Engine> engine_;
};

TEST_F(IdentitiesTest, IdentityHeaderReachesItsPrefixOnlyAndIsRecordedNowhere) {
  ::testing::internal::CaptureStderr();
  log::Init("debug", "json");  // every operator log line the engine can write, on stderr
  OpenEngine();

  store::ExecutionRecord record = Run(kWorkflow, "trainer");
  engine_.reset();
  std::string operator_log = ::testing::internal::GetCapturedStderr();
  log::Init("info");
  OpenEngine();

  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  std::map<std::string, std::string> seen = Seen();
  EXPECT_EQ(seen["/api/models"], std::string("Bearer ") + kSecret);
  EXPECT_EQ(seen["/api/fail"], std::string("Bearer ") + kSecret);
  EXPECT_EQ(seen["/other/models"], "<none>");
  EXPECT_EQ(seen["/api/own"], "Bearer the-workflows-own");  // the workflow's own header wins
  Json result = Json::parse(record.result);
  EXPECT_EQ(result["models"]["models"], 3);
  EXPECT_EQ(result["failure"]["code"], 503);
  EXPECT_THAT(result["refusal"]["tags"].dump(), HasSubstr("ConnectionFailedError"));
  std::string traces = Traces(record);
  EXPECT_THAT(traces, HasSubstr("/api/models"));   // the journaled intent was read
  EXPECT_THAT(traces, HasSubstr("calls done: "));  // and the sys.log line
  EXPECT_THAT(traces, Not(HasSubstr(kSecret)));
  EXPECT_THAT(operator_log, HasSubstr(record.id));
  EXPECT_THAT(operator_log, Not(HasSubstr(kSecret)));
}

TEST_F(IdentitiesTest, ExecutionWithoutServiceAccountSendsNoCredentials) {
  OpenEngine();

  store::ExecutionRecord record = Run(kOneCall, "");

  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  EXPECT_EQ(Seen()["/api/models"], "<none>");
}

TEST_F(IdentitiesTest, UnknownServiceAccountFailsTheEffectBeforeSending) {
  OpenEngine();

  store::ExecutionRecord record = Run(kOneCall, "ghost");

  ASSERT_EQ(record.state, "FAILED");
  EXPECT_THAT(record.error, HasSubstr("service account 'ghost'"));
  EXPECT_THAT(record.error, HasSubstr("identities:"));
  EXPECT_TRUE(Seen().empty());
  EXPECT_THAT(Traces(record), Not(HasSubstr(kSecret)));
}

TEST_F(IdentitiesTest, MissingSecretFailsTheEffectNamingIt) {
  OpenEngine();

  store::ExecutionRecord record = Run(kOneCall, "forgetful");

  ASSERT_EQ(record.state, "FAILED");
  EXPECT_THAT(record.error, HasSubstr("never-set"));
  EXPECT_THAT(record.error, HasSubstr("atomflow secrets set never-set"));
  EXPECT_TRUE(Seen().empty());
}

// The connection string comes from the secret store when the SQL connector connects; libpq's
// refusal reaches the workflow without the password.
TEST_F(IdentitiesTest, DatabaseSecretIsUsedToConnectAndNotRepeated) {
  OpenEngine();

  store::ExecutionRecord record = Run(kSqlCall, "trainer");

  ASSERT_EQ(record.state, "SUCCEEDED") << record.error;
  EXPECT_THAT(record.result, HasSubstr(std::to_string(closed_port_)));  // it tried that server
  EXPECT_THAT(Traces(record), Not(HasSubstr(kSecret)));
}

TEST(IdentityCatalogTest, MalformedEntriesNameFileIdentityAndField) {
  struct Case {
    const char* yaml;
    const char* expected;
  };
  const Case cases[] = {
      {"identities: [a]", "'identities' must be a map"},
      {"identities: {t: {http: {url_prefix: x}}}", "identity 't': 'http' must be a list"},
      {"identities: {t: {https: []}}", "identity 't': unknown field 'https'"},
      {"identities: {t: {http: [{url_prefix: 'https://a.example.com', headers: "
       "{A: {secret: s}}}]}}",
       "identity 't': http[0]: 'url_prefix' must look like https://host[:port]/"},
      {"identities: {t: {http: [{url_prefix: 'ftp://a.example.com/', headers: "
       "{A: {secret: s}}}]}}",
       "'url_prefix' must look like"},
      {"identities: {t: {http: [{url_prefix: 'https://a.example.com/'}]}}",
       "identity 't': http[0]: 'headers' must be a map"},
      {"identities: {t: {http: [{url_prefix: 'https://a.example.com/', headers: {A: plain}}]}}",
       "identity 't': http[0].headers.A must be {secret: NAME}"},
      {"identities: {t: {http: [{url_prefix: 'https://a.example.com/', headers: "
       "{A: {secret: Bad_Name}}}]}}",
       "identity 't': http[0].headers.A: 'Bad_Name' is not a secret name"},
      {"identities: {t: {http: [{url_prefix: 'https://a.example.com/', headers: "
       "{'A B': {secret: s}}}]}}",
       "'A B' is not an HTTP header name"},
  };
  for (const Case& c : cases) {
    Result<IdentityCatalog> catalog = IdentityCatalog::Parse(c.yaml, "/etc/af/atomflow.yaml");
    ASSERT_FALSE(catalog.ok()) << c.yaml;
    EXPECT_THAT(catalog.message(), HasSubstr("/etc/af/atomflow.yaml:1:"));
    EXPECT_THAT(catalog.message(), HasSubstr(c.expected)) << c.yaml;
  }
}

// A prefix is a URL prefix, not a string prefix: it never matches a host that merely starts
// with the same letters, nor a URL with user information before the host.
TEST(IdentityCatalogTest, PrefixesMatchWholeHosts) {
  Result<IdentityCatalog> catalog = IdentityCatalog::Parse(
      "identities:\n  t:\n    http:\n      - url_prefix: HTTPS://Registry.Example.com/v2/\n"
      "        headers: {Authorization: {secret: s, prefix: 'Token '}}\n",
      "atomflow.yaml");
  ASSERT_TRUE(catalog.ok()) << catalog.message();
  atomflow::testing::TempDir dir;
  std::string store_path = (dir.path() / "atomflow.db").string();
  Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(store_path);
  ASSERT_TRUE(secrets.ok()) << secrets.message();
  ASSERT_TRUE((*secrets)->Set("s", kSecret).ok());

  auto headers = [&](const std::string& url) {
    Result<ResolvedHeaders> resolved = catalog->HeadersFor("t", url, secrets->get());
    EXPECT_TRUE(resolved.ok()) << resolved.message();
    return resolved.ok() ? *resolved : ResolvedHeaders();
  };
  EXPECT_EQ(headers("https://registry.example.com/v2/models?x=1"),
            (ResolvedHeaders{{"Authorization", std::string("Token ") + kSecret}}));
  EXPECT_TRUE(headers("https://registry.example.com.evil.test/v2/models").empty());
  EXPECT_TRUE(headers("https://registry.example.com@evil.test/v2/models").empty());
  EXPECT_TRUE(headers("http://registry.example.com/v2/models").empty());
  EXPECT_TRUE(headers("https://registry.example.com/v1/models").empty());
  Result<ResolvedHeaders> unknown = catalog->HeadersFor("x", "https://a/", secrets->get());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
}

TEST(IdentityCatalogTest, SecretWithALineBreakIsNotSentAsAHeader) {
  Result<IdentityCatalog> catalog = IdentityCatalog::Parse(
      "identities: {t: {http: [{url_prefix: 'https://a.example.com/', headers: "
      "{X-Key: {secret: s}}}]}}",
      "atomflow.yaml");
  ASSERT_TRUE(catalog.ok()) << catalog.message();
  atomflow::testing::TempDir dir;
  auto secrets = store::SecretStore::Open((dir.path() / "atomflow.db").string());
  ASSERT_TRUE(secrets.ok()) << secrets.message();
  ASSERT_TRUE((*secrets)->Set("s", std::string(kSecret) + "\r\nX-Injected: 1").ok());

  Result<ResolvedHeaders> headers =
      catalog->HeadersFor("t", "https://a.example.com/", secrets->get());

  ASSERT_FALSE(headers.ok());
  EXPECT_THAT(headers.message(), HasSubstr("line break"));
  EXPECT_THAT(headers.message(), Not(HasSubstr(kSecret)));
}

TEST(DatabaseSecretTest, ConnectionStringComesFromTheSecretStoreAtConnectionTime) {
  atomflow::testing::TempDir dir;
  std::string store_path = (dir.path() / "atomflow.db").string();
  std::string dsn = "postgresql://trainer:pw-7c1d@127.0.0.1:5/registry";
  Result<DatabaseCatalog> catalog =
      DatabaseCatalog::Parse("databases:\n  registry: {secret: registry-dsn}\n", "atomflow.yaml");
  ASSERT_TRUE(catalog.ok()) << catalog.message();
  Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(store_path);
  ASSERT_TRUE(secrets.ok()) << secrets.message();
  std::shared_ptr<store::SecretStore> shared = std::move(secrets).value();

  Result<std::string> before = catalog->ConnectionString("registry");
  ASSERT_FALSE(before.ok());
  EXPECT_THAT(before.message(), HasSubstr("no secret store"));
  catalog->set_secrets(shared);
  Result<std::string> unset = catalog->ConnectionString("registry");
  ASSERT_FALSE(unset.ok());
  EXPECT_THAT(unset.message(), HasSubstr("atomflow secrets set registry-dsn"));
  ASSERT_TRUE(shared->Set("registry-dsn", dsn).ok());  // set after the catalog was made

  Result<std::string> conninfo = catalog->ConnectionString("registry");
  ASSERT_TRUE(conninfo.ok()) << conninfo.message();
  EXPECT_EQ(*conninfo, dsn);
  Result<DatabaseCatalog> bad =
      DatabaseCatalog::Parse("databases:\n  registry: {secret: 'Not OK'}\n", "atomflow.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.message(), HasSubstr("database 'registry'"));
}

// The secret store: what goes in comes out, and the file on disk never holds the plaintext.
class SecretStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv("ATOMFLOW_SECRET_KEY"); }
  void TearDown() override { unsetenv("ATOMFLOW_SECRET_KEY"); }

  std::string StorePath() const { return (dir_.path() / "atomflow.db").string(); }

  std::unique_ptr<store::SecretStore> Open() {
    Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(StorePath());
    EXPECT_TRUE(secrets.ok()) << secrets.message();
    return secrets.ok() ? std::move(secrets).value() : nullptr;
  }

  atomflow::testing::TempDir dir_;
};

TEST_F(SecretStoreTest, RoundTripAcrossConnectionsWithoutPlaintextOnDisk) {
  std::unique_ptr<store::SecretStore> secrets = Open();
  ASSERT_TRUE(secrets->Set("registry-token", kSecret).ok());
  ASSERT_TRUE(secrets->Set("registry-dsn", "first").ok());
  ASSERT_TRUE(secrets->Set("registry-dsn", "postgresql://u:second-pw@db/registry").ok());

  std::unique_ptr<store::SecretStore> other = Open();  // as another process would
  Result<std::string> token = other->Get("registry-token");
  ASSERT_TRUE(token.ok()) << token.message();
  EXPECT_EQ(*token, kSecret);
  Result<std::string> dsn = other->Get("registry-dsn");
  ASSERT_TRUE(dsn.ok()) << dsn.message();
  EXPECT_EQ(*dsn, "postgresql://u:second-pw@db/registry");
  std::string bytes = StoreBytes(StorePath());
  EXPECT_THAT(bytes, HasSubstr("registry-token"));  // names are not secret
  EXPECT_THAT(bytes, Not(HasSubstr(kSecret)));
  EXPECT_THAT(bytes, Not(HasSubstr("second-pw")));
  struct stat key_file;
  ASSERT_EQ(stat((StorePath() + ".key").c_str(), &key_file), 0);
  EXPECT_EQ(key_file.st_mode & 0777, 0600u);
}

TEST_F(SecretStoreTest, ListDeleteAndNames) {
  std::unique_ptr<store::SecretStore> secrets = Open();
  ASSERT_TRUE(secrets->Set("b-secret", "2").ok());
  ASSERT_TRUE(secrets->Set("a_secret", "1").ok());

  Result<std::vector<store::SecretInfo>> list = secrets->List();
  ASSERT_TRUE(list.ok()) << list.message();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "a_secret");
  EXPECT_EQ((*list)[1].name, "b-secret");
  EXPECT_GT((*list)[0].update_time_ms, 0);
  ASSERT_TRUE(secrets->Delete("a_secret").ok());
  EXPECT_EQ(secrets->Get("a_secret").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(secrets->Delete("a_secret").code(), StatusCode::kNotFound);
  for (const std::string& bad :
       {std::string(""), std::string("Upper"), std::string(65, 'a'), std::string("a.b")}) {
    EXPECT_EQ(secrets->Set(bad, "x").code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(SecretStoreTest, AnotherKeyOrAMovedRowDoesNotOpen) {
  std::unique_ptr<store::SecretStore> secrets = Open();
  ASSERT_TRUE(secrets->Set("registry-token", kSecret).ok());
  secrets.reset();

  setenv("ATOMFLOW_SECRET_KEY", std::string(64, 'a').c_str(), 1);
  Result<std::string> wrong_key = Open()->Get("registry-token");
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_THAT(wrong_key.message(), HasSubstr("does not open"));
  EXPECT_THAT(wrong_key.message(), Not(HasSubstr(kSecret)));
  unsetenv("ATOMFLOW_SECRET_KEY");

  // The name is authenticated with the value: a row copied under another name is refused.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(StorePath().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO secrets SELECT 'stolen', nonce, ciphertext, update_time_ms "
                         "FROM secrets WHERE name = 'registry-token'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Result<std::string> moved = Open()->Get("stolen");
  ASSERT_FALSE(moved.ok());
  EXPECT_THAT(moved.message(), Not(HasSubstr(kSecret)));
}

TEST_F(SecretStoreTest, EnvironmentKeyIsUsedAndABadOneRefused) {
  setenv("ATOMFLOW_SECRET_KEY", std::string(64, 'b').c_str(), 1);
  ASSERT_TRUE(Open()->Set("registry-token", kSecret).ok());
  EXPECT_FALSE(std::filesystem::exists(StorePath() + ".key"));
  Result<std::string> token = Open()->Get("registry-token");
  ASSERT_TRUE(token.ok()) << token.message();
  EXPECT_EQ(*token, kSecret);

  setenv("ATOMFLOW_SECRET_KEY", "not-hex", 1);
  Result<std::unique_ptr<store::SecretStore>> bad = store::SecretStore::Open(StorePath());
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.message(), HasSubstr("ATOMFLOW_SECRET_KEY must hold 64 hex digits"));
  EXPECT_THAT(bad.message(), Not(HasSubstr("not-hex")));
}

TEST_F(SecretStoreTest, KeyFileOthersCanReadIsRefused) {
  ASSERT_TRUE(Open()->Set("registry-token", kSecret).ok());
  ASSERT_EQ(chmod((StorePath() + ".key").c_str(), 0644), 0);

  Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(StorePath());

  ASSERT_FALSE(secrets.ok());
  EXPECT_THAT(secrets.message(), HasSubstr("chmod 600"));
}

// `atomflow secrets set` reads the value from stdin and echoes it nowhere.
TEST_F(SecretStoreTest, SecretsCommandsNeverPrintTheValue) {
  std::string out = (dir_.path() / "out.txt").string();
  std::string err = (dir_.path() / "err.txt").string();
  std::string binary = std::string(ATOMFLOW_BINARY);
  std::string store = " --store " + StorePath() + " >>" + out + " 2>>" + err;

  ASSERT_EQ(std::system(("printf '%s\\n' '" + std::string(kSecret) + "' | " + binary +
                         " secrets set registry-token" + store)
                            .c_str()),
            0)
      << ReadBytes(err);
  WriteFile(dir_.path() / "dsn.txt", "postgresql://u:file-pw@db/x\n");
  ASSERT_EQ(std::system((binary + " secrets set registry-dsn --from-file " +
                         (dir_.path() / "dsn.txt").string() + store)
                            .c_str()),
            0);
  ASSERT_EQ(std::system((binary + " secrets list --json" + store).c_str()), 0);

  EXPECT_THAT(ReadBytes(out) + ReadBytes(err), Not(HasSubstr(kSecret)));
  EXPECT_THAT(ReadBytes(out), HasSubstr("\"registry-token\""));
  std::unique_ptr<store::SecretStore> secrets = Open();
  EXPECT_EQ(secrets->Get("registry-token").value(), kSecret);  // the final newline is dropped
  EXPECT_EQ(secrets->Get("registry-dsn").value(), "postgresql://u:file-pw@db/x");
  ASSERT_EQ(std::system((binary + " secrets delete registry-dsn" + store).c_str()), 0);
  EXPECT_EQ(secrets->Get("registry-dsn").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace atomflow::connectors
