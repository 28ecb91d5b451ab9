// Tests of loading workflow files into the syntax tree: both document forms, every step kind
// with its fields and positions, scalars and templates, structural errors, and the public
// Cloud Workflows samples.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "lang/ast.h"

namespace atomflow::lang {
namespace {

using ::testing::HasSubstr;

const std::string kSourceDir = ATOMFLOW_SOURCE_DIR;

Result<std::shared_ptr<const Workflow>> Load(const std::string& text) {
  return LoadWorkflow("w.yaml", text);
}

std::shared_ptr<const Workflow> MustLoad(const std::string& text) {
  Result<std::shared_ptr<const Workflow>> workflow = Load(text);
  EXPECT_TRUE(workflow.ok()) << workflow.status().message();
  return workflow.ok() ? workflow.value() : nullptr;
}

std::string LoadError(const std::string& text) {
  Result<std::shared_ptr<const Workflow>> workflow = Load(text);
  EXPECT_FALSE(workflow.ok());
  return workflow.ok() ? "" : workflow.message();
}

const Step& StepOf(const Block& block, const std::string& name) {
  return *block.steps.at(block.index.at(name));
}

const Step& MainStep(const Workflow& workflow, const std::string& name) {
  return StepOf(workflow.main().steps, name);
}

void ExpectPos(SourcePos pos, int line, int column) {
  EXPECT_EQ(pos.line, line);
  EXPECT_EQ(pos.column, column);
}

// The literal value of an assignment, asserting that it collapsed to one literal.
Value AssignedLiteral(const Step& step, size_t i) {
  const Template& value = step.assign.at(i).value;
  EXPECT_EQ(value.kind, Template::Kind::kLiteral) << step.assign.at(i).target_text;
  return value.literal;
}

TEST(LoaderTest, BareListIsMainWithoutParams) {
  auto workflow = MustLoad(R"(- first:
    assign:
      - x: 1
- done:
    return: ${x + 1}
)");
  ASSERT_NE(workflow, nullptr);
  ASSERT_EQ(workflow->routines.size(), 1u);
  const Routine& main = workflow->main();
  EXPECT_TRUE(main.params.empty());
  ASSERT_EQ(main.steps.steps.size(), 2u);
  EXPECT_EQ(main.steps.index.at("first"), 0u);
  EXPECT_EQ(main.steps.index.at("done"), 1u);
  ExpectPos(main.steps.steps[0]->pos, 1, 3);
  ExpectPos(main.steps.steps[1]->pos, 4, 3);
  EXPECT_EQ(workflow->file, "w.yaml");
}

TEST(LoaderTest, MapOfRoutinesWithParamsAndDefaults) {
  auto workflow = MustLoad(R"(main:
  params: [input]
  steps:
    - call_greet:
        call: greet
        args: {first: "A", last: "B"}
        result: greeting
    - done:
        return: ${greeting}
greet:
  params: [first, last, country: "UK"]
  steps:
    - build:
        return: ${first + " " + last + " / " + country}
)");
  ASSERT_NE(workflow, nullptr);
  ASSERT_EQ(workflow->main().params.size(), 1u);
  EXPECT_EQ(workflow->main().params[0].name, "input");
  EXPECT_FALSE(workflow->main().params[0].default_value);

  const Routine* greet = workflow->FindRoutine("greet");
  ASSERT_NE(greet, nullptr);
  ExpectPos(greet->pos, 10, 1);
  ASSERT_EQ(greet->params.size(), 3u);
  EXPECT_EQ(greet->params[2].name, "country");
  ASSERT_TRUE(greet->params[2].default_value);
  EXPECT_EQ(greet->params[2].default_value->literal, Value("UK"));
  EXPECT_FALSE(greet->params[0].default_value);
}

TEST(LoaderTest, JsonLoadsLikeYaml) {
  auto workflow = MustLoad(R"({"main": {"params": ["args"], "steps": [
    {"init": {"assign": [{"x": 1.5}, {"y": "true"}, {"z": true}]}},
    {"done": {"return": "${x}"}}]}})");
  ASSERT_NE(workflow, nullptr);
  const Step& init = MainStep(*workflow, "init");
  EXPECT_EQ(AssignedLiteral(init, 0), Value(1.5));
  EXPECT_EQ(AssignedLiteral(init, 1), Value("true"));  // quoted: a string
  EXPECT_EQ(AssignedLiteral(init, 2), Value(true));
  EXPECT_EQ(MainStep(*workflow, "done").return_value->kind, Template::Kind::kExpression);
}

