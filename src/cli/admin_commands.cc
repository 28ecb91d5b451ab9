// The tokens and secrets subcommands: API tokens of `atomflow serve` and the secrets of service
// identities, kept in the store file.
#include "cli/admin_commands.h"

#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/output.h"
#include "server/auth.h"
#include "store/secret_store.h"

namespace atomflow::cli {

namespace {

// What the tokens and secrets subcommands take; shared by their handlers.
struct AdminFlags {
  std::string name;
  std::string role;
  std::string value;
  std::string from_file;
  CLI::Option* value_option = nullptr;
};

void AddStoreAndJson(CLI::App* command, CommonOptions& options) {
  command->add_option("--store", options.store, "the SQLite store file");
  command->add_flag("--json", options.json, "print JSON");
}

void PrintJson(const Json& out) { std::cout << out.dump() << std::endl; }

// A value ends at its last line break: `echo VALUE |` and files written by editors add one.
std::string StripFinalNewline(std::string text) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
}

// One line typed at the terminal without echoing it.
std::string ReadHiddenLine(const std::string& name) {
  fprintf(stderr, "value of secret %s (not shown): ", name.c_str());
  termios saved;
  tcgetattr(STDIN_FILENO, &saved);
  termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  std::string line;
  std::getline(std::cin, line);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  fprintf(stderr, "\n");
  return StripFinalNewline(line);
}

// The value of `secrets set`: --value, --from-file, or stdin.
Result<std::string> SecretValue(const AdminFlags& flags) {
  std::string value;
  if (flags.value_option->count() > 0) {
    value = flags.value;
  } else if (!flags.from_file.empty()) {
    std::ifstream in(flags.from_file, std::ios::binary);
    if (!in) return Status::InvalidArgument("cannot read " + flags.from_file);
    std::stringstream text;
    text << in.rdbuf();
    value = StripFinalNewline(text.str());
  } else if (isatty(STDIN_FILENO)) {
    value = ReadHiddenLine(flags.name);
  } else {
    std::stringstream text;
    text << std::cin.rdbuf();
    value = StripFinalNewline(text.str());
  }
  if (value.empty()) {
    return Status::InvalidArgument("the value of secret " + flags.name + " is empty");
  }
  return value;
}

int TokensCreate(const CommonOptions& options, const AdminFlags& flags) {
  Result<server::Role> role = server::ParseRole(flags.role);
  if (!role.ok()) return Invalid(options, role.message());
  Result<std::unique_ptr<server::TokenStore>> tokens = server::TokenStore::Open(options.store);
  if (!tokens.ok()) return Invalid(options, tokens.message());

  Result<std::string> token = (*tokens)->Create(flags.name, *role);
  if (!token.ok()) return Invalid(options, token.message());
  if (options.json) {
    PrintJson({{"name", flags.name}, {"role", flags.role}, {"token", *token}});
  } else {
    fprintf(stderr, "token %s (%s) created; it is shown only this once:\n", flags.name.c_str(),
            flags.role.c_str());
    std::cout << *token << std::endl;
  }
  return kExitSucceeded;
}

int TokensList(const CommonOptions& options) {
  if (Status exists = CheckStoreExists(options.store); !exists.ok()) {
    return Invalid(options, exists.message());
  }
  Result<std::unique_ptr<server::TokenStore>> tokens = server::TokenStore::Open(options.store);
  if (!tokens.ok()) return Invalid(options, tokens.message());
  Result<Json> list = (*tokens)->List();
  if (!list.ok()) return Invalid(options, list.message());

  if (options.json) {
    PrintJson({{"tokens", *list}});
    return kExitSucceeded;
  }
  printf("%-24s %-9s %-25s %s\n", "NAME", "ROLE", "CREATED", "LAST USED");
  for (const Json& token : *list) {
    printf("%-24s %-9s %-25s %s\n", token.value("name", "").c_str(),
           token.value("role", "").c_str(), token.value("createTime", "").c_str(),
           token.value("lastUseTime", "-").c_str());
  }
  return kExitSucceeded;
}

int TokensRevoke(const CommonOptions& options, const AdminFlags& flags) {
  if (Status exists = CheckStoreExists(options.store); !exists.ok()) {
    return Invalid(options, exists.message());
  }
  Result<std::unique_ptr<server::TokenStore>> tokens = server::TokenStore::Open(options.store);
  if (!tokens.ok()) return Invalid(options, tokens.message());
  Status revoked = (*tokens)->Revoke(flags.name);
  if (!revoked.ok()) return Invalid(options, revoked.message());

  if (options.json) {
    PrintJson({{"name", flags.name}, {"state", "REVOKED"}});
  } else {
    fprintf(stderr, "token %s revoked\n", flags.name.c_str());
  }
  return kExitSucceeded;
}

int SecretsSet(const CommonOptions& options, const AdminFlags& flags) {
  if (!store::SecretStore::ValidName(flags.name)) {
    return Invalid(options, "a secret name is 1 to 64 lower-case letters, digits, '-' and '_'");
  }
  Result<std::string> value = SecretValue(flags);
  if (!value.ok()) return Invalid(options, value.message());
  Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(options.store);
  if (!secrets.ok()) return Invalid(options, secrets.message());

  Status set = (*secrets)->Set(flags.name, *value);
  if (!set.ok()) return Invalid(options, set.message());
  if (options.json) {
    PrintJson({{"name", flags.name}, {"state", "SET"}});
  } else {
    fprintf(stderr, "secret %s set\n", flags.name.c_str());
  }
  return kExitSucceeded;
}

int SecretsList(const CommonOptions& options) {
  if (Status exists = CheckStoreExists(options.store); !exists.ok()) {
    return Invalid(options, exists.message());
  }
  Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(options.store);
  if (!secrets.ok()) return Invalid(options, secrets.message());
  Result<std::vector<store::SecretInfo>> list = (*secrets)->List();
  if (!list.ok()) return Invalid(options, list.message());

  if (options.json) {
    Json out = Json::array();
    for (const store::SecretInfo& secret : *list) {
      out.push_back({{"name", secret.name}, {"updateTime", Rfc3339(secret.update_time_ms)}});
    }
    PrintJson({{"secrets", out}});
    return kExitSucceeded;
  }
  printf("%-32s %s\n", "NAME", "UPDATED");
  for (const store::SecretInfo& secret : *list) {
    printf("%-32s %s\n", secret.name.c_str(), Rfc3339(secret.update_time_ms).c_str());
  }
  return kExitSucceeded;
}

int SecretsDelete(const CommonOptions& options, const AdminFlags& flags) {
  if (Status exists = CheckStoreExists(options.store); !exists.ok()) {
    return Invalid(options, exists.message());
  }
  Result<std::unique_ptr<store::SecretStore>> secrets = store::SecretStore::Open(options.store);
  if (!secrets.ok()) return Invalid(options, secrets.message());
  Status deleted = (*secrets)->Delete(flags.name);
  if (!deleted.ok()) return Invalid(options, deleted.message());

  if (options.json) {
    PrintJson({{"name", flags.name}, {"state", "DELETED"}});
  } else {
    fprintf(stderr, "secret %s deleted\n", flags.name.c_str());
  }
  return kExitSucceeded;
}

void AddTokenCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers,
                      const std::shared_ptr<AdminFlags>& flags) {
  CLI::App* tokens = app.add_subcommand("tokens", "API tokens of atomflow serve");
  tokens->require_subcommand(1);
  CLI::App* create = tokens->add_subcommand("create", "make a token; it is printed only once");
  create->add_option("name", flags->name, "the token's name")->required();
  create->add_option("--role", flags->role, "viewer, invoker, deployer or admin")->required();
  CLI::App* list = tokens->add_subcommand("list", "list tokens (never their values)");
  CLI::App* revoke = tokens->add_subcommand("revoke", "revoke a token at once");
  revoke->add_option("name", flags->name, "the token's name")->required();
  for (CLI::App* command : {create, list, revoke}) AddStoreAndJson(command, options);

  handlers.emplace_back(create, [&options, flags] { return TokensCreate(options, *flags); });
  handlers.emplace_back(list, [&options] { return TokensList(options); });
  handlers.emplace_back(revoke, [&options, flags] { return TokensRevoke(options, *flags); });
}

void AddSecretCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers,
                       const std::shared_ptr<AdminFlags>& flags) {
  CLI::App* secrets = app.add_subcommand("secrets", "secrets of service identities");
  secrets->require_subcommand(1);
  CLI::App* set = secrets->add_subcommand("set", "set a secret (the value is never printed)");
  set->add_option("name", flags->name, "the secret's name: a-z, 0-9, '-', '_'")->required();
  flags->value_option =
      set->add_option("--value", flags->value, "the value (visible to ps; prefer stdin)");
  set->add_option("--from-file", flags->from_file, "read the value from this file")
      ->excludes(flags->value_option);
  CLI::App* list = secrets->add_subcommand("list", "list secrets (names and times only)");
  CLI::App* remove = secrets->add_subcommand("delete", "delete a secret");
  remove->add_option("name", flags->name, "the secret's name")->required();
  for (CLI::App* command : {set, list, remove}) AddStoreAndJson(command, options);

  handlers.emplace_back(set, [&options, flags] { return SecretsSet(options, *flags); });
  handlers.emplace_back(list, [&options] { return SecretsList(options); });
  handlers.emplace_back(remove, [&options, flags] { return SecretsDelete(options, *flags); });
}

}  // namespace

void AddAdminCommands(CLI::App& app, CommonOptions& options, CommandHandlers& handlers) {
  auto flags = std::make_shared<AdminFlags>();
  AddTokenCommands(app, options, handlers, flags);
  AddSecretCommands(app, options, handlers, flags);
}

}  // namespace atomflow::cli
