// The parser of the expression language: precedence climbing over the official table
// (high to low: () . [] not unary- * / // % + - comparisons and or), and assignment targets.
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "lang/eval.h"
#include "lang/expr.h"
#include "lang/expr_lexer.h"

namespace atomflow::lang {
namespace {

// How deeply an expression may nest (operators, parentheses, lists, maps, calls). Far beyond
// what a person writes; low enough that evaluating the tree cannot overflow a worker's stack.
constexpr int kMaxExpressionDepth = 200;

using ExprPtr = std::shared_ptr<const Expr>;

// The parser reports its first error by throwing this; ParseExpression turns it into a Status.
struct ParseError {
  std::string message;
};

bool IsWord(const Token& token, std::string_view lower, std::string_view upper) {
  return token.kind == Token::Kind::kIdentifier && (token.text == lower || token.text == upper);
}

bool IsKeyword(const std::string& word) {
  static constexpr std::string_view kWords[] = {"and",   "AND",   "or",    "OR",   "not",
                                                "NOT",   "in",    "true",  "True", "TRUE",
                                                "false", "False", "FALSE", "null"};
  for (std::string_view keyword : kWords) {
    if (word == keyword) return true;
  }
  return false;
}

std::string Describe(const Token& token) {
  switch (token.kind) {
    case Token::Kind::kEnd:
      return "end of expression";
    case Token::Kind::kString:
      return "string \"" + token.text + "\"";
    default:
      return "'" + token.text + "'";
  }
}

std::shared_ptr<Expr> NewNode(Expr::Kind kind, int column) {
  auto node = std::make_shared<Expr>();
  node->kind = kind;
  node->column = column;
  return node;
}

ExprPtr Literal(Value value, int column) {
  auto node = NewNode(Expr::Kind::kLiteral, column);
  node->literal = std::move(value);
  node->scalar = node->literal.is_bool() || node->literal.is_number();
  return node;
}

bool AllLiteral(const std::vector<ExprPtr>& nodes) {
  for (const ExprPtr& node : nodes) {
    if (node->kind != Expr::Kind::kLiteral) return false;
  }
  return true;
}

// Recursive descent, one method per precedence level.
class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  ExprPtr ParseAll() {
    ExprPtr expr = ParseOr();
    if (Peek().kind != Token::Kind::kEnd) Fail(Peek());
    return expr;
  }

 private:
  const Token& Peek() const { return tokens_[pos_]; }
  const Token& Next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
  bool PeekSymbol(std::string_view symbol) const {
    return Peek().kind == Token::Kind::kSymbol && Peek().text == symbol;
  }

  [[noreturn]] static void Fail(const Token& token) {
    throw ParseError{fmt::format("unexpected {} at column {}", Describe(token), token.column)};
  }

  void Expect(std::string_view symbol) {
    if (!PeekSymbol(symbol)) {
      throw ParseError{fmt::format("expected '{}' but found {} at column {}", symbol,
                                   Describe(Peek()), Peek().column)};
    }
    Next();
  }

  // Sets a finished node's height and refuses one that nests too deeply (see Expr::height).
  static ExprPtr Sealed(std::shared_ptr<Expr> node) {
    for (const ExprPtr& operand : node->operands) {
      node->height = std::max(node->height, operand->height + 1);
    }
    if (node->height > kMaxExpressionDepth) TooDeep(node->column);
    node->scalar = IsScalarNode(*node);
    return node;
  }

  // See Expr::scalar: `in` and calls need values of other types, so they never qualify.
  static bool IsScalarNode(const Expr& node) {
    switch (node.kind) {
      case Expr::Kind::kField:
        return !node.dotted.empty();
      case Expr::Kind::kUnary:
        return node.operands[0]->scalar;
      case Expr::Kind::kBinary:
        return node.op != ExprOp::kIn && node.operands[0]->scalar && node.operands[1]->scalar;
      default:
        return false;
    }
  }

  [[noreturn]] static void TooDeep(int column) {
    throw ParseError{fmt::format("the expression nests more than {} levels deep at column {}",
                                 kMaxExpressionDepth, column)};
  }

  static ExprPtr Binary(ExprOp op, ExprPtr left, ExprPtr right) {
    auto node = NewNode(Expr::Kind::kBinary, left->column);
    node->op = op;
    node->operands = {std::move(left), std::move(right)};
    return Sealed(std::move(node));
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsWord(Peek(), "or", "OR")) {
      Next();
      left = Binary(ExprOp::kOr, left, ParseAnd());
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseComparison();
    while (IsWord(Peek(), "and", "AND")) {
      Next();
      left = Binary(ExprOp::kAnd, left, ParseComparison());
    }
    return left;
  }