TEST(LoaderTest, PlainScalarsFollowTheCoreSchema) {
  auto workflow = MustLoad(R"(- init:
    assign:
      - t1: true
      - t2: True
      - t3: TRUE
      - f1: false
      - f2: FALSE
      - n1: null
      - n2: ~
      - n3:
      - i: 42
      - neg: -7
      - hex: 0x1F
      - big: 9223372036854775807
      - d: 2.5
      - e: 1e3
      - y1: yes
      - y2: no
      - y3: on
      - y4: off
      - q1: "1"
      - q2: 'null'
      - s: hello world
)");
  ASSERT_NE(workflow, nullptr);
  const Step& init = MainStep(*workflow, "init");
  std::vector<Value> expected = {
      true,    true,    true,         false, false, nullptr,
      nullptr, nullptr, 42,           -7,    31,    int64_t{9223372036854775807},
      2.5,     1000.0,  "yes",        "no",  "on",  "off",
      "1",     "null",  "hello world"};
  ASSERT_EQ(init.assign.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(AssignedLiteral(init, i), expected[i]) << init.assign[i].target_text;
  }
  EXPECT_TRUE(AssignedLiteral(init, 8).is_int());
  EXPECT_TRUE(AssignedLiteral(init, 13).is_double());
  EXPECT_TRUE(AssignedLiteral(init, 18).is_string());
}

TEST(LoaderTest, ExpressionsAreWholeScalarsOnly) {
  auto workflow = MustLoad(R"(- init:
    assign:
      - a: 1
      - b: ${a + 1}
      - c: '  ${a * 2}  '
      - d: "cost: ${a}"
      - f: |
          ${a +
            3}
)");
  ASSERT_NE(workflow, nullptr);
  const Step& init = MainStep(*workflow, "init");
  const Template& b = init.assign[1].value;
  EXPECT_EQ(b.kind, Template::Kind::kExpression);
  EXPECT_EQ(b.expression_text, "a + 1");
  EXPECT_NE(b.expression, nullptr);
  ExpectPos(b.pos, 4, 12);

  EXPECT_EQ(init.assign[2].value.kind, Template::Kind::kExpression);
  EXPECT_EQ(init.assign[2].value.expression_text, "a * 2");
  EXPECT_EQ(AssignedLiteral(init, 3), Value("cost: ${a}"));
  EXPECT_EQ(init.assign[4].value.kind, Template::Kind::kExpression);
  EXPECT_EQ(init.assign[4].value.expression_text, "a +\n  3");
}

TEST(LoaderTest, TemplatesWithoutExpressionsCollapseToOneLiteral) {
  auto workflow = MustLoad(R"(- init:
    assign:
      - key: k
      - plain: {a: [1, 2, {b: c}], d: {e: null}}
      - mixed: {a: [1, "${key}"], b: {c: 2}}
      - dynamic: {"${key}": 1, other: 2}
)");
  ASSERT_NE(workflow, nullptr);
  const Step& init = MainStep(*workflow, "init");

  Value plain = AssignedLiteral(init, 1);
  ASSERT_TRUE(plain.is_map());
  EXPECT_EQ(DebugString(plain), R"({"a":[1,2,{"b":"c"}],"d":{"e":null}})");

  const Template& mixed = init.assign[2].value;
  ASSERT_EQ(mixed.kind, Template::Kind::kMap);
  ASSERT_EQ(mixed.entries.size(), 2u);
  EXPECT_EQ(mixed.entries[0].second.kind, Template::Kind::kList);
  EXPECT_EQ(mixed.entries[0].second.items[0].kind, Template::Kind::kLiteral);
  EXPECT_EQ(mixed.entries[0].second.items[1].kind, Template::Kind::kExpression);
  // The expression-free sibling is a single literal.
  EXPECT_EQ(mixed.entries[1].second.kind, Template::Kind::kLiteral);
  EXPECT_EQ(DebugString(mixed.entries[1].second.literal), R"({"c":2})");
  ExpectPos(mixed.entries[1].second.pos, 5, 38);

  const Template& dynamic = init.assign[3].value;
  ASSERT_EQ(dynamic.kind, Template::Kind::kMap);
  EXPECT_EQ(dynamic.entries[0].first.kind, Template::Kind::kExpression);
  EXPECT_EQ(dynamic.entries[0].first.expression_text, "key");
  EXPECT_EQ(dynamic.entries[1].first.literal, Value("other"));
}

