// A real PostgreSQL server for tests: initdb in a temporary folder, its own loopback port,
// max_prepared_transactions set so two-phase commit works.
#pragma once

#include <sys/types.h>

#include <string>

namespace atomflow::testing {

// Starts a private PostgreSQL cluster (Debian's server binaries, /usr/lib/postgresql/N/bin)
// and stops it and removes its folder in the destructor. Running as root, the server runs as
// the `postgres` system user, since PostgreSQL refuses to run as root. Authentication is
// `trust` on 127.0.0.1 only. Not copyable; one instance per test binary is enough, as each
// test creates its own databases.
class PostgresServer {
 public:
  PostgresServer();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Runs initdb and starts the server; returns an empty string, or what went wrong.
  std::string Start();
  // What the last Start() returned.
  const std::string& start_error() const { return start_error_; }

  int port() const { return port_; }
  // A libpq URI for database `name` on this server.
  std::string Uri(const std::string& name) const;
  // CREATE DATABASE name; returns an empty string, or the error.
  std::string CreateDatabase(const std::string& name) const;
  // Runs one SQL command on database `name` and returns the first column of the first row
  // ("" when none); errors come back as "ERROR: ...".
  std::string Query(const std::string& name, const std::string& sql) const;

 private:
  std::string StartServer();
  std::string RunAsServerUser(const std::string& command) const;
  bool WaitReady() const;

  std::string start_error_ = "not started";
  std::string root_;  // the temporary folder: data/ and the socket
  int port_ = -1;
  pid_t pid_ = -1;
};

// The test process's server, started on first use and stopped when the process exits (a
// server left running would outlive the test). Check start_error() before using it.
PostgresServer& SharedPostgresServer();

// "t_" and the running gtest test's name, lower case: a database name of its own per test,
// so tests also pass when several run in one process.
std::string TestDatabaseName();

}  // namespace atomflow::testing
