// The lexer of the expression language: numbers, double-quoted strings, names and operators.
#include "lang/expr_lexer.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace atomflow::lang {
namespace {

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }
bool IsDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

// Appends the UTF-8 encoding of a code point.
void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Walks the text once; each Lex* method consumes one token starting at pos_.
class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  Result<std::vector<Token>> Run() {
    std::vector<Token> tokens;
    while (true) {
      SkipSpace();
      Token token;
      token.column = static_cast<int>(pos_) + 1;
      if (pos_ >= text_.size()) {
        tokens.push_back(token);
        return tokens;
      }
      Status status = LexOne(token);
      if (!status.ok()) return status;
      tokens.push_back(std::move(token));
    }
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }

  Status LexOne(Token& token) {
    char c = text_[pos_];
    if (IsDigit(c)) return LexNumber(token);
    if (c == '"') return LexString(token);
    if (IsNameStart(c)) {
      size_t start = pos_;
      while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
      token.kind = Token::Kind::kIdentifier;
      token.text = std::string(text_.substr(start, pos_ - start));
      return Status::Ok();
    }
    return LexSymbol(token);
  }

  Status LexSymbol(Token& token) {
    static constexpr std::string_view kTwoChar[] = {"//", "==", "!=", "<=", ">="};
    for (std::string_view symbol : kTwoChar) {
      if (text_.substr(pos_, 2) == symbol) {
        token.kind = Token::Kind::kSymbol;
        token.text = std::string(symbol);
        pos_ += 2;
        return Status::Ok();
      }
    }
    char c = text_[pos_];
    if (std::string_view("+-*/%<>()[]{}.,:").find(c) == std::string_view::npos) {
      return Status::Error(fmt::format("unexpected character '{}' at column {}", c, pos_ + 1));
    }
    token.kind = Token::Kind::kSymbol;
    token.text = std::string(1, c);
    ++pos_;
    return Status::Ok();
  }

  // Digits, then an optional fraction and exponent: with either it is a double.
  Status LexNumber(Token& token) {
    size_t start = pos_;
    bool is_double = false;
    while (pos_ < text_.size() && IsDigit(text_[pos_])) ++pos_;
    if (pos_ + 1 < text_.size() && text_[pos_] == '.' && IsDigit(text_[pos_ + 1])) {
      is_double = true;
      for (++pos_; pos_ < text_.size() && IsDigit(text_[pos_]);) ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      size_t exp = pos_ + 1;
      if (exp < text_.size() && (text_[exp] == '+' || text_[exp] == '-')) ++exp;
      if (exp < text_.size() && IsDigit(text_[exp])) {
        is_double = true;
        for (pos_ = exp; pos_ < text_.size() && IsDigit(text_[pos_]);) ++pos_;
      }
    }
    if (pos_ < text_.size() && IsNameChar(text_[pos_])) {
      return Status::Error(fmt::format("malformed number at column {}", start + 1));
    }
    return FinishNumber(text_.substr(start, pos_ - start), is_double, token);
  }

  static Status FinishNumber(std::string_view digits, bool is_double, Token& token) {
    if (is_double) {
      token.kind = Token::Kind::kDouble;
      token.double_value = std::strtod(std::string(digits).c_str(), nullptr);
      // Infinity is no number of the language (and no JSON): a literal past a double's
      // range is refused where it is written, not when its value is returned.
      if (std::isinf(token.double_value)) {
        return Status::Error(
            fmt::format("number {} out of range at column {}", digits, token.column));
      }
      return Status::Ok();
    }
    token.kind = Token::Kind::kInt;
    auto [end, error] = std::from_chars(digits.begin(), digits.end(), token.int_value);
    if (error != std::errc() || end != digits.end()) {
      return Status::Error(
          fmt::format("integer {} out of range at column {}", digits, token.column));
    }
    return Status::Ok();
  }

  Status LexString(Token& token) {
    size_t start = pos_++;
    token.kind = Token::Kind::kString;
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c == '"') return Status::Ok();
      if (c != '\\') {
        token.text += c;
        continue;
      }
      Status status = LexEscape(token.text);
      if (!status.ok()) return status;
    }
    return Status::Error(fmt::format("unterminated string starting at column {}", start + 1));
  }

  // pos_ is just past a backslash.
  Status LexEscape(std::string& out) {
    if (pos_ >= text_.size()) return Status::Error("unterminated escape at end of expression");
    char c = text_[pos_++];
    if (c == 'u') return LexUnicodeEscape(out);

    static constexpr std::string_view kEscaped = "\"\\/'ntrbf";
    static constexpr std::string_view kMeaning = "\"\\/'\n\t\r\b\f";
    size_t at = kEscaped.find(c);
    if (at == std::string_view::npos) {
      return Status::Error(fmt::format("invalid escape '\\{}' at column {}", c, pos_ - 1));
    }
    out += kMeaning[at];
    return Status::Ok();
  }

  // \uXXXX, with a following \uXXXX for a surrogate pair.
  Status LexUnicodeEscape(std::string& out) {
    uint32_t cp = 0;
    if (!ReadHex4(cp)) {
      return Status::Error(fmt::format("invalid \\u escape at column {}", pos_ - 1));
    }
    if (cp >= 0xD800 && cp < 0xDC00 && text_.substr(pos_, 2) == "\\u") {
      size_t saved = pos_;
      pos_ += 2;
      uint32_t low = 0;
      if (ReadHex4(low) && low >= 0xDC00 && low < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
      } else {
        pos_ = saved;
      }
    }
    AppendUtf8(cp, out);
    return Status::Ok();
  }

  bool ReadHex4(uint32_t& cp) {
    if (pos_ + 4 > text_.size()) return false;
    auto [end, error] = std::from_chars(text_.data() + pos_, text_.data() + pos_ + 4, cp, 16);
    if (error != std::errc() || end != text_.data() + pos_ + 4) return false;
    pos_ += 4;
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

Result<std::vector<Token>> Tokenize(std::string_view text) { return Lexer(text).Run(); }

}  // namespace atomflow::lang