  std::optional<ExprOp> PeekComparison() const {
    static const std::pair<std::string_view, ExprOp> kOps[] = {
        {"==", ExprOp::kEq}, {"!=", ExprOp::kNe}, {"<", ExprOp::kLt},
        {"<=", ExprOp::kLe}, {">", ExprOp::kGt},  {">=", ExprOp::kGe}};
    if (IsWord(Peek(), "in", "in")) return ExprOp::kIn;
    for (const auto& [symbol, op] : kOps) {
      if (PeekSymbol(symbol)) return op;
    }
    return std::nullopt;
  }

  ExprPtr ParseComparison() {
    ExprPtr left = ParseAdditive();
    while (std::optional<ExprOp> op = PeekComparison()) {
      Next();
      left = Binary(*op, left, ParseAdditive());
    }
    return left;
  }

  ExprPtr ParseAdditive() {
    ExprPtr left = ParseMultiplicative();
    while (PeekSymbol("+") || PeekSymbol("-")) {
      ExprOp op = Next().text == "+" ? ExprOp::kAdd : ExprOp::kSub;
      left = Binary(op, left, ParseMultiplicative());
    }
    return left;
  }

  std::optional<ExprOp> PeekMultiplicative() const {
    if (PeekSymbol("*")) return ExprOp::kMul;
    if (PeekSymbol("/")) return ExprOp::kDiv;
    if (PeekSymbol("//")) return ExprOp::kFloorDiv;
    if (PeekSymbol("%")) return ExprOp::kMod;
    return std::nullopt;
  }

  ExprPtr ParseMultiplicative() {
    ExprPtr left = ParseUnary();
    while (std::optional<ExprOp> op = PeekMultiplicative()) {
      Next();
      left = Binary(*op, left, ParseUnary());
    }
    return left;
  }

  // `not` and unary minus. A minus before a number literal folds into the literal, so `-1`
  // costs nothing at run time.
  ExprPtr ParseUnary() {
    int column = Peek().column;
    // Every nested expression (parentheses, lists, maps, arguments, indexes, unary operators)
    // recurses through here: bound the recursion before it can exhaust the stack.
    if (depth_ >= kMaxExpressionDepth) TooDeep(column);
    ++depth_;
    ExprPtr parsed = ParseUnaryBody(column);
    --depth_;
    return parsed;
  }

  ExprPtr ParseUnaryBody(int column) {
    ExprOp op;
    if (IsWord(Peek(), "not", "NOT")) {
      op = ExprOp::kNot;
    } else if (PeekSymbol("-")) {
      op = ExprOp::kNeg;
    } else {
      return ParsePostfix();
    }
    Next();
    ExprPtr operand = ParseUnary();
    if (op == ExprOp::kNeg && operand->kind == Expr::Kind::kLiteral &&
        operand->literal.is_number() &&
        !(operand->literal.is_int() && operand->literal.AsInt() == INT64_MIN)) {
      return Literal(ApplyUnary(op, operand->literal), column);
    }
    auto node = NewNode(Expr::Kind::kUnary, column);
    node->op = op;
    node->operands = {std::move(operand)};
    return Sealed(std::move(node));
  }

  ExprPtr ParsePostfix() {
    ExprPtr expr = ParsePrimary();
    while (true) {
      if (PeekSymbol(".")) {
        expr = ParseField(std::move(expr));
      } else if (PeekSymbol("[")) {
        int column = Next().column;
        auto node = NewNode(Expr::Kind::kIndex, column);
        node->operands = {std::move(expr), ParseOr()};
        Expect("]");
        expr = Sealed(std::move(node));
      } else if (PeekSymbol("(")) {
        expr = ParseCall(std::move(expr));
      } else {
        return expr;
      }
    }
  }

  ExprPtr ParseField(ExprPtr base) {
    Next();
    const Token& field = Next();
    if (field.kind != Token::Kind::kIdentifier) {
      throw ParseError{fmt::format("expected a field name after '.' but found {} at column {}",
                                   Describe(field), field.column)};
    }
    auto node = NewNode(Expr::Kind::kField, field.column);
    node->name = field.text;
    if (!base->dotted.empty()) node->dotted = base->dotted + "." + field.text;
    node->operands = {std::move(base)};
    return Sealed(std::move(node));
  }

  // Only a name or a dotted name can be called: `len(x)`, `text.split(a, b)`, `sub(1)`.
  ExprPtr ParseCall(ExprPtr callee) {
    const Token& paren = Peek();
    if (callee->dotted.empty()) {
      throw ParseError{
          fmt::format("only a function name can be called, at column {}", paren.column)};
    }
    Next();
    auto node = NewNode(Expr::Kind::kCall, callee->column);
    node->name = callee->dotted;
    node->operands = ParseSequence(")");
    return Sealed(std::move(node));
  }

  // Comma-separated expressions up to the closing symbol, which is consumed.
  std::vector<ExprPtr> ParseSequence(std::string_view close) {
    std::vector<ExprPtr> items;
    if (PeekSymbol(close)) {
      Next();
      return items;
    }
    while (true) {
      items.push_back(ParseOr());
      if (!PeekSymbol(",")) break;
      Next();
    }
    Expect(close);
    return items;
  }

