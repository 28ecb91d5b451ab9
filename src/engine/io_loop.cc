// The I/O loop: epoll for file descriptors, an eventfd that wakes it for posted tasks, and a
// timer heap whose earliest deadline becomes the epoll_wait timeout.
#include "engine/io_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace atomflow::engine {

namespace {

using Clock = std::chrono::steady_clock;

// Setting up epoll or the eventfd fails only when the process is out of descriptors or
// memory; the loop cannot work at all then, so this aborts with the reason.
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "atomflow: IoLoop: %s failed: %s\n", what, std::strerror(errno));
  std::abort();
}

uint32_t ToEpollEvents(uint32_t events) {
  uint32_t epoll_events = 0;
  if (events & IoLoop::kReadable) epoll_events |= EPOLLIN | EPOLLRDHUP;
  if (events & IoLoop::kWritable) epoll_events |= EPOLLOUT;
  return epoll_events;
}

// An error or hang-up is reported as every watched event, so the callback finds out by
// reading or writing, as it would on a plain socket.
uint32_t FromEpollEvents(uint32_t epoll_events, uint32_t watched) {
  uint32_t events = 0;
  if (epoll_events & (EPOLLIN | EPOLLRDHUP)) events |= IoLoop::kReadable;
  if (epoll_events & EPOLLOUT) events |= IoLoop::kWritable;
  if (epoll_events & (EPOLLERR | EPOLLHUP)) events |= watched;
  return events & watched;
}

}  // namespace

// Everything the loop owns. The posted queue is shared with other threads under mutex;
// timers and watches belong to the loop thread (or to the caller while the loop is not
// running).
struct IoLoop::State {
  struct Timer {
    Clock::time_point deadline;
    TimerId id;
    // The heap's top is the earliest deadline; ids break ties so equal deadlines fire in the
    // order they were added.
    bool operator>(const Timer& other) const {
      return deadline != other.deadline ? deadline > other.deadline : id > other.id;
    }
  };

  // A watched fd. The generation travels in epoll's user data, so an event that was queued
  // for an fd before it was unwatched and reused is recognised as stale and dropped.
  struct Watch {
    uint32_t events = 0;
    uint32_t generation = 0;
    std::shared_ptr<std::function<void(uint32_t)>> callback;
  };

  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread thread;
  // Set by the loop thread itself, so InLoopThread() is right even before Start() returns.
  std::atomic<std::thread::id> loop_thread_id;
  std::atomic<bool> stopping{false};
  std::atomic<bool> running{false};

  std::mutex posted_mutex;
  std::vector<std::function<void()>> posted;

  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timer_heap;
  // Live timers; a cancelled timer leaves its heap entry behind, skipped when it surfaces.
  std::unordered_map<TimerId, std::function<void()>> timers;
  TimerId next_timer_id = 1;

  std::unordered_map<int, Watch> watches;
  uint32_t next_generation = 1;

  void Run();
  int NextTimeoutMs();
  void RunPosted();
  void RunDueTimers();
  void Dispatch(const epoll_event& event);
  void Wake();
  void Register(int fd, epoll_event event, bool is_new);
};

// Adds or modifies fd's registration. The map and epoll can disagree when a watched fd was
// closed and its number reused without UnwatchFd (closing removes it from epoll), so each
// operation falls back to the other. Watching an fd epoll refuses (a regular file, a closed
// fd) is a programming error.
void IoLoop::State::Register(int fd, epoll_event event, bool is_new) {
  int op = is_new ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl(epoll_fd, op, fd, &event) == 0) return;
  if (errno != EEXIST && errno != ENOENT) Die("epoll_ctl(watch)");

  op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(epoll_fd, op, fd, &event) != 0) Die("epoll_ctl(watch)");
}

void IoLoop::State::Wake() {
  uint64_t one = 1;
  // The eventfd counter cannot overflow in practice; a failed write still leaves it readable.
  [[maybe_unused]] ssize_t written = write(wake_fd, &one, sizeof(one));
}

void IoLoop::State::Run() {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  loop_thread_id.store(std::this_thread::get_id());
  while (!stopping.load()) {
    int count = epoll_wait(epoll_fd, events, kMaxEvents, NextTimeoutMs());
    if (count < 0 && errno != EINTR) Die("epoll_wait");

    for (int i = 0; i < count && !stopping.load(); ++i) Dispatch(events[i]);

    if (!stopping.load()) RunDueTimers();
  }
}

