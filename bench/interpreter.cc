// Interpreter: steps per second of a pure-compute workflow (a for over a range with assigns, a
// switch and integer arithmetic) against the same loop in Lua 5.4, embedded here.
#include <lua5.4/lua.hpp>
#include <string>

#include "bench_common.h"
#include "common/log.h"

namespace atomflow::bench {
namespace {

// Every iteration runs two steps (mix, classify); 40,000 iterations stay under the
// language's 100,000 steps per execution.
constexpr int64_t kIterations = 40000;
constexpr int64_t kStepsPerIteration = 2;

std::string WorkflowSource() {
  return R"yaml(
main:
  steps:
    - init:
        assign:
          - total: 0
          - odd: 0
          - x: 0
    - loop:
        for:
          value: i
          range: [1, )yaml" +
         std::to_string(kIterations) + R"yaml(]
          steps:
            - mix:
                assign:
                  - x: ${(i * 7 + 3) % 11}
                  - total: ${total + x * 2 - i % 5}
            - classify:
                switch:
                  - condition: ${x % 2 == 1}
                    assign:
                      - odd: ${odd + 1}
                  - condition: true
                    assign:
                      - total: ${total - 1}
    - done:
        return: ${total + odd}
)yaml";
}

// The same computation, statement for statement.
std::string LuaSource() {
  return "local total, odd, x = 0, 0, 0\n"
         "for i = 1, " +
         std::to_string(kIterations) +
         " do\n"
         "  x = (i * 7 + 3) % 11\n"
         "  total = total + x * 2 - i % 5\n"
         "  if x % 2 == 1 then odd = odd + 1 else total = total - 1 end\n"
         "end\n"
         "return total + odd\n";
}

// Runs the Lua chunk `runs` times (compiled once, as a deployed workflow is parsed once);
// returns seconds and the last result.
double LuaSeconds(int64_t runs, int64_t* result) {
  lua_State* state = luaL_newstate();
  luaL_openlibs(state);
  std::string source = LuaSource();
  if (luaL_loadstring(state, source.c_str()) != LUA_OK) Fail(lua_tostring(state, -1));
  double start = Now();
  for (int64_t r = 0; r < runs; ++r) {
    lua_pushvalue(state, -1);
    if (lua_pcall(state, 0, 1, 0) != LUA_OK) Fail(lua_tostring(state, -1));
    *result = lua_tointeger(state, -1);
    lua_pop(state, 1);
  }
  double seconds = Now() - start;
  lua_close(state);
  return seconds;
}

// Runs `runs` executions one after the other on a one-worker engine; returns seconds and the
// last result.
double EngineSeconds(engine::Engine& engine, const std::shared_ptr<const lang::Workflow>& workflow,
                     int64_t runs, int64_t* result) {
  double start = Now();
  for (int64_t r = 0; r < runs; ++r) {
    Result<std::string> id = engine.Start(workflow, Value());
    if (!id.ok()) Fail("start: " + id.message());
    store::ExecutionRecord record = engine.Wait(*id);
    if (record.state != "SUCCEEDED") Fail("execution ended " + record.error);
    *result = std::stoll(record.result);
  }
  return Now() - start;
}

void Run() {
  log::Init("warn");
  TempDir temp;
  SilentProgress progress;
  std::unique_ptr<engine::Engine> engine = MustOpen(temp.path() + "/atomflow.db", &progress, 1);
  std::shared_ptr<const lang::Workflow> workflow = MustLoad("interpreter.yaml", WorkflowSource());
  int64_t runs = Scaled(12, 2);
  int64_t engine_result = 0;
  int64_t lua_result = 0;

  EngineSeconds(*engine, workflow, 1, &engine_result);  // warm up
  double engine_seconds = EngineSeconds(*engine, workflow, runs, &engine_result);
  int64_t lua_runs = runs * 20;
  LuaSeconds(lua_runs / 10 + 1, &lua_result);
  double lua_seconds = LuaSeconds(lua_runs, &lua_result);
  if (engine_result != lua_result) {
    Fail("the workflow returned " + std::to_string(engine_result) + ", Lua " +
         std::to_string(lua_result));
  }

  double steps = static_cast<double>(kIterations * kStepsPerIteration);
  store::StoreStats stats = engine->store()->stats();
  Json details = {{"iterations_per_run", kIterations},
                  {"steps_per_iteration", kStepsPerIteration},
                  {"engine_runs", runs},
                  {"lua_runs", lua_runs},
                  {"engine_workers", 1},
                  {"result", engine_result},
                  {"journal_appends", stats.appends},
                  {"journal_commits", stats.commits}};
  PrintFigure("interpreter", steps * runs / engine_seconds, steps * lua_runs / lua_seconds,
              "steps/s", details);
}

}  // namespace
}  // namespace atomflow::bench

int main() {
  atomflow::bench::Run();
  return 0;
}
