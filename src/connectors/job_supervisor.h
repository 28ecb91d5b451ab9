// The supervisor process that runs one job, and the files of a job folder it leaves behind.
//
// A job folder <jobs_root>/<job_id>/ holds:
//   log             stdout and stderr of the job, appended as it runs
//   outputs.json    written by the job itself (its path is in ATOMFLOW_OUTPUTS)
//   temp/           the default temp location when the spec names none
//   supervisor.pid  "<pid> <start time>\n" of the supervisor, written atomically by the
//                   supervisor before it forks the job; the start time (field 22 of
//                   /proc/<pid>/stat) tells a live supervisor from a process that reused its pid
//   job.pid         "<pid>\n" of the job, which leads its own process group; written once the
//                   job has exec'd, so signalling the group reaches the job's program
//   status          "exit <code>\n", "signal <number>\n" or "spawn_error <stage> <errno>\n",
//                   written atomically (temp file, fsync, rename, fsync of the folder) by the
//                   supervisor once the job has ended; the supervisor exits right after.
// What a crash leaves: a status means the job ended and says how. No status and a live
// supervisor (pid and start time match) means the job still runs. No status and no live
// supervisor means the supervisor died with or without its job: the job must be run again.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace atomflow::connectors {

// The paths of the files of one job folder.
struct JobFolder {
  explicit JobFolder(std::string folder_dir) : dir(std::move(folder_dir)) {}

  std::string Log() const { return dir + "/log"; }
  std::string Outputs() const { return dir + "/outputs.json"; }
  std::string SupervisorPid() const { return dir + "/supervisor.pid"; }
  std::string JobPid() const { return dir + "/job.pid"; }
  std::string Status() const { return dir + "/status"; }
  std::string DefaultTemp() const { return dir + "/temp"; }

  std::string dir;
};

// A process told apart from any later process that reuses its pid.
struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time = 0;  // clock ticks since boot, as /proc/<pid>/stat reports it
};

// Everything the supervisor needs, resolved before fork so that the forked children only make
// async-signal-safe calls.
struct SupervisorLaunch {
  std::string exec_path;          // the program, already searched on PATH
  std::vector<std::string> argv;  // argv[0] is the command as the user wrote it
  std::vector<std::string> envp;  // "NAME=value"
  std::string working_dir;        // empty: the caller's working directory
  std::string folder;             // the job folder; must exist
};

// Forks a supervisor in its own session that runs the job and writes the folder's files. The
// supervisor is a child of the calling process, which must reap it (IsProcessAlive does).
Result<ProcessIdentity> LaunchSupervisor(const SupervisorLaunch& launch);

// True while the process runs. A zombie counts as ended; when it is our child it is reaped.
bool IsProcessAlive(const ProcessIdentity& process);

// Reads supervisor.pid; nullopt when it is absent or unreadable.
std::optional<ProcessIdentity> ReadSupervisorPid(const JobFolder& folder);

// Reads job.pid (the job's process group); nullopt when the job has not exec'd yet.
std::optional<pid_t> ReadJobGroup(const JobFolder& folder);

// How a job ended, as its status file says.
struct JobExit {
  enum class Kind { kExited, kSignaled, kSpawnError };
  Kind kind = Kind::kExited;
  int code = 0;       // exit code, signal number or errno
  std::string stage;  // for kSpawnError: "log", "fork", "chdir" or "exec"
};

// Reads the status file: nullopt when absent (the job has not ended), an error when malformed.
Result<std::optional<JobExit>> ReadJobExit(const JobFolder& folder);

// Looks a command up on the PATH found in envp (as execvp would), so the exec itself needs no
// lookup. A name with a slash, or one not found, is returned unchanged for exec to judge.
std::string ResolveCommand(const std::string& command, const std::vector<std::string>& envp);

}  // namespace atomflow::connectors
