// BenchPostgres: a throwaway PostgreSQL cluster with production durability settings.
#include "postgres.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

namespace atomflow::bench {
namespace {

namespace fs = std::filesystem;

std::string ServerBinDir() {
  std::string best;
  int best_major = -1;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator("/usr/lib/postgresql", error)) {
    int major = std::atoi(entry.path().filename().c_str());
    if (major > best_major && fs::exists(entry.path() / "bin" / "initdb")) {
      best_major = major;
      best = (entry.path() / "bin").string();
    }
  }
  return best;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

}  // namespace

BenchPostgres::~BenchPostgres() {
  if (pid_ > 0) {
    kill(pid_, SIGINT);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  std::error_code error;
  if (!root_.empty()) fs::remove_all(root_, error);
}

std::string BenchPostgres::Start() {
  std::string bin = ServerBinDir();
  if (bin.empty()) return "no PostgreSQL server under /usr/lib/postgresql (make setup)";
  char pattern[] = "/tmp/atomflow-bench-pg-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return "cannot make a temporary folder";
  root_ = pattern;
  passwd* user = geteuid() == 0 ? getpwnam("postgres") : nullptr;
  if (geteuid() == 0 && user == nullptr) return "running as root needs the 'postgres' user";
  if (user != nullptr && chown(root_.c_str(), user->pw_uid, user->pw_gid) != 0) {
    return "cannot chown " + root_;
  }

  std::string initdb = bin + "/initdb -D " + root_ + "/data -U postgres --auth=trust -E UTF8";
  if (user != nullptr) initdb = "runuser -u postgres -- " + initdb;
  if (std::system((initdb + " >" + root_ + "/initdb.log 2>&1").c_str()) != 0) {
    return "initdb failed (see " + root_ + "/initdb.log)";
  }

  port_ = FreePort();
  std::vector<std::string> args = {bin + "/postgres",
                                   "-D",
                                   root_ + "/data",
                                   "-p",
                                   std::to_string(port_),
                                   "-k",
                                   root_,
                                   "-c",
                                   "listen_addresses=127.0.0.1",
                                   "-c",
                                   "max_prepared_transactions=300",
                                   "-c",
                                   "max_connections=300"};
  pid_ = fork();
  if (pid_ == 0) {
    if (user != nullptr && (setgid(user->pw_gid) != 0 || setuid(user->pw_uid) != 0)) _exit(126);
    std::string log = root_ + "/server.log";
    if (freopen(log.c_str(), "w", stdout) == nullptr) _exit(125);
    if (freopen(log.c_str(), "a", stderr) == nullptr) _exit(125);
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  for (int attempt = 0; attempt < 300; ++attempt) {
    if (PQping(Uri("postgres").c_str()) == PQPING_OK) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "PostgreSQL did not start (see " + root_ + "/server.log)";
}

std::string BenchPostgres::Uri(const std::string& database) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string BenchPostgres::Query(const std::string& database, const std::string& sql) const {
  PGconn* conn = PQconnectdb(Uri(database).c_str());
  std::string answer;
  if (PQstatus(conn) != CONNECTION_OK) {
    answer = std::string("ERROR: ") + PQerrorMessage(conn);
  } else {
    PGresult* result = PQexec(conn, sql.c_str());
    ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      answer = std::string("ERROR: ") + PQresultErrorMessage(result);
    } else if (PQntuples(result) > 0 && PQnfields(result) > 0) {
      answer = PQgetvalue(result, 0, 0);
    }
    PQclear(result);
  }
  PQfinish(conn);
  return answer;
}

}  // namespace atomflow::bench
