// Owner strings ("hostname:pid") and the liveness test that Claim relies on.
#include "store/store.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <string>

namespace atomflow::store {
namespace {

std::string HostName() {
  std::array<char, 256> name = {};
  if (gethostname(name.data(), name.size() - 1) != 0) return "localhost";
  return name.data();
}

}  // namespace

std::string ProcessOwner() { return HostName() + ":" + std::to_string(getpid()); }

bool IsLiveLocalOwner(std::string_view owner) {
  size_t colon = owner.rfind(':');
  if (colon == std::string_view::npos || owner.substr(0, colon) != HostName()) return false;

  std::string_view digits = owner.substr(colon + 1);
  pid_t pid = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (error != std::errc() || end != digits.data() + digits.size() || pid <= 0) return false;

  // EPERM means the process exists but belongs to another user: still alive.
  return kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace atomflow::store