TEST(LoaderTest, AssignTargets) {
  auto workflow = MustLoad(R"(- init:
    assign:
      - m: {}
      - m.region: eu
      - m["zone-a"]: 1
      - xs: [10, 20]
      - xs[1]: 21
)");
  ASSERT_NE(workflow, nullptr);
  const Step& init = MainStep(*workflow, "init");
  EXPECT_EQ(init.kind, Step::Kind::kAssign);
  ASSERT_EQ(init.assign.size(), 5u);
  EXPECT_EQ(init.assign[1].target_text, "m.region");
  EXPECT_EQ(init.assign[1].target.root, "m");
  ASSERT_EQ(init.assign[1].target.path.size(), 1u);
  EXPECT_EQ(init.assign[1].target.path[0].field, "region");
  EXPECT_EQ(init.assign[4].target.root, "xs");
  ASSERT_EQ(init.assign[4].target.path.size(), 1u);
  EXPECT_NE(init.assign[4].target.path[0].index, nullptr);
  ExpectPos(init.assign[1].pos, 4, 9);
}

TEST(LoaderTest, CallStep) {
  auto workflow = MustLoad(R"(- fetch:
    call: http.post
    args:
      url: https://example.com
      body: {name: n, qty: 3}
      headers: '${ {"X": "y"} }'
    result: resp
    next: end
)");
  ASSERT_NE(workflow, nullptr);
  const Step& fetch = MainStep(*workflow, "fetch");
  EXPECT_EQ(fetch.kind, Step::Kind::kCall);
  ASSERT_TRUE(fetch.call);
  EXPECT_EQ(fetch.call->function, "http.post");
  ASSERT_EQ(fetch.call->args.size(), 3u);
  EXPECT_EQ(fetch.call->args[0].first, "url");
  EXPECT_EQ(fetch.call->args[0].second.literal, Value("https://example.com"));
  EXPECT_EQ(fetch.call->args[1].first, "body");
  EXPECT_EQ(fetch.call->args[2].first, "headers");
  EXPECT_EQ(fetch.call->args[2].second.kind, Template::Kind::kExpression);
  EXPECT_EQ(fetch.call->result, "resp");
  ExpectPos(fetch.call->pos, 2, 5);
  EXPECT_EQ(fetch.next, "end");
  ExpectPos(fetch.next_pos, 8, 11);
  EXPECT_FALSE(fetch.compensate);
}

TEST(LoaderTest, SwitchStep) {
  auto workflow = MustLoad(R"(- init:
    assign: [{n: 5}]
- route:
    switch:
      - condition: ${n < 10}
        next: small
      - condition: ${n < 100}
        assign: [{size: mid}]
        next: tail
      - condition: true
        steps:
          - a: {assign: [{x: 1}]}
          - b: {return: "${x}"}
    next: small
- small:
    return: small
- tail:
    return: ${size}
)");
  ASSERT_NE(workflow, nullptr);
  const Step& route = MainStep(*workflow, "route");
  EXPECT_EQ(route.kind, Step::Kind::kSwitch);
  EXPECT_EQ(route.next, "small");
  ASSERT_EQ(route.switch_cases.size(), 3u);

  const SwitchCase& first = route.switch_cases[0];
  EXPECT_EQ(first.condition.expression_text, "n < 10");
  ExpectPos(first.pos, 5, 9);
  EXPECT_EQ(first.body->kind, Step::Kind::kNext);
  EXPECT_EQ(first.body->next, "small");
  EXPECT_TRUE(first.body->name.empty());

  const Step& second = *route.switch_cases[1].body;
  EXPECT_EQ(second.kind, Step::Kind::kAssign);
  EXPECT_EQ(second.assign[0].target_text, "size");
  EXPECT_EQ(second.next, "tail");

  const SwitchCase& third = route.switch_cases[2];
  EXPECT_EQ(third.condition.literal, Value(true));
  EXPECT_EQ(third.body->kind, Step::Kind::kSteps);
  EXPECT_EQ(third.body->steps.index.at("b"), 1u);
}

