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

void AppendNumber(std::string& out, int64_t number) {
  char digits[24];
  auto [end, error] = std::to_chars(digits, digits + sizeof(digits), number);
  (void)error;  // 24 characters hold every int64_t
  if (!out.empty()) out += ' ';
  out.append(digits, end);
}

// The integers of a "steps" string; parsing stops at the first thing that is not one.
std::vector<int64_t> ParseNumbers(const std::string& text) {
  std::vector<int64_t> numbers;
  const char* at = text.data();
  const char* end = at + text.size();
  while (at < end) {
    while (at < end && *at == ' ') ++at;
    if (at == end) break;
    int64_t number = 0;
    auto [next, error] = std::from_chars(at, end, number);
    if (error != std::errc()) break;
    numbers.push_back(number);
    at = next;
  }
  return numbers;
}

// The distinct values of one batch, each once, in first-use order.
class SiteTable {
 public:
  int64_t Prefix(const std::string& prefix) {
    for (size_t i = 0; i < prefixes_.size(); ++i) {
      if (*prefixes_[i] == prefix) return static_cast<int64_t>(i);
    }
    prefixes_.push_back(&prefix);
    return static_cast<int64_t>(prefixes_.size() - 1);
  }

  int64_t Site(const StepRecord& record) {
    for (size_t i = 0; i < sites_.size(); ++i) {
      const StepRecord& site = *sites_[i];
      if (site.step == record.step && site.routine == record.routine && site.line == record.line) {
        return static_cast<int64_t>(i);
      }
    }
    sites_.push_back(&record);
    return static_cast<int64_t>(sites_.size() - 1);
  }

  Json PrefixesJson() const {
    Json::array_t prefixes;
    for (const std::string* prefix : prefixes_) prefixes.emplace_back(*prefix);
    return Json(std::move(prefixes));
  }

  Json SitesJson() const {
    Json::array_t sites;
    for (const StepRecord* site : sites_) {
      sites.push_back(Json::array({*site->step, *site->routine, site->line}));
    }
    return Json(std::move(sites));
  }

 private:
  std::vector<const std::string*> prefixes_;
  std::vector<const StepRecord*> sites_;
};

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
  parts->steps = ParseNumbers(steps->get_ref<const std::string&>());
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

bool StepHistory::Add(StepRecord record) {
  if (records_.capacity() == 0) records_.reserve(16);
  records_.push_back(std::move(record));
  return records_.size() >= kBatch;
}

store::JournalEntry StepHistory::Take() {
  // Moved out, so a waiting execution keeps no buffer.
  std::vector<StepRecord> records = std::move(records_);
  records_ = std::vector<StepRecord>();

  int64_t base_ms = records.front().start_ms;
  SiteTable table;
  std::string steps;
  steps.reserve(records.size() * 16);
  for (const StepRecord& record : records) {
    AppendNumber(steps, record.counter);
    AppendNumber(steps, table.Prefix(record.prefix));
    AppendNumber(steps, table.Site(record));
    AppendNumber(steps, record.failed ? 1 : 0);
    AppendNumber(steps, record.start_ms - base_ms);
    AppendNumber(steps, record.end_ms - record.start_ms);
  }

  store::JournalEntry entry;
  entry.kind = "steps";
  // The first step's record key is never in another "steps" record, so this key is unique.
  entry.key = "s" + RecordKey(records.front().prefix, records.front().counter);
  entry.payload = Json::object();
  entry.payload["base_ms"] = base_ms;
  entry.payload["prefixes"] = table.PrefixesJson();
  entry.payload["sites"] = table.SitesJson();
  entry.payload["steps"] = Json(std::move(steps));
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
