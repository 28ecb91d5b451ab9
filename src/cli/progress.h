// Human progress output of the atomflow command: one line per step, job logs indented.
#pragma once

#include <mutex>

#include "engine/engine.h"

namespace atomflow::cli {

// Writes progress to stderr. Thread safe (one mutex around every line).
class StderrProgress : public engine::ProgressSink {
 public:
  explicit StderrProgress(bool quiet) : quiet_(quiet) {}

  void OnStep(const engine::StepReport& report) override;
  void OnLog(const std::string& execution_id, const std::string& step, const std::string& severity,
             const std::string& text) override;
  void OnJobLog(const std::string& execution_id, const std::string& step,
                const std::string& line) override;
  void OnTransaction(const std::string& execution_id, const std::string& gid,
                     const std::string& step, const std::string& state) override;

 private:
  bool quiet_;
  std::mutex mutex_;
};

}  // namespace atomflow::cli
