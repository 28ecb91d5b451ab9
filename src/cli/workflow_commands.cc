// `atomflow workflows ...`: deploy, list, describe and delete deployed workflows, through a
// server's API or the local store's workflow registry.
#include "cli/workflow_commands.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/client.h"
#include "cli/output.h"
#include "cli/remote_commands.h"
#include "lang/ast.h"
#include "lang/validate.h"
#include "server/workflow_registry.h"

namespace atomflow::cli {

namespace {

// What the workflows subcommands take; one per group, shared by its handlers.
struct WorkflowFlags {
  std::string name;
  std::string file;
  std::string description;
  std::vector<std::string> labels;
  std::string service_account;
  std::string revision;
  bool source = false;
  CLI::Option* description_option = nullptr;
  CLI::Option* labels_option = nullptr;
  CLI::Option* service_account_option = nullptr;
};

// The outcome of a deploy.
struct Deployed {
  store::WorkflowRecord workflow;
  bool created = false;
  bool new_revision = false;
};

std::string WorkflowPath(const std::string& name) { return "/v1/workflows/" + PathSegment(name); }

// A workflow resource of the API as the record the commands print.
store::WorkflowRecord RecordOf(const Json& resource) {
  store::WorkflowRecord record;
  std::string name = resource.value("name", "");
  record.name = name.substr(name.rfind('/') + 1);
  record.revision_id = resource.value("revisionId", "");
  record.source = resource.value("sourceContents", "");
  record.description = resource.value("description", "");
  record.labels = resource.value("labels", Json::object()).dump();
  record.service_account = resource.value("serviceAccount", "");
  record.create_time_ms = ParseRfc3339(resource.value("createTime", ""));
  record.update_time_ms = ParseRfc3339(resource.value("updateTime", ""));
  record.revision_create_time_ms = ParseRfc3339(resource.value("revisionCreateTime", ""));
  return record;
}

Json WorkflowJson(const store::WorkflowRecord& record, bool with_source) {
  Json out = {{"name", record.name},
              {"revision_id", record.revision_id},
              {"description", record.description},
              {"labels", ParseOrNull(record.labels)},
              {"service_account", record.service_account},
              {"create_time", Rfc3339(record.create_time_ms)},
              {"update_time", Rfc3339(record.update_time_ms)},
              {"revision_create_time", Rfc3339(record.revision_create_time_ms)}};
  if (with_source) out["source"] = record.source;
  return out;
}

Result<std::string> ReadSource(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return Status::InvalidArgument("cannot read workflow file " + file);
  std::stringstream text;
  text << in.rdbuf();
  size_t bad = 0;
  if (!IsValidUtf8(text.str(), &bad)) {
    return Status::InvalidArgument(file + " is not UTF-8 text (at byte " + std::to_string(bad) +
                                   ")");
  }
  return text.str();
}

// The fields a deploy sets, in the API's names: the source always, the others when given.
Result<Json> DeployFields(const WorkflowFlags& flags, const std::string& source) {
  Json fields = {{"sourceContents", source}};
  if (flags.description_option->count() > 0) fields["description"] = flags.description;
  if (flags.service_account_option->count() > 0) fields["serviceAccount"] = flags.service_account;
  if (flags.labels_option->count() > 0) {
    Result<Json> labels = ParseLabels(flags.labels);
    if (!labels.ok()) return labels.status();
    fields["labels"] = *labels;
  }
  return fields;
}

std::vector<std::string> MaskOf(const Json& fields) {
  std::vector<std::string> mask;
  for (const auto& [key, value] : fields.items()) mask.push_back(key);
  return mask;
}

std::string Joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

// A validation message names positions as "NAME:line:column"; the user knows them as the file's.
std::string InFile(const std::string& message, const std::string& name, const std::string& file) {
  std::string out;
  size_t begin = 0;
  while (begin <= message.size()) {
    size_t end = std::min(message.find('\n', begin), message.size());
    std::string line = message.substr(begin, end - begin);
    if (line.starts_with(name + ":")) line = file + line.substr(name.size());
    out += (begin == 0 ? "" : "\n") + line;
    begin = end + 1;
  }
  return "workflow not deployed: " + out;
}

// Creates the workflow, or patches it when it exists (the revision changes only with its
// source or service account).
Result<Deployed> DeployRemote(ApiClient& client, const std::string& name, const Json& fields) {
  Result<Json> created = client.Post("/v1/workflows", fields, {{"workflowId", name}});
  if (created.ok()) {
    return Deployed{RecordOf(created->value("response", Json::object())), true, true};
  }
  if (created.status().code() != StatusCode::kAlreadyExists) return created.status();

  Result<Json> before = client.Get(WorkflowPath(name));
  if (!before.ok()) return before.status();
  Result<Json> patched =
      client.Patch(WorkflowPath(name), fields, {{"updateMask", Joined(MaskOf(fields))}});
  if (!patched.ok()) return patched.status();
  store::WorkflowRecord after = RecordOf(patched->value("response", Json::object()));
  bool new_revision = after.revision_id != before->value("revisionId", "");
  return Deployed{std::move(after), false, new_revision};
}

Result<Deployed> DeployLocal(store::Store& store, const std::string& name, const Json& fields) {
  server::WorkflowRegistry registry(&store);
  server::DeployRequest request;
  request.name = name;
  request.source = fields.value("sourceContents", "");
  request.description = fields.value("description", "");
  request.service_account = fields.value("serviceAccount", "");
  request.labels = fields.value("labels", Json::object());
  Result<store::WorkflowRecord> created = registry.Create(request);
  if (created.ok()) return Deployed{std::move(created).value(), true, true};
  if (created.status().code() != StatusCode::kAlreadyExists) return created.status();

  Result<store::WorkflowRecord> before = store.GetWorkflow(name);
  if (!before.ok()) return before.status();
  Result<store::WorkflowRecord> after = registry.Patch(name, fields, MaskOf(fields));
  if (!after.ok()) return after.status();
  bool new_revision = after->revision_id != before->revision_id;
  return Deployed{std::move(after).value(), false, new_revision};
}

int Deploy(const CommonOptions& options, Target& target, const WorkflowFlags& flags) {
  Result<std::string> source = ReadSource(flags.file);
  if (!source.ok()) return Failed(options, source.status());
  Result<Json> fields = DeployFields(flags, *source);
  if (!fields.ok()) return Failed(options, fields.status());

  Result<Deployed> deployed = Status::Error("unset");
  if (target.remote()) {
    deployed = DeployRemote(*target.client, flags.name, *fields);
  } else {
    Result<std::unique_ptr<store::Store>> store = store::OpenSqliteStore(options.store);
    if (!store.ok()) return Failed(options, store.status());
    deployed = DeployLocal(**store, flags.name, *fields);
  }
  if (!deployed.ok()) {
    if (deployed.status().code() != StatusCode::kInvalidArgument) {
      return Failed(options, deployed.status());
    }
    return Invalid(options, InFile(deployed.message(), flags.name, flags.file));
  }

  // A valid workflow may still hold calls a transaction's abort does not undo: say so.
  if (auto loaded = lang::LoadWorkflow(flags.file, *source); loaded.ok()) {
    for (const std::string& warning : lang::TransactionWarnings(**loaded)) {
      fprintf(stderr, "%s\n", warning.c_str());
    }
  }
  const store::WorkflowRecord& workflow = deployed->workflow;
  if (options.json) {
    Json out = WorkflowJson(workflow, false);
    out["created"] = deployed->created;
    out["new_revision"] = deployed->new_revision;
    std::cout << out.dump() << std::endl;
    return kExitSucceeded;
  }
  const char* what = deployed->created        ? "created"
                     : deployed->new_revision ? "new revision"
                                              : "unchanged revision";
  printf("workflow %s: revision %s (%s)\n", workflow.name.c_str(), workflow.revision_id.c_str(),
         what);
  return kExitSucceeded;
}

int List(const CommonOptions& options, Target& target, const WorkflowFlags&) {
  std::vector<store::WorkflowRecord> workflows;
  if (target.remote()) {
    Result<Json> all = target.client->GetAll("/v1/workflows", "workflows");
    if (!all.ok()) return Failed(options, all.status());
    for (const Json& resource : *all) workflows.push_back(RecordOf(resource));
  } else {
    Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
    if (!store.ok()) return Failed(options, store.status());
    Result<std::vector<store::WorkflowRecord>> all = (*store)->ListWorkflows("", 0);
    if (!all.ok()) return Failed(options, all.status());
    workflows = std::move(all).value();
  }

  if (options.json) {
    Json out = Json::array();
    for (const store::WorkflowRecord& workflow : workflows) {
      out.push_back(WorkflowJson(workflow, false));
    }
    std::cout << out.dump() << std::endl;
    return kExitSucceeded;
  }
  std::vector<std::vector<std::string>> rows;
  for (const store::WorkflowRecord& workflow : workflows) {
    rows.push_back({workflow.name, workflow.revision_id, Rfc3339(workflow.update_time_ms),
                    workflow.description});
  }
  PrintTable({"NAME", "REVISION", "UPDATED", "DESCRIPTION"}, rows);
  return kExitSucceeded;
}

int Describe(const CommonOptions& options, Target& target, const WorkflowFlags& flags) {
  Result<store::WorkflowRecord> workflow = Status::Error("unset");
  if (target.remote()) {
    QueryParams query;
    if (!flags.revision.empty()) query.emplace_back("revisionId", flags.revision);
    Result<Json> resource = target.client->Get(WorkflowPath(flags.name), query);
    if (!resource.ok()) return Failed(options, resource.status());
    workflow = RecordOf(*resource);
  } else {
    Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
    if (!store.ok()) return Failed(options, store.status());
    workflow = (*store)->GetWorkflow(flags.name, flags.revision);
  }
  if (!workflow.ok()) return Failed(options, workflow.status());

  if (options.json) {
    std::cout << WorkflowJson(*workflow, flags.source).dump() << std::endl;
    return kExitSucceeded;
  }
  printf("workflow         %s\nrevision         %s\ndescription      %s\n", workflow->name.c_str(),
         workflow->revision_id.c_str(), workflow->description.c_str());
  printf("labels           %s\nservice account  %s\n", workflow->labels.c_str(),
         workflow->service_account.c_str());
  printf("created          %s\nupdated          %s\nrevision made    %s\n",
         Rfc3339(workflow->create_time_ms).c_str(), Rfc3339(workflow->update_time_ms).c_str(),
         Rfc3339(workflow->revision_create_time_ms).c_str());
  if (flags.source) printf("source:\n%s", workflow->source.c_str());
  return kExitSucceeded;
}

int Delete(const CommonOptions& options, Target& target, const WorkflowFlags& flags) {
  Status deleted;
  if (target.remote()) {
    Result<Json> answer = target.client->Delete(WorkflowPath(flags.name));
    deleted = answer.status();
  } else {
    Result<std::unique_ptr<store::Store>> store = OpenExistingStore(options.store);
    if (!store.ok()) return Failed(options, store.status());
    server::WorkflowRegistry registry(store->get());
    deleted = registry.Delete(flags.name);
  }
  if (!deleted.ok()) return Failed(options, deleted);
  if (options.json) {
    std::cout << Json{{"name", flags.name}, {"deleted", true}}.dump() << std::endl;
  } else {
    printf("workflow %s deleted (its executions stay readable)\n", flags.name.c_str());
  }
  return kExitSucceeded;
}

}  // namespace

void AddWorkflowCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers) {
  auto flags = std::make_shared<WorkflowFlags>();
  CLI::App* workflows = app.add_subcommand("workflows", "deploy and inspect workflows");
  workflows->require_subcommand(1);

  auto add = [&](const std::string& name, const std::string& help, auto command) {
    CLI::App* sub = workflows->add_subcommand(name, help);
    auto target_flags = std::make_shared<TargetFlags>();
    AddTargetFlags(app, sub, *target_flags, options);
    handlers.emplace_back(sub, [target_flags, flags, command, &options] {
      Result<Target> target = ResolveTarget(*target_flags);
      if (!target.ok()) return Failed(options, target.status());
      return command(options, *target, *flags);
    });
    return sub;
  };

  CLI::App* deploy = add("deploy", "create a workflow, or update it when it exists", Deploy);
  deploy->add_option("name", flags->name, "workflow name")->required();
  deploy->add_option("file", flags->file, "workflow file (YAML or JSON)")->required();
  flags->description_option =
      deploy->add_option("--description", flags->description, "what the workflow does");
  flags->labels_option =
      deploy->add_option("--label", flags->labels, "a label key=value (repeatable)")
          ->allow_extra_args(false);
  flags->service_account_option = deploy->add_option("--service-account", flags->service_account,
                                                     "the identity its executions act as");

  add("list", "list deployed workflows, by name", List);
  CLI::App* describe = add("describe", "show a workflow", Describe);
  describe->add_option("name", flags->name, "workflow name")->required();
  describe->add_option("--revision", flags->revision, "this revision instead of the latest");
  describe->add_flag("--source", flags->source, "include the source");
  CLI::App* remove = add("delete", "delete a workflow and its revisions", Delete);
  remove->add_option("name", flags->name, "workflow name")->required();
}

}  // namespace atomflow::cli
