// A TCC and saga participant for tests: a loopback HTTP service that reserves GPUs from a pool
// kept in a real PostgreSQL table, behind the barrier (txn/barrier.h), as a service written
// against docs/transactions-barrier.md would.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "support/http_test_server.h"

namespace atomflow::testing {

// Routes: POST /try (body {"gpus": n}: reserves n GPUs, 409 when the pool has fewer),
// /confirm, /cancel (releases a reservation still held), /action and /compensate (a saga pair
// over the same pool). The branch is named by the Atomflow-Gid and Atomflow-Branch headers
// and the operation by Atomflow-Op, which must match the path. Every business write is logged
// in the table op_log, so a test can count how many times each one really ran. Thread safe:
// each request opens its own connection. Not copyable.
class GpuParticipant {
 public:
  // uri: the participant's own database (the tables are created there), pool: free GPUs.
  GpuParticipant(std::string uri, int pool);

  std::string Url(const std::string& path) const { return server_.Url(path); }

  // One request as received: "op gid branch", plus whether every branch header was present.
  struct Seen {
    std::string op;
    std::string gid;
    std::string branch;
    std::string idempotency_key;
  };
  std::vector<Seen> seen();

  // Faults, each consumed by the requests it affects.
  std::atomic<int> fail_tries{0};        // answer 500 before touching anything
  std::atomic<int> slow_tries{0};        // apply, then answer too late (after kSlowAnswer)
  std::atomic<int> lost_actions{0};      // apply the action, then answer 500
  std::atomic<int> fail_confirms{0};     // answer 500 before touching anything
  std::function<void()> on_try_applied;  // runs after a try is applied, before the answer

  // Queries on the participant's database.
  int FreeGpus() const;
  int Writes(const std::string& gid, const std::string& op) const;  // business writes done
  std::string ReservationState(const std::string& gid) const;       // "" when none
  std::string BarrierReason(const std::string& gid, const std::string& op) const;

 private:
  void Handle(const std::string& op, const httplib::Request& request, httplib::Response& response);
  std::string Query(const std::string& sql) const;

  std::string uri_;
  std::mutex mutex_;
  std::vector<Seen> seen_;
  HttpTestServer server_;
};

}  // namespace atomflow::testing
