// Language errors: building, raising and inspecting the values that `raise` throws.
#include "lang/error.h"

#include <utility>

namespace atomflow::lang {
namespace {

// A one-line description for logs and what(): "Tag: message" for a built-in error map, the
// text for a string, compact JSON otherwise.
std::string Describe(const Value& payload) {
  if (payload.is_string()) return payload.AsString();
  if (!payload.is_map()) return DebugString(payload);

  const Value* message = payload.AsMap().Find("message");
  const Value* tags = payload.AsMap().Find("tags");
  if (message == nullptr || !message->is_string()) return DebugString(payload);
  if (tags == nullptr || !tags->is_list() || tags->AsList().empty() ||
      !tags->AsList().front().is_string()) {
    return message->AsString();
  }
  return tags->AsList().front().AsString() + ": " + message->AsString();
}

}  // namespace

RaisedError::RaisedError(Value payload) : payload_(std::move(payload)), what_(Describe(payload_)) {}

Value MakeError(std::string_view tag, std::string message) {
  Map error;
  error.Set("message", Value(std::move(message)));
  error.Set("tags", Value(List{Value(tag)}));
  return Value(std::move(error));
}

void Raise(std::string_view tag, std::string message) {
  throw RaisedError(MakeError(tag, std::move(message)));
}

bool HasTag(const Value& payload, std::string_view tag) {
  if (!payload.is_map()) return false;
  const Value* tags = payload.AsMap().Find("tags");
  if (tags == nullptr || !tags->is_list()) return false;
  for (const Value& item : tags->AsList()) {
    if (item.is_string() && item.AsString() == tag) return true;
  }
  return false;
}

}  // namespace atomflow::lang
