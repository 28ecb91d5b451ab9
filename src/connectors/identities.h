// Service identities: the credentials an execution's HTTP calls carry, named in atomflow.yaml
// and resolved from the secret store at send time.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace atomflow::store {
class SecretStore;
}  // namespace atomflow::store

namespace atomflow::connectors {

// A value kept in the secret store: `{secret: NAME, prefix: "Bearer "}` is prefix + the value.
struct SecretRef {
  std::string secret;  // the secret's name in the store
  std::string prefix;  // text put before the value, e.g. "Bearer "
};

// Headers an identity adds to requests whose URL starts with url_prefix.
struct IdentityHttpRule {
  std::string url_prefix;  // scheme://host[:port]/..., scheme and host in lower case
  std::vector<std::pair<std::string, SecretRef>> headers;  // header name, where its value is
};

// One service identity: `identities: {NAME: {http: [rule, ...]}}`.
struct Identity {
  std::string name;
  std::vector<IdentityHttpRule> http;
};

// An HTTP header with its value, resolved for one request.
using ResolvedHeaders = std::vector<std::pair<std::string, std::string>>;

// The identities of atomflow.yaml. Holds secret names, never secret values. Immutable after
// Parse, so thread safe.
class IdentityCatalog {
 public:
  IdentityCatalog() = default;

  // Reads `identities:` from config_path; a missing file is an empty catalog unless required.
  static Result<IdentityCatalog> Load(const std::string& config_path, bool required);
  // Parses the text of an atomflow.yaml; config_path only names it in messages. A malformed
  // entry is an error naming the file, the identity and the field.
  static Result<IdentityCatalog> Parse(const std::string& text, const std::string& config_path);

  // The identity `name`, or nullptr.
  const Identity* Find(const std::string& name) const;
  bool empty() const { return identities_.empty(); }
  std::vector<std::string> Names() const;

  // The headers identity `name` adds to a request for url, values read from secrets (which
  // may be null when the identity adds none to url). Every rule whose url_prefix url starts
  // with applies, in file order. NotFound when the identity is unknown; an error naming the
  // identity, header and secret (never a value) when a secret cannot be read.
  Result<ResolvedHeaders> HeadersFor(const std::string& name, const std::string& url,
                                     store::SecretStore* secrets) const;

  // The file the catalog came from, for messages.
  const std::string& config_path() const { return config_path_; }

 private:
  std::string config_path_;
  std::map<std::string, Identity> identities_;
};

// True when headers has one named `name`, compared without regard to case.
bool HasHeader(const ResolvedHeaders& headers, const std::string& name);

// The value a SecretRef names: prefix + the secret. Errors name `what` and the secret.
Result<std::string> ResolveSecret(const SecretRef& ref, store::SecretStore* secrets,
                                  const std::string& what);

}  // namespace atomflow::connectors
