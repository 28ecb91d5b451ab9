// Tests of staged files on real files in a temp dir: stage, prepare, publish, discard.
#include "connectors/staged_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace atomflow::connectors {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class StagedFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/atomflow-staged-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    root_ = dir;
    staging_ = root_ + "/staging";
  }

  void TearDown() override { fs::remove_all(root_); }

  static std::string ReadFile(const std::string& path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  std::string root_;
  std::string staging_;
};

TEST_F(StagedFilesTest, PublishMakesTheTargetAppearWithTheContent) {
  std::string target = root_ + "/models/run-7/model.bin";

  Result<StagedFile> staged = StagedFiles::Stage(staging_, target, "weights");
  ASSERT_TRUE(staged.ok()) << staged.message();
  EXPECT_FALSE(fs::exists(target));
  ASSERT_TRUE(StagedFiles::Prepare(*staged).ok());
  Status published = StagedFiles::Publish(*staged);

  ASSERT_TRUE(published.ok()) << published.message();
  EXPECT_EQ(ReadFile(target), "weights");
  EXPECT_EQ(staged->size, 7u);
  EXPECT_FALSE(fs::exists(staged->staged_path));
}

TEST_F(StagedFilesTest, PublishReplacesAnExistingTarget) {
  std::string target = root_ + "/report.txt";
  std::ofstream(target) << "old report";

  Result<StagedFile> staged = StagedFiles::Stage(staging_, target, "new");
  ASSERT_TRUE(staged.ok()) << staged.message();
  ASSERT_TRUE(StagedFiles::Publish(*staged).ok());

  EXPECT_EQ(ReadFile(target), "new");
}

TEST_F(StagedFilesTest, DiscardLeavesNothingBehind) {
  std::string target = root_ + "/out/data.csv";

  Result<StagedFile> staged = StagedFiles::Stage(staging_, target, "a,b\n");
  ASSERT_TRUE(staged.ok()) << staged.message();
  ASSERT_TRUE(StagedFiles::Discard(*staged).ok());
  Status again = StagedFiles::Discard(*staged);

  EXPECT_TRUE(again.ok()) << again.message();
  EXPECT_FALSE(fs::exists(target));
  EXPECT_TRUE(fs::is_empty(staging_));
}

TEST_F(StagedFilesTest, PublishingTwiceSucceeds) {
  std::string target = root_ + "/model.bin";

  Result<StagedFile> staged = StagedFiles::Stage(staging_, target, "weights");
  ASSERT_TRUE(staged.ok()) << staged.message();
  ASSERT_TRUE(StagedFiles::Publish(*staged).ok());
  Status again = StagedFiles::Publish(*staged);

  EXPECT_TRUE(again.ok()) << again.message();
  EXPECT_EQ(ReadFile(target), "weights");
}

TEST_F(StagedFilesTest, PublishFailsWhenTheStagedFileIsGoneAndTheTargetIsNotThere) {
  Result<StagedFile> staged = StagedFiles::Stage(staging_, root_ + "/lost.bin", "weights");
  ASSERT_TRUE(staged.ok()) << staged.message();
  ASSERT_TRUE(StagedFiles::Discard(*staged).ok());

  Status published = StagedFiles::Publish(*staged);

  EXPECT_FALSE(published.ok());
  EXPECT_THAT(published.message(), HasSubstr("is gone"));
}

// A target below a regular file passed its prepare and then failed every publish: the
// transaction was decided COMMIT and phase two retried forever.
TEST_F(StagedFilesTest, PrepareFailsWhenTheTargetIsBelowARegularFile) {
  std::ofstream(root_ + "/report.txt") << "a file, not a folder";
  std::string target = root_ + "/report.txt/models/model.bin";
  Result<StagedFile> staged = StagedFiles::Stage(staging_, target, "weights");
  ASSERT_TRUE(staged.ok()) << staged.message();

  Status prepared = StagedFiles::Prepare(*staged);

  ASSERT_FALSE(prepared.ok());
  EXPECT_EQ(prepared.message(),
            "cannot publish to " + target + ": " + root_ + "/report.txt is not a directory");
  EXPECT_FALSE(fs::exists(root_ + "/report.txt/models"));
}

