// A private PostgreSQL cluster for the two-phase-commit benchmark, with the server's default
// durability (fsync and synchronous_commit on), unlike the test harness, which turns fsync off.
#pragma once

#include <sys/types.h>

#include <string>

namespace atomflow::bench {

// initdb in a temporary folder, a server on its own loopback port with enough prepared
// transactions and connections for the benchmark's concurrency; stopped and removed by the
// destructor. As root the server runs as the `postgres` user. Not copyable.
class BenchPostgres {
 public:
  BenchPostgres() = default;
  ~BenchPostgres();
  BenchPostgres(const BenchPostgres&) = delete;
  BenchPostgres& operator=(const BenchPostgres&) = delete;

  // Returns an empty string, or what went wrong.
  std::string Start();
  std::string Uri(const std::string& database) const;
  // Runs one statement on database; returns the first column of the first row, or
  // "ERROR: ..." on failure.
  std::string Query(const std::string& database, const std::string& sql) const;

 private:
  std::string root_;
  int port_ = -1;
  pid_t pid_ = -1;
};

}  // namespace atomflow::bench
