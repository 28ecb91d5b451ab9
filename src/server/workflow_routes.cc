// The workflow routes: deploy, get, list, patch, delete and list revisions (docs/api.md).
#include <random>
#include <sstream>

#include "common/log.h"
#include "lang/limits.h"
#include "server/api_support.h"
#include "server/resources.h"
#include "server/server.h"

namespace atomflow::server {

namespace {

using Method = ApiServer::Method;

// The fields a workflow body may carry (name is output only and ignored when sent).
const std::vector<std::string_view> kWorkflowFields = {"name", "description", "labels",
                                                       "serviceAccount", "sourceContents"};

std::string OperationName(const std::string& prefix) {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  char id[40];
  snprintf(id, sizeof(id), "operation-%016llx", static_cast<unsigned long long>(random()));
  return prefix + "operations/" + id;
}

// Google answers create, patch and delete with a long-running operation; ours is done at once.
Json Operation(const std::string& prefix, Json response) {
  return {{"name", OperationName(prefix)}, {"done", true}, {"response", std::move(response)}};
}

// InvalidArgument when sourceContents is present and over the limit or no string.
Status CheckSource(const Json& body) {
  if (!body.contains("sourceContents")) return Status::Ok();
  if (!body["sourceContents"].is_string()) {
    return Status::InvalidArgument("'sourceContents' must be a string");
  }
  size_t bytes = body["sourceContents"].get_ref<const std::string&>().size();
  if (bytes > lang::kMaxSourceBytes) {
    return Status::InvalidArgument("sourceContents is " + std::to_string(bytes) +
                                   " bytes, over the limit of " +
                                   std::to_string(lang::kMaxSourceBytes) + " bytes (128 KiB)");
  }
  return Status::Ok();
}

Result<DeployRequest> DeployRequestOf(const std::string& name, const Json& body) {
  DeployRequest request;
  request.name = name;
  Result<std::string> source = StringField(body, "sourceContents");
  if (!source.ok()) return source.status();
  if (source->empty()) return Status::InvalidArgument("sourceContents is required");
  request.source = std::move(source).value();
  Result<std::string> description = StringField(body, "description");
  if (!description.ok()) return description.status();
  request.description = std::move(description).value();
  Result<std::string> account = StringField(body, "serviceAccount");
  if (!account.ok()) return account.status();
  request.service_account = std::move(account).value();
  if (Status labels = CheckLabelsField(body); !labels.ok()) return labels;
  if (body.contains("labels")) request.labels = body["labels"];
  return request;
}

void CreateWorkflow(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"workflowId"});
  if (!query.ok()) return ReplyError(res, query);
  std::string id = QueryParam(req, "workflowId");
  if (id.empty()) return ReplyError(res, Status::InvalidArgument("workflowId is required"));
  Result<Json> body = ParseBody(req.body, kWorkflowFields);
  if (!body.ok()) return ReplyError(res, body.status());
  if (Status source = CheckSource(*body); !source.ok()) return ReplyError(res, source);
  Result<DeployRequest> request = DeployRequestOf(id, *body);
  if (!request.ok()) return ReplyError(res, request.status());

  Result<store::WorkflowRecord> created = server.registry().Create(*request);
  if (!created.ok()) return ReplyError(res, created.status());
  log::Event("workflow.deployed",
             {{"workflow", created->name}, {"revision", created->revision_id}});
  std::string prefix = NamePrefix(req);
  ReplyJson(res, Operation(prefix, WorkflowJson(*created, prefix)));
}

void GetWorkflow(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"revisionId"});
  if (!query.ok()) return ReplyError(res, query);
  Result<store::WorkflowRecord> record =
      server.store().GetWorkflow(req.matches[1], QueryParam(req, "revisionId"));
  if (!record.ok()) return ReplyError(res, record.status());
  ReplyJson(res, WorkflowJson(*record, NamePrefix(req)));
}

void ListWorkflows(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"pageSize", "pageToken", "orderBy"});
  if (!query.ok()) return ReplyError(res, query);
  Result<int> size = PageSize(req);
  if (!size.ok()) return ReplyError(res, size.status());
  std::string after;
  if (!QueryParam(req, "pageToken").empty()) {
    Result<std::string> cursor = DecodePageToken(QueryParam(req, "pageToken"), "workflows");
    if (!cursor.ok()) return ReplyError(res, cursor.status());
    after = *cursor;
  }

  Result<std::vector<store::WorkflowRecord>> records =
      server.store().ListWorkflows(after, *size + 1);
  if (!records.ok()) return ReplyError(res, records.status());
  std::string prefix = NamePrefix(req);
  Json out = {{"workflows", Json::array()}};
  for (int i = 0; i < static_cast<int>(records->size()) && i < *size; ++i) {
    out["workflows"].push_back(WorkflowJson((*records)[i], prefix));
  }
  if (static_cast<int>(records->size()) > *size) {
    out["nextPageToken"] = EncodePageToken("workflows", (*records)[*size - 1].name);
  }
  ReplyJson(res, out);
}

