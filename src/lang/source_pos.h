// Positions in a workflow file, for error messages that say where.
#pragma once

#include <string>

namespace atomflow::lang {

// A 1-based line and column in the workflow file; 0 when unknown.
struct SourcePos {
  int line = 0;
  int column = 0;
};

}  // namespace atomflow::lang
