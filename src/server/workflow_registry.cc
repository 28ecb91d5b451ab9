// WorkflowRegistry: deploy-time checks, revision ids, PATCH semantics and the parse cache.
#include "server/workflow_registry.h"

#include <chrono>
#include <cstdio>
#include <string_view>

#include "lang/limits.h"

namespace atomflow::server {
namespace {

constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxCachedWorkflows = 256;

// The fields a PATCH may change, as the API names them.
constexpr std::string_view kDescription = "description";
constexpr std::string_view kLabels = "labels";
constexpr std::string_view kSource = "sourceContents";
constexpr std::string_view kServiceAccount = "serviceAccount";
constexpr std::string_view kPatchable[] = {kDescription, kLabels, kSource, kServiceAccount};

// Fields of a workflow resource the server sets; a PATCH body may carry them back unchanged
// (a client that read, edited and sent the resource) and they are ignored.
constexpr std::string_view kOutputOnly[] = {"name",       "state",      "revisionId",
                                            "createTime", "updateTime", "revisionCreateTime"};

int64_t NowMs() {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool Contains(const auto& list, std::string_view item) {
  for (std::string_view known : list) {
    if (known == item) return true;
  }
  return false;
}

// Google's rule for workflow ids.
Status CheckName(const std::string& name) {
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  bool valid = !name.empty() && name.size() <= kMaxNameLength && letter(name[0]);
  for (char c : name) valid = valid && (letter(c) || digit(c) || c == '-' || c == '_');
  if (valid) return Status::Ok();
  return Status::InvalidArgument("workflow id '" + name +
                                 "' is not valid: use letters, digits, - and _, start with a "
                                 "letter, and at most 64 characters");
}

Status CheckLabels(const Json& labels) {
  if (!labels.is_object()) return Status::InvalidArgument("labels must be a map of strings");
  for (const auto& [key, value] : labels.items()) {
    if (!value.is_string()) {
      return Status::InvalidArgument("label '" + key + "' must be a string");
    }
  }
  return Status::Ok();
}

// Checks size first, so that an oversized source is refused before it is parsed.
Result<std::shared_ptr<const lang::Workflow>> Validate(const std::string& name,
                                                       const std::string& source) {
  if (source.size() > lang::kMaxSourceBytes) {
    return Status::InvalidArgument("sourceContents is " + std::to_string(source.size()) +
                                   " bytes; the limit is " + std::to_string(lang::kMaxSourceBytes) +
                                   " bytes (128 KiB)");
  }

  Result<std::shared_ptr<const lang::Workflow>> workflow = lang::LoadWorkflow(name, source);
  if (!workflow.ok()) return Status::InvalidArgument(workflow.message());
  return workflow;
}

// FNV-1a: stable across builds and platforms, unlike std::hash.
uint64_t SourceHash(std::string_view source) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : source) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

// "NNNNNN-xxx": the revision's number and three hex digits of its source's hash.
std::string RevisionId(int64_t number, std::string_view source) {
  char text[32];
  std::snprintf(text, sizeof(text), "%06lld-%03x", static_cast<long long>(number),
                static_cast<unsigned>(SourceHash(source) & 0xfff));
  return text;
}

// The number at the front of a revision id; 0 when it has none.
int64_t RevisionNumber(const std::string& revision_id) {
  long long number = 0;
  if (std::sscanf(revision_id.c_str(), "%6lld", &number) != 1) return 0;
  return number;
}

// "source_contents" and "sourceContents" name the same field in an update mask.
std::string CamelCase(std::string_view field) {
  std::string camel;
  bool upper = false;
  for (char c : field) {
    if (c == '_') {
      upper = true;
      continue;
    }
    camel += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    upper = false;
  }
  return camel;
}

// The fields a PATCH takes: the mask's, or every patchable field the body has.
Result<std::vector<std::string>> PatchedFields(const Json& fields,
                                               const std::vector<std::string>& update_mask) {
  if (!fields.is_object()) return Status::InvalidArgument("the request body must be an object");
  for (const auto& [key, value] : fields.items()) {
    if (!Contains(kPatchable, key) && !Contains(kOutputOnly, key)) {
      return Status::InvalidArgument("unknown field '" + key + "' in a workflow");
    }
  }

  std::vector<std::string> taken;
  for (const std::string& masked : update_mask) {
    std::string field = CamelCase(masked);
    if (!Contains(kPatchable, field)) {
      return Status::InvalidArgument("updateMask names '" + masked +
                                     "', which is not a field a patch can change");
    }
    taken.push_back(field);
  }
  if (!update_mask.empty()) return taken;

  for (std::string_view field : kPatchable) {
    if (fields.contains(field)) taken.emplace_back(field);
  }
  return taken;
}

// One field of the body, or its default when a mask names a field the body lacks (the
// field mask rule: a masked, absent field is cleared).
Result<std::string> TextField(const Json& fields, std::string_view field) {
  if (!fields.contains(field)) return std::string();
  const Json& value = fields.at(std::string(field));
  if (!value.is_string()) {
    return Status::InvalidArgument(std::string(field) + " must be a string");
  }
  return value.get<std::string>();
}

// Applies one patched field to the record.
Status ApplyField(const Json& fields, const std::string& field, store::WorkflowRecord& record) {
  if (field == kLabels) {
    Json labels = fields.contains(kLabels) ? fields.at(std::string(kLabels)) : Json::object();
    Status status = CheckLabels(labels);
    if (!status.ok()) return status;
    record.labels = labels.dump();
    return Status::Ok();
  }

  Result<std::string> text = TextField(fields, field);
  if (!text.ok()) return text.status();
  if (field == kDescription) record.description = *text;
  if (field == kSource) record.source = *text;
  if (field == kServiceAccount) record.service_account = *text;
  return Status::Ok();
}

bool SameFields(const store::WorkflowRecord& a, const store::WorkflowRecord& b) {
  return a.description == b.description && a.labels == b.labels && a.source == b.source &&
         a.service_account == b.service_account;
}

}  // namespace

WorkflowRegistry::WorkflowRegistry(store::Store* store) : store_(store) {}

Result<store::WorkflowRecord> WorkflowRegistry::Create(const DeployRequest& request) {
  Status status = CheckName(request.name);
  if (status.ok()) status = CheckLabels(request.labels);
  if (!status.ok()) return status;
  Result<std::shared_ptr<const lang::Workflow>> workflow = Validate(request.name, request.source);
  if (!workflow.ok()) return workflow.status();

  store::WorkflowRecord record;
  record.name = request.name;
  record.revision_id = RevisionId(1, request.source);
  record.source = request.source;
  record.description = request.description;
  record.labels = request.labels.dump();
  record.service_account = request.service_account;
  record.create_time_ms = record.update_time_ms = record.revision_create_time_ms = NowMs();

  std::lock_guard lock(write_mutex_);
  status = store_->CreateWorkflow(record);
  if (!status.ok()) return status;
  Remember({record.name, record.revision_id}, std::move(workflow).value());
  return record;
}

Result<store::WorkflowRecord> WorkflowRegistry::Patch(const std::string& name, const Json& fields,
                                                      const std::vector<std::string>& update_mask) {
  Result<std::vector<std::string>> taken = PatchedFields(fields, update_mask);
  if (!taken.ok()) return taken.status();

  std::lock_guard lock(write_mutex_);
  Result<store::WorkflowRecord> current = store_->GetWorkflow(name);
  if (!current.ok()) return current.status();

  store::WorkflowRecord record = *current;
  for (const std::string& field : *taken) {
    Status status = ApplyField(fields, field, record);
    if (!status.ok()) return status;
  }
  if (SameFields(record, *current)) return record;  // nothing changes, no new revision

  // Only what runs (the source, the identity) makes a new revision.
  bool new_revision =
      record.source != current->source || record.service_account != current->service_account;
  std::shared_ptr<const lang::Workflow> parsed;
  record.update_time_ms = NowMs();
  if (new_revision) {
    Result<std::shared_ptr<const lang::Workflow>> workflow = Validate(name, record.source);
    if (!workflow.ok()) return workflow.status();
    parsed = std::move(workflow).value();
    record.revision_id = RevisionId(RevisionNumber(current->revision_id) + 1, record.source);
    record.revision_create_time_ms = record.update_time_ms;
  }

  Status status = store_->UpdateWorkflow(record, new_revision);
  if (!status.ok()) return status;
  if (parsed != nullptr) Remember({record.name, record.revision_id}, std::move(parsed));
  return record;
}

Status WorkflowRegistry::Delete(const std::string& name) {
  std::lock_guard lock(write_mutex_);
  Status status = store_->DeleteWorkflow(name);
  if (!status.ok()) return status;

  // A workflow deployed again under this name starts its revisions from 000001 again.
  Forget(name);
  return Status::Ok();
}

Result<std::shared_ptr<const lang::Workflow>> WorkflowRegistry::Load(
    const store::WorkflowRecord& record) {
  CacheKey key{record.name, record.revision_id};
  {
    std::lock_guard lock(cache_mutex_);
    auto cached = cache_.find(key);
    if (cached != cache_.end()) return cached->second;
  }

  // Parsed outside the lock: a large source takes a while, and two racing parses agree.
  Result<std::shared_ptr<const lang::Workflow>> workflow = Validate(record.name, record.source);
  if (!workflow.ok()) return workflow.status();
  Remember(key, *workflow);
  return workflow;
}

void WorkflowRegistry::Remember(const CacheKey& key,
                                std::shared_ptr<const lang::Workflow> workflow) {
  std::lock_guard lock(cache_mutex_);
  if (!cache_.emplace(key, std::move(workflow)).second) return;
  cache_order_.push_back(key);

  while (cache_order_.size() > kMaxCachedWorkflows) {
    cache_.erase(cache_order_.front());
    cache_order_.pop_front();
  }
}

void WorkflowRegistry::Forget(const std::string& name) {
  std::lock_guard lock(cache_mutex_);
  std::erase_if(cache_order_, [&](const CacheKey& key) { return key.first == name; });
  std::erase_if(cache_, [&](const auto& entry) { return entry.first.first == name; });
}

}  // namespace atomflow::server
