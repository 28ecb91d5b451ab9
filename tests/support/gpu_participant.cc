// The GPU reservation participant: HTTP in front, the barrier and the business tables in its
// own PostgreSQL database behind.
#include "support/gpu_participant.h"

#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "txn/barrier.h"

namespace atomflow::testing {

namespace {

constexpr auto kSlowAnswer = std::chrono::milliseconds(1500);
constexpr char kRefused[] = "refused: ";

using Connection = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using ResultPtr = std::unique_ptr<PGresult, decltype(&PQclear)>;

ResultPtr Exec(PGconn* connection, const char* sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const std::string& param : params) values.push_back(param.c_str());
  return ResultPtr(PQexecParams(connection, sql, static_cast<int>(values.size()), nullptr,
                                values.data(), nullptr, nullptr, 0),
                   &PQclear);
}

// Runs a command; its error, or the number of rows it touched.
Result<int> Run(PGconn* connection, const char* sql, const std::vector<std::string>& params) {
  ResultPtr result = Exec(connection, sql, params);
  ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return Status::Error(PQerrorMessage(connection));
  }
  const char* tuples = PQcmdTuples(result.get());
  return *tuples == '\0' ? 0 : std::stoi(tuples);
}

Status Log(PGconn* connection, const std::string& gid, const std::string& branch,
           const std::string& op) {
  return Run(connection, "INSERT INTO op_log VALUES ($1, $2, $3)", {gid, branch, op}).status();
}

// Takes gpus from the pool for a reservation held in `state`; refused when too few are free.
Status Reserve(PGconn* connection, const std::string& gid, const std::string& branch, int gpus,
               const char* state) {
  Result<int> taken =
      Run(connection, "UPDATE gpu_pool SET free = free - $1::int WHERE free >= $1::int",
          {std::to_string(gpus)});
  if (!taken.ok()) return taken.status();
  if (*taken == 0) return Status::Error(std::string(kRefused) + "not enough free GPUs");
  Result<int> held = Run(connection, "INSERT INTO reservations VALUES ($1, $2, $3::int, $4)",
                         {gid, branch, std::to_string(gpus), state});
  return held.ok() ? Status::Ok() : held.status();
}

// Gives a reservation still in `state` back to the pool.
Status Release(PGconn* connection, const std::string& gid, const std::string& branch,
               const char* state) {
  Result<int> freed = Run(connection,
                          "UPDATE gpu_pool SET free = free + COALESCE((SELECT gpus FROM "
                          "reservations WHERE gid = $1 AND branch = $2 AND state = $3), 0)",
                          {gid, branch, state});
  if (!freed.ok()) return freed.status();
  Result<int> marked = Run(connection,
                           "UPDATE reservations SET state = 'released' WHERE gid = $1 AND "
                           "branch = $2 AND state = $3",
                           {gid, branch, state});
  return marked.ok() ? Status::Ok() : marked.status();
}

// Consumes one fault of a kind: true while some are left.
bool Take(std::atomic<int>& faults) {
  int left = faults.load();
  while (left > 0 && !faults.compare_exchange_weak(left, left - 1)) {
  }
  return left > 0;
}

int GpusOf(const httplib::Request& request) {
  nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
  if (body.is_object() && body.contains("gpus") && body["gpus"].is_number_integer()) {
    return body["gpus"].get<int>();
  }
  return 1;
}

}  // namespace

GpuParticipant::GpuParticipant(std::string uri, int pool) : uri_(std::move(uri)) {
  Connection connection(PQconnectdb(uri_.c_str()), &PQfinish);
  if (PQstatus(connection.get()) != CONNECTION_OK) {
    throw std::runtime_error("participant database: " +
                             std::string(PQerrorMessage(connection.get())));
  }
  Status barrier = txn::Barrier::CreateTable(connection.get());
  if (!barrier.ok()) throw std::runtime_error(barrier.message());
  for (const std::string& sql :
       {std::string("CREATE TABLE gpu_pool (free INT NOT NULL)"),
        "INSERT INTO gpu_pool VALUES (" + std::to_string(pool) + ")",
        std::string("CREATE TABLE reservations (gid TEXT, branch TEXT, gpus INT, state TEXT, "
                    "PRIMARY KEY (gid, branch))"),
        std::string("CREATE TABLE op_log (gid TEXT, branch TEXT, op TEXT)")}) {
    Result<int> done = Run(connection.get(), sql.c_str(), {});
    if (!done.ok()) throw std::runtime_error(done.message());
  }

  for (const char* op : {"try", "confirm", "cancel", "action", "compensate"}) {
    std::string name = op;
    server_.routes().Post(
        "/" + name, [this, name](const httplib::Request& request, httplib::Response& response) {
          Handle(name, request, response);
        });
  }
  server_.Start();
}