void ListRevisions(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"pageSize", "pageToken"});
  if (!query.ok()) return ReplyError(res, query);
  Result<int> size = PageSize(req);
  if (!size.ok()) return ReplyError(res, size.status());
  int offset = 0;
  if (!QueryParam(req, "pageToken").empty()) {
    Result<std::string> cursor =
        DecodePageToken(QueryParam(req, "pageToken"), PageScope(req, "revisions"));
    if (!cursor.ok()) return ReplyError(res, cursor.status());
    offset = std::atoi(cursor->c_str());
  }

  std::string name = req.matches[1];
  Result<store::WorkflowRecord> latest = server.store().GetWorkflow(name);
  if (!latest.ok()) return ReplyError(res, latest.status());
  Result<std::vector<store::WorkflowRecord>> records =
      server.store().ListRevisions(name, offset, *size + 1);
  if (!records.ok()) return ReplyError(res, records.status());
  std::string prefix = NamePrefix(req);
  Json out = {{"workflows", Json::array()}};
  for (int i = 0; i < static_cast<int>(records->size()) && i < *size; ++i) {
    out["workflows"].push_back(WorkflowJson((*records)[i], prefix));
  }
  if (static_cast<int>(records->size()) > *size) {
    out["nextPageToken"] =
        EncodePageToken(PageScope(req, "revisions"), std::to_string(offset + *size));
  }
  ReplyJson(res, out);
}

Result<std::vector<std::string>> UpdateMask(const httplib::Request& req) {
  std::vector<std::string> mask;
  std::stringstream text(QueryParam(req, "updateMask"));
  std::string field;
  while (std::getline(text, field, ',')) {
    if (field.empty()) continue;
    if (field != "description" && field != "labels" && field != "serviceAccount" &&
        field != "sourceContents") {
      return Status::InvalidArgument("updateMask: unknown field '" + field +
                                     "' (description, labels, serviceAccount, sourceContents)");
    }
    mask.push_back(field);
  }
  return mask;
}

void PatchWorkflow(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"updateMask"});
  if (!query.ok()) return ReplyError(res, query);
  Result<std::vector<std::string>> mask = UpdateMask(req);
  if (!mask.ok()) return ReplyError(res, mask.status());
  Result<Json> body = ParseBody(req.body, kWorkflowFields);
  if (!body.ok()) return ReplyError(res, body.status());
  if (Status source = CheckSource(*body); !source.ok()) return ReplyError(res, source);
  body->erase("name");
  if (Status labels = CheckLabelsField(*body); !labels.ok()) return ReplyError(res, labels);

  Result<store::WorkflowRecord> patched = server.registry().Patch(req.matches[1], *body, *mask);
  if (!patched.ok()) return ReplyError(res, patched.status());
  log::Event("workflow.patched", {{"workflow", patched->name}, {"revision", patched->revision_id}});
  std::string prefix = NamePrefix(req);
  ReplyJson(res, Operation(prefix, WorkflowJson(*patched, prefix)));
}

void DeleteWorkflow(ApiServer& server, const httplib::Request& req, httplib::Response& res) {
  Status query = CheckQuery(req, {"force", "etag"});
  if (!query.ok()) return ReplyError(res, query);
  Result<store::WorkflowRecord> record = server.store().GetWorkflow(req.matches[1]);
  if (!record.ok()) return ReplyError(res, record.status());
  Status deleted = server.registry().Delete(req.matches[1]);
  if (!deleted.ok()) return ReplyError(res, deleted);
  log::Event("workflow.deleted", {{"workflow", record->name}});
  std::string prefix = NamePrefix(req);
  ReplyJson(res, Operation(prefix, WorkflowJson(*record, prefix)));
}

}  // namespace

void RegisterWorkflowRoutes(ApiServer& server) {
  const std::string kOne = V1("/workflows/([^/:]+)");
  auto bind = [&server](void (*route)(ApiServer&, const httplib::Request&, httplib::Response&)) {
    return [&server, route](const httplib::Request& req, httplib::Response& res) {
      route(server, req, res);
    };
  };
  server.Route(Method::kPost, V1("/workflows"), Role::kDeployer, bind(CreateWorkflow));
  server.Route(Method::kGet, V1("/workflows"), Role::kViewer, bind(ListWorkflows));
  server.Route(Method::kGet, kOne + ":listRevisions", Role::kViewer, bind(ListRevisions));
  server.Route(Method::kGet, kOne, Role::kViewer, bind(GetWorkflow));
  server.Route(Method::kPatch, kOne, Role::kDeployer, bind(PatchWorkflow));
  server.Route(Method::kDelete, kOne, Role::kDeployer, bind(DeleteWorkflow));
}

}  // namespace atomflow::server
