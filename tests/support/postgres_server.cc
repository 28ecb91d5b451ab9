// PostgresServer: a throwaway PostgreSQL cluster for tests.
#include "support/postgres_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
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
#include <mutex>
#include <thread>
#include <vector>

namespace atomflow::testing {

namespace {

namespace fs = std::filesystem;

constexpr char kServerUser[] = "postgres";

// The newest Debian server installation: /usr/lib/postgresql/<major>/bin.
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

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

}  // namespace

PostgresServer::PostgresServer() = default;

PostgresServer::~PostgresServer() {
  if (pid_ > 0) {
    kill(pid_, SIGINT);  // fast shutdown: aborts sessions, leaves prepared transactions
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  std::error_code error;
  if (!root_.empty()) fs::remove_all(root_, error);
}

std::string PostgresServer::RunAsServerUser(const std::string& command) const {
  std::string line =
      geteuid() == 0 ? "runuser -u " + std::string(kServerUser) + " -- " + command : command;
  int status = std::system((line + " >" + root_ + "/setup.log 2>&1").c_str());
  if (status == 0) return "";
  return "'" + command + "' failed (see " + root_ + "/setup.log)";
}

std::string PostgresServer::Start() {
  start_error_ = StartServer();
  return start_error_;
}

std::string PostgresServer::StartServer() {
  std::string bin = ServerBinDir();
  if (bin.empty()) return "no PostgreSQL server under /usr/lib/postgresql (make setup)";
  char pattern[] = "/tmp/atomflow-pg-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return "cannot make a temporary folder";
  root_ = pattern;
  if (geteuid() == 0) {
    passwd* user = getpwnam(kServerUser);
    if (user == nullptr) return "running as root needs the 'postgres' user (make setup)";
    if (chown(root_.c_str(), user->pw_uid, user->pw_gid) != 0) return "cannot chown " + root_;
  }

  std::string failed = RunAsServerUser(bin + "/initdb -D " + root_ +
                                       "/data -U postgres --auth=trust -E UTF8 --no-sync");
  if (!failed.empty()) return failed;

  port_ = FreeLoopbackPort();
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
                                   "max_prepared_transactions=64",
                                   "-c",
                                   "fsync=off"};
  passwd* user = geteuid() == 0 ? getpwnam(kServerUser) : nullptr;
  pid_ = fork();
  if (pid_ == 0) {
    // The server itself, not a wrapper, is our child, so the destructor's signal reaches it.
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
  if (!WaitReady()) return "PostgreSQL did not start (see " + root_ + "/server.log)";
  return "";
}

bool PostgresServer::WaitReady() const {
  std::string uri = Uri("postgres");
  for (int attempt = 0; attempt < 300; ++attempt) {
    if (PQping(uri.c_str()) == PQPING_OK) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string PostgresServer::Uri(const std::string& name) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + name;
}

std::string PostgresServer::CreateDatabase(const std::string& name) const {
  std::string answer = Query("postgres", "CREATE DATABASE " + name);
  return answer.rfind("ERROR", 0) == 0 ? answer : "";
}

std::string PostgresServer::Query(const std::string& name, const std::string& sql) const {
  PGconn* conn = PQconnectdb(Uri(name).c_str());
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

PostgresServer& SharedPostgresServer() {
  static PostgresServer server;
  static std::once_flag once;
  std::call_once(once, [] { server.Start(); });  // the outcome stays in start_error()
  return server;
}

std::string TestDatabaseName() {
  std::string name = "t_";
  name += ::testing::UnitTest::GetInstance()->current_test_info()->name();
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace atomflow::testing