std::vector<GpuParticipant::Seen> GpuParticipant::seen() {
  std::lock_guard<std::mutex> lock(mutex_);
  return seen_;
}

void GpuParticipant::Handle(const std::string& op, const httplib::Request& request,
                            httplib::Response& response) {
  Seen seen{request.get_header_value("Atomflow-Op"), request.get_header_value("Atomflow-Gid"),
            request.get_header_value("Atomflow-Branch"),
            request.get_header_value("Idempotency-Key")};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    seen_.push_back(seen);
  }
  if (seen.op != op || seen.gid.empty() || seen.branch.empty()) {
    response.status = 400;
    response.set_content("branch headers missing or not matching the path", "text/plain");
    return;
  }
  if ((op == "try" && Take(fail_tries)) || (op == "confirm" && Take(fail_confirms))) {
    response.status = 500;
    return;
  }

  int gpus = GpusOf(request);
  const std::string& gid = seen.gid;
  const std::string& branch = seen.branch;
  auto business = [&](PGconn* connection) -> Status {
    Status written = Status::Ok();
    if (op == "try") written = Reserve(connection, gid, branch, gpus, "reserved");
    if (op == "action") written = Reserve(connection, gid, branch, gpus, "held");
    if (op == "confirm") {
      written = Run(connection,
                    "UPDATE reservations SET state = 'confirmed' WHERE gid = $1 AND branch = $2 "
                    "AND state = 'reserved'",
                    {gid, branch})
                    .status();
    }
    if (op == "cancel") written = Release(connection, gid, branch, "reserved");
    if (op == "compensate") written = Release(connection, gid, branch, "held");
    if (!written.ok()) return written;
    return Log(connection, gid, branch, op);
  };

  Connection connection(PQconnectdb(uri_.c_str()), &PQfinish);
  Result<txn::BarrierResult> result =
      txn::Barrier::Run(connection.get(), gid, branch, op, business);
  if (!result.ok()) {
    bool refused = result.message().rfind(kRefused, 0) == 0;
    response.status = refused ? 409 : 500;
    response.set_content(result.message(), "text/plain");
    return;
  }
  response.status = txn::Barrier::HttpStatus(*result);
  response.set_content(nlohmann::json{{"barrier", txn::BarrierResultName(*result)}}.dump(),
                       "application/json");
  if (op == "try" && on_try_applied) on_try_applied();
  if (op == "try" && Take(slow_tries)) std::this_thread::sleep_for(kSlowAnswer);
  if (op == "action" && Take(lost_actions)) response.status = 500;
}

std::string GpuParticipant::Query(const std::string& sql) const {
  Connection connection(PQconnectdb(uri_.c_str()), &PQfinish);
  ResultPtr result(PQexec(connection.get(), sql.c_str()), &PQclear);
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK || PQntuples(result.get()) == 0) return "";
  return PQgetvalue(result.get(), 0, 0);
}

int GpuParticipant::FreeGpus() const { return std::stoi(Query("SELECT free FROM gpu_pool")); }

int GpuParticipant::Writes(const std::string& gid, const std::string& op) const {
  return std::stoi(
      Query("SELECT count(*) FROM op_log WHERE gid = '" + gid + "' AND op = '" + op + "'"));
}

std::string GpuParticipant::ReservationState(const std::string& gid) const {
  return Query("SELECT state FROM reservations WHERE gid = '" + gid + "'");
}

std::string GpuParticipant::BarrierReason(const std::string& gid, const std::string& op) const {
  return Query("SELECT reason FROM atomflow_barrier WHERE gid = '" + gid + "' AND op = '" + op +
               "'");
}

}  // namespace atomflow::testing
