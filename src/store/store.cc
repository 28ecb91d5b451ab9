// Owner strings ("hostname:pid") and the liveness test that Claim relies on.
#include "store/store.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <fstream>
#include <string>

namespace atomflow::store {
namespace {

std::string HostName() {
  std::array<char, 256> name = {};
  if (gethostname(name.data(), name.size() - 1) != 0) return "localhost";
  return name.data();
}

// A process killed but not yet reaped by its parent still answers kill(pid, 0); it drives
// nothing any more, so a restart right after a SIGKILL may take its executions over.
bool IsZombie(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;

  // The state follows the command name, which is in parentheses and may itself hold spaces.
  size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

}  // namespace

Result<std::vector<std::vector<JournalEntry>>> Store::ReadJournals(
    const std::vector<std::string>& ids) {
  std::vector<std::vector<JournalEntry>> journals;
  journals.reserve(ids.size());
  for (const std::string& id : ids) {
    Result<std::vector<JournalEntry>> journal = ReadJournal(id);
    if (!journal.ok()) return journal.status();
    journals.push_back(std::move(journal).value());
  }
  return journals;
}

Result<std::vector<std::vector<JournalEntry>>> Store::ReadListedJournals(
    const std::vector<const ExecutionRecord*>& records) {
  std::vector<std::string> ids;
  ids.reserve(records.size());
  for (const ExecutionRecord* record : records) ids.push_back(record->id);
  return ReadJournals(ids);
}

Result<std::vector<bool>> Store::ClaimListed(const std::vector<const ExecutionRecord*>& records,
                                             const std::string& owner) {
  std::vector<std::string> ids;
  ids.reserve(records.size());
  for (const ExecutionRecord* record : records) ids.push_back(record->id);
  return ClaimMany(ids, owner);
}

std::string ProcessOwner() { return HostName() + ":" + std::to_string(getpid()); }

bool IsLiveLocalOwner(std::string_view owner) {
  size_t colon = owner.rfind(':');
  if (colon == std::string_view::npos || owner.substr(0, colon) != HostName()) return false;

  std::string_view digits = owner.substr(colon + 1);
  pid_t pid = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (error != std::errc() || end != digits.data() + digits.size() || pid <= 0) return false;

  // EPERM means the process exists but belongs to another user: still alive.
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  return !IsZombie(pid);
}

}  // namespace atomflow::store
