// Step history: the named steps an execution ran, buffered in memory and journaled as one
// "steps" record per batch, and read back (old one-per-step "step" records too) for the API
// and the CLI. The record's layout and what a crash leaves are in docs/journal.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "store/store.h"
#include "value/value.h"

namespace atomflow::engine {

// One named step that ended. The names point into the workflow's syntax tree, which the
// execution holds for as long as its steps are buffered; the prefix is read during Add only.
struct StepRecord {
  const std::string* step = nullptr;
  const std::string* routine = nullptr;
  const std::string* prefix = nullptr;  // the strand's key prefix: key "r<prefix><counter>"
  int64_t counter = 0;                  // the strand's record counter
  int64_t start_ms = 0;                 // epoch milliseconds
  int64_t end_ms = 0;
  int line = 0;
  bool failed = false;
};

// The steps of one execution not yet journaled, in the order they ended, kept as the text of
// the "steps" record they will become: a step costs six numbers written into a string (or one,
// for a step that follows the one before as a compute loop's do), and taking the batch costs
// no JSON serialisation of them. Touched only by the worker that drives
// the execution (not thread safe). Holds no memory while empty.
class StepHistory {
 public:
  // Steps per "steps" record at most: a long compute loop's history shows up this often.
  static constexpr size_t kBatch = 256;

  // Buffers a step; true when the buffer is full and must be taken.
  bool Add(const StepRecord& record);
  // Buffers a step of a compute loop: one that follows the step before (see FollowsLast) at
  // the site after it. Inline, as it runs for nearly every step of such a loop; false, having
  // buffered nothing, for any other step, which Add takes.
  bool AddShort(const StepRecord& record) {
    if (count_ == 0 || record.failed || record.counter != last_counter_ + 1 ||
        record.start_ms != last_end_ms_ || record.end_ms != record.start_ms) {
      return false;
    }
    size_t next = static_cast<size_t>(last_site_) + 1;
    if (next == sites_.size()) next = 0;
    const Site& site = sites_[next];
    if (site.step != record.step || site.routine != record.routine || site.line != record.line ||
        prefixes_[last_prefix_] != *record.prefix) {
      return false;
    }
    AppendShort(static_cast<int64_t>(next));
    last_counter_ = record.counter;
    last_site_ = static_cast<int64_t>(next);
    ++count_;
    return true;
  }
  bool full() const { return count_ >= kBatch; }
  bool empty() const { return count_ == 0; }

  // The "steps" record of the buffered steps (kind, key and payload_text; the store sets seq
  // and the engine the time), emptying the buffer. Call only when not empty().
  store::JournalEntry Take();

 private:
  // Where a step is in the workflow: its name, routine and line.
  struct Site {
    const std::string* step;
    const std::string* routine;
    int line;
  };

  void AppendShort(int64_t site);
  int64_t PrefixIndex(const std::string& prefix);
  int64_t SiteIndex(const StepRecord& record);
  // True when the step can be written in the short form (see step_history.cc).
  bool FollowsLast(const StepRecord& record, int64_t prefix) const;

  size_t count_ = 0;
  int64_t base_ms_ = 0;    // the first step's start
  std::string first_key_;  // the first step's record key
  // Six numbers per step, or a short step; spaces between. A vector: appending a character
  // is a few inline instructions, where a string's append is a call.
  std::vector<char> steps_;
  int64_t last_counter_ = 0;  // the last step's record counter, prefix and end
  int64_t last_prefix_ = 0;
  int64_t last_site_ = -1;
  int64_t last_end_ms_ = 0;
  std::vector<std::string> prefixes_;  // distinct prefixes, in first-use order
  std::vector<Site> sites_;            // distinct sites, in first-use order
};

// One step entry read back: the payload of a one-step "step" record (`step`, `routine`,
// `state`, `start_ms`, `end_ms`, `line`), the journal row that holds it and its place there.
struct StepEntry {
  int64_t seq = 0;
  int64_t offset = 0;  // 0 for a "step" record; the index within a "steps" record
  Json payload;
};

// Appends the step entries of a journal entry of kind "step" or "steps", in order; any other
// kind (and a malformed payload's unreadable part) adds nothing.
void AppendStepEntries(const store::JournalEntry& entry, std::vector<StepEntry>& out);

// The record keys ("r<prefix><n>") a "steps" payload covers, so that a resumed execution does
// not journal those steps again.
std::vector<std::string> StepRecordKeys(const Json& payload);

// Step entries of an execution after position (after_seq, after_offset), in journal order, at
// most limit (<= 0: all). Reads both record kinds. Position (0, 0) starts at the first entry;
// (seq, INT64_MAX) after every entry of row seq.
Result<std::vector<StepEntry>> ReadStepEntries(store::Store& store, const std::string& execution_id,
                                               int64_t after_seq, int64_t after_offset, int limit);

}  // namespace atomflow::engine
