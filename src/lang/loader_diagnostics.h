// Errors found while loading and checking a workflow, each tied to a position in the file.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "lang/source_pos.h"

namespace atomflow::lang {

// Collects the errors of one workflow file so that a load reports all of them at once, ordered
// by position. Not thread safe; one instance per load.
class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void Error(SourcePos pos, std::string message);

  size_t count() const { return errors_.size(); }
  bool ok() const { return errors_.empty(); }

  // Ok when nothing was reported; otherwise one "FILE:LINE:COLUMN: message" line per distinct
  // error, in file order.
  Status ToStatus() const;

 private:
  struct Entry {
    SourcePos pos;
    std::string message;
  };

  std::string file_;
  std::vector<Entry> errors_;
};

}  // namespace atomflow::lang
