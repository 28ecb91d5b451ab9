// The standard library's function table: every callable name with its signature, dispatch of
// pure functions, the library's named values (retry policies), and shared helpers.
#include "lang/stdlib.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <unordered_map>

#include "lang/expr.h"

namespace atomflow::lang {
namespace {

LibraryFunction Effect(std::string name, std::vector<std::string> params, size_t required) {
  return {{std::move(name), std::move(params), required, false, true}, nullptr};
}

LibraryFunction Blocking(std::string name, std::vector<std::string> params, size_t required) {
  return {{std::move(name), std::move(params), required, true, false}, nullptr};
}

// Functions the evaluator does not compute: effects go to EvalHost::CallHost, blocking ones
// are only callable from call steps, where the interpreter carries them out.
std::vector<LibraryFunction> HostFunctions() {
  std::vector<LibraryFunction> table = {
      Effect("sys.now", {}, 0),
      Effect("sys.get_env", {"name", "default"}, 1),
      Effect("uuid.generate", {}, 0),
      Blocking("sys.sleep", {"seconds"}, 1),
      Blocking("sys.sleep_until", {"time"}, 1),
      Blocking("sys.log", {"data", "severity", "text", "json", "timeout"}, 0),
      Blocking("http.request", {"method", "url", "headers", "query", "body", "auth", "timeout"}, 2),
      Blocking("atomflow.jobs.run",
               {"command", "name", "parameters", "working_dir", "temp_location", "env", "timeout"},
               1),
      Blocking("atomflow.files.write", {"path", "content"}, 2),
      Blocking("atomflow.files.publish", {"source", "path"}, 2),
      Blocking("atomflow.sql.exec", {"database", "statements"}, 2),
      // Carried out by the engine; only `atomflow serve` can receive callbacks.
      Blocking("events.create_callback_endpoint", {"http_callback_method"}, 0),
      Blocking("events.await_callback", {"callback", "timeout"}, 1),
  };
  for (const char* method : {"get", "post", "put", "patch", "delete"}) {
    table.push_back(Blocking(fmt::format("http.{}", method),
                             {"url", "headers", "query", "body", "auth", "timeout"}, 1));
  }
  return table;
}

// Every function by name; built once on first use, read-only afterwards.
class FunctionIndex {
 public:
  FunctionIndex() {
    for (const auto* table : {&CoreFunctions(), &TextFunctions(), &CodecFunctions()}) {
      functions_.insert(functions_.end(), table->begin(), table->end());
    }
    std::vector<LibraryFunction> host = HostFunctions();
    functions_.insert(functions_.end(), host.begin(), host.end());

    // Indexed only now: the keys view names inside functions_, which no longer moves.
    for (size_t i = 0; i < functions_.size(); ++i) by_name_[functions_[i].signature.name] = i;
  }

  const LibraryFunction* Find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &functions_[it->second];
  }

  const std::vector<LibraryFunction>& all() const { return functions_; }

  static const FunctionIndex& Get() {
    static const FunctionIndex index;
    return index;
  }

 private:
  std::vector<LibraryFunction> functions_;
  std::unordered_map<std::string_view, size_t> by_name_;
};

// Delays are whole seconds, as Google documents them (initial 1, max 60); multiplier 1.25.
Value Backoff(int64_t initial, int64_t max, double multiplier) {
  return Map{{"initial_delay", initial}, {"max_delay", max}, {"multiplier", multiplier}};
}

Value RetryPolicy(const char* predicate) {
  return Map{
      {"predicate", FunctionRef(predicate)}, {"max_retries", 5}, {"backoff", Backoff(1, 60, 1.25)}};
}

// The library's named values, and a FunctionRef for every function name.
std::unordered_map<std::string, Value> BuildLibraryValues() {
  std::unordered_map<std::string, Value> values = {
      {"http.default_retry", RetryPolicy("http.default_retry_predicate")},
      {"http.default_retry_non_idempotent",
       RetryPolicy("http.default_retry_predicate_non_idempotent")},
      {"retry.default_backoff", Backoff(1, 60, 1.25)},
  };
  for (const LibraryFunction& entry : FunctionIndex::Get().all()) {
    values.emplace(entry.signature.name, FunctionRef(entry.signature.name));
  }
  return values;
}

}  // namespace

