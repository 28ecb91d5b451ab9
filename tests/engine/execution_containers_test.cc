// The small containers an Execution keeps per waiting execution: FifoQueue and LazyContainer.
#include <gtest/gtest.h>

#include <string>
#include <unordered_map>
#include <unordered_set>

#include "engine/execution.h"

namespace atomflow::engine {
namespace {

TEST(FifoQueueTest, HandsItemsBackInOrderAndReusesItsStorage) {
  FifoQueue<int> queue;
  EXPECT_TRUE(queue.empty());
  queue.push_back(1);
  queue.push_back(2);
  EXPECT_EQ(queue.front(), 1);
  queue.pop_front();
  queue.push_back(3);
  EXPECT_EQ(queue.front(), 2);
  queue.pop_front();
  EXPECT_EQ(queue.front(), 3);
  queue.pop_front();
  EXPECT_TRUE(queue.empty());

  queue.push_back(4);
  EXPECT_EQ(queue.front(), 4);
  queue.Release();  // not empty: keeps its item
  EXPECT_EQ(queue.front(), 4);
  queue.pop_front();
  queue.Release();
  EXPECT_TRUE(queue.empty());
  queue.push_back(5);
  EXPECT_EQ(queue.front(), 5);
}

TEST(LazyContainerTest, AnswersLikeAnEmptyContainerUntilTheFirstInsertion) {
  LazyContainer<std::unordered_map<std::string, std::string>> map;
  EXPECT_TRUE(map.empty());
  EXPECT_EQ(map.count("a"), 0u);
  EXPECT_TRUE(map.find("a") == map.end());
  EXPECT_THROW(map.at("a"), std::out_of_range);

  map["a"] = "1";
  EXPECT_FALSE(map.empty());
  EXPECT_EQ(map.count("a"), 1u);
  ASSERT_TRUE(map.find("a") != map.end());
  EXPECT_EQ(map.find("a")->second, "1");
  EXPECT_EQ(map.at("a"), "1");
  EXPECT_TRUE(map.find("b") == map.end());

  LazyContainer<std::unordered_set<std::string>> set;
  EXPECT_EQ(set.count("r1"), 0u);
  EXPECT_TRUE(set.insert("r1").second);
  EXPECT_FALSE(set.insert(std::string("r1")).second);
  EXPECT_EQ(set.count("r1"), 1u);
}

}  // namespace
}  // namespace atomflow::engine
