// Step history: batching step records into "steps" journal records, and reading them back.
#include "engine/step_history.h"

#include <algorithm>
#include <charconv>

namespace atomflow::engine {

namespace {

// A "steps" payload is {"base_ms": T, "prefixes": [text...], "sites": [[step, routine,
// line]...], "steps": "<6 integers per step, separated by spaces>"}: the record counter, the
// index of the strand prefix, the index of the site (the step's name, its routine and line),
// 1 when it failed (else 0), its start minus T and its duration, in milliseconds. A batch is
// mostly one loop body, so each site is written once and a step costs six small numbers. They
// are one JSON string rather than an array: an array of numbers costs more to build, write and
// free than the steps it records.
constexpr size_t kFields = 6;

// A step that follows the one before it in the batch (the next record counter, the same
// prefix, succeeded, started when the one before ended, lasted under a millisecond: every
// step of a compute loop) is written as this character and its site index alone.
constexpr char kShortStep = '~';

// The steps of a "steps" string as six integers each, a short token expanded (see Add);
// parsing stops at the first token that is neither.
std::vector<int64_t> ParseSteps(const std::string& text) {
  std::vector<int64_t> numbers;
  const char* at = text.data();
  const char* end = at + text.size();
  while (at < end) {
    while (at < end && *at == ' ') ++at;
    if (at == end) break;
    bool short_form = *at == kShortStep;
    if (short_form) {
      if (numbers.size() < kFields) break;  // a short step follows another
      ++at;
    }
    int64_t number = 0;
    auto [next, error] = std::from_chars(at, end, number);
    if (error != std::errc()) break;
    at = next;
    if (!short_form) {
      numbers.push_back(number);
      continue;
    }
    if (numbers.size() % kFields != 0) break;
    const int64_t* last = &numbers[numbers.size() - kFields];
    int64_t step[kFields] = {last[0] + 1, last[1], number, 0, last[4] + last[5], 0};
    numbers.insert(numbers.end(), step, step + kFields);
  }
  return numbers;
}

std::string RecordKey(const std::string& prefix, int64_t counter) {
  return "r" + prefix + std::to_string(counter);
}

int64_t IntOf(const Json& field) { return field.is_number_integer() ? field.get<int64_t>() : 0; }

const Json& ElementOf(const Json& list, int64_t i) {
  static const Json kNull;
  if (!list.is_array() || i < 0 || i >= static_cast<int64_t>(list.size())) return kNull;
  return list[static_cast<size_t>(i)];
}

std::string TextOf(const Json& value) { return value.is_string() ? value.get<std::string>() : ""; }

// The parts of a "steps" payload; false when it is not one.
struct BatchParts {
  int64_t base_ms = 0;
  const Json* prefixes = nullptr;
  const Json* sites = nullptr;
  std::vector<int64_t> steps;
};

bool ReadBatchParts(const Json& payload, BatchParts* parts) {
  if (!payload.is_object()) return false;
  auto prefixes = payload.find("prefixes");
  auto sites = payload.find("sites");
  auto steps = payload.find("steps");
  if (prefixes == payload.end() || sites == payload.end() || steps == payload.end()) {
    return false;
  }
  if (!prefixes->is_array() || !sites->is_array() || !steps->is_string()) return false;
  parts->base_ms = payload.value("base_ms", int64_t{0});
  parts->prefixes = &*prefixes;
  parts->sites = &*sites;
  parts->steps = ParseSteps(steps->get_ref<const std::string&>());
  return true;
}

bool Before(const StepEntry& a, const StepEntry& b) {
  return a.seq != b.seq ? a.seq < b.seq : a.offset < b.offset;
}

// Batch rows are read this many at a time: each may hold up to StepHistory::kBatch entries.
constexpr int kBatchRowsPerRead = 4;

// Appends the entries of "steps" rows after the position until `want` of them (<= 0: all).
Status ReadBatchEntries(store::Store& store, const std::string& execution_id, int64_t after_seq,
                        int64_t after_offset, int want, std::vector<StepEntry>& out) {
  // The row at after_seq itself may still hold entries after after_offset.
  int64_t from_seq = after_seq - 1;
  size_t taken = 0;
  for (;;) {
    int rows = want > 0 ? kBatchRowsPerRead : 0;
    Result<std::vector<store::JournalEntry>> batch =
        store.ReadJournalKind(execution_id, "steps", from_seq, rows);
    if (!batch.ok()) return batch.status();
    for (const store::JournalEntry& row : *batch) {
      std::vector<StepEntry> entries;
      AppendStepEntries(row, entries);
      for (StepEntry& entry : entries) {
        if (entry.seq == after_seq && entry.offset <= after_offset) continue;
        out.push_back(std::move(entry));
        ++taken;
      }
      from_seq = row.seq;
    }
    bool exhausted = rows == 0 || static_cast<int>(batch->size()) < rows;
    if (exhausted || (want > 0 && taken >= static_cast<size_t>(want))) return Status::Ok();
  }
}

}  // namespace

int64_t StepHistory::PrefixIndex(const std::string& prefix) {
  // Most steps of a batch run on the strand of the step before.
  if (count_ != 0 && prefixes_[last_prefix_] == prefix) return last_prefix_;
  for (size_t i = 0; i < prefixes_.size(); ++i) {
    if (prefixes_[i] == prefix) return static_cast<int64_t>(i);
  }
  prefixes_.push_back(prefix);
  return static_cast<int64_t>(prefixes_.size() - 1);
}

int64_t StepHistory::SiteIndex(const StepRecord& record) {
  // A loop body's steps come round in order: the site after the last one is the likeliest.
  if (!sites_.empty()) {
    size_t next = static_cast<size_t>(last_site_ + 1) % sites_.size();
    const Site& site = sites_[next];
    if (site.step == record.step && site.routine == record.routine && site.line == record.line) {
      return static_cast<int64_t>(next);
    }
  }
  for (size_t i = 0; i < sites_.size(); ++i) {
    const Site& site = sites_[i];
    if (site.step == record.step && site.routine == record.routine && site.line == record.line) {
      return static_cast<int64_t>(i);
    }
  }
  sites_.push_back({record.step, record.routine, record.line});
  return static_cast<int64_t>(sites_.size() - 1);
}

bool StepHistory::Add(const StepRecord& record) {
  if (count_ == 0) {
    base_ms_ = record.start_ms;
    first_key_ = RecordKey(*record.prefix, record.counter);
    steps_.reserve(kBatch * 4);
  }

  int64_t prefix = PrefixIndex(*record.prefix);
  int64_t site = SiteIndex(record);
  if (FollowsLast(record, prefix)) {  // at another site than AddShort expects
    last_counter_ = record.counter;
    last_site_ = site;
    AppendShort(site);
    return ++count_ >= kBatch;
  }

  // The step is written to a buffer first: one append to steps_ per step.
  char text[kFields * 22];  // 20 digits, a sign and a space each
  char* at = text;
  char* end = text + sizeof(text);
  int64_t numbers[kFields] = {record.counter,
                              prefix,
                              site,
                              record.failed ? 1 : 0,
                              record.start_ms - base_ms_,
                              record.end_ms - record.start_ms};
  for (size_t i = 0; i < kFields; ++i) {
    if (i != 0 || count_ != 0) *at++ = ' ';
    at = std::to_chars(at, end, numbers[i]).ptr;
  }
  steps_.insert(steps_.end(), text, at);

  last_counter_ = record.counter;
  last_prefix_ = prefix;
  last_site_ = site;
  last_end_ms_ = record.end_ms;
  return ++count_ >= kBatch;
}

void StepHistory::AppendShort(int64_t site) {
  steps_.push_back(' ');
  steps_.push_back(kShortStep);
  if (site < 10) {  // a loop body of up to ten steps: a character each, without a conversion
    steps_.push_back(static_cast<char>('0' + site));
    return;
  }
  char digits[20];
  steps_.insert(steps_.end(), digits, std::to_chars(digits, digits + sizeof(digits), site).ptr);
}

bool StepHistory::FollowsLast(const StepRecord& record, int64_t prefix) const {
  return count_ != 0 && record.counter == last_counter_ + 1 && prefix == last_prefix_ &&
         !record.failed && record.start_ms == last_end_ms_ && record.end_ms == record.start_ms;
}

store::JournalEntry StepHistory::Take() {
  Json prefixes = Json::array();
  for (std::string& prefix : prefixes_) prefixes.push_back(std::move(prefix));
  Json sites = Json::array();
  for (const Site& site : sites_)
    sites.push_back(Json::array({*site.step, *site.routine, site.line}));
  constexpr auto kReplace = Json::error_handler_t::replace;

  // The numbers need no escaping: the text is built here rather than serialised from a Json.
  store::JournalEntry entry;
  entry.kind = "steps";
  // The first step's record key is never in another "steps" record, so this key is unique.
  entry.key = "s" + first_key_;
  std::string& text = entry.payload_text;
  text.reserve(steps_.size() + 64);
  text += "{\"base_ms\":";
  text += std::to_string(base_ms_);
  text += ",\"prefixes\":";
  text += prefixes.dump(-1, ' ', false, kReplace);
  text += ",\"sites\":";
  text += sites.dump(-1, ' ', false, kReplace);
  text += ",\"steps\":\"";
  text.append(steps_.data(), steps_.size());
  text += "\"}";

  // Released, so that a waiting execution keeps no buffer.
  *this = StepHistory();
  return entry;
}

void AppendStepEntries(const store::JournalEntry& entry, std::vector<StepEntry>& out) {
  if (entry.kind == "step") {
    out.push_back({entry.seq, 0, entry.payload});
    return;
  }
  BatchParts parts;
  if (entry.kind != "steps" || !ReadBatchParts(entry.payload, &parts)) return;
  const std::vector<int64_t>& steps = parts.steps;
  for (size_t i = 0; i + kFields <= steps.size(); i += kFields) {
    const Json& site = ElementOf(*parts.sites, steps[i + 2]);
    Json no_site = Json::array();
    const Json& fields = site.is_array() && site.size() == 3 ? site : no_site;
    int64_t start_ms = parts.base_ms + steps[i + 4];
    Json payload = {{"step", fields.empty() ? "" : TextOf(fields[0])},
                    {"routine", fields.empty() ? "" : TextOf(fields[1])},
                    {"state", steps[i + 3] != 0 ? "FAILED" : "SUCCEEDED"},
                    {"start_ms", start_ms},
                    {"end_ms", start_ms + steps[i + 5]},
                    {"line", fields.empty() ? 0 : IntOf(fields[2])}};
    out.push_back({entry.seq, static_cast<int64_t>(i / kFields), std::move(payload)});
  }
}

std::vector<std::string> StepRecordKeys(const Json& payload) {
  std::vector<std::string> keys;
  BatchParts parts;
  if (!ReadBatchParts(payload, &parts)) return keys;
  const std::vector<int64_t>& steps = parts.steps;
  for (size_t i = 0; i + kFields <= steps.size(); i += kFields) {
    keys.push_back(RecordKey(TextOf(ElementOf(*parts.prefixes, steps[i + 1])), steps[i]));
  }
  return keys;
}

Result<std::vector<StepEntry>> ReadStepEntries(store::Store& store, const std::string& execution_id,
                                               int64_t after_seq, int64_t after_offset, int limit) {
  // Old one-step rows and batch rows, each stream in journal order: the first `limit` entries
  // overall are among the first `limit` of each.
  Result<std::vector<store::JournalEntry>> singles =
      store.ReadJournalKind(execution_id, "step", after_seq, limit);
  if (!singles.ok()) return singles.status();
  std::vector<StepEntry> entries;
  for (const store::JournalEntry& row : *singles) AppendStepEntries(row, entries);
  Status batches = ReadBatchEntries(store, execution_id, after_seq, after_offset, limit, entries);
  if (!batches.ok()) return batches;

  std::sort(entries.begin(), entries.end(), Before);
  if (limit > 0 && entries.size() > static_cast<size_t>(limit)) entries.resize(limit);
  return entries;
}

}  // namespace atomflow::engine
