// Journal payloads written straight as JSON text, without building an nlohmann Json first.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "value/value.h"

namespace atomflow {

// Appends `text` as a JSON string. Valid UTF-8 passes through with only '"', '\\' and the
// control characters escaped, as nlohmann's dump writes it; text that is not valid UTF-8 is
// written as dump's replace handler writes it (each bad sequence as U+FFFD).
void AppendJsonString(std::string_view text, std::string& out);

// Appends the journal encoding of `value` as JSON text: the text parses to exactly
// ToJournalJson(value), so FromJournalJson gives the value back. Like ToJournalJson, a value
// that holds a NaN or an infinity anywhere is written as null.
void AppendJournalText(const Value& value, std::string& out);

// Builds the text of one JSON object field by field, for the journal records written on every
// transaction (intents, results, branches): a third of the workers' time went to building an
// ordered_json and serialising it (docs/performance.md). Names are trusted: plain ASCII, no
// character that needs an escape. Not thread safe; one record per writer.
class JsonObjectText {
 public:
  JsonObjectText() { text_.reserve(192); }

  JsonObjectText& String(std::string_view name, std::string_view text);
  JsonObjectText& Int(std::string_view name, int64_t number);
  JsonObjectText& Bool(std::string_view name, bool flag);
  JsonObjectText& Null(std::string_view name);
  // A value in the journal encoding (AppendJournalText).
  JsonObjectText& JournalValue(std::string_view name, const Value& value);
  // Text that is already JSON (another record's text, say), written as it is.
  JsonObjectText& Raw(std::string_view name, std::string_view json);

  // The object's text, closed; the writer is empty afterwards.
  std::string Take();

 private:
  void Name(std::string_view name);

  std::string text_ = "{";
};

}  // namespace atomflow
