// The helpers every benchmark program shares (see bench_common.h).
#include "bench_common.h"

#include <jemalloc/jemalloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

namespace atomflow::bench {

double Now() {
  using namespace std::chrono;
  return duration_cast<duration<double>>(steady_clock::now().time_since_epoch()).count();
}

double Scale() {
  const char* text = std::getenv("ATOMFLOW_BENCH_SCALE");
  if (text == nullptr || *text == '\0') return 1.0;
  double scale = std::atof(text);
  return scale > 0 ? scale : 1.0;
}

int64_t Scaled(int64_t count, int64_t minimum) {
  return std::max<int64_t>(minimum, static_cast<int64_t>(static_cast<double>(count) * Scale()));
}

double Percentile(std::vector<double>& samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  size_t index = static_cast<size_t>(p / 100.0 * static_cast<double>(samples.size() - 1));
  return samples[std::min(index, samples.size() - 1)];
}

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0;
  int64_t resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

void TrimMemory() {
  // The programs run on jemalloc (CMakeLists.txt): return every arena's unused dirty pages to
  // the system, as malloc_trim would for glibc's, so that RSS counts what is still in use.
  std::string purge = "arena." + std::to_string(MALLCTL_ARENAS_ALL) + ".purge";
  (void)mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0);
}

TempDir::TempDir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) Fail("cannot make a temporary folder");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code error;
  std::filesystem::remove_all(path_, error);
}

void NoopParticipant::Perform(const engine::EffectRequest& request, engine::EffectContext context,
                              std::function<void(engine::EffectOutcome)> done) {
  (void)request;
  (void)context;
  loop_->Post([done = std::move(done)] {
    Value response(
        Map{{"code", Value(int64_t{200})}, {"headers", Value(Map{})}, {"body", Value(Map{})}});
    done(engine::EffectOutcome::Success(std::move(response)));
  });
}

void NoopParticipant::Cancel(const std::string& execution_id,
                             const engine::EffectRequest& request) {
  (void)execution_id;
  (void)request;  // every effect answers at once; there is nothing to stop
}

engine::Engine::HandlerFactory NoopParticipantFactory() {
  return [](engine::IoLoop* loop, const engine::EngineOptions&) {
    return std::unique_ptr<engine::EffectHandler>(new NoopParticipant(loop));
  };
}

std::shared_ptr<const lang::Workflow> MustLoad(const std::string& file, const std::string& text) {
  Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflow(file, text);
  if (!workflow.ok()) Fail("benchmark workflow " + file + ": " + workflow.message());
  return std::move(workflow).value();
}

std::unique_ptr<engine::Engine> MustOpen(const std::string& store_path,
                                         engine::ProgressSink* progress, int workers) {
  engine::EngineOptions options;
  options.store_path = store_path;
  options.workers = workers;
  Result<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Open(options, NoopParticipantFactory(), progress);
  if (!engine.ok()) Fail("cannot open the engine: " + engine.message());
  return std::move(engine).value();
}

std::vector<std::string> StartMany(engine::Engine& engine,
                                   const std::shared_ptr<const lang::Workflow>& workflow,
                                   int64_t count, int clients) {
  std::vector<std::string> ids(count);
  std::atomic<int64_t> next{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      for (int64_t i = next++; i < count; i = next++) {
        Result<std::string> id = engine.Start(workflow, Value());
        if (!id.ok()) Fail("start: " + id.message());
        ids[i] = *id;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return ids;
}

void PrintFigure(const std::string& name, double value, double baseline, const std::string& unit,
                 const Json& details) {
  Json figure = {{"name", name}, {"value", value},   {"baseline", baseline},
                 {"unit", unit}, {"scale", Scale()}, {"details", details}};
  std::cout << figure.dump() << std::endl;
}

void Fail(const std::string& message) {
  std::cerr << "benchmark failed: " << message << std::endl;
  std::_Exit(2);
}

}  // namespace atomflow::bench
