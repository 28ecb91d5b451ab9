// The self-coordinated transaction API (DTM style): services open a global transaction,
// register saga and TCC branches as HTTP calls, then submit it to run as a workflow.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::engine {
class Engine;
}

namespace atomflow::txn {

// What one API call answers: an HTTP status and a JSON body. Errors carry
// {"error": {"code", "message", "status"}}, as Google APIs do.
struct ApiResponse {
  int status = 200;
  Json body;
};

// One HTTP call of a branch, as registered: a URL and an optional JSON body.
struct ApiCall {
  std::string url;
  std::optional<Json> body;
};

// One registered branch: a saga branch uses action and compensate, a tcc branch try, confirm
// and cancel (in calls, in that order).
struct ApiBranch {
  std::string kind;  // "saga" or "tcc"
  std::vector<ApiCall> calls;
};

// Translates the HTTP API of docs/transactions.md ("Self-coordinated transactions") into
// workflow executions on an engine, so submitted transactions share the coordinator, the
// journal, crash recovery and the txn CLI with `transaction:` blocks. Transactions stay in
// memory until submitted (an open one is lost if the process stops; a submitted one is a
// durable execution). Transport-free: the routes live with the HTTP server. Thread safe; the
// engine must outlive it.
class TxnApi {
 public:
  explicit TxnApi(engine::Engine* engine) : engine_(engine) {}
  TxnApi(const TxnApi&) = delete;
  TxnApi& operator=(const TxnApi&) = delete;

  // POST /v1/transactions, body {"timeout": seconds?} (may be empty).
  ApiResponse Begin(const std::string& body);
  // POST /v1/transactions/{gid}/branches.
  ApiResponse AddBranch(const std::string& gid, const std::string& body);
  // POST /v1/transactions/{gid}:submit.
  ApiResponse Submit(const std::string& gid);
  // POST /v1/transactions/{gid}:abort: drops an open transaction; nothing was sent.
  ApiResponse Abort(const std::string& gid);
  // GET /v1/transactions/{gid}.
  ApiResponse Get(const std::string& gid);

  // The workflow a submitted transaction runs: one `transaction:` block with one step per
  // branch, in registration order. It holds no registered text: URLs and bodies are read from
  // the execution's argument (ArgumentOf), so nothing a caller sends is parsed as YAML or as
  // an expression.
  static std::string WorkflowSource(const std::vector<ApiBranch>& branches,
                                    std::optional<double> timeout);
  // The execution's argument: {"gid", "branches": [{"calls": [{"url", "body"?}...]}...]}.
  static Value ArgumentOf(const std::string& gid, const std::vector<ApiBranch>& branches);

 private:
  // One transaction of the API. `execution` is set once submitted.
  struct Pending {
    std::optional<double> timeout;
    std::vector<ApiBranch> branches;
    bool dropped = false;
    std::string execution;
  };

  // The state a submitted transaction's execution and journal show.
  std::string SubmittedState(const std::string& execution_id);
  std::string NewGid();

  engine::Engine* engine_;
  std::mutex mutex_;
  std::map<std::string, Pending> transactions_;
  uint64_t counter_ = 0;
};

// An error response: code is the HTTP status, status its Google name (INVALID_ARGUMENT...).
ApiResponse ApiError(int code, const std::string& status, const std::string& message);

}  // namespace atomflow::txn
