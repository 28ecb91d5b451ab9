// What every benchmark program shares: clocks, scale, temporary folders, the in-process no-op
// participant, a progress sink that drops everything, and the JSON line each program prints.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/effect.h"
#include "engine/engine.h"
#include "engine/io_loop.h"
#include "lang/ast.h"
#include "value/value.h"

namespace atomflow::bench {

// Seconds on a monotonic clock.
double Now();

// ATOMFLOW_BENCH_SCALE (default 1): multiplies every count, so that a slow machine can run
// the suite in less time. Each program reports the counts it actually used.
double Scale();
// count * Scale(), at least minimum.
int64_t Scaled(int64_t count, int64_t minimum = 1);

// The p-th percentile (0..100) of samples, which it sorts.
double Percentile(std::vector<double>& samples, double p);

// Resident set size of this process, in bytes (from /proc/self/statm).
int64_t ResidentBytes();

// Gives memory freed by the allocator back to the system, so that RSS deltas measure what
// is live.
void TrimMemory();

// A fresh folder under /tmp, removed with everything in it by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "atomflow-bench-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The in-process participant: answers every effect (http.* actions and compensations) with
// a 200 and an empty body, on the engine's I/O loop as a real connector does, so that what is
// measured is the engine's own cost. Thread safe.
class NoopParticipant : public engine::EffectHandler {
 public:
  explicit NoopParticipant(engine::IoLoop* loop) : loop_(loop) {}
  void Perform(const engine::EffectRequest& request, engine::EffectContext context,
               std::function<void(engine::EffectOutcome)> done) override;
  void Cancel(const std::string& execution_id, const engine::EffectRequest& request) override;

 private:
  engine::IoLoop* loop_;
};

// The engine's handler factory for NoopParticipant.
engine::Engine::HandlerFactory NoopParticipantFactory();

// Drops every progress report: a benchmark prints its figures only.
class SilentProgress : public engine::ProgressSink {
 public:
  void OnStep(const engine::StepReport&) override {}
  void OnLog(const std::string&, const std::string&, const std::string&,
             const std::string&) override {}
  void OnJobLog(const std::string&, const std::string&, const std::string&) override {}
  void OnTransaction(const std::string&, const std::string&, const std::string&,
                     const std::string&) override {}
};

// Parses a workflow held in the benchmark's source; aborts with the loader's message if the
// text is wrong (a bug in the benchmark).
std::shared_ptr<const lang::Workflow> MustLoad(const std::string& file, const std::string& text);

// Opens an engine on store_path with NoopParticipant; aborts on failure.
std::unique_ptr<engine::Engine> MustOpen(const std::string& store_path,
                                         engine::ProgressSink* progress, int workers = 0);

// Starts count executions of workflow from `clients` threads at once (Start blocks until the
// execution is durable, so concurrent starts share commits); returns their ids.
std::vector<std::string> StartMany(engine::Engine& engine,
                                   const std::shared_ptr<const lang::Workflow>& workflow,
                                   int64_t count, int clients);

// Prints the program's result, one JSON object on stdout: the engine's figure `value`, the
// baseline measured in the same run, their units, and details (counts, percentiles).
void PrintFigure(const std::string& name, double value, double baseline, const std::string& unit,
                 const Json& details);

// Fails the program with a message on stderr (a broken setup, not a slow engine).
[[noreturn]] void Fail(const std::string& message);

}  // namespace atomflow::bench
