// CallbackBook: callback endpoints, their queued requests and waiting awaits, and their
// reconstruction from the journal.
#include "engine/callbacks.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

namespace atomflow::engine {

namespace {

constexpr const char* kCreate = "events.create_callback_endpoint";
constexpr const char* kAwait = "events.await_callback";

// FNV-1a, 64 bits: stable across builds and platforms, which the id must be (it is in URLs a
// resumed execution hands out again).
uint64_t Fnv1a(const std::string& text) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

// The payload's "function", without a copy; empty when there is none.
std::string_view FunctionOf(const Json& payload) {
  auto function = payload.find("function");
  if (function == payload.end() || !function->is_string()) return {};
  return function->get_ref<const std::string&>();
}

}  // namespace

std::string CallbackBook::CallbackId(const std::string& execution_id,
                                     const std::string& effect_key) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx",
                static_cast<unsigned long long>(Fnv1a(execution_id + "/" + effect_key)));
  return text;
}

void CallbackBook::Rebuild(const std::string& execution_id,
                           const std::vector<store::JournalEntry>& journal) {
  Endpoints endpoints;
  std::map<std::string, std::string> await_callback;  // await effect key -> callback id
  std::map<std::string, std::vector<Json>> requests;  // callback id -> requests, journal order
  std::map<std::string, size_t> consumed;             // callback id -> requests taken
  std::map<std::string, bool> results_seen;           // await keys already counted
  std::vector<std::string> created;                   // endpoint ids in creation order

  for (const store::JournalEntry& entry : journal) {
    // Most records are of other kinds and functions: recovery rebuilds every execution's book.
    if (entry.kind != "intent" && entry.kind != "result" && entry.kind != "callback") continue;
    const Json& payload = entry.payload;
    std::string_view function = FunctionOf(payload);
    if (entry.kind == "intent" && function == kCreate) {
      CallbackEndpoint endpoint{payload.value("callback", ""), payload.value("method", "POST"),
                                payload.value("url", ""), payload.value("create_time_ms", 0)};
      endpoints[endpoint.id].endpoint = endpoint;
      created.push_back(endpoint.id);
    } else if (entry.kind == "intent" && function == kAwait) {
      await_callback[entry.key] = payload.value("callback", "");
    } else if (entry.kind == "result" && function == kAwait && payload.value("ok", false)) {
      auto callback = await_callback.find(entry.key);
      if (callback == await_callback.end() || results_seen[entry.key]) continue;
      results_seen[entry.key] = true;
      ++consumed[callback->second];
    } else if (entry.kind == "callback") {
      requests[payload.value("callback", "")].push_back(payload.value("request", Json()));
    }
  }
  // Every reader takes an execution without an entry for one without endpoints; Rebuild runs
  // before the execution does, when it has none. Most have none: no entry, no allocation.
  if (endpoints.empty()) return;

  for (auto& [id, entry] : endpoints) {
    std::vector<Json>& delivered = requests[id];
    entry.delivered = static_cast<int64_t>(delivered.size());
    for (size_t i = std::min(consumed[id], delivered.size()); i < delivered.size(); ++i) {
      entry.pending.push_back(std::move(delivered[i]));
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& id : created) endpoints[id].created = ++next_created_;
  executions_[execution_id] = std::move(endpoints);
}

void CallbackBook::AddEndpoint(const std::string& execution_id, CallbackEndpoint endpoint) {
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& entry = executions_[execution_id][endpoint.id];
  entry.endpoint = std::move(endpoint);
  entry.created = ++next_created_;
}

void CallbackBook::Forget(const std::string& execution_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  executions_.erase(execution_id);
}

bool CallbackBook::HasEndpoint(const std::string& execution_id,
                               const std::string& callback_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto execution = executions_.find(execution_id);
  return execution != executions_.end() && execution->second.count(callback_id) > 0;
}

Status CallbackBook::Reserve(const std::string& execution_id, const std::string& callback_id,
                             const std::string& method,
                             const std::function<void(int64_t n)>& append) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto execution = executions_.find(execution_id);
  if (execution == executions_.end() || execution->second.count(callback_id) == 0) {
    return Status::NotFound("execution " + execution_id + " has no callback " + callback_id);
  }
  Entry& entry = execution->second[callback_id];
  if (entry.endpoint.method != method) {
    return Status::InvalidArgument("callback " + callback_id + " takes " + entry.endpoint.method +
                                   " requests, not " + method);
  }
  append(++entry.delivered);
  return Status::Ok();
}

void CallbackBook::Delivered(const std::string& execution_id, const std::string& callback_id,
                             Json request) {
  for (;;) {
    Waiter waiter;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto execution = executions_.find(execution_id);
      if (execution == executions_.end()) return;  // the execution ended meanwhile
      Entry& entry = execution->second[callback_id];
      if (entry.waiters.empty()) {
        entry.pending.push_back(std::move(request));
        return;
      }
      waiter = std::move(entry.waiters.front());
      entry.waiters.pop_front();
    }
    // Without the lock: taking completes the await, which journals its result.
    if (waiter.take(request)) return;
  }
}

std::optional<Json> CallbackBook::TakeOrWait(const std::string& execution_id,
                                             const std::string& callback_id,
                                             const std::string& effect_key, Take take) {
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& entry = executions_[execution_id][callback_id];
  if (!entry.pending.empty()) {
    Json request = std::move(entry.pending.front());
    entry.pending.pop_front();
    return request;
  }
  entry.waiters.push_back({effect_key, std::move(take)});
  return std::nullopt;
}

bool CallbackBook::RemoveWaiter(const std::string& execution_id, const std::string& effect_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto execution = executions_.find(execution_id);
  if (execution == executions_.end()) return false;
  for (auto& [id, entry] : execution->second) {
    for (auto waiter = entry.waiters.begin(); waiter != entry.waiters.end(); ++waiter) {
      if (waiter->effect_key != effect_key) continue;
      entry.waiters.erase(waiter);
      return true;
    }
  }
  return false;
}

Json CallbackBook::List(const std::string& execution_id) const {
  std::vector<const Entry*> entries;
  Json list = Json::array();
  std::lock_guard<std::mutex> lock(mutex_);
  auto execution = executions_.find(execution_id);
  if (execution == executions_.end()) return list;
  for (const auto& [id, entry] : execution->second) {
    if (!entry.endpoint.id.empty()) entries.push_back(&entry);
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry* a, const Entry* b) { return a->created < b->created; });
  for (const Entry* entry : entries) {
    list.push_back({{"name", entry->endpoint.id},
                    {"method", entry->endpoint.method},
                    {"url", entry->endpoint.url},
                    {"waiters", entry->waiters.size()},
                    {"pending", entry->pending.size()},
                    {"createTimeMs", entry->endpoint.create_time_ms}});
  }
  return list;
}

}  // namespace atomflow::engine
