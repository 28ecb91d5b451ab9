// Tests of the I/O loop: posted tasks, timers and watched file descriptors on a real thread.
#include "engine/io_loop.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace atomflow::engine {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;

// Runs fn on the loop thread and returns what it returned, waiting for it.
template <typename Fn>
auto RunOnLoop(IoLoop& loop, Fn fn) {
  std::packaged_task<decltype(fn())()> task(std::move(fn));
  auto result = task.get_future();
  loop.Post([&task] { task(); });
  return result.get();
}

TEST(IoLoopTest, PostedTasksRunOnTheLoopThreadInOrder) {
  IoLoop loop;
  loop.Start();
  std::vector<int> order;
  std::promise<void> done;

  for (int i = 0; i < 100; ++i) {
    loop.Post([&, i] {
      EXPECT_TRUE(loop.InLoopThread());
      order.push_back(i);
      if (i == 99) done.set_value();
    });
  }
  done.get_future().wait();
  loop.Stop();

  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
  EXPECT_FALSE(loop.InLoopThread());
}

TEST(IoLoopTest, PostFromManyThreadsRunsEveryTask) {
  IoLoop loop;
  loop.Start();
  constexpr int kThreads = 8;
  constexpr int kTasksPerThread = 1000;
  int64_t sum = 0;  // touched only on the loop thread

  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&loop, &sum] {
      for (int i = 1; i <= kTasksPerThread; ++i) loop.Post([&sum, i] { sum += i; });
    });
  }
  for (auto& poster : posters) poster.join();
  int64_t total = RunOnLoop(loop, [&sum] { return sum; });

  EXPECT_EQ(total, int64_t{kThreads} * kTasksPerThread * (kTasksPerThread + 1) / 2);
}

TEST(IoLoopTest, TimersFireInDeadlineOrder) {
  IoLoop loop;
  loop.Start();
  std::vector<std::string> fired;
  std::promise<void> done;

  loop.Post([&] {
    loop.AddTimer(milliseconds(30), [&] { fired.push_back("30ms"); });
    loop.AddTimer(milliseconds(10), [&] { fired.push_back("10ms"); });
    loop.AddTimer(milliseconds(0), [&] { fired.push_back("0ms-a"); });
    loop.AddTimer(milliseconds(0), [&] { fired.push_back("0ms-b"); });
    loop.AddTimer(milliseconds(20), [&] { fired.push_back("20ms"); });
    loop.AddTimer(milliseconds(40), [&] { done.set_value(); });
  });
  done.get_future().wait();
  loop.Stop();

  EXPECT_THAT(fired, ElementsAre("0ms-a", "0ms-b", "10ms", "20ms", "30ms"));
}

TEST(IoLoopTest, CancelledTimerNeverFires) {
  IoLoop loop;
  loop.Start();
  std::vector<std::string> fired;
  std::promise<void> done;

  loop.Post([&] {
    IoLoop::TimerId doomed = loop.AddTimer(milliseconds(5), [&] { fired.push_back("doomed"); });
    loop.AddTimer(milliseconds(1), [&, doomed] {
      fired.push_back("canceller");
      loop.CancelTimer(doomed);
    });
    loop.AddTimer(milliseconds(20), [&] { done.set_value(); });
    IoLoop::TimerId never = loop.AddTimer(milliseconds(0), [&] { fired.push_back("never"); });
    loop.CancelTimer(never);
  });
  done.get_future().wait();
  loop.Stop();

  EXPECT_THAT(fired, ElementsAre("canceller"));
}

TEST(IoLoopTest, TimerCallbackCanAddAnotherTimer) {
  IoLoop loop;
  loop.Start();
  int ticks = 0;
  std::promise<void> done;
  std::function<void()> tick = [&] {
    if (++ticks == 5) {
      done.set_value();
      return;
    }
    loop.AddTimer(milliseconds(0), tick);
  };

  loop.Post([&] { loop.AddTimer(milliseconds(0), tick); });
  done.get_future().wait();
  loop.Stop();

  EXPECT_EQ(ticks, 5);
}

// A pipe's read end becomes readable when bytes arrive; the callback reads them and stops
// watching once it has seen the end of the stream.
TEST(IoLoopTest, WatchFdReportsReadableAndEndOfStream) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  IoLoop loop;
  loop.Start();
  std::string received;
  std::promise<void> closed;

  loop.Post([&] {
    loop.WatchFd(fds[0], IoLoop::kReadable, [&](uint32_t events) {
      EXPECT_EQ(events, IoLoop::kReadable);
      char buffer[64];
      ssize_t n = read(fds[0], buffer, sizeof(buffer));
      if (n > 0) received.append(buffer, n);
      if (n == 0) {
        loop.UnwatchFd(fds[0]);
        closed.set_value();
      }
    });
  });
  ASSERT_EQ(write(fds[1], "hello ", 6), 6);
  ASSERT_EQ(write(fds[1], "world", 5), 5);
  close(fds[1]);
  closed.get_future().wait();
  loop.Stop();
  close(fds[0]);

  EXPECT_EQ(received, "hello world");
}

TEST(IoLoopTest, WatchFdReportsWritableAndCanBeReplaced) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  IoLoop loop;
  loop.Start();
  std::promise<std::string> seen;

  loop.Post([&] {
    loop.WatchFd(fds[1], IoLoop::kWritable, [&](uint32_t events) {
      EXPECT_EQ(events, IoLoop::kWritable);
      loop.WatchFd(fds[1], IoLoop::kWritable, [&](uint32_t) {
        loop.UnwatchFd(fds[1]);
        seen.set_value("replacement");
      });
    });
  });
  std::string result = seen.get_future().get();
  loop.Stop();
  close(fds[0]);
  close(fds[1]);

  EXPECT_EQ(result, "replacement");
}

TEST(IoLoopTest, DestroyWithoutStartAndWithPendingWork) {
  { IoLoop never_started; }

  IoLoop loop;
  loop.Start();
  RunOnLoop(loop, [&] { return loop.AddTimer(std::chrono::hours(1), [] {}); });
  loop.Stop();
  loop.Post([] { ADD_FAILURE() << "a task posted after Stop must not run"; });
}

}  // namespace
}  // namespace atomflow::engine
