// IdentityCatalog: atomflow.yaml's `identities:`, and resolving their headers from secrets.
#include "connectors/identities.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <filesystem>

#include "connectors/config_file.h"
#include "store/secret_store.h"

namespace atomflow::connectors {

namespace {

// A header name is an HTTP token: letters, digits and !#$%&'*+-.^_`|~.
bool ValidHeaderName(const std::string& name) {
  static constexpr std::string_view kPunctuation = "!#$%&'*+-.^_`|~";
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (!std::isalnum(c) && kPunctuation.find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool HasLineBreak(const std::string& text) {
  return text.find_first_of("\r\n") != std::string::npos || text.find('\0') != std::string::npos;
}

// url with its scheme and authority in lower case and a '/' after the authority, so that
// prefixes compare as URLs do; "" when url has no "scheme://host".
std::string NormalizeUrl(const std::string& url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || scheme_end == 0) return "";
  size_t authority_end = url.find_first_of("/?#", scheme_end + 3);
  if (authority_end == std::string::npos) authority_end = url.size();
  if (authority_end == scheme_end + 3) return "";
  std::string normalized = url.substr(0, authority_end);
  for (char& c : normalized) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string rest = url.substr(authority_end);
  if (rest.empty() || rest[0] != '/') rest.insert(0, "/");
  return normalized + rest;
}

// Parses and checks one rule's url_prefix: http(s)://host[:port]/ at least, so that a prefix
// can never match another host whose name merely starts the same way.
Result<std::string> ParseUrlPrefix(const YAML::Node& node, const std::string& where) {
  if (!node || !node.IsScalar()) return Status::Error(where + ": 'url_prefix' must be a string");
  std::string text = node.as<std::string>();
  std::string normalized = NormalizeUrl(text);
  bool web = normalized.rfind("http://", 0) == 0 || normalized.rfind("https://", 0) == 0;
  size_t authority_end = text.find_first_of("/?#", text.find("://") + 3);
  if (normalized.empty() || !web || authority_end == std::string::npos ||
      text[authority_end] != '/' || text.find('@') < authority_end) {
    return Status::Error(where +
                         ": 'url_prefix' must look like https://host[:port]/ (scheme, "
                         "host and a '/' after it), got \"" +
                         text + "\"");
  }
  return normalized;
}

// A header's value: {secret: NAME, prefix: TEXT}.
Result<SecretRef> ParseSecretRef(const YAML::Node& node, const std::string& where) {
  if (!node.IsMap() || !node["secret"] || !node["secret"].IsScalar()) {
    return Status::Error(where + " must be {secret: NAME} or {secret: NAME, prefix: TEXT}");
  }
  SecretRef ref;
  ref.secret = node["secret"].as<std::string>();
  if (!store::SecretStore::ValidName(ref.secret)) {
    return Status::Error(where + ": '" + ref.secret +
                         "' is not a secret name (1 to 64 of a-z, 0-9, '-', '_')");
  }
  for (const auto& field : node) {
    std::string key = field.first.as<std::string>();
    if (key != "secret" && key != "prefix") {
      return Status::Error(where + ": unknown field '" + key + "' (expected secret, prefix)");
    }
  }
  if (node["prefix"]) {
    if (!node["prefix"].IsScalar()) return Status::Error(where + ": 'prefix' must be a string");
    ref.prefix = node["prefix"].as<std::string>();
    if (HasLineBreak(ref.prefix)) return Status::Error(where + ": 'prefix' has a line break");
  }
  return ref;
}

Result<IdentityHttpRule> ParseRule(const YAML::Node& node, const std::string& where) {
  if (!node.IsMap()) return Status::Error(where + " must be a map with url_prefix and headers");
  for (const auto& field : node) {
    std::string key = field.first.as<std::string>();
    if (key != "url_prefix" && key != "headers") {
      return Status::Error(where + ": unknown field '" + key + "' (expected url_prefix, headers)");
    }
  }
  IdentityHttpRule rule;
  Result<std::string> prefix = ParseUrlPrefix(node["url_prefix"], where);
  if (!prefix.ok()) return prefix.status();
  rule.url_prefix = std::move(prefix).value();

  YAML::Node headers = node["headers"];
  if (!headers || !headers.IsMap() || headers.size() == 0) {
    return Status::Error(where + ": 'headers' must be a map of header names to {secret: NAME}");
  }
  for (const auto& header : headers) {
    std::string name = header.first.as<std::string>();
    if (!ValidHeaderName(name)) {
      return Status::Error(where + ": '" + name + "' is not an HTTP header name");
    }
    Result<SecretRef> ref = ParseSecretRef(header.second, where + ".headers." + name);
    if (!ref.ok()) return ref.status();
    rule.headers.emplace_back(name, std::move(ref).value());
  }
  return rule;
}

Result<Identity> ParseIdentity(const std::string& name, const YAML::Node& node,
                               const std::string& config_path) {
  std::string where = ConfigPosition(config_path, node) + ": identity '" + name + "'";
  if (!node.IsMap()) return Status::Error(where + " must be a map with 'http'");
  for (const auto& field : node) {
    std::string key = field.first.as<std::string>();
    if (key != "http") {
      return Status::Error(where + ": unknown field '" + key + "' (expected http)");
    }
  }
  Identity identity;
  identity.name = name;
  YAML::Node http = node["http"];
  if (!http || http.IsNull()) return identity;
  if (!http.IsSequence()) return Status::Error(where + ": 'http' must be a list of rules");
  for (size_t i = 0; i < http.size(); ++i) {
    Result<IdentityHttpRule> rule = ParseRule(http[i], where + ": http[" + std::to_string(i) + "]");
    if (!rule.ok()) return rule.status();
    identity.http.push_back(std::move(rule).value());
  }
  return identity;
}

}  // namespace

bool HasHeader(const ResolvedHeaders& headers, const std::string& name) {
  for (const auto& [existing, value] : headers) {
    if (existing.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i) {
      same = std::tolower(static_cast<unsigned char>(existing[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (same) return true;
  }
  return false;
}

Result<std::string> ResolveSecret(const SecretRef& ref, store::SecretStore* secrets,
                                  const std::string& what) {
  if (secrets == nullptr) {
    return Status::Error(what + " needs secret '" + ref.secret + "', and no secret store is open");
  }
  Result<std::string> value = secrets->Get(ref.secret);
  if (value.status().code() == StatusCode::kNotFound) {
    return Status::Error(what + " needs secret '" + ref.secret +
                         "', which is not set (atomflow secrets set " + ref.secret + ")");
  }
  if (!value.ok()) return Status::Error(what + ": " + value.message());
  return ref.prefix + *value;
}

Result<IdentityCatalog> IdentityCatalog::Load(const std::string& config_path, bool required) {
  Result<std::optional<std::string>> text = ReadConfigFile(config_path, required);
  if (!text.ok()) return text.status();
  std::string absolute = std::filesystem::absolute(config_path).string();
  if (!*text) {
    IdentityCatalog empty;
    empty.config_path_ = absolute;
    return empty;
  }
  return Parse(**text, absolute);
}

Result<IdentityCatalog> IdentityCatalog::Parse(const std::string& text,
                                               const std::string& config_path) {
  IdentityCatalog catalog;
  catalog.config_path_ = config_path;
  Result<YAML::Node> identities = ConfigSection(text, config_path, "identities");
  if (!identities.ok()) return identities.status();
  if (identities->IsNull()) return catalog;
  for (const auto& entry : *identities) {
    std::string name = entry.first.as<std::string>();
    Result<Identity> identity = ParseIdentity(name, entry.second, config_path);
    if (!identity.ok()) return identity.status();
    catalog.identities_[name] = std::move(identity).value();
  }
  return catalog;
}

const Identity* IdentityCatalog::Find(const std::string& name) const {
  auto found = identities_.find(name);
  return found == identities_.end() ? nullptr : &found->second;
}

std::vector<std::string> IdentityCatalog::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, identity] : identities_) names.push_back(name);
  return names;
}

Result<ResolvedHeaders> IdentityCatalog::HeadersFor(const std::string& name, const std::string& url,
                                                    store::SecretStore* secrets) const {
  const Identity* identity = Find(name);
  if (identity == nullptr) {
    std::string file = config_path_.empty() ? "atomflow.yaml" : config_path_;
    return Status::NotFound("the execution runs as service account '" + name +
                            "', which is not under 'identities:' in " + file);
  }
  ResolvedHeaders headers;
  std::string normalized = NormalizeUrl(url);
  if (normalized.empty()) return headers;  // not a URL: the HTTP client reports it
  for (const IdentityHttpRule& rule : identity->http) {
    if (normalized.rfind(rule.url_prefix, 0) != 0) continue;
    for (const auto& [header, ref] : rule.headers) {
      if (HasHeader(headers, header)) continue;  // the first rule that sets a header wins
      std::string what = "identity '" + name + "' (header " + header + ")";
      Result<std::string> value = ResolveSecret(ref, secrets, what);
      if (!value.ok()) return value.status();
      if (HasLineBreak(*value)) {
        return Status::Error(what + ": secret '" + ref.secret +
                             "' has a line break, which a header cannot carry");
      }
      headers.emplace_back(header, std::move(value).value());
    }
  }
  return headers;
}

}  // namespace atomflow::connectors
