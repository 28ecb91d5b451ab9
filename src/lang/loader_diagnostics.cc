// Collecting positioned load errors, and suggesting the key a typo probably meant.
#include "lang/loader_diagnostics.h"

#include <algorithm>
#include <string_view>

#include "lang/loader.h"

namespace atomflow::lang {

void Diagnostics::Error(SourcePos pos, std::string message) {
  errors_.push_back({pos, std::move(message)});
}

Status Diagnostics::ToStatus() const {
  if (errors_.empty()) return Status::Ok();

  // Stable, so errors at one position keep the order the checks found them in.
  std::vector<Entry> sorted = errors_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Entry& a, const Entry& b) {
    return std::pair(a.pos.line, a.pos.column) < std::pair(b.pos.line, b.pos.column);
  });

  std::string text;
  std::string previous;
  for (const Entry& entry : sorted) {
    std::string line = file_ + ":" + std::to_string(entry.pos.line) + ":" +
                       std::to_string(entry.pos.column) + ": " + entry.message;
    if (line == previous) continue;
    if (!text.empty()) text += "\n";
    text += line;
    previous = std::move(line);
  }
  return Status::Error(std::move(text));
}

namespace {

// Edits (insert, delete, substitute, swap two neighbours) that turn a into b: the optimal
// string alignment distance, so the common typo "retrun" is one swap from "return".
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;

  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, substitute});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string SuggestKey(std::string_view key, const std::vector<std::string_view>& candidates) {
  // About a third of the word may be wrong, at least one letter: "asign" -> "assign" and
  // "stpes" -> "steps", but "x" suggests nothing.
  size_t best_distance = std::max<size_t>(1, (key.size() + 1) / 3) + 1;
  std::string_view best;
  for (std::string_view candidate : candidates) {
    size_t distance = EditDistance(key, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return std::string(best);
}

}  // namespace atomflow::lang
