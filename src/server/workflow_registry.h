// The workflow registry of atomflow serve: validates, stores and caches deployed workflows.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "lang/ast.h"
#include "store/store.h"
#include "value/value.h"

namespace atomflow::server {

// What a deploy (POST /v1/workflows) asks for.
struct DeployRequest {
  std::string name, source, description, service_account;
  Json labels = Json::object();
};

// Validates and stores workflows; caches parsed revisions. Thread safe: writes serialize on a
// mutex, so revision numbers of one process never race. Does not own the store, which must
// outlive it.
class WorkflowRegistry {
 public:
  explicit WorkflowRegistry(store::Store* store);

  // InvalidArgument listing every problem (line:column, step) when the source is not valid;
  // AlreadyExists; InvalidArgument for a bad name (Google's rule: letters, digits, - and _,
  // starting with a letter, at most 64 characters) or labels that are not a string map.
  Result<store::WorkflowRecord> Create(const DeployRequest& request);

  // fields: the JSON body of a PATCH; update_mask: the fields to take (empty: all present).
  // A new revision only when sourceContents or serviceAccount changes.
  Result<store::WorkflowRecord> Patch(const std::string& name, const Json& fields,
                                      const std::vector<std::string>& update_mask);

  Status Delete(const std::string& name);

  // The parsed workflow of a revision, for Engine::Start.
  Result<std::shared_ptr<const lang::Workflow>> Load(const store::WorkflowRecord& record);

 private:
  using CacheKey = std::pair<std::string, std::string>;  // (name, revision id)

  void Remember(const CacheKey& key, std::shared_ptr<const lang::Workflow> workflow);
  void Forget(const std::string& name);

  store::Store* store_;
  std::mutex write_mutex_;  // serializes Create, Patch and Delete
  std::mutex cache_mutex_;  // guards cache_ and cache_order_
  std::map<CacheKey, std::shared_ptr<const lang::Workflow>> cache_;
  std::deque<CacheKey> cache_order_;  // oldest first, for eviction
};

}  // namespace atomflow::server
