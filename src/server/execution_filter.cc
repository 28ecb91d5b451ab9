// Parsing of the executions list's filter and orderBy.
#include "server/execution_filter.h"

#include <regex>
#include <set>

#include "server/api_support.h"

namespace atomflow::server {

namespace {

// One term: FIELD OP VALUE, the value quoted or bare.
const std::regex& TermPattern() {
  static const std::regex kTerm(
      R"re(\s*([A-Za-z]+)\s*(!=|<=|>=|=|<|>)\s*(?:"([^"]*)"|([^\s"]+))\s*)re");
  return kTerm;
}

std::vector<std::string> SplitOnAnd(const std::string& filter) {
  static const std::regex kAnd(R"(\s+AND\s+)");
  std::vector<std::string> terms;
  std::sregex_token_iterator it(filter.begin(), filter.end(), kAnd, -1);
  for (; it != std::sregex_token_iterator(); ++it) terms.push_back(it->str());
  return terms;
}

Result<store::ExecutionFilter> ParseTerm(const std::string& term) {
  std::smatch m;
  if (!std::regex_match(term, m, TermPattern())) {
    return Status::InvalidArgument("filter: cannot read '" + term +
                                   "'; write FIELD OP \"VALUE\", e.g. state=\"FAILED\"");
  }
  std::string field = m[1].str();
  std::string op = m[2].str();
  std::string value = m[3].matched ? m[3].str() : m[4].str();

  store::ExecutionFilter out{"", op, value};
  if (field == "state") {
    static const std::set<std::string> kStates = {"ACTIVE", "SUCCEEDED", "FAILED", "CANCELLED",
                                                  "QUEUED"};
    if (op != "=" && op != "!=") {
      return Status::InvalidArgument("filter: state takes = or !=, not " + op);
    }
    if (kStates.count(value) == 0) {
      return Status::InvalidArgument("filter: unknown state '" + value +
                                     "' (ACTIVE, SUCCEEDED, FAILED, CANCELLED, QUEUED)");
    }
    out.field = "state";
  } else if (field == "workflowRevisionId") {
    out.field = "revision_id";
  } else if (field == "startTime" || field == "endTime") {
    Result<int64_t> ms = ParseTime(value);
    if (!ms.ok()) return Status::InvalidArgument("filter: " + field + ": " + ms.message());
    out.field = field == "startTime" ? "start_time_ms" : "end_time_ms";
    out.value = std::to_string(*ms);
  } else {
    return Status::InvalidArgument("filter: unknown field '" + field +
                                   "' (state, startTime, endTime, workflowRevisionId)");
  }
  return out;
}

}  // namespace

Status ParseExecutionFilter(const std::string& filter, store::ExecutionQuery* query) {
  if (filter.find_first_not_of(" \t") == std::string::npos) return Status::Ok();
  for (const std::string& term : SplitOnAnd(filter)) {
    Result<store::ExecutionFilter> parsed = ParseTerm(term);
    if (!parsed.ok()) return parsed.status();
    query->filters.push_back(std::move(parsed).value());
  }
  return Status::Ok();
}

Status ParseExecutionOrder(const std::string& order_by, store::ExecutionQuery* query) {
  static const std::regex kOrder(R"(\s*startTime(?:\s+(asc|desc))?\s*)");
  std::smatch m;
  if (order_by.empty()) return Status::Ok();
  if (!std::regex_match(order_by, m, kOrder)) {
    return Status::InvalidArgument(
        "orderBy: only 'startTime desc' (the default) and "
        "'startTime asc' are supported, not '" +
        order_by + "'");
  }
  query->oldest_first = !m[1].matched || m[1].str() == "asc";
  return Status::Ok();
}

}  // namespace atomflow::server
