// Operator logs: JSON lines an aggregator can parse, with an event's ids as fields.
#include "common/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace atomflow::log {
namespace {

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(LogTest, JsonFormatWritesOneObjectPerLineWithEventFields) {
  Init("info", "json");
  ::testing::internal::CaptureStderr();
  Event("execution.finished", {{"execution", "e-1"}, {"state", "FAILED"}, {"steps", 3}});
  Info("recovered \"{}\"\nexecutions", 2);
  Debug("not shown at info");
  std::string text = ::testing::internal::GetCapturedStderr();
  Init("info", "text");

  std::vector<nlohmann::json> lines = JsonLines(text);
  ASSERT_EQ(lines.size(), 2u) << text;
  EXPECT_EQ(lines[0]["level"], "info");
  EXPECT_EQ(lines[0]["message"], "execution.finished");
  EXPECT_EQ(lines[0]["execution"], "e-1");
  EXPECT_EQ(lines[0]["state"], "FAILED");
  EXPECT_EQ(lines[0]["steps"], 3);
  EXPECT_EQ(lines[0]["time"].get<std::string>().back(), 'Z');
  EXPECT_EQ(lines[1]["message"], "recovered \"2\"\nexecutions");
  EXPECT_FALSE(lines[1].contains("execution"));
}

TEST(LogTest, TextFormatWritesEventFieldsAsKeyValuePairs) {
  Init("info", "text");
  ::testing::internal::CaptureStderr();
  Event("transaction.aborted", {{"gid", "e-1:pay#1"}, {"execution", "e 1"}});
  std::string text = ::testing::internal::GetCapturedStderr();

  EXPECT_NE(text.find("transaction.aborted gid=e-1:pay#1 execution=\"e 1\""), std::string::npos)
      << text;
}

}  // namespace
}  // namespace atomflow::log