  ExprPtr ParsePrimary() {
    const Token& token = Next();
    switch (token.kind) {
      case Token::Kind::kInt:
        return Literal(Value(token.int_value), token.column);
      case Token::Kind::kDouble:
        return Literal(Value(token.double_value), token.column);
      case Token::Kind::kString:
        return Literal(Value(token.text), token.column);
      case Token::Kind::kIdentifier:
        return ParseWord(token);
      case Token::Kind::kSymbol:
        break;
      case Token::Kind::kEnd:
        Fail(token);
    }
    if (token.text == "(") {
      ExprPtr inner = ParseOr();
      Expect(")");
      return inner;
    }
    if (token.text == "[") return ParseList(token.column);
    if (token.text == "{") return ParseMap(token.column);
    Fail(token);
  }

  static ExprPtr ParseWord(const Token& token) {
    const std::string& word = token.text;
    if (word == "true" || word == "True" || word == "TRUE") return Literal(true, token.column);
    if (word == "false" || word == "False" || word == "FALSE") {
      return Literal(false, token.column);
    }
    if (word == "null") return Literal(Value(), token.column);
    if (IsKeyword(word)) Fail(token);
    auto node = NewNode(Expr::Kind::kName, token.column);
    node->name = word;
    node->dotted = word;
    node->scalar = true;
    return node;
  }

  ExprPtr ParseList(int column) {
    auto node = NewNode(Expr::Kind::kList, column);
    node->operands = ParseSequence("]");
    if (!AllLiteral(node->operands)) return Sealed(std::move(node));

    List items;
    items.reserve(node->operands.size());
    for (const ExprPtr& item : node->operands) items.push_back(item->literal);
    return Literal(Value(std::move(items)), column);
  }

  ExprPtr ParseMap(int column) {
    auto node = NewNode(Expr::Kind::kMap, column);
    if (PeekSymbol("}")) {
      Next();
      return Literal(Value(Map()), column);
    }
    while (true) {
      const Token& key = Next();
      if (key.kind != Token::Kind::kString) {
        throw ParseError{fmt::format("a map key must be a string literal, found {} at column {}",
                                     Describe(key), key.column)};
      }
      Expect(":");
      node->keys.push_back(key.text);
      node->operands.push_back(ParseOr());
      if (!PeekSymbol(",")) break;
      Next();
    }
    Expect("}");
    if (AllLiteral(node->operands)) return FoldMap(*node);
    return Sealed(std::move(node));
  }

  static ExprPtr FoldMap(const Expr& node) {
    Map map;
    for (size_t i = 0; i < node.keys.size(); ++i) map.Set(node.keys[i], node.operands[i]->literal);
    return Literal(Value(std::move(map)), node.column);
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;  // ParseUnary calls in progress
};

Result<ExprPtr> Parse(std::string_view text) {
  Result<std::vector<Token>> tokens = Tokenize(text);
  if (!tokens.ok()) return tokens.status();
  if (tokens->size() == 1) return Status::Error("empty expression");
  try {
    return Parser(std::move(tokens.value())).ParseAll();
  } catch (const ParseError& error) {
    return Status::Error(error.message);
  } catch (const RaisedError& error) {
    // Folding a constant (e.g. a negated literal) can fail like the operator would.
    return Status::Error(error.what());
  }
}

// Walks an assignment target from the outside in, prepending accessors.
Status CollectTarget(const Expr& node, AssignTarget& target) {
  switch (node.kind) {
    case Expr::Kind::kName:
      target.root = node.name;
      return Status::Ok();
    case Expr::Kind::kField:
      target.path.insert(target.path.begin(), AssignTarget::Accessor{node.name, nullptr});
      return CollectTarget(*node.operands[0], target);
    case Expr::Kind::kIndex:
      target.path.insert(target.path.begin(), AssignTarget::Accessor{"", node.operands[1]});
      return CollectTarget(*node.operands[0], target);
    default:
      return Status::Error(fmt::format(
          "not assignable (column {}): a target is a variable name followed by .field or "
          "[index]",
          node.column));
  }
}

}  // namespace

Result<std::shared_ptr<const Expr>> ParseExpression(std::string_view text) { return Parse(text); }

Result<AssignTarget> ParseAssignTarget(std::string_view text) {
  Result<ExprPtr> expr = Parse(text);
  if (!expr.ok()) return expr.status();

  AssignTarget target;
  Status status = CollectTarget(**expr, target);
  if (!status.ok())
    return Status::Error(fmt::format("cannot assign to '{}': {}", text, status.message()));
  for (const AssignTarget::Accessor& accessor : target.path) {
    if (accessor.index && NeedsHost(*accessor.index)) target.calls_host = true;
  }
  return target;
}

}  // namespace atomflow::lang
