// Tests of the deploy-time checks: undefined names, call targets and args, jump targets,
// transaction nesting. Each check is asserted with its exact message and position.
#include "lang/validate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "lang/ast.h"
#include "lang/error.h"
#include "lang/limits.h"

namespace atomflow::lang {
namespace {

std::string CheckError(const std::string& text) {
  Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflow("w.yaml", text);
  EXPECT_FALSE(workflow.ok());
  return workflow.ok() ? "" : workflow.message();
}

void ExpectValid(const std::string& text) {
  Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflow("w.yaml", text);
  EXPECT_TRUE(workflow.ok()) << workflow.status().message();
}

TEST(ValidateTest, UndefinedVariable) {
  EXPECT_EQ(CheckError("- a:\n    assign: [{x: 1}]\n- b:\n    return: ${x + varC}\n"),
            "w.yaml:4:13: undefined variable 'varC' in step 'b'");
}

TEST(ValidateTest, VariablesFromEveryKindOfDefinition) {
  ExpectValid(R"(main:
  params: [input]
  steps:
    - call_it:
        call: helper
        args: {n: "${input}"}
        result: res
    - loop:
        for:
          value: v
          index: i
          in: ${[1, 2]}
          steps:
            - guarded:
                try:
                  raise: ${v + i + res}
                except:
                  as: e
                  steps:
                    - log: {assign: [{last: "${e}"}]}
    - fan:
        parallel:
          shared: [last]
          for:
            value: item
            range: [1, 3]
            steps:
              - s: {assign: [{last: "${item}"}]}
    - done:
        return: ${[last, http.default_retry, helper, sys.now(), len(input)]}
helper:
  params: [n]
  steps:
    - r: {return: "${n}"}
)");
}

TEST(ValidateTest, VariableAssignedLaterInALoopIsDefined) {
  ExpectValid(R"(- init:
    assign: [{i: 0}]
- check:
    switch:
      - condition: ${i > 0}
        assign: [{total: "${previous + i}"}]
- remember:
    assign: [{previous: "${i}"}, {i: "${i + 1}"}]
- again:
    switch:
      - condition: ${i < 3}
        next: check
)");
}

TEST(ValidateTest, UndefinedCallTarget) {
  EXPECT_EQ(CheckError("- a:\n    call: no_such_thing\n    args: {x: 1}\n"),
            "w.yaml:2:5: undefined call target 'no_such_thing' in step 'a'");
}

TEST(ValidateTest, UndefinedFunctionInExpression) {
  EXPECT_EQ(CheckError("- a:\n    return: ${frobnicate(1)}\n"),
            "w.yaml:2:13: undefined function 'frobnicate' in step 'a'");
}

TEST(ValidateTest, BlockingFunctionOnlyFromACallStep) {
  EXPECT_EQ(CheckError("- a:\n    return: ${http.get(\"https://example.com\")}\n"),
            "w.yaml:2:13: 'http.get' blocks, so only a call step can call it in step 'a'");
}

TEST(ValidateTest, SubworkflowArgs) {
  std::string routines = R"(
greet:
  params: [first, last, country: "UK"]
  steps:
    - r: {return: "${first + last + country}"}
)";
  ExpectValid(
      "main:\n  steps:\n    - c:\n        call: greet\n"
      "        args: {first: A, last: B}\n" +
      routines);
  EXPECT_EQ(CheckError("main:\n  steps:\n    - c:\n        call: greet\n"
                       "        args: {first: A, last: B, nickname: C}\n" +
                       routines),
            "w.yaml:5:45: unknown arg 'nickname' for subworkflow 'greet' in step 'c'");
  EXPECT_EQ(CheckError("main:\n  steps:\n    - c:\n        call: greet\n"
                       "        args: {first: A}\n" +
                       routines),
            "w.yaml:4:9: missing required arg 'last' for subworkflow 'greet' in step 'c'");
}

TEST(ValidateTest, NextTargets) {
  EXPECT_EQ(CheckError("- a:\n    next: nowhere\n"),
            "w.yaml:2:11: undefined next target 'nowhere' in step 'a'");
  // Into a nested block is not a jump target: only the current and enclosing blocks are.
  EXPECT_EQ(CheckError("- a:\n    next: inner\n- b:\n    steps:\n      - inner: {return: 1}\n"),
            "w.yaml:2:11: a jump to 'inner' cannot enter the nested steps of step 'b' (a next "
            "reaches steps of its own or an enclosing block) in step 'a'");
  // Out of a nested block, from a switch arm and from an except block, to an enclosing one.
  ExpectValid(R"(- outer:
    steps:
      - s:
          switch:
            - condition: true
              next: tail
      - t:
          try:
            raise: boom
          except:
            steps:
              - back: {next: tail}
- tail:
    next: end
)");
}

TEST(ValidateTest, BreakAndContinueOnlyInsideFor) {
  EXPECT_EQ(CheckError("- a:\n    next: break\n"),
            "w.yaml:2:11: 'break' outside a for loop in step 'a'");
  EXPECT_EQ(CheckError("- a:\n    switch: [{condition: true, next: continue}]\n"),
            "w.yaml:2:38: 'continue' outside a for loop in step 'a'");
  ExpectValid(R"(- loop:
    for:
      value: v
      in: [1, 2, 3]
      steps:
        - check:
            switch:
              - condition: ${v == 2}
                next: continue
              - condition: ${v == 3}
                next: break
)");
}

TEST(ValidateTest, JumpsCannotLeaveAParallelBranchOrTransaction) {
  EXPECT_EQ(CheckError(R"(- p:
    parallel:
      branches:
        - b1: {steps: [{s: {next: after}}]}
        - b2: {steps: [{s2: {next: end}}]}
- after:
    return: 1
)"),
            "w.yaml:4:35: a jump to 'after' cannot leave its parallel branch in step 's'");
  EXPECT_EQ(CheckError("- t:\n    transaction:\n      steps:\n        - s: {next: after}\n"
                       "- after:\n    return: 1\n"),
            "w.yaml:4:21: a jump to 'after' cannot leave its transaction in step 's'");
}

TEST(ValidateTest, CompensateAndTccOnlyInsideATransaction) {
  EXPECT_EQ(CheckError(R"(- deploy:
    call: http.post
    args: {url: "https://example.com/deploy"}
    compensate:
      call: http.post
      args: {url: "https://example.com/undeploy"}
)"),
            "w.yaml:5:7: 'compensate' outside a transaction in step 'deploy'");
  EXPECT_EQ(CheckError(R"(- reserve:
    tcc:
      try: {call: http.post, args: {url: "https://q/try"}}
      confirm: {call: http.post, args: {url: "https://q/confirm"}}
      cancel: {call: http.post, args: {url: "https://q/cancel"}}
)"),
            "w.yaml:1:3: 'tcc' outside a transaction in step 'reserve'");
}

TEST(ValidateTest, NoTransactionInsideATransaction) {
  EXPECT_EQ(CheckError(R"(- outer:
    transaction:
      steps:
        - inner:
            transaction:
              steps:
                - s: {call: sys.log, args: {text: hi}}
)"),
            "w.yaml:4:11: a transaction nested inside a transaction in step 'inner'");
}

TEST(ValidateTest, CallTargetsInsideTccAndCompensateAreChecked) {
  EXPECT_EQ(CheckError(R"(- t:
    transaction:
      steps:
        - d:
            call: http.post
            args: {url: "https://x"}
            compensate: {call: http.undo, args: {url: "https://x"}}
)"),
            "w.yaml:7:26: undefined call target 'http.undo' in step 'd'");
}

TEST(ValidateTest, ReportsEveryProblemInFileOrder) {
  EXPECT_EQ(CheckError("- a:\n    next: nowhere\n- b:\n    return: ${ghost}\n"),
            "w.yaml:2:11: undefined next target 'nowhere' in step 'a'\n"
            "w.yaml:4:13: undefined variable 'ghost' in step 'b'");
}

TEST(ValidateTest, ValidParallelStepsAndCompensationsLoad) {
  ExpectValid(R"(- init:
    assign:
      - results: {}
      - limit: 3
- fan:
    parallel:
      shared: [results]
      concurrency_limit: ${limit}
      exception_policy: continueAll
      branches:
        - a: {steps: [{fetch_a: {call: http.get, args: {url: "https://a"}, result: r}},
                      {keep_a: {assign: [{results.a: "${r.code}"}]}}]}
        - b: {steps: [{fetch_b: {call: http.get, args: {url: "https://b"}, result: r}},
                      {keep_b: {assign: [{results.b: "${r.code}"}]}}]}
- publish:
    transaction:
      steps:
        - train:
            call: atomflow.jobs.run
            args: {command: [train]}
            compensate: {call: atomflow.jobs.run, args: {command: [untrain]}}
        - deploy:
            call: http.post
            args: {url: "https://serve/deploy"}
            compensate: {call: http.post, args: {url: "https://serve/undeploy"}}
- done:
    return: ${results}
)");
}

TEST(ValidateTest, SourceSizeLimit) {
  std::string text = "- done:\n    return: 1\n#" + std::string(kMaxSourceBytes, 'x') + "\n";
  EXPECT_EQ(CheckError(text), "w.yaml:1:1: the source is " + std::to_string(text.size()) +
                                  " bytes; the limit is 131072 (128 KB)");
}

TEST(ValidateTest, StepNestingLimit) {
  // 101 groups inside one another, in flow style to stay small.
  std::string text;
  for (int i = 0; i <= kMaxStepNesting; ++i) text += "[{g" + std::to_string(i) + ": {steps: ";
  text += "[{leaf: {return: 1}}]";
  for (int i = 0; i <= kMaxStepNesting; ++i) text += "}}]";
  EXPECT_THAT(CheckError(text), ::testing::HasSubstr("nest more than 100 levels deep"));
}

// Runs a limit check and returns the tag and message it raised, or "" when none.
template <typename Check>
std::string RaisedBy(Check check) {
  try {
    check();
  } catch (const RaisedError& error) {
    const Map& payload = error.payload().AsMap();
    return payload.Find("tags")->AsList()[0].AsString() + ": " +
           payload.Find("message")->AsString();
  }
  return "";
}

// A write inside a transaction with neither compensate: nor tcc: is no branch: an abort left it
// in place while `atomflow validate` said nothing. Now each such call is a warning (the
// workflow stays valid); reads, branches and calls outside a transaction are not.
TEST(ValidateTest, WarnsOfTransactionWritesThatAreNoBranch) {
  Result<std::shared_ptr<const Workflow>> workflow = LoadWorkflow("w.yaml", R"(- release:
    transaction:
      steps:
        - read:
            call: http.get
            args: {url: "http://a/x"}
        - notify:
            call: http.post
            args: {url: "http://a/notify"}
        - deploy:
            call: http.post
            args: {url: "http://a/deploy"}
            compensate:
              call: http.post
              args: {url: "http://a/undeploy"}
        - pick:
            switch:
              - condition: true
                steps:
                  - remove:
                      call: http.request
                      args: {url: "http://a/y", method: "delete"}
                  - look:
                      call: http.request
                      args: {url: "http://a/y", method: "GET"}
        - note:
            call: sys.log
            args: {text: "done"}
        - guarded:
            try:
              call: http.put
              args: {url: "http://a/z"}
            except:
              as: e
              steps:
                - ignore:
                    assign: [{failed: true}]
- after:
    call: http.post
    args: {url: "http://a/after"}
)");
  ASSERT_TRUE(workflow.ok()) << workflow.message();
  EXPECT_THAT(TransactionWarnings(**workflow),
              testing::ElementsAre(
                  "w.yaml:8:13: warning: http.post in step 'notify' has neither compensate: nor "
                  "tcc:, so it is no branch of transaction 'release': an abort does not undo it",
                  "w.yaml:21:23: warning: http.request in step 'remove' has neither compensate: "
                  "nor tcc:, so it is no branch of transaction 'release': an abort does not "
                  "undo it",
                  "w.yaml:31:15: warning: http.put in step 'guarded' has neither compensate: nor "
                  "tcc:, so it is no branch of transaction 'release': an abort does not undo it"));
}

TEST(LimitsTest, StepsPerExecution) {
  EXPECT_EQ(RaisedBy([] { CheckStepCount(kMaxStepsPerExecution); }), "");
  EXPECT_EQ(RaisedBy([] { CheckStepCount(kMaxStepsPerExecution + 1); }),
            "ResourceLimitError: the execution exceeded the limit of 100000 steps");
}

TEST(LimitsTest, CallDepth) {
  EXPECT_EQ(RaisedBy([] { CheckCallDepth(kMaxCallDepth - 1, "f"); }), "");
  EXPECT_EQ(RaisedBy([] { CheckCallDepth(kMaxCallDepth, "f"); }),
            "RecursionError: maximum call depth of 20 exceeded calling 'f'");
}

TEST(LimitsTest, ExecutionArgumentSize) {
  EXPECT_TRUE(CheckExecutionArgument(kMaxArgumentBytes).ok());
  EXPECT_EQ(CheckExecutionArgument(kMaxArgumentBytes + 1).message(),
            "the execution argument is 32769 bytes of JSON; the limit is 32768");
}

TEST(LimitsTest, ValueBytesCountsTextKeysAndScalars) {
  EXPECT_EQ(ValueBytes(Value("abc")), 3u);
  EXPECT_EQ(ValueBytes(Value(List{Value(1), Value("ab")})), 8u + 8u + 2u);
  EXPECT_EQ(ValueBytes(Value(Map{{"key", Value(true)}})), 8u + 3u + 8u);
  // Counting stops once past the limit.
  EXPECT_LT(ValueBytes(Value(List(1000, Value("xxxx"))), 100), 200u);
}

TEST(LimitsTest, VariableMemoryIsCheckedAfterAssignAndCallSteps) {
  Step assign;
  assign.kind = Step::Kind::kAssign;
  assign.name = "grow";
  Map vars;
  vars.Set("a", Value(std::string(kMaxVariableBytes / 2, 'x')));
  EXPECT_EQ(RaisedBy([&] { CheckVariableMemory(assign, vars); }), "");
  vars.Set("b", Value(std::string(kMaxVariableBytes / 2, 'x')));
  EXPECT_EQ(RaisedBy([&] { CheckVariableMemory(assign, vars); }),
            "ResourceLimitError: the variables of the workflow take more than 524288 bytes, "
            "the memory limit after step 'grow'");

  Step jump;
  jump.kind = Step::Kind::kNext;
  EXPECT_EQ(RaisedBy([&] { CheckVariableMemory(jump, vars); }), "");
}

}  // namespace
}  // namespace atomflow::lang
