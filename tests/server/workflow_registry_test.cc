// Tests of the workflow registry over a real SQLite store: deploy checks, revisions, PATCH
// semantics and the parse cache.
#include "server/workflow_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <regex>
#include <string>

namespace atomflow::server {
namespace {

using ::testing::HasSubstr;

constexpr char kSource[] = R"(main:
  params: [args]
  steps:
    - done:
        return: ${args}
)";

constexpr char kOtherSource[] = R"(main:
  steps:
    - done:
        return: 42
)";

// Two mistakes, on lines 4 and 6.
constexpr char kBrokenSource[] = R"(main:
  steps:
    - first:
        asign:
          - x: 1
    - second:
        retrun: 2
)";

DeployRequest MakeRequest(const std::string& name, const std::string& source = kSource) {
  DeployRequest request;
  request.name = name;
  request.source = source;
  request.description = "trains the model";
  request.service_account = "trainer";
  request.labels = Json{{"team", "ml"}};
  return request;
}

class WorkflowRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/workflow_registry_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    Result<std::unique_ptr<store::Store>> opened = store::OpenSqliteStore(dir_ + "/atomflow.db");
    ASSERT_TRUE(opened.ok()) << opened.message();
    store_ = std::move(opened).value();
    registry_ = std::make_unique<WorkflowRegistry>(store_.get());
  }

  void TearDown() override {
    registry_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::vector<std::string> RevisionIds(const std::string& name) {
    Result<std::vector<store::WorkflowRecord>> revisions = store_->ListRevisions(name, 0, 0);
    EXPECT_TRUE(revisions.ok()) << revisions.message();
    std::vector<std::string> ids;
    if (!revisions.ok()) return ids;
    for (const store::WorkflowRecord& record : *revisions) ids.push_back(record.revision_id);
    return ids;
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<WorkflowRegistry> registry_;
};

TEST_F(WorkflowRegistryTest, CreateStoresTheFirstRevision) {
  Result<store::WorkflowRecord> created = registry_->Create(MakeRequest("train"));
  ASSERT_TRUE(created.ok()) << created.message();
  EXPECT_TRUE(std::regex_match(created->revision_id, std::regex("000001-[0-9a-f]{3}")))
      << created->revision_id;
  EXPECT_GT(created->create_time_ms, 0);
  EXPECT_EQ(created->update_time_ms, created->create_time_ms);

  Result<store::WorkflowRecord> stored = store_->GetWorkflow("train");
  ASSERT_TRUE(stored.ok()) << stored.message();
  EXPECT_EQ(stored->source, kSource);
  EXPECT_EQ(stored->description, "trains the model");
  EXPECT_EQ(stored->service_account, "trainer");
  EXPECT_EQ(Json::parse(stored->labels), Json({{"team", "ml"}}));

  Status again = registry_->Create(MakeRequest("train", kOtherSource)).status();
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetWorkflow("train")->source, kSource);
}

TEST_F(WorkflowRegistryTest, InvalidSourceListsEveryProblemWithItsPosition) {
  Status status = registry_->Create(MakeRequest("train", kBrokenSource)).status();
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("train:4:"));
  EXPECT_THAT(status.message(), HasSubstr("train:7:"));
  EXPECT_EQ(store_->GetWorkflow("train").status().code(), StatusCode::kNotFound);
}

TEST_F(WorkflowRegistryTest, OversizedSourceSaysItsSizeAndTheLimit) {
  std::string source = std::string(kSource) + "# " + std::string(128 * 1024, 'x') + "\n";
  Status status = registry_->Create(MakeRequest("big", source)).status();
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(std::to_string(source.size()) + " bytes"));
  EXPECT_THAT(status.message(), HasSubstr("131072"));
}

