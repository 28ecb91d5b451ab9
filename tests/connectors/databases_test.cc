// DatabaseCatalog: atomflow.yaml's named databases, secret_env, the ATOMFLOW_DATABASE_*
// overrides, and messages that say where they looked without repeating a connection string.
#include "connectors/databases.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>

namespace atomflow::connectors {
namespace {

const char kConfig[] = R"(
databases:
  registry: "postgresql://app:file-pw@db.example/registry"
  audit: {secret_env: AUDIT_DB_SECRET}
)";

TEST(DatabasesTest, ResolvesNamesFromTheFileTheSecretAndTheOverride) {
  Result<DatabaseCatalog> catalog = DatabaseCatalog::Parse(kConfig, "/etc/af/atomflow.yaml");
  ASSERT_TRUE(catalog.ok()) << catalog.message();

  unsetenv("ATOMFLOW_DATABASE_REGISTRY");
  Result<std::string> registry = catalog->ConnectionString("registry");
  ASSERT_TRUE(registry.ok()) << registry.message();
  EXPECT_EQ(*registry, "postgresql://app:file-pw@db.example/registry");

  setenv("ATOMFLOW_DATABASE_REGISTRY", "postgresql://override/registry", 1);
  EXPECT_EQ(*catalog->ConnectionString("registry"), "postgresql://override/registry");
  unsetenv("ATOMFLOW_DATABASE_REGISTRY");

  unsetenv("AUDIT_DB_SECRET");
  Result<std::string> audit = catalog->ConnectionString("audit");
  ASSERT_FALSE(audit.ok());
  EXPECT_NE(audit.message().find("AUDIT_DB_SECRET"), std::string::npos) << audit.message();
  setenv("AUDIT_DB_SECRET", "postgresql://audit-secret/audit", 1);
  EXPECT_EQ(*catalog->ConnectionString("audit"), "postgresql://audit-secret/audit");
  unsetenv("AUDIT_DB_SECRET");
}

TEST(DatabasesTest, UnknownNameSaysWhichAndWhereWithoutSecrets) {
  Result<DatabaseCatalog> catalog = DatabaseCatalog::Parse(kConfig, "/etc/af/atomflow.yaml");
  ASSERT_TRUE(catalog.ok());
  Result<std::string> unknown = catalog->ConnectionString("ml-features");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.message().find("'ml-features'"), std::string::npos) << unknown.message();
  EXPECT_NE(unknown.message().find("/etc/af/atomflow.yaml"), std::string::npos);
  EXPECT_NE(unknown.message().find("ATOMFLOW_DATABASE_ML_FEATURES"), std::string::npos);
  EXPECT_EQ(unknown.message().find("file-pw"), std::string::npos);
}

TEST(DatabasesTest, NamesIncludeDatabasesOnlyTheEnvironmentDefines) {
  Result<DatabaseCatalog> catalog = DatabaseCatalog::Parse(kConfig, "atomflow.yaml");
  ASSERT_TRUE(catalog.ok());
  setenv("ATOMFLOW_DATABASE_WAREHOUSE", "postgresql://warehouse/w", 1);
  setenv("ATOMFLOW_DATABASE_REGISTRY", "postgresql://override/registry", 1);
  std::vector<std::string> names = catalog->Names();
  unsetenv("ATOMFLOW_DATABASE_WAREHOUSE");
  unsetenv("ATOMFLOW_DATABASE_REGISTRY");
  EXPECT_EQ(names, (std::vector<std::string>{"audit", "registry", "warehouse"}));
}

TEST(DatabasesTest, MissingFileIsEmptyUnlessRequiredAndBadShapesAreErrors) {
  Result<DatabaseCatalog> absent = DatabaseCatalog::Load("/nonexistent/atomflow.yaml", false);
  ASSERT_TRUE(absent.ok());
  Result<DatabaseCatalog> required = DatabaseCatalog::Load("/nonexistent/atomflow.yaml", true);
  ASSERT_FALSE(required.ok());
  EXPECT_NE(required.message().find("/nonexistent/atomflow.yaml"), std::string::npos);

  Result<DatabaseCatalog> bad = DatabaseCatalog::Parse("databases: {x: [1, 2]}", "a.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'x'"), std::string::npos) << bad.message();
  EXPECT_FALSE(DatabaseCatalog::Parse("databases: [1]", "a.yaml").ok());
  EXPECT_FALSE(DatabaseCatalog::Parse("databases: {x: 'a", "a.yaml").ok());
}

TEST(DatabasesTest, SqlPoolSizeDefaultsAndRejectsBadValuesByName) {
  Result<DatabaseCatalog> plain = DatabaseCatalog::Parse(kConfig, "a.yaml");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->pool_size(), DatabaseCatalog::kDefaultPoolSize);

  Result<DatabaseCatalog> sized = DatabaseCatalog::Parse("sql:\n  pool_size: 8\n", "a.yaml");
  ASSERT_TRUE(sized.ok()) << sized.message();
  EXPECT_EQ(sized->pool_size(), 8);

  for (const char* bad : {"0", "-3", "2000", "many", "1.5", "[4]"}) {
    Result<DatabaseCatalog> refused =
        DatabaseCatalog::Parse(std::string("sql: {pool_size: ") + bad + "}", "/etc/a.yaml");
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_NE(refused.message().find("/etc/a.yaml:1:18: sql.pool_size must be an integer from 1"),
              std::string::npos)
        << refused.message();
  }
  Result<DatabaseCatalog> typo = DatabaseCatalog::Parse("sql: {poolsize: 4}", "a.yaml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.message().find("'poolsize'"), std::string::npos) << typo.message();
}

// A misspelled section (`databses:`) was accepted and left every database unknown, with no
// word on why.
TEST(DatabasesTest, AnUnknownSectionIsRefusedWithItsPosition) {
  Result<DatabaseCatalog> typo =
      DatabaseCatalog::Parse("sql: {pool_size: 4}\ndatabses:\n  registry: host=db\n", "a.yaml");

  ASSERT_FALSE(typo.ok());
  EXPECT_EQ(typo.message(),
            "a.yaml:2:1: unknown section 'databses' (the sections are databases, identities "
            "and sql)");
}

// `databases: {registry: 5}` was taken for a connection string and failed only when a step
// first used it.
TEST(DatabasesTest, AValueThatIsNoConnectionStringIsRefusedWithoutQuotingIt) {
  Result<DatabaseCatalog> number = DatabaseCatalog::Parse("databases:\n  registry: 5\n", "a.yaml");
  Result<DatabaseCatalog> word =
      DatabaseCatalog::Parse("databases:\n  registry: 'hunter2 password'\n", "a.yaml");

  ASSERT_FALSE(number.ok());
  EXPECT_EQ(number.message().substr(0, 70),
            "a.yaml:2:13: database 'registry' is not a PostgreSQL connection string");
  ASSERT_FALSE(word.ok());
  EXPECT_EQ(word.message().find("hunter2"), std::string::npos) << word.message();
  EXPECT_TRUE(
      DatabaseCatalog::Parse("databases: {a: 'host=db dbname=x', b: 'postgresql://db/x'}", "a.yaml")
          .ok());
}

TEST(DatabasesTest, YamlErrorsSayLineAndColumn) {
  Result<DatabaseCatalog> broken =
      DatabaseCatalog::Parse("databases:\n  registry: {host: db\n", "a.yaml");

  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.message(), "a.yaml:3:1: not valid YAML: end of map flow not found");
}

}  // namespace
}  // namespace atomflow::connectors
