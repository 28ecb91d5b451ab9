// The standard library's internals: argument checking shared by every function, the per-module
// function tables, and text helpers used by the evaluator too. Internal to src/lang.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lang/eval.h"
#include "value/value.h"

namespace atomflow::lang {

// The positional arguments of one standard-library call. Accessors check the type and raise
// a TypeError naming the function and the parameter. An optional argument given as null
// counts as absent, so a call step that leaves it out and one that passes null agree.
class Args {
 public:
  Args(const FunctionSignature& signature, std::vector<Value>& values)
      : signature_(signature), values_(values) {}

  size_t size() const { return values_.size(); }
  bool Has(size_t i) const { return i < values_.size() && !values_[i].is_null(); }
  // The argument, null when absent.
  const Value& operator[](size_t i) const;
  // Moves the argument out (for results built from an argument without a copy).
  Value Take(size_t i);

  const std::string& String(size_t i) const;
  // A string's or bytes' content.
  const std::string& StringOrBytes(size_t i) const;
  int64_t Int(size_t i) const;
  double Number(size_t i) const;
  bool Bool(size_t i) const;
  const List& ListArg(size_t i) const;
  const Map& MapArg(size_t i) const;

  // Raises TypeError: "text.split: argument 'source' must be a string, got integer".
  [[noreturn]] void WrongType(size_t i, std::string_view expected) const;
  // Raises ValueError with "name: " in front of what.
  [[noreturn]] void BadValue(std::string_view what) const;

  const std::string& function() const { return signature_.name; }

 private:
  const FunctionSignature& signature_;
  std::vector<Value>& values_;
};

// A pure function of the library and its signature.
using PureFunction = Value (*)(Args& args);
struct LibraryFunction {
  FunctionSignature signature;
  PureFunction function = nullptr;  // nullptr for effect and blocking functions
};

inline LibraryFunction Pure(std::string name, std::vector<std::string> params, size_t required,
                            PureFunction function) {
  return {{std::move(name), std::move(params), required, false, false}, function};
}

// The pure functions, one table per source file.
const std::vector<LibraryFunction>& CoreFunctions();   // stdlib_core.cc
const std::vector<LibraryFunction>& TextFunctions();   // stdlib_text.cc
const std::vector<LibraryFunction>& CodecFunctions();  // stdlib_codec.cc

// A double as the language prints it: shortest round-trip digits, with ".0" for an integral
// value ("2.0", "0.1", "1e+100").
std::string FormatDouble(double value);

// Counts UTF-8 code points; continuation bytes of a malformed sequence count as their own.
size_t Utf8Length(std::string_view text);
// The byte offset of code point index (clamped to the text's end).
size_t Utf8Offset(std::string_view text, size_t index);

}  // namespace atomflow::lang