// Milliseconds until the earliest live timer, rounded up so the loop never wakes just
// before a deadline and spins; -1 (wait forever) without timers.
int IoLoop::State::NextTimeoutMs() {
  while (!timer_heap.empty() && !timers.contains(timer_heap.top().id)) timer_heap.pop();
  if (timer_heap.empty()) return -1;

  auto remaining = timer_heap.top().deadline - Clock::now();
  if (remaining <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(remaining).count();
  return static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

void IoLoop::State::RunPosted() {
  uint64_t counter;
  [[maybe_unused]] ssize_t got = read(wake_fd, &counter, sizeof(counter));

  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(posted_mutex);
    tasks.swap(posted);
  }
  for (auto& task : tasks) {
    if (stopping.load()) return;
    task();
  }
}

// Fires the timers that were due when this round began. A timer added by a callback with
// zero delay waits for the next round, so a callback that re-arms itself cannot starve fds.
void IoLoop::State::RunDueTimers() {
  const Clock::time_point now = Clock::now();
  const TimerId first_unseen = next_timer_id;
  while (!timer_heap.empty() && !stopping.load()) {
    Timer top = timer_heap.top();
    if (top.deadline > now || top.id >= first_unseen) break;
    timer_heap.pop();

    auto it = timers.find(top.id);
    if (it == timers.end()) continue;  // cancelled
    std::function<void()> callback = std::move(it->second);
    timers.erase(it);
    callback();
  }
}

void IoLoop::State::Dispatch(const epoll_event& event) {
  const int fd = static_cast<int>(event.data.u64 & 0xffffffffu);
  const uint32_t generation = static_cast<uint32_t>(event.data.u64 >> 32);
  if (fd == wake_fd) {
    RunPosted();
    return;
  }

  auto it = watches.find(fd);
  if (it == watches.end() || it->second.generation != generation) return;  // stale event
  uint32_t ready = FromEpollEvents(event.events, it->second.events);
  if (ready == 0) return;

  // The callback may unwatch its own fd, which destroys the map entry; keep it alive.
  auto callback = it->second.callback;
  (*callback)(ready);
}

IoLoop::IoLoop() : state_(std::make_unique<State>()) {
  state_->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (state_->epoll_fd < 0) Die("epoll_create1");
  state_->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state_->wake_fd < 0) Die("eventfd");

  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = static_cast<uint32_t>(state_->wake_fd);
  if (epoll_ctl(state_->epoll_fd, EPOLL_CTL_ADD, state_->wake_fd, &event) != 0) Die("epoll_ctl");
}

IoLoop::~IoLoop() {
  Stop();
  close(state_->wake_fd);
  close(state_->epoll_fd);
}

void IoLoop::Start() {
  assert(!state_->running.load() && "IoLoop::Start called twice");
  state_->stopping.store(false);
  state_->running.store(true);
  state_->thread = std::thread([state = state_.get()] { state->Run(); });
}

// Must not be called on the loop thread: it joins that thread.
void IoLoop::Stop() {
  if (!state_->thread.joinable()) return;
  assert(!InLoopThread() && "IoLoop::Stop called on the loop thread");
  state_->stopping.store(true);
  state_->Wake();
  state_->thread.join();
  state_->loop_thread_id.store(std::thread::id());
  state_->running.store(false);
}

void IoLoop::Post(std::function<void()> task) {
  {
    std::lock_guard lock(state_->posted_mutex);
    state_->posted.push_back(std::move(task));
  }
  state_->Wake();
}

// The loop-thread-only methods below are also allowed while the loop is not running, when no
// other thread can touch the state (setting up before Start, cleaning up after Stop).
IoLoop::TimerId IoLoop::AddTimer(std::chrono::milliseconds delay, std::function<void()> callback) {
  assert(InLoopThread() || !state_->running.load());
  TimerId id = state_->next_timer_id++;
  state_->timers.emplace(id, std::move(callback));
  state_->timer_heap.push({Clock::now() + delay, id});
  return id;
}

void IoLoop::CancelTimer(TimerId id) {
  assert(InLoopThread() || !state_->running.load());
  state_->timers.erase(id);
}

void IoLoop::WatchFd(int fd, uint32_t events, std::function<void(uint32_t)> callback) {
  assert(InLoopThread() || !state_->running.load());
  auto [it, inserted] = state_->watches.try_emplace(fd);
  State::Watch& watch = it->second;
  watch.events = events;
  watch.generation = state_->next_generation++;
  watch.callback = std::make_shared<std::function<void(uint32_t)>>(std::move(callback));

  epoll_event event{};
  event.events = ToEpollEvents(events);
  event.data.u64 = (static_cast<uint64_t>(watch.generation) << 32) | static_cast<uint32_t>(fd);
  state_->Register(fd, event, inserted);
}

void IoLoop::UnwatchFd(int fd) {
  assert(InLoopThread() || !state_->running.load());
  if (state_->watches.erase(fd) == 0) return;
  // The fd may already be closed, which removed it from epoll; that is not an error.
  epoll_ctl(state_->epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
}

bool IoLoop::InLoopThread() const {
  return state_->loop_thread_id.load() == std::this_thread::get_id();
}

}  // namespace atomflow::engine