TEST(LoaderTest, ForStepWithInAndRange) {
  auto workflow = MustLoad(R"(- init:
    assign: [{sum: 0}]
- loop:
    for:
      value: v
      index: i
      in: ${[1, 2, 3]}
      steps:
        - add: {assign: [{sum: "${sum + v}"}]}
        - stop:
            switch: [{condition: "${sum > 100}", next: break}]
- ranged:
    for:
      value: r
      range: [1, 9]
      steps:
        - add_r: {assign: [{sum: "${sum + r}"}]}
)");
  ASSERT_NE(workflow, nullptr);
  const Step& loop = MainStep(*workflow, "loop");
  EXPECT_EQ(loop.kind, Step::Kind::kFor);
  ASSERT_TRUE(loop.for_loop);
  EXPECT_EQ(loop.for_loop->value, "v");
  EXPECT_EQ(loop.for_loop->index, "i");
  ASSERT_TRUE(loop.for_loop->in);
  EXPECT_EQ(loop.for_loop->in->expression_text, "[1, 2, 3]");
  EXPECT_FALSE(loop.for_loop->range);
  EXPECT_EQ(loop.for_loop->steps.index.at("stop"), 1u);
  ExpectPos(loop.for_loop->steps.steps[1]->pos, 10, 11);

  const Step& ranged = MainStep(*workflow, "ranged");
  ASSERT_TRUE(ranged.for_loop->range);
  EXPECT_EQ(DebugString(ranged.for_loop->range->literal), "[1,9]");
  EXPECT_TRUE(ranged.for_loop->index.empty());
}

TEST(LoaderTest, ParallelBranchesAndParallelFor) {
  auto workflow = MustLoad(R"(- init:
    assign: [{total: 0}, {xs: [1, 2]}]
- fanout:
    parallel:
      shared: [total]
      concurrency_limit: 5
      exception_policy: continueAll
      branches:
        - b1:
            steps:
              - s: {assign: [{total: 1}]}
        - b2:
            steps:
              - s2: {assign: [{total: 2}]}
- each:
    parallel:
      shared: [total]
      for:
        value: x
        in: ${xs}
        steps:
          - add: {assign: [{total: "${total + x}"}]}
)");
  ASSERT_NE(workflow, nullptr);
  const Step& fanout = MainStep(*workflow, "fanout");
  EXPECT_EQ(fanout.kind, Step::Kind::kParallel);
  const ParallelSpec& parallel = *fanout.parallel;
  EXPECT_EQ(parallel.shared, std::vector<std::string>{"total"});
  EXPECT_EQ(parallel.concurrency_limit->literal, Value(5));
  EXPECT_EQ(parallel.exception_policy, "continueAll");
  ASSERT_EQ(parallel.branches.size(), 2u);
  EXPECT_EQ(parallel.branches[0].first, "b1");
  EXPECT_EQ(parallel.branches[1].first, "b2");
  EXPECT_EQ(parallel.branches[1].second.index.at("s2"), 0u);
  EXPECT_FALSE(parallel.for_loop);

  const ParallelSpec& each = *MainStep(*workflow, "each").parallel;
  EXPECT_TRUE(each.branches.empty());
  ASSERT_TRUE(each.for_loop);
  EXPECT_EQ(each.for_loop->value, "x");
  EXPECT_EQ(each.for_loop->steps.steps.size(), 1u);
}

TEST(LoaderTest, RaiseReturnStepsAndNext) {
  auto workflow = MustLoad(R"(- group:
    steps:
      - inner: {next: fail}
      - fail:
          raise: {code: 55, message: m}
- jump:
    next: nothing
- nothing:
    return:
)");
  ASSERT_NE(workflow, nullptr);
  const Step& group = MainStep(*workflow, "group");
  EXPECT_EQ(group.kind, Step::Kind::kSteps);
  EXPECT_EQ(group.steps.index.at("fail"), 1u);
  const Step& fail = StepOf(group.steps, "fail");
  EXPECT_EQ(fail.kind, Step::Kind::kRaise);
  EXPECT_EQ(DebugString(fail.raise->literal), R"({"code":55,"message":"m"})");
  EXPECT_EQ(StepOf(group.steps, "inner").kind, Step::Kind::kNext);

  const Step& jump = MainStep(*workflow, "jump");
  EXPECT_EQ(jump.kind, Step::Kind::kNext);
  EXPECT_EQ(jump.next, "nothing");

  const Step& nothing = MainStep(*workflow, "nothing");
  EXPECT_EQ(nothing.kind, Step::Kind::kReturn);
  ASSERT_TRUE(nothing.return_value);
  EXPECT_TRUE(nothing.return_value->literal.is_null());
  ExpectPos(nothing.return_value->pos, 9, 5);
}

