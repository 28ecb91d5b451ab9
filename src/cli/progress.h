// Human progress output of the atomflow command: one line per step, job logs indented.
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "engine/engine.h"

namespace atomflow::cli {

// Writes progress to stderr. Thread safe (one mutex around every line). The first line about
// an execution is its header ("execution ID started"), whichever comes first: the caller's
// Announce or the execution's first event, which a worker may report before Start returns.
class StderrProgress : public engine::ProgressSink {
 public:
  // verb names what happened to the executions: "started" or "resumed".
  StderrProgress(bool quiet, std::string verb) : quiet_(quiet), verb_(std::move(verb)) {}

  // Prints the header of execution_id unless it was printed already.
  void Announce(const std::string& execution_id);

  void OnStep(const engine::StepReport& report) override;
  void OnLog(const std::string& execution_id, const std::string& step, const std::string& severity,
             const std::string& text) override;
  void OnJobLog(const std::string& execution_id, const std::string& step,
                const std::string& line) override;
  void OnTransaction(const std::string& execution_id, const std::string& gid,
                     const std::string& step, const std::string& state) override;

 private:
  void AnnounceLocked(const std::string& execution_id);

  bool quiet_;
  std::string verb_;
  std::mutex mutex_;
  std::set<std::string> announced_;  // guarded by mutex_
};

}  // namespace atomflow::cli
