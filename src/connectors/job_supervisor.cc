// The supervisor process that runs one job: fork, exec, wait, and the status it leaves behind.
#include "connectors/job_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace atomflow::connectors {
namespace {

// The C views of a SupervisorLaunch, built before fork: after fork in a threaded process only
// async-signal-safe calls are allowed, so nothing below RunSupervisor allocates.
struct PreparedLaunch {
  const char* exec_path = nullptr;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const char* working_dir = nullptr;  // nullptr: stay where we are
  std::string folder;
  std::string log;
  std::string status;
  std::string status_tmp;
  std::string supervisor_pid;
  std::string supervisor_pid_tmp;
  std::string job_pid;
  std::string job_pid_tmp;
};

// What the job's child reports through its close-on-exec pipe when it cannot exec.
struct SpawnReport {
  int stage;
  int error;
};

enum SpawnStage { kStageLog, kStageFork, kStageChdir, kStageExec };
const char* const kStageNames[] = {"log", "fork", "chdir", "exec"};

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (const std::string& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

PreparedLaunch Prepare(const SupervisorLaunch& launch) {
  JobFolder folder(launch.folder);
  PreparedLaunch prepared;
  prepared.exec_path = launch.exec_path.c_str();
  prepared.argv = CStrings(launch.argv);
  prepared.envp = CStrings(launch.envp);
  if (!launch.working_dir.empty()) prepared.working_dir = launch.working_dir.c_str();

  prepared.folder = folder.dir;
  prepared.log = folder.Log();
  prepared.status = folder.Status();
  prepared.status_tmp = folder.Status() + ".tmp";
  prepared.supervisor_pid = folder.SupervisorPid();
  prepared.supervisor_pid_tmp = folder.SupervisorPid() + ".tmp";
  prepared.job_pid = folder.JobPid();
  prepared.job_pid_tmp = folder.JobPid() + ".tmp";
  return prepared;
}

// ---- Async-signal-safe helpers, used between fork and exec. ----

// A fixed buffer that text is appended to without allocating.
struct SafeText {
  char bytes[128];
  size_t size = 0;

  void Append(const char* text) {
    while (*text != '\0' && size < sizeof(bytes)) bytes[size++] = *text++;
  }
  void AppendNumber(uint64_t number) {
    char digits[24];
    int count = 0;
    do {
      digits[count++] = static_cast<char>('0' + number % 10);
      number /= 10;
    } while (number != 0);
    while (count > 0 && size < sizeof(bytes)) bytes[size++] = digits[--count];
  }
};

bool WriteAll(int fd, const char* bytes, size_t size) {
  while (size > 0) {
    ssize_t written = write(fd, bytes, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    bytes += written;
    size -= static_cast<size_t>(written);
  }
  return true;
}

// Writes tmp, fsyncs it, renames it over path and fsyncs the folder, so that after a crash the
// file holds either nothing or the whole text.
bool WriteFileDurably(const std::string& tmp, const std::string& path, const std::string& dir,
                      const SafeText& text) {
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = WriteAll(fd, text.bytes, text.size) && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) return false;

  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return true;
}

// Field 22 of /proc/self/stat, read and parsed without allocating. 0 when unreadable.
uint64_t OwnStartTime() {
  char stat[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t size = read(fd, stat, sizeof(stat) - 1);
  close(fd);
  if (size <= 0) return 0;

  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  ssize_t at = size - 1;
  while (at > 0 && stat[at] != ')') --at;
  int field = 2;
  uint64_t value = 0;
  for (ssize_t i = at + 1; i < size; ++i) {
    if (stat[i] == ' ' && ++field > 22) break;
    if (field == 22 && stat[i] >= '0' && stat[i] <= '9') {
      value = value * 10 + static_cast<uint64_t>(stat[i] - '0');
    }
  }
  return value;
}

void SetSignals(void (*handler)(int), bool all) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  if (!all) {
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGHUP, &action, nullptr);
    return;
  }
  for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
    if (signal_number != SIGKILL && signal_number != SIGSTOP) {
      sigaction(signal_number, &action, nullptr);
    }
  }
}