TEST_F(StagedFilesTest, PrepareFailsWhenTheTargetIsADirectory) {
  fs::create_directories(root_ + "/models");
  Result<StagedFile> staged = StagedFiles::Stage(staging_, root_ + "/models", "weights");
  ASSERT_TRUE(staged.ok()) << staged.message();

  Status prepared = StagedFiles::Prepare(*staged);

  ASSERT_FALSE(prepared.ok());
  EXPECT_THAT(prepared.message(), HasSubstr(root_ + "/models: it is a directory"));
}

TEST_F(StagedFilesTest, PrepareAcceptsATargetWhoseFoldersDoNotExistYet) {
  std::string target = root_ + "/a/b/c/model.bin";
  Result<StagedFile> staged = StagedFiles::Stage(staging_, target, "weights");
  ASSERT_TRUE(staged.ok()) << staged.message();

  ASSERT_TRUE(StagedFiles::Prepare(*staged).ok());
  EXPECT_FALSE(fs::exists(root_ + "/a"));  // folders appear at the publish, not before
  ASSERT_TRUE(StagedFiles::Publish(*staged).ok());

  EXPECT_EQ(ReadFile(target), "weights");
}

TEST_F(StagedFilesTest, StagesOfTheSameTargetDoNotCollide) {
  std::string target = root_ + "/model.bin";

  Result<StagedFile> first = StagedFiles::Stage(staging_, target, "first");
  Result<StagedFile> second = StagedFiles::Stage(staging_, target, "second");

  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(first->staged_path, second->staged_path);
  EXPECT_EQ(ReadFile(first->staged_path), "first");
  EXPECT_EQ(ReadFile(second->staged_path), "second");
}

TEST_F(StagedFilesTest, StageCopyPublishesACopyOfTheSource) {
  std::string source = root_ + "/trained.bin";
  std::ofstream(source) << "trained weights";
  std::string target = root_ + "/registry/model.bin";

  Result<StagedFile> staged = StagedFiles::StageCopy(staging_, target, source);
  ASSERT_TRUE(staged.ok()) << staged.message();
  ASSERT_TRUE(StagedFiles::Publish(*staged).ok());

  EXPECT_EQ(ReadFile(target), "trained weights");
  EXPECT_EQ(staged->size, 15u);
  EXPECT_EQ(ReadFile(source), "trained weights");
}

TEST_F(StagedFilesTest, StageCopyOfAMissingSourceFails) {
  Result<StagedFile> staged =
      StagedFiles::StageCopy(staging_, root_ + "/model.bin", root_ + "/absent");

  EXPECT_FALSE(staged.ok());
  EXPECT_THAT(staged.message(), HasSubstr("cannot open " + root_ + "/absent"));
  EXPECT_TRUE(fs::is_empty(staging_));
}

TEST_F(StagedFilesTest, PublishAcrossFilesystemsCopiesIntoPlace) {
  // /dev/shm is a tmpfs on Linux, so a rename from there into the temp dir crosses devices.
  if (access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "no writable /dev/shm";
  std::string shm_staging = "/dev/shm/atomflow-staged-" + std::to_string(getpid());
  std::string target = root_ + "/cross/model.bin";

  Result<StagedFile> staged = StagedFiles::Stage(shm_staging, target, "far away");
  ASSERT_TRUE(staged.ok()) << staged.message();
  Status published = StagedFiles::Publish(*staged);
  fs::remove_all(shm_staging);

  ASSERT_TRUE(published.ok()) << published.message();
  EXPECT_EQ(ReadFile(target), "far away");
  EXPECT_FALSE(fs::exists(staged->staged_path));
  EXPECT_EQ(std::distance(fs::directory_iterator(root_ + "/cross"), fs::directory_iterator()), 1);
}

TEST_F(StagedFilesTest, RoundTripsThroughTheJournalValue) {
  StagedFile file{"/s/model.bin.1.staged", "/t/model.bin", 42};

  Result<StagedFile> back = StagedFile::FromValue(file.ToValue());

  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->staged_path, file.staged_path);
  EXPECT_EQ(back->target_path, file.target_path);
  EXPECT_EQ(back->size, 42u);
  EXPECT_FALSE(StagedFile::FromValue(Value(Map{{"size", Value("x")}})).ok());
}

}  // namespace
}  // namespace atomflow::connectors