TEST_F(WorkflowRegistryTest, NamesAndLabelsFollowGooglesRules) {
  for (const std::string& name : {std::string("1train"), std::string("has space"), std::string(""),
                                  std::string("semi;colon"), std::string(65, 'a')}) {
    Status status = registry_->Create(MakeRequest(name)).status();
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << name;
  }
  EXPECT_TRUE(registry_->Create(MakeRequest(std::string(64, 'a'))).ok());
  EXPECT_TRUE(registry_->Create(MakeRequest("train-v2_final")).ok());

  DeployRequest numeric = MakeRequest("labelled");
  numeric.labels = Json{{"tier", 1}};
  EXPECT_EQ(registry_->Create(numeric).status().code(), StatusCode::kInvalidArgument);
  numeric.labels = Json::array();
  EXPECT_EQ(registry_->Create(numeric).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(WorkflowRegistryTest, OnlySourceOrServiceAccountChangesMakeRevisions) {
  Result<store::WorkflowRecord> first = registry_->Create(MakeRequest("train"));
  ASSERT_TRUE(first.ok()) << first.message();

  Result<store::WorkflowRecord> described =
      registry_->Patch("train", Json{{"description", "retrains nightly"}}, {});
  ASSERT_TRUE(described.ok()) << described.message();
  EXPECT_EQ(described->revision_id, first->revision_id);
  EXPECT_EQ(described->description, "retrains nightly");
  EXPECT_EQ(store_->GetWorkflow("train", first->revision_id)->description, "retrains nightly");

  Result<store::WorkflowRecord> second =
      registry_->Patch("train", Json{{"sourceContents", kOtherSource}}, {});
  ASSERT_TRUE(second.ok()) << second.message();
  EXPECT_EQ(second->revision_id.substr(0, 7), "000002-");
  EXPECT_EQ(second->create_time_ms, first->create_time_ms);
  EXPECT_EQ(second->description, "retrains nightly");

  Result<store::WorkflowRecord> third =
      registry_->Patch("train", Json{{"serviceAccount", "nightly"}}, {});
  ASSERT_TRUE(third.ok()) << third.message();
  EXPECT_EQ(third->revision_id.substr(0, 7), "000003-");
  // The hash part names the source: the same source, the same three digits.
  EXPECT_EQ(third->revision_id.substr(7), second->revision_id.substr(7));

  EXPECT_EQ(RevisionIds("train"), (std::vector<std::string>{third->revision_id, second->revision_id,
                                                            first->revision_id}));
  EXPECT_EQ(store_->GetWorkflow("train", first->revision_id)->source, kSource);
}

TEST_F(WorkflowRegistryTest, UpdateMaskTakesOnlyItsFieldsAndClearsAbsentOnes) {
  ASSERT_TRUE(registry_->Create(MakeRequest("train")).ok());
  Json body = {{"description", "new words"}, {"sourceContents", kOtherSource}};

  Result<store::WorkflowRecord> patched = registry_->Patch("train", body, {"description"});
  ASSERT_TRUE(patched.ok()) << patched.message();
  EXPECT_EQ(patched->description, "new words");
  EXPECT_EQ(patched->source, kSource);
  EXPECT_EQ(RevisionIds("train").size(), 1u);

  // A masked field the body lacks is cleared, as Google's field masks do.
  Result<store::WorkflowRecord> cleared = registry_->Patch("train", Json::object(), {"labels"});
  ASSERT_TRUE(cleared.ok()) << cleared.message();
  EXPECT_EQ(Json::parse(cleared->labels), Json::object());

  Result<store::WorkflowRecord> snake =
      registry_->Patch("train", Json{{"sourceContents", kOtherSource}}, {"source_contents"});
  ASSERT_TRUE(snake.ok()) << snake.message();
  EXPECT_EQ(snake->source, kOtherSource);
}

TEST_F(WorkflowRegistryTest, RejectedPatchesChangeNothing) {
  Result<store::WorkflowRecord> first = registry_->Create(MakeRequest("train"));
  ASSERT_TRUE(first.ok()) << first.message();

  auto code = [&](const Json& body, const std::vector<std::string>& mask) {
    return registry_->Patch("train", body, mask).status().code();
  };
  EXPECT_EQ(code(Json{{"description", "x"}}, {"colour"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Json{{"colour", "blue"}}, {}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Json{{"description", 7}}, {}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Json{{"labels", {{"a", true}}}}, {}), StatusCode::kInvalidArgument);
  Status broken = registry_->Patch("train", Json{{"sourceContents", kBrokenSource}}, {}).status();
  EXPECT_EQ(broken.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(broken.message(), HasSubstr("train:4:"));
  EXPECT_EQ(registry_->Patch("nope", Json{{"description", "x"}}, {}).status().code(),
            StatusCode::kNotFound);

  Result<store::WorkflowRecord> stored = store_->GetWorkflow("train");
  ASSERT_TRUE(stored.ok()) << stored.message();
  EXPECT_EQ(stored->description, first->description);
  EXPECT_EQ(stored->source, kSource);
  EXPECT_EQ(stored->update_time_ms, first->update_time_ms);
  EXPECT_EQ(RevisionIds("train").size(), 1u);
}

TEST_F(WorkflowRegistryTest, PatchingNothingMakesNoRevision) {
  Result<store::WorkflowRecord> first = registry_->Create(MakeRequest("train"));
  ASSERT_TRUE(first.ok()) << first.message();

  // The resource sent back as read, output-only fields included, changes nothing.
  Json same = {{"name", "workflows/train"},
               {"revisionId", first->revision_id},
               {"state", "ACTIVE"},
               {"sourceContents", kSource},
               {"description", first->description},
               {"serviceAccount", "trainer"},
               {"labels", {{"team", "ml"}}}};
  Result<store::WorkflowRecord> patched = registry_->Patch("train", same, {});
  ASSERT_TRUE(patched.ok()) << patched.message();
  EXPECT_EQ(patched->revision_id, first->revision_id);
  EXPECT_EQ(patched->update_time_ms, first->update_time_ms);
  EXPECT_TRUE(registry_->Patch("train", Json::object(), {}).ok());
  EXPECT_EQ(RevisionIds("train").size(), 1u);
  EXPECT_EQ(store_->GetWorkflow("train")->update_time_ms, first->update_time_ms);
}

TEST_F(WorkflowRegistryTest, DeleteRemovesTheWorkflowAndItsRevisions) {
  ASSERT_TRUE(registry_->Create(MakeRequest("train")).ok());
  ASSERT_TRUE(registry_->Patch("train", Json{{"sourceContents", kOtherSource}}, {}).ok());

  ASSERT_TRUE(registry_->Delete("train").ok());
  EXPECT_EQ(store_->GetWorkflow("train").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(registry_->Delete("train").code(), StatusCode::kNotFound);

  Result<store::WorkflowRecord> again = registry_->Create(MakeRequest("train", kOtherSource));
  ASSERT_TRUE(again.ok()) << again.message();
  EXPECT_EQ(again->revision_id.substr(0, 7), "000001-");
  EXPECT_EQ(RevisionIds("train").size(), 1u);
}

TEST_F(WorkflowRegistryTest, LoadParsesEachRevisionOnce) {
  Result<store::WorkflowRecord> first = registry_->Create(MakeRequest("train"));
  ASSERT_TRUE(first.ok()) << first.message();
  Result<store::WorkflowRecord> second =
      registry_->Patch("train", Json{{"sourceContents", kOtherSource}}, {});
  ASSERT_TRUE(second.ok()) << second.message();

  Result<std::shared_ptr<const lang::Workflow>> a = registry_->Load(*first);
  Result<std::shared_ptr<const lang::Workflow>> b =
      registry_->Load(*store_->GetWorkflow("train", first->revision_id));
  Result<std::shared_ptr<const lang::Workflow>> c = registry_->Load(*second);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_NE(a->get(), c->get());
  EXPECT_EQ((*a)->source, kSource);
  EXPECT_EQ((*c)->source, kOtherSource);

  // A registry that never saw the revision (another process deployed it) parses it on demand.
  WorkflowRegistry fresh(store_.get());
  Result<std::shared_ptr<const lang::Workflow>> loaded = fresh.Load(*second);
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  EXPECT_EQ((*loaded)->main().name, "main");
}

}  // namespace
}  // namespace atomflow::server