// Points stdin, stdout and stderr at /dev/null and closes every other inherited descriptor:
// the supervisor outlives atomflow and must not keep its sockets, files or pipes open.
void DetachDescriptors() {
  int null_fd = open("/dev/null", O_RDWR);
  if (null_fd >= 0) {
    dup2(null_fd, STDIN_FILENO);
    dup2(null_fd, STDOUT_FILENO);
    dup2(null_fd, STDERR_FILENO);
  }
  close_range(3, ~0U, 0);
}

[[noreturn]] void WriteStatusAndExit(const PreparedLaunch& launch, const SafeText& status) {
  bool ok = WriteFileDurably(launch.status_tmp, launch.status, launch.folder, status);
  _exit(ok ? 0 : 1);
}

[[noreturn]] void ExitWithSpawnError(const PreparedLaunch& launch, int stage, int error) {
  SafeText status;
  status.Append("spawn_error ");
  status.Append(kStageNames[stage]);
  status.Append(" ");
  status.AppendNumber(static_cast<uint64_t>(error));
  status.Append("\n");
  WriteStatusAndExit(launch, status);
}

[[noreturn]] void ReportAndExit(int report_fd, int stage) {
  SpawnReport report{stage, errno};
  WriteAll(report_fd, reinterpret_cast<const char*>(&report), sizeof(report));
  _exit(127);
}

// The job's child: its own process group, default signals, output into the log, then exec.
[[noreturn]] void RunJob(const PreparedLaunch& launch, int log_fd, int report_fd) {
  setpgid(0, 0);
  SetSignals(SIG_DFL, /*all=*/true);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  dup2(log_fd, STDOUT_FILENO);
  dup2(log_fd, STDERR_FILENO);
  if (launch.working_dir != nullptr && chdir(launch.working_dir) != 0) {
    ReportAndExit(report_fd, kStageChdir);
  }
  execve(launch.exec_path, launch.argv.data(), launch.envp.data());
  ReportAndExit(report_fd, kStageExec);
}