const Value& Args::operator[](size_t i) const {
  static const Value kNull;
  return i < values_.size() ? values_[i] : kNull;
}

Value Args::Take(size_t i) { return i < values_.size() ? std::move(values_[i]) : Value(); }

void Args::WrongType(size_t i, std::string_view expected) const {
  std::string param = i < signature_.params.size() ? signature_.params[i] : std::to_string(i);
  Raise("TypeError", fmt::format("{}: argument '{}' must be {}, got {}", signature_.name, param,
                                 expected, (*this)[i].TypeName()));
}

void Args::BadValue(std::string_view what) const {
  Raise("ValueError", fmt::format("{}: {}", signature_.name, what));
}

const std::string& Args::String(size_t i) const {
  if (!(*this)[i].is_string()) WrongType(i, "a string");
  return (*this)[i].AsString();
}

const std::string& Args::StringOrBytes(size_t i) const {
  const Value& value = (*this)[i];
  if (value.is_bytes()) return value.AsBytes();
  if (!value.is_string()) WrongType(i, "a string or bytes");
  return value.AsString();
}

int64_t Args::Int(size_t i) const {
  if (!(*this)[i].is_int()) WrongType(i, "an integer");
  return (*this)[i].AsInt();
}

double Args::Number(size_t i) const {
  if (!(*this)[i].is_number()) WrongType(i, "a number");
  return (*this)[i].AsNumber();
}

bool Args::Bool(size_t i) const {
  if (!(*this)[i].is_bool()) WrongType(i, "a boolean");
  return (*this)[i].AsBool();
}

const List& Args::ListArg(size_t i) const {
  if (!(*this)[i].is_list()) WrongType(i, "a list");
  return (*this)[i].AsList();
}

const Map& Args::MapArg(size_t i) const {
  if (!(*this)[i].is_map()) WrongType(i, "a map");
  return (*this)[i].AsMap();
}

const FunctionSignature* FindFunction(std::string_view name) {
  const LibraryFunction* entry = FunctionIndex::Get().Find(name);
  return entry == nullptr ? nullptr : &entry->signature;
}

Value CallPureFunction(std::string_view name, std::vector<Value> args) {
  const LibraryFunction* entry = FunctionIndex::Get().Find(name);
  if (entry == nullptr) Raise("KeyError", fmt::format("function '{}' is not defined", name));
  const FunctionSignature& signature = entry->signature;
  if (entry->function == nullptr) {
    Raise("TypeError",
          fmt::format("{} has effects and cannot be computed as a pure function", name));
  }
  if (args.size() < signature.required || args.size() > signature.params.size()) {
    std::string expected =
        signature.required == signature.params.size()
            ? std::to_string(signature.required)
            : fmt::format("{} to {}", signature.required, signature.params.size());
    Raise("TypeError", fmt::format("{} takes {} arguments, got {}", name, expected, args.size()));
  }
  Args view(signature, args);
  return entry->function(view);
}

const Value* FindLibraryValue(std::string_view dotted) {
  static const std::unordered_map<std::string, Value> values = BuildLibraryValues();
  auto it = values.find(std::string(dotted));
  return it == values.end() ? nullptr : &it->second;
}

Value FunctionRef(std::string name) { return Map{{"$function", Value(std::move(name))}}; }

std::optional<std::string> AsFunctionRef(const Value& value) {
  if (!value.is_map() || value.AsMap().size() != 1) return std::nullopt;
  const Value* name = value.AsMap().Find("$function");
  if (name == nullptr || !name->is_string()) return std::nullopt;
  return name->AsString();
}

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, end);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

size_t Utf8Length(std::string_view text) {
  size_t count = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
  }
  return count;
}

size_t Utf8Offset(std::string_view text, size_t index) {
  size_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (seen == index) return i;
      ++seen;
    }
  }
  return text.size();
}

}  // namespace atomflow::lang
