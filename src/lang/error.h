// Language errors: what `raise` throws and `except` catches.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include "value/value.h"

namespace atomflow::lang {

// An error raised inside a workflow. It carries exactly the raised value: a string or a map;
// built-in errors are maps {message, tags: [...], ...}. Exceptions are used only inside the
// interpreter, where they are the language's raise and try.
class RaisedError : public std::exception {
 public:
  explicit RaisedError(Value payload);

  const Value& payload() const { return payload_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Value payload_;
  std::string what_;
};

// A built-in error map: {"message": message, "tags": [tag]}.
Value MakeError(std::string_view tag, std::string message);

// Throws RaisedError(MakeError(tag, message)).
[[noreturn]] void Raise(std::string_view tag, std::string message);

// True when payload is a map whose "tags" list holds tag.
bool HasTag(const Value& payload, std::string_view tag);

}  // namespace atomflow::lang