// Reads the child's report; false on EOF, which means exec succeeded.
bool ReadSpawnReport(int report_fd, SpawnReport* report) {
  size_t got = 0;
  char* bytes = reinterpret_cast<char*>(report);
  while (got < sizeof(*report)) {
    ssize_t n = read(report_fd, bytes + got, sizeof(*report) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

int WaitForJob(pid_t job) {
  int wait_status = 0;
  while (waitpid(job, &wait_status, 0) < 0 && errno == EINTR) {
  }
  return wait_status;
}

void WriteJobPid(const PreparedLaunch& launch, pid_t job) {
  SafeText text;
  text.AppendNumber(static_cast<uint64_t>(job));
  text.Append("\n");
  WriteFileDurably(launch.job_pid_tmp, launch.job_pid, launch.folder, text);
}

void WriteSupervisorPid(const PreparedLaunch& launch) {
  SafeText text;
  text.AppendNumber(static_cast<uint64_t>(getpid()));
  text.Append(" ");
  text.AppendNumber(OwnStartTime());
  text.Append("\n");
  WriteFileDurably(launch.supervisor_pid_tmp, launch.supervisor_pid, launch.folder, text);
}

SafeText DescribeWaitStatus(int wait_status) {
  SafeText status;
  if (WIFSIGNALED(wait_status)) {
    status.Append("signal ");
    status.AppendNumber(static_cast<uint64_t>(WTERMSIG(wait_status)));
  } else {
    status.Append("exit ");
    status.AppendNumber(static_cast<uint64_t>(WEXITSTATUS(wait_status)));
  }
  status.Append("\n");
  return status;
}

// The supervisor: survives atomflow (own session, deaf to terminal and termination signals),
// runs the job, records how it ended, exits.
[[noreturn]] void RunSupervisor(const PreparedLaunch& launch) {
  setsid();
  SetSignals(SIG_IGN, /*all=*/false);
  DetachDescriptors();
  WriteSupervisorPid(launch);

  int log_fd = open(launch.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) ExitWithSpawnError(launch, kStageLog, errno);
  int report_pipe[2];
  if (pipe2(report_pipe, O_CLOEXEC) != 0) ExitWithSpawnError(launch, kStageFork, errno);

  pid_t job = fork();
  if (job == 0) RunJob(launch, log_fd, report_pipe[1]);
  int fork_error = errno;
  close(report_pipe[1]);
  close(log_fd);
  if (job < 0) ExitWithSpawnError(launch, kStageFork, fork_error);

  // Both sides set the group, so it exists whichever runs first.
  setpgid(job, job);
  SpawnReport report;
  if (ReadSpawnReport(report_pipe[0], &report)) {
    WaitForJob(job);
    ExitWithSpawnError(launch, report.stage, report.error);
  }
  WriteJobPid(launch, job);
  WriteStatusAndExit(launch, DescribeWaitStatus(WaitForJob(job)));
}

struct ProcStat {
  char state = '?';
  uint64_t start_time = 0;
};

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!file || !std::getline(file, line)) return std::nullopt;
  size_t close_paren = line.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;

  // Fields after the command name: 3 is the state, 22 the start time.
  std::istringstream fields(line.substr(close_paren + 1));
  ProcStat stat;
  std::string skipped;
  fields >> stat.state;
  for (int field = 4; field < 22; ++field) fields >> skipped;
  fields >> stat.start_time;
  if (!fields) return std::nullopt;
  return stat;
}

std::optional<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace

Result<ProcessIdentity> LaunchSupervisor(const SupervisorLaunch& launch) {
  PreparedLaunch prepared = Prepare(launch);
  pid_t pid = fork();
  if (pid == 0) RunSupervisor(prepared);
  if (pid < 0)
    return Status::Error(std::string("cannot fork a job supervisor: ") + strerror(errno));

  // The child cannot vanish before we reap it, so its stat is there to read.
  std::optional<ProcStat> stat = ReadProcStat(pid);
  return ProcessIdentity{pid, stat ? stat->start_time : 0};
}

bool IsProcessAlive(const ProcessIdentity& process) {
  if (process.pid <= 0) return false;
  std::optional<ProcStat> stat = ReadProcStat(process.pid);
  if (!stat || stat->start_time != process.start_time) return false;
  if (stat->state != 'Z') return true;

  // Ours or not, a zombie has ended; reaping it (if it is our child) frees its pid.
  waitpid(process.pid, nullptr, WNOHANG);
  return false;
}

std::optional<ProcessIdentity> ReadSupervisorPid(const JobFolder& folder) {
  std::optional<std::string> text = ReadSmallFile(folder.SupervisorPid());
  if (!text) return std::nullopt;
  std::istringstream fields(*text);
  ProcessIdentity identity;
  if (!(fields >> identity.pid >> identity.start_time)) return std::nullopt;
  return identity;
}

std::optional<pid_t> ReadJobGroup(const JobFolder& folder) {
  std::optional<std::string> text = ReadSmallFile(folder.JobPid());
  if (!text) return std::nullopt;
  std::istringstream fields(*text);
  pid_t pid = 0;
  if (!(fields >> pid) || pid <= 1) return std::nullopt;
  return pid;
}

Result<std::optional<JobExit>> ReadJobExit(const JobFolder& folder) {
  std::optional<std::string> text = ReadSmallFile(folder.Status());
  if (!text) return std::optional<JobExit>();

  std::istringstream fields(*text);
  std::string kind;
  JobExit exit;
  fields >> kind;
  if (kind == "spawn_error") {
    exit.kind = JobExit::Kind::kSpawnError;
    fields >> exit.stage;
  } else if (kind == "signal") {
    exit.kind = JobExit::Kind::kSignaled;
  } else if (kind != "exit") {
    return Status::Error("malformed job status file " + folder.Status() + ": '" + *text + "'");
  }
  if (!(fields >> exit.code)) {
    return Status::Error("malformed job status file " + folder.Status() + ": '" + *text + "'");
  }
  return std::optional<JobExit>(exit);
}

std::string ResolveCommand(const std::string& command, const std::vector<std::string>& envp) {
  if (command.empty() || command.find('/') != std::string::npos) return command;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const std::string& entry : envp) {
    if (entry.rfind("PATH=", 0) == 0) path = entry.substr(5);
  }

  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + command;
    struct stat info;
    if (stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return command;
}

}  // namespace atomflow::connectors
