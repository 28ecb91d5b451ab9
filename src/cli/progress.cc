// StderrProgress: the lines a user watches while `atomflow run` works.
#include "cli/progress.h"

#include <cstdio>
#include <string>

namespace atomflow::cli {

void StderrProgress::Announce(const std::string& execution_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  AnnounceLocked(execution_id);
}

void StderrProgress::AnnounceLocked(const std::string& execution_id) {
  if (!announced_.insert(execution_id).second) return;
  fprintf(stderr, "execution %s %s\n", execution_id.c_str(), verb_.c_str());
}

void StderrProgress::OnStep(const engine::StepReport& report) {
  if (quiet_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  AnnounceLocked(report.execution_id);
  std::string indent(2 * (report.depth + 1), ' ');
  const char* mark = report.state == "SUCCEEDED" ? "ok  " : "FAIL";
  fprintf(stderr, "%s%s %s (%.2fs)\n", indent.c_str(), mark, report.step.c_str(),
          report.duration_ms / 1000.0);
}

void StderrProgress::OnLog(const std::string& execution_id, const std::string& step,
                           const std::string& severity, const std::string& text) {
  if (quiet_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  AnnounceLocked(execution_id);
  fprintf(stderr, "    [%s] %s: %s\n", severity.c_str(), step.c_str(), text.c_str());
}

void StderrProgress::OnJobLog(const std::string& execution_id, const std::string& step,
                              const std::string& line) {
  if (quiet_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  AnnounceLocked(execution_id);
  fprintf(stderr, "      | %s: %s\n", step.c_str(), line.c_str());
}

void StderrProgress::OnTransaction(const std::string& execution_id, const std::string& gid,
                                   const std::string& step, const std::string& state) {
  if (quiet_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  AnnounceLocked(execution_id);
  fprintf(stderr, "  transaction %s %s (%s)\n", step.c_str(), state.c_str(), gid.c_str());
}

}  // namespace atomflow::cli
