// Task<T>: the coroutine type the interpreter is written in. An execution is a chain of
// suspended Tasks; its state lives in their frames, not on a thread's stack.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

namespace atomflow::engine {

// A lazily started coroutine returning T. Awaiting a Task starts it; when it finishes, the
// awaiting coroutine resumes (symmetric transfer, so deep chains do not grow the stack).
// Exceptions thrown inside propagate to the awaiter. Owned by whoever holds it; not copyable.
template <typename T>
class [[nodiscard]] Task {
 public:
  struct promise_type;
  using Handle = std::coroutine_handle<promise_type>;

  // Resumes the awaiting coroutine when the task finishes.
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    std::coroutine_handle<> await_suspend(Handle handle) noexcept {
      std::coroutine_handle<> next = handle.promise().continuation;
      return next ? next : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };

  struct promise_type {
    std::optional<T> value;
    std::exception_ptr error;
    std::coroutine_handle<> continuation;

    Task get_return_object() { return Task(Handle::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    FinalAwaiter final_suspend() noexcept { return {}; }
    template <typename U>
    void return_value(U&& result) {
      value.emplace(std::forward<U>(result));
    }
    void unhandled_exception() { error = std::current_exception(); }
  };

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiter) noexcept {
    handle_.promise().continuation = awaiter;
    return handle_;
  }
  T await_resume() {
    if (handle_.promise().error) std::rethrow_exception(handle_.promise().error);
    return std::move(*handle_.promise().value);
  }

  // For the root task of an execution, driven by hand rather than awaited.
  Handle handle() const { return handle_; }
  bool done() const { return handle_.done(); }
  // The result of a finished root task; rethrows its exception.
  T TakeResult() { return await_resume(); }

 private:
  explicit Task(Handle handle) : handle_(handle) {}

  Handle handle_;
};

// Suspends a coroutine that waits for several others it started (parallel branches, phase-two
// operations): it parks its handle in *parent, and the last of them to end resumes it.
class JoinAwaiter {
 public:
  explicit JoinAwaiter(std::coroutine_handle<>* parent) : parent_(parent) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) noexcept { *parent_ = handle; }
  void await_resume() const noexcept {}

 private:
  std::coroutine_handle<>* parent_;
};

}  // namespace atomflow::engine
