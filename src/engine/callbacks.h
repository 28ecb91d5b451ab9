// Callback endpoints (events.create_callback_endpoint) of the executions in memory: the
// requests delivered to them that no await has taken yet, and the awaits waiting for one.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "store/store.h"
#include "value/value.h"

namespace atomflow::engine {

// One endpoint as the journal records it (the intent of its create_callback_endpoint).
struct CallbackEndpoint {
  std::string id;
  std::string method;  // upper case, e.g. "POST"
  std::string url;
  int64_t create_time_ms = 0;
};

// The book of callbacks. Durable truth is the journal: an endpoint exists once its intent is
// durable, a request once its `callback` record is; an await takes the oldest request of its
// endpoint no await took before (FIFO), so the requests an earlier process handed out are the
// first `n` ones, n the number of awaits on the endpoint that returned one. Rebuild restores
// the queue from that on resume, so a restart neither loses a request nor hands one out twice.
// Thread safe; the hand-over calls (Delivered, TakeOrWait, RemoveWaiter) are made on the I/O
// loop thread only, which orders them, and `take` callbacks run there without the lock held.
class CallbackBook {
 public:
  // Hands a request to an await; false when that await is no longer waiting for it (cut off).
  using Take = std::function<bool(const Json& request)>;

  // Deterministic from the execution and the effect that made it: 16 hex digits.
  static std::string CallbackId(const std::string& execution_id, const std::string& effect_key);

  // Restores the endpoints, the queued requests and the consumed counts of one execution.
  void Rebuild(const std::string& execution_id, const std::vector<store::JournalEntry>& journal);
  void AddEndpoint(const std::string& execution_id, CallbackEndpoint endpoint);
  void Forget(const std::string& execution_id);
  bool HasEndpoint(const std::string& execution_id, const std::string& callback_id) const;

  // Checks the endpoint and the method, then calls append(n) under the book's lock, so that
  // requests to one endpoint reach the journal in the order they are numbered. NotFound,
  // InvalidArgument (another method).
  Status Reserve(const std::string& execution_id, const std::string& callback_id,
                 const std::string& method, const std::function<void(int64_t n)>& append);

  // Loop thread: a request is durable; hand it to the oldest waiting await, or queue it.
  void Delivered(const std::string& execution_id, const std::string& callback_id, Json request);
  // Loop thread: the oldest queued request, or nothing after registering the await as waiting.
  std::optional<Json> TakeOrWait(const std::string& execution_id, const std::string& callback_id,
                                 const std::string& effect_key, Take take);
  // Loop thread: the await stops waiting (timeout, cancel); false when it was not waiting.
  bool RemoveWaiter(const std::string& execution_id, const std::string& effect_key);

  // [{"name", "method", "url", "waiters", "pending", "createTimeMs"}], by creation.
  Json List(const std::string& execution_id) const;

 private:
  struct Waiter {
    std::string effect_key;
    Take take;
  };
  struct Entry {
    CallbackEndpoint endpoint;
    int64_t created = 0;    // creation order, for List
    int64_t delivered = 0;  // requests journaled, all time
    std::deque<Json> pending;
    std::deque<Waiter> waiters;
  };
  using Endpoints = std::map<std::string, Entry>;  // by callback id

  mutable std::mutex mutex_;
  std::map<std::string, Endpoints> executions_;  // by execution id
  int64_t next_created_ = 0;
};

}  // namespace atomflow::engine
