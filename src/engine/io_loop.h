// The I/O loop: one thread that carries out effects for every execution (timers, file
// descriptors, libcurl multi, job polling). Nothing on it may block.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace atomflow::engine {

// An epoll loop on its own thread. Post() is thread safe; every other method must be called on
// the loop thread (from a posted task or a callback). Callbacks run on the loop thread.
class IoLoop {
 public:
  using TimerId = uint64_t;
  enum Events : uint32_t { kReadable = 1, kWritable = 2 };

  IoLoop();
  ~IoLoop();  // stops the thread; pending tasks and timers are dropped
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  void Start();
  void Stop();

  // Runs task on the loop thread, in posting order.
  void Post(std::function<void()> task);

  // Calls callback once after delay. Returns an id for CancelTimer.
  TimerId AddTimer(std::chrono::milliseconds delay, std::function<void()> callback);
  void CancelTimer(TimerId id);

  // Calls callback(events) whenever fd is ready for any of events (a mask of Events).
  // Watching an fd again replaces its events and callback.
  void WatchFd(int fd, uint32_t events, std::function<void(uint32_t)> callback);
  void UnwatchFd(int fd);

  bool InLoopThread() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace atomflow::engine
