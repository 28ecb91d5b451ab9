// Memory: resident memory per suspended execution, for 100,000 executions each waiting in
// sys.sleep or in an HTTP call that has not answered (the workflows hold no variables),
// against 100,000 bare coroutine chains of the interpreter's depth parked under an id, the
// least a coroutine engine can keep per waiting execution.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <coroutine>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_common.h"
#include "common/log.h"
#include "engine/task.h"

namespace atomflow::bench {
namespace {

constexpr char kSleepWorkflow[] = R"yaml(
main:
  steps:
    - wait:
        call: sys.sleep
        args: {seconds: 36000}
    - done:
        return: "ok"
)yaml";

constexpr char kHttpWorkflow[] = R"yaml(
main:
  steps:
    - ask:
        call: http.get
        args: {url: "http://participant/slow"}
    - done:
        return: "ok"
)yaml";

constexpr char kWarmWorkflow[] = R"yaml(
main:
  steps:
    - done:
        return: "ok"
)yaml";

constexpr int kClients = 64;

// A participant that never answers: every call stays in flight, as a slow service's would.
class SilentParticipant : public engine::EffectHandler {
 public:
  void Perform(const engine::EffectRequest&, engine::EffectContext,
               std::function<void(engine::EffectOutcome)> done) override {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back(std::move(done));
    ++calls_;
  }
  void Cancel(const std::string&, const engine::EffectRequest&) override {}
  static std::atomic<int64_t> calls_;

 private:
  std::mutex mutex_;
  std::vector<std::function<void(engine::EffectOutcome)>> pending_;
};
std::atomic<int64_t> SilentParticipant::calls_{0};

void WaitUntil(const std::function<bool()>& done) {
  double deadline = Now() + 600;
  while (!done()) {
    if (Now() > deadline) Fail("executions did not all suspend in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Prints the bytes of resident memory per execution of `source` left waiting, in a fresh
// engine, and ends the (child) process.
[[noreturn]] void EnginePerExecution(const std::string& source, bool http, int64_t count) {
  TempDir temp;
  SilentProgress progress;
  engine::EngineOptions options;
  options.store_path = temp.path() + "/atomflow.db";
  engine::Engine::HandlerFactory factory =
      http ? engine::Engine::HandlerFactory([](engine::IoLoop*, const engine::EngineOptions&) {
        return std::unique_ptr<engine::EffectHandler>(new SilentParticipant());
      })
           : NoopParticipantFactory();
  Result<std::unique_ptr<engine::Engine>> opened =
      engine::Engine::Open(options, factory, &progress);
  if (!opened.ok()) Fail(opened.message());
  engine::Engine& engine = **opened;

  // Warm the allocator, SQLite's page cache and the workers with executions that finish.
  std::shared_ptr<const lang::Workflow> warm = MustLoad("warm.yaml", kWarmWorkflow);
  for (const std::string& id : StartMany(engine, warm, 2000, kClients)) engine.Wait(id);
  Status flushed = engine.store()->Flush();
  (void)flushed;

  std::shared_ptr<const lang::Workflow> workflow = MustLoad("waiting.yaml", source);
  TrimMemory();
  int64_t before = ResidentBytes();
  uint64_t appends = engine.store()->stats().appends;
  StartMany(engine, workflow, count, kClients);
  if (http) {
    WaitUntil([&] { return SilentParticipant::calls_.load() >= count; });
  } else {
    WaitUntil([&] { return engine.store()->stats().appends >= appends + count; });
  }
  flushed = engine.store()->Flush();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the loop adds the timers
  TrimMemory();
  int64_t after = ResidentBytes();

  std::error_code error;
  std::filesystem::remove_all(temp.path(), error);
  printf("%.1f\n", static_cast<double>(after - before) / count);
  fflush(stdout);
  std::_Exit(0);  // 100,000 suspended executions need no orderly teardown
}

// The baseline: a chain of five coroutine frames (main, routine, block, step, effect), the
// leaf parked under the execution's id until resumed.
using Parked = std::unordered_map<std::string, std::coroutine_handle<>>;

struct Park {
  Parked* parked;
  std::string id;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) { (*parked)[id] = handle; }
  int await_resume() const noexcept { return 0; }
};

// Each co_await is a statement of its own (g++ 12 miscompiles it inside expressions).
engine::Task<int> Leaf(Parked* parked, std::string id) {
  int value = co_await Park{parked, id};
  co_return value;
}
engine::Task<int> Level(Parked* parked, std::string id, int depth) {
  if (depth == 0) {
    int value = co_await Leaf(parked, std::move(id));
    co_return value;
  }
  int value = co_await Level(parked, std::move(id), depth - 1);
  co_return value;
}

// Prints the bytes per parked chain and ends the (child) process without tearing them down.
[[noreturn]] void BaselinePerExecution(int64_t count) {
  Parked parked;
  std::vector<engine::Task<int>> roots;
  roots.reserve(count);
  TrimMemory();
  int64_t before = ResidentBytes();
  for (int64_t i = 0; i < count; ++i) {
    char id[40];
    snprintf(id, sizeof(id), "%08llx-0000-4000-8000-000000000000",
             static_cast<unsigned long long>(i % 100000000));
    roots.push_back(Level(&parked, id, 3));
    roots.back().handle().resume();
  }
  TrimMemory();
  int64_t after = ResidentBytes();
  if (static_cast<int64_t>(parked.size()) != count) Fail("the baseline did not park");
  printf("%.1f\n", static_cast<double>(after - before) / count);
  fflush(stdout);
  std::_Exit(0);
}

// Runs `measure` in a child process, so that each figure starts from a fresh heap.
double InChild(const std::function<void()>& measure) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) Fail("pipe");
  pid_t child = fork();
  if (child == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    measure();
    std::_Exit(0);
  }
  close(pipe_fds[1]);
  char buffer[64] = {0};
  ssize_t got = read(pipe_fds[0], buffer, sizeof(buffer) - 1);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (got <= 0) Fail("a memory measurement failed");
  return std::atof(buffer);
}

void Run() {
  log::Init("warn");
  int64_t count = Scaled(100000, 5000);
  double sleep = InChild([&] { EnginePerExecution(kSleepWorkflow, false, count); });
  double http = InChild([&] { EnginePerExecution(kHttpWorkflow, true, count); });
  double baseline = InChild([&] { BaselinePerExecution(count); });
  Json details = {{"executions", count},
                  {"bytes_per_sleeping_execution", sleep},
                  {"bytes_per_execution_in_http_call", http},
                  {"baseline", "a 5-frame coroutine chain parked under a 36-byte id"}};
  PrintFigure("memory_per_execution", std::max(sleep, http), baseline, "bytes", details);
}

}  // namespace

void MeasureOne(bool http) {
  EnginePerExecution(http ? kHttpWorkflow : kSleepWorkflow, http, Scaled(100000, 5000));
}

}  // namespace atomflow::bench

// `bench_memory sleep|http` measures one kind in this process (for a debugger or a profiler).
int main(int argc, char** argv) {
  std::string only = argc > 1 ? argv[1] : "";
  if (only == "sleep" || only == "http") atomflow::bench::MeasureOne(only == "http");
  atomflow::bench::Run();
  return 0;
}