TEST(LoaderTest, TryWithInlineBodyAndPolicyRetry) {
  auto workflow = MustLoad(R"(- guarded:
    try:
      call: http.get
      args: {url: https://example.com}
      result: r
    retry: ${http.default_retry}
- done:
    return: ${r}
)");
  ASSERT_NE(workflow, nullptr);
  const Step& guarded = MainStep(*workflow, "guarded");
  EXPECT_EQ(guarded.kind, Step::Kind::kTry);
  const TrySpec& spec = *guarded.try_block;
  ASSERT_EQ(spec.steps.steps.size(), 1u);
  const Step& body = *spec.steps.steps[0];
  EXPECT_EQ(body.kind, Step::Kind::kCall);
  EXPECT_EQ(body.call->function, "http.get");
  EXPECT_EQ(body.call->result, "r");
  ASSERT_TRUE(spec.retry);
  ASSERT_TRUE(spec.retry->policy);
  EXPECT_EQ(spec.retry->policy->expression_text, "http.default_retry");
  ExpectPos(spec.retry->pos, 6, 12);
  EXPECT_FALSE(spec.except);
}

TEST(LoaderTest, TryWithBlockRetryMapAndExcept) {
  auto workflow = MustLoad(R"(main:
  steps:
    - guarded:
        try:
          steps:
            - a: {call: http.get, args: {url: u}, result: r}
            - b: {return: "${r}"}
        retry:
          predicate: ${my_pred}
          max_retries: 5
          backoff: {initial_delay: 2, max_delay: 60, multiplier: 2.5}
        except:
          as: e
          steps:
            - rethrow: {raise: "${e}"}
my_pred:
  params: [e]
  steps:
    - r: {return: "${e.code == 500}"}
)");
  ASSERT_NE(workflow, nullptr);
  const TrySpec& spec = *MainStep(*workflow, "guarded").try_block;
  EXPECT_EQ(spec.steps.index.at("b"), 1u);
  const RetrySpec& retry = *spec.retry;
  EXPECT_FALSE(retry.policy);
  EXPECT_EQ(retry.predicate->expression_text, "my_pred");
  EXPECT_EQ(retry.max_retries->literal, Value(5));
  EXPECT_EQ(retry.initial_delay->literal, Value(2));
  EXPECT_EQ(retry.max_delay->literal, Value(60));
  EXPECT_EQ(retry.multiplier->literal, Value(2.5));
  ASSERT_TRUE(spec.except);
  EXPECT_EQ(spec.except->as, "e");
  ExpectPos(spec.except->pos, 13, 11);
  EXPECT_EQ(spec.except->steps.index.at("rethrow"), 0u);
}

TEST(LoaderTest, TransactionWithCompensateAndTcc) {
  auto workflow = MustLoad(R"(- init:
    assign: [{url: "http://svc"}]
- publish:
    transaction:
      timeout: 600
      steps:
        - deploy:
            call: http.post
            args: {url: "${url + \"/deploy\"}"}
            result: deployed
            compensate:
              call: http.post
              args: {url: "${url + \"/undeploy\"}"}
        - reserve:
            tcc:
              try: {call: http.post, args: {url: "${url + \"/try\"}"}, result: held}
              confirm: {call: http.post, args: {url: "${url + \"/confirm\"}"}}
              cancel: {call: http.post, args: {url: "${url + \"/cancel\"}"}}
)");
  ASSERT_NE(workflow, nullptr);
  const Step& publish = MainStep(*workflow, "publish");
  EXPECT_EQ(publish.kind, Step::Kind::kTransaction);
  const TransactionSpec& transaction = *publish.transaction;
  EXPECT_EQ(transaction.timeout->literal, Value(600));
  ASSERT_EQ(transaction.steps.steps.size(), 2u);

  const Step& deploy = StepOf(transaction.steps, "deploy");
  EXPECT_EQ(deploy.kind, Step::Kind::kCall);
  ASSERT_TRUE(deploy.compensate);
  EXPECT_EQ(deploy.compensate->function, "http.post");
  EXPECT_EQ(deploy.compensate->args[0].second.expression_text, R"(url + "/undeploy")");
  ExpectPos(deploy.compensate->pos, 12, 15);

  const Step& reserve = StepOf(transaction.steps, "reserve");
  EXPECT_EQ(reserve.kind, Step::Kind::kTcc);
  ASSERT_TRUE(reserve.tcc);
  EXPECT_EQ(reserve.tcc->try_call.function, "http.post");
  EXPECT_EQ(reserve.tcc->try_call.result, "held");
  EXPECT_EQ(reserve.tcc->confirm.args[0].second.expression_text, R"(url + "/confirm")");
  EXPECT_EQ(reserve.tcc->cancel.args[0].first, "url");
}

TEST(LoaderTest, LoadsFileFromDisk) {
  std::string path = kSourceDir + "/tests/workflows/loader/transaction.yaml";
  Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflowFile(path);
  ASSERT_TRUE(workflow.ok()) << workflow.message();
  EXPECT_EQ(workflow.value()->file, path);
  EXPECT_EQ(workflow.value()->main().steps.steps[1]->kind, Step::Kind::kTransaction);
  EXPECT_FALSE(workflow.value()->source.empty());
}

// --- Structural errors -------------------------------------------------------------------------

TEST(LoaderErrorTest, MissingFile) {
  Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflowFile("/nonexistent/dir/flow.yaml");
  ASSERT_FALSE(workflow.ok());
  EXPECT_EQ(workflow.message(),
            "cannot read /nonexistent/dir/flow.yaml: No such file or directory");
}

TEST(LoaderErrorTest, DirectoryIsNotAFile) {
  Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflowFile(kSourceDir + "/tests");
  ASSERT_FALSE(workflow.ok());
  EXPECT_EQ(workflow.message(), "cannot read " + kSourceDir + "/tests: Is a directory");
}

TEST(LoaderErrorTest, MalformedYamlGivesParserPosition) {
  EXPECT_EQ(LoadError("- a:\n    assign: [{x: 1}\n- b: {return: 1}\n"),
            "w.yaml:3:1: illegal block entry");
  EXPECT_EQ(LoadError("main: a: b\n"), "w.yaml:1:8: illegal map value");
}

TEST(LoaderErrorTest, WrongDocumentShape) {
  EXPECT_EQ(LoadError("hello\n"),
            "w.yaml:1:1: expected a map of workflows or a sequence of steps; got a string");
  EXPECT_EQ(LoadError(""),
            "w.yaml:1:1: expected a map of workflows or a sequence of steps; got nothing");
}

TEST(LoaderErrorTest, MapWithoutMain) {
  EXPECT_EQ(LoadError("helper:\n  steps:\n    - a: {return: 1}\n"),
            "w.yaml:1:1: the workflow has no 'main' (a map of workflows must define main)");
}

TEST(LoaderErrorTest, SourceOver128Kilobytes) {
  std::string text = "- a:\n    return: 1\n#" + std::string(128 * 1024, 'x') + "\n";
  EXPECT_EQ(LoadError(text),
            "w.yaml:1:1: the source is 131093 bytes; the limit is 131072 (128 KB)");
}

TEST(LoaderErrorTest, UnknownKeyWithSuggestion) {
  EXPECT_EQ(LoadError("- init:\n    asign:\n      - x: 1\n"),
            "w.yaml:2:5: unknown key 'asign' in step 'init' (did you mean 'assign'?)");
  EXPECT_EQ(LoadError("- init:\n    frobnicate: 1\n"),
            "w.yaml:2:5: unknown key 'frobnicate' in step 'init'");
  EXPECT_EQ(LoadError("- loop:\n    for: {valeu: v, in: [1], steps: [{a: {return: 1}}]}\n"),
            "w.yaml:2:10: 'for' of step 'loop' needs 'value'\n"
            "w.yaml:2:11: unknown key 'valeu' in 'for' of step 'loop' (did you mean 'value'?)");
}

TEST(LoaderErrorTest, TwoActions) {
  EXPECT_EQ(LoadError("- s:\n    assign: [{x: 1}]\n    return: ${x}\n"),
            "w.yaml:3:5: step 's' has two actions: 'assign' and 'return'");
}

TEST(LoaderErrorTest, KeysThatNeedAnotherKey) {
  EXPECT_EQ(LoadError("- s:\n    args: {a: 1}\n    next: end\n"),
            "w.yaml:2:5: 'args' without 'call' in step 's'");
  EXPECT_EQ(LoadError("- s:\n    assign: [{x: 1}]\n    result: r\n"),
            "w.yaml:3:5: 'result' without 'call' in step 's'");
  EXPECT_EQ(LoadError("- s:\n    assign: [{x: 1}]\n    retry: ${http.default_retry}\n"),
            "w.yaml:3:5: 'retry' without 'try' in step 's'");
  EXPECT_EQ(LoadError("- s:\n    return: 1\n    except: {as: e, steps: [{r: {return: 2}}]}\n"),
            "w.yaml:3:5: 'except' without 'try' in step 's'");
}

TEST(LoaderErrorTest, DuplicateStepNames) {
  EXPECT_EQ(LoadError("- a: {assign: [{x: 1}]}\n- b: {return: 1}\n- a: {return: 2}\n"),
            "w.yaml:3:3: duplicate step name 'a' (first at line 1); step names are unique within a "
            "routine");
}

TEST(LoaderErrorTest, StepShape) {
  EXPECT_EQ(LoadError("- a: {return: 1}\n  b: {return: 2}\n"),
            "w.yaml:1:3: a step must be a map with exactly one key, the step name");
  EXPECT_EQ(LoadError("- a: 5\n"), "w.yaml:1:3: the body of step 'a' must be a map");
  EXPECT_EQ(LoadError("- a: {}\n"),
            "w.yaml:1:3: step 'a' does nothing (expected one of assign, call, switch, for, "
            "parallel, raise, return, try, steps, next)");
}

TEST(LoaderErrorTest, EmptyValuesAreReportedAtTheirKey) {
  EXPECT_EQ(LoadError("- a:\n    next:\n"),
            "w.yaml:2:5: expected a step name after 'next' in step 'a'; got nothing");
  EXPECT_EQ(
      LoadError("- a:\n    call:\n- b:\n    return: 1\n"),
      "w.yaml:2:5: expected a function or workflow name after 'call' in step 'a'; got nothing");
}

TEST(LoaderErrorTest, BadNames) {
  EXPECT_EQ(LoadError("- a:\n    for: {value: 1x, in: [1], steps: [{b: {next: end}}]}\n"),
            "w.yaml:2:18: '1x' is not a valid name for the loop variable in step 'a' (letters, "
            "digits and '_', not starting with a digit)");
  EXPECT_EQ(LoadError("main:\n  steps:\n    - a: {return: 1}\n  stpes: []\n"),
            "w.yaml:4:3: unknown key 'stpes' in workflow 'main' (did you mean 'steps'?)");
}

TEST(LoaderErrorTest, TooManyAssignmentsAndConditions) {
  std::string assign = "- a:\n    assign:\n";
  std::string branches = "- s:\n    switch:\n";
  for (int i = 0; i < 51; ++i) {
    assign += "      - x" + std::to_string(i) + ": 1\n";
    branches += "      - {condition: true, next: end}\n";
  }
  EXPECT_EQ(LoadError(assign), "w.yaml:3:7: step 'a' has 51 assignments; the limit is 50");
  EXPECT_EQ(LoadError(branches), "w.yaml:3:7: step 's' has 51 switch conditions; the limit is 50");
}

TEST(LoaderErrorTest, MainTakesAtMostOneParam) {
  EXPECT_EQ(LoadError("main:\n  params: [a, b]\n  steps:\n    - r: {return: 1}\n"),
            "w.yaml:2:11: main takes at most one param (the execution argument); got 2");
}

TEST(LoaderErrorTest, BadExpressionReportedAtTheScalar) {
  std::string message = LoadError("- a:\n    assign:\n      - x: ${1 +}\n");
  EXPECT_THAT(message, testing::StartsWith("w.yaml:3:12: bad expression '${1 +}' in step 'a': "));
}

TEST(LoaderErrorTest, SwitchArmNeedsCondition) {
  EXPECT_EQ(LoadError("- s:\n    switch:\n      - next: end\n"),
            "w.yaml:3:9: a switch condition of step 's' needs 'condition'");
  EXPECT_EQ(LoadError("- s:\n    switch:\n      - {condition: true, nxt: end}\n"),
            "w.yaml:3:27: unknown key 'nxt' in a switch condition of step 's' (did you mean "
            "'next'?)");
}

TEST(LoaderErrorTest, ForNeedsExactlyOneSource) {
  EXPECT_EQ(LoadError("- l:\n    for: {value: v, steps: [{a: {return: 1}}]}\n"),
            "w.yaml:2:10: 'for' of step 'l' needs 'in' or 'range'");
  EXPECT_EQ(
      LoadError("- l:\n    for: {value: v, in: [1], range: [1, 2], steps: [{a: {next: end}}]}\n"),
      "w.yaml:2:30: 'for' of step 'l' has both 'in' and 'range'");
}

TEST(LoaderErrorTest, LiteralRangeIsTwoNumbers) {
  EXPECT_EQ(LoadError("- l:\n    for: {value: v, range: [1, x], steps: [{a: {next: end}}]}\n"),
            "w.yaml:2:28: 'range' of 'for' of step 'l' must be a list of two numbers");
  EXPECT_EQ(LoadError("- l:\n    for: {value: v, range: [1], steps: [{a: {next: end}}]}\n"),
            "w.yaml:2:28: 'range' of 'for' of step 'l' must be a list of two numbers");
}

TEST(LoaderErrorTest, ParallelShape) {
  EXPECT_EQ(LoadError("- p:\n    parallel:\n      exception_policy: stopAll\n"
                      "      branches: [{b: {steps: [{s: {next: end}}]}},"
                      " {c: {steps: [{t: {next: end}}]}}]\n"),
            "w.yaml:3:25: unknown exception_policy 'stopAll' in step 'p' (the only policy is "
            "'continueAll')");
  EXPECT_EQ(LoadError("- i:\n    assign: [{x: 1}]\n- p:\n    parallel:\n      shared: [x]\n"),
            "w.yaml:5:7: 'parallel' of step 'p' needs exactly one of 'branches' and 'for'");
}

TEST(LoaderErrorTest, TransactionAndTccShape) {
  EXPECT_EQ(LoadError("- t:\n    transaction:\n      timeout: 5\n"),
            "w.yaml:3:7: 'transaction' of step 't' needs 'steps'");
  EXPECT_EQ(LoadError("- t:\n    transaction:\n      steps:\n        - r:\n            tcc:\n"
                      "              try: {call: http.post, args: {url: u}}\n"
                      "              cancel: {call: http.post, args: {url: u}}\n"),
            "w.yaml:6:15: 'tcc' of step 'r' needs 'confirm'");
}

TEST(LoaderErrorTest, AllErrorsOfAFileInOrder) {
  EXPECT_EQ(LoadError("- a:\n    asign: [{x: 1}]\n- b:\n    retrun: 1\n"),
            "w.yaml:2:5: unknown key 'asign' in step 'a' (did you mean 'assign'?)\n"
            "w.yaml:4:5: unknown key 'retrun' in step 'b' (did you mean 'return'?)");
}

// --- The public samples ------------------------------------------------------------------------

std::vector<std::filesystem::path> SampleFiles() {
  std::vector<std::filesystem::path> files;
  std::filesystem::path root = "/work/shared/samples/cloud-workflows";
  if (!std::filesystem::exists(root)) root = kSourceDir + "/tests/workflows/samples";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(LoaderSamplesTest, EveryCoreSampleLoads) {
  std::vector<std::filesystem::path> files = SampleFiles();
  if (files.empty()) GTEST_SKIP() << "the Cloud Workflows samples are not on this machine";
  EXPECT_GE(files.size(), 39u);
  for (const auto& file : files) {
    Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflowFile(file.string());
    EXPECT_TRUE(workflow.ok()) << workflow.status().message();
  }
}

// Connectors (googleapis.*) are out of scope: a workflow that calls one is rejected for that
// call and nothing else.
TEST(LoaderSamplesTest, ConnectorCallIsRejectedAsUndefinedTarget) {
  std::string path = kSourceDir + "/tests/workflows/loader/connector.yaml";
  Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflowFile(path);
  ASSERT_FALSE(workflow.ok());
  EXPECT_EQ(workflow.message(),
            path +
                ":9:9: undefined call target 'googleapis.compute.v1.instances.list' in "
                "step 'list_instances'");
}

}  // namespace
}  // namespace atomflow::lang
