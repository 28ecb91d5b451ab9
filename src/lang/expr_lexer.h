// The lexer of the expression language: turns the text between "${" and "}" into tokens.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace atomflow::lang {

// One token. Punctuation and operators are kSymbol with their spelling in text.
struct Token {
  enum class Kind { kInt, kDouble, kString, kIdentifier, kSymbol, kEnd };

  Kind kind = Kind::kEnd;
  std::string text;  // identifier, symbol, or the decoded string literal
  int64_t int_value = 0;
  double double_value = 0;
  int column = 0;  // 1-based
};

// Splits text into tokens, ending with one kEnd token. Fails on a malformed literal or an
// unknown character, with the column in the message.
Result<std::vector<Token>> Tokenize(std::string_view text);

}  // namespace atomflow::lang
