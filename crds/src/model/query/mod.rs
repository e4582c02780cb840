//! Client-group queries: the boolean language Event Grid uses to pick MQTT clients by their
//! attributes, e.g. `attributes.sensors IN ['motion', 'humidity'] AND attributes.floor <= 5`.
//!
//! Grammar (keywords `AND`, `OR`, `NOT`, `IN` and the word `attributes` are case-insensitive):
//!
//! ```text
//! query      = "$all" | or
//! or         = and { "OR" and }
//! and        = not { "AND" not }
//! not        = "NOT" not | primary
//! primary    = "(" or ")" | comparison
//! comparison = operand ( op value | "IN" "[" value { "," value } "]" )
//! operand    = "attributes." name | "authenticationName"
//! op         = "=" | "<>" | "!=" | "<" | "<=" | ">" | ">="
//! value      = string | integer
//! string     = "'" { char | "''" } "'" | '"' { char | '""' } '"'
//! integer    = [ "-" ] digit { digit }               (64-bit signed)
//! name       = name-char { name-char }                name-char: ASCII letter, digit or "_"
//! ```
//!
//! From the Microsoft Learn pages "Client groups" and "MQTT clients": the operators above, with
//! `!=` as a second spelling of `<>`; `<`, `<=`, `>`, `>=` are for long integers only, so they
//! reject a string value; `IN` takes a bracketed list; strings take single or double quotes;
//! `authenticationName` may be queried besides attributes; `attributes.sensors = 'motion'`
//! selects clients whose `sensors` array contains `motion`; attribute names are letters, digits
//! and `_`. The pages give no length limit (the ClientGroup CRD caps the text at 2048).
//!
//! Where the pages are silent, this module decides:
//! - Attribute names are case-insensitive (kept lower-cased); values, the authentication name
//!   included, compare exactly, case and all.
//! - A comparison is false when the attribute is missing or its type does not fit the value
//!   (integer against string or the reverse), for `<>` too. `NOT` is a plain complement, so
//!   `NOT attributes.x = 'a'` matches a client without `x` while `attributes.x <> 'a'` does not.
//! - On a string array, `=` means "contains", `<>` "does not contain", `IN` "some element is in
//!   the list"; `<`, `<=`, `>`, `>=` never match.
//! - A quote inside a string is written twice (`'it''s'`), as in SQL; there are no escapes.
//! - `IN` lists may mix integers and strings; each element is compared as with `=`.
//! - Error positions are 1-based and count characters, not bytes.

use crate::attributes::{AttributeValue, Attributes};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

/// Deepest nesting of parentheses and `NOT`s a query may use. Event Grid names no limit; this
/// one only keeps a hostile query from exhausting the stack, far above any real query.
pub const MAX_NESTING_DEPTH: usize = 32;

const ALL: &str = "$all";
const ATTRIBUTES_PREFIX: &str = "attributes.";
const AUTHENTICATION_NAME: &str = "authenticationName";
const KEYWORDS: [&str; 4] = ["AND", "OR", "NOT", "IN"];

/// A parsed client-group query: either `$all` or a condition over a client's attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientGroupQuery {
    root: Root,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Root {
    All,
    Condition(Condition),
}

// `Or` and `And` hold two or more terms: a chain `a OR b OR c` is one node, and only
// parentheses nest a node in one of its own kind, which is what lets `Display` round-trip.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Condition {
    Or(Vec<Condition>),
    And(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        operand: Operand,
        op: CompareOp,
        value: Value,
    },
    In {
        operand: Operand,
        values: Vec<Value>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operand {
    /// Lower-cased attribute name.
    Attribute(String),
    AuthenticationName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Integer(i64),
    String(String),
}

/// Why a query did not parse. `position` is the 1-based character where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct QueryError {
    /// 1-based character (not byte) offset into the query; one past the end for "end of query".
    pub position: usize,
    /// What is wrong, without the position.
    pub message: String,
}

fn fail<T>(position: usize, message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError {
        position,
        message: message.into(),
    })
}

impl ClientGroupQuery {
    /// Parse a query. `$all` (alone, any case) is the built-in group of every client.
    pub fn parse(text: &str) -> Result<ClientGroupQuery, QueryError> {
        if text.trim().eq_ignore_ascii_case(ALL) {
            return Ok(Self { root: Root::All });
        }
        let mut parser = Parser {
            tokens: tokenize(text)?,
            next: 0,
            depth: 0,
        };
        if parser.peek().kind == TokenKind::End {
            return fail(parser.peek().position, "empty query");
        }
        let condition = parser.parse_or()?;
        let rest = parser.peek();
        match rest.kind {
            TokenKind::End => Ok(Self {
                root: Root::Condition(condition),
            }),
            TokenKind::RParen => fail(rest.position, "unmatched ')'"),
            _ => fail(
                rest.position,
                format!("expected AND or OR but found {}", describe(rest)),
            ),
        }
    }

    /// Whether a client with these attributes belongs to the group. The authentication name is
    /// unknown here, so comparisons on `authenticationName` are false, as for a missing
    /// attribute; use [`ClientGroupQuery::matches_client`] when the name is at hand.
    pub fn matches(&self, attributes: &Attributes) -> bool {
        self.evaluate(&Client {
            authentication_name: None,
            attributes,
        })
    }

    /// Whether a client with this authentication name and these attributes belongs to the group.
    pub fn matches_client(&self, authentication_name: &str, attributes: &Attributes) -> bool {
        self.evaluate(&Client {
            authentication_name: Some(authentication_name),
            attributes,
        })
    }

    /// Attribute names the query reads, lower-cased, sorted and without repeats, for diagnostics.
    pub fn attribute_names(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        if let Root::Condition(condition) = &self.root {
            condition.collect_attribute_names(&mut names);
        }
        names.into_iter().map(str::to_owned).collect()
    }

    /// Whether this is `$all`, the query every client matches.
    pub fn is_all(&self) -> bool {
        self.root == Root::All
    }

    fn evaluate(&self, client: &Client<'_>) -> bool {
        match &self.root {
            Root::All => true,
            Root::Condition(condition) => condition.evaluate(client),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

struct Client<'a> {
    authentication_name: Option<&'a str>,
    attributes: &'a Attributes,
}

enum Actual<'a> {
    Integer(i64),
    String(&'a str),
    Strings(&'a [String]),
}

impl Client<'_> {
    fn lookup(&self, operand: &Operand) -> Option<Actual<'_>> {
        let name = match operand {
            Operand::AuthenticationName => return self.authentication_name.map(Actual::String),
            Operand::Attribute(name) => name,
        };
        // Names are case-insensitive: an exact (lower-case) key is the cheap common case, any
        // other spelling of it counts too.
        let value = self.attributes.get(name).or_else(|| {
            let mut entries = self.attributes.iter();
            entries
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        })?;
        Some(match value {
            AttributeValue::Integer(number) => Actual::Integer(*number),
            AttributeValue::String(text) => Actual::String(text),
            AttributeValue::StringArray(items) => Actual::Strings(items),
        })
    }
}

impl Condition {
    fn evaluate(&self, client: &Client<'_>) -> bool {
        match self {
            Condition::Or(terms) => terms.iter().any(|term| term.evaluate(client)),
            Condition::And(terms) => terms.iter().all(|term| term.evaluate(client)),
            Condition::Not(inner) => !inner.evaluate(client),
            Condition::Compare { operand, op, value } => client
                .lookup(operand)
                .is_some_and(|actual| compare(&actual, *op, value)),
            Condition::In { operand, values } => client.lookup(operand).is_some_and(|actual| {
                values
                    .iter()
                    .any(|value| compare(&actual, CompareOp::Eq, value))
            }),
        }
    }

    fn collect_attribute_names<'a>(&'a self, names: &mut BTreeSet<&'a str>) {
        match self {
            Condition::Or(terms) | Condition::And(terms) => {
                terms
                    .iter()
                    .for_each(|term| term.collect_attribute_names(names));
            }
            Condition::Not(inner) => inner.collect_attribute_names(names),
            Condition::Compare { operand, .. } | Condition::In { operand, .. } => {
                if let Operand::Attribute(name) = operand {
                    names.insert(name);
                }
            }
        }
    }
}

fn compare(actual: &Actual<'_>, op: CompareOp, value: &Value) -> bool {
    let expected = match value {
        Value::Integer(expected) => {
            return matches!(actual, Actual::Integer(actual) if op.holds(actual.cmp(expected)));
        }
        Value::String(expected) => expected,
    };
    let equal = match actual {
        Actual::String(actual) => actual == expected,
        Actual::Strings(items) => items.iter().any(|item| item == expected),
        Actual::Integer(_) => return false,
    };
    match op {
        CompareOp::Eq => equal,
        CompareOp::Ne => !equal,
        _ => false,
    }
}

impl CompareOp {
    const ALL: [CompareOp; 6] = [Self::Eq, Self::Ne, Self::Lt, Self::Le, Self::Gt, Self::Ge];

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering.is_eq(),
            CompareOp::Ne => ordering.is_ne(),
            CompareOp::Lt => ordering.is_lt(),
            CompareOp::Le => ordering.is_le(),
            CompareOp::Gt => ordering.is_gt(),
            CompareOp::Ge => ordering.is_ge(),
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

#[derive(Clone, Debug, PartialEq, Eq)]
enum TokenKind {
    /// Keywords, operands and `$all`, told apart by the parser, which knows what it expects.
    Word,
    String(String),
    Integer(i64),
    Op(CompareOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    /// The token as written, for error messages.
    text: String,
    position: usize,
}

// Wider than a valid operand on purpose: `attributes.a.b` or `attributes.café` stay one word,
// so the error can quote the whole bad reference rather than a fragment of it.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '$')
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '<' | '>' | '!')
}

fn run_end(chars: &[char], from: usize, belongs: fn(char) -> bool) -> usize {
    let rest = chars.get(from..).unwrap_or_default();
    rest.iter()
        .position(|&c| !belongs(c))
        .map_or(chars.len(), |offset| from + offset)
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut start = 0;
    while let Some(&c) = chars.get(start) {
        let position = start + 1;
        let mut end = start + 1;
        let digit_follows = chars.get(start + 1).is_some_and(char::is_ascii_digit);
        let kind = match c {
            _ if c.is_whitespace() => {
                start = end;
                continue;
            }
            '\'' | '"' => {
                let (value, after) = lex_string(&chars, start)?;
                end = after;
                TokenKind::String(value)
            }
            // A number runs on through letters and dots so `5.5` or `5abc` fail as one token.
            _ if c.is_ascii_digit() || (c == '-' && digit_follows) => {
                end = run_end(&chars, end, is_word_char);
                TokenKind::Integer(lex_integer(&chars[start..end], position)?)
            }
            _ if c.is_alphabetic() || c == '_' || c == '$' => {
                end = run_end(&chars, end, is_word_char);
                TokenKind::Word
            }
            _ if is_operator_char(c) => {
                end = run_end(&chars, end, is_operator_char);
                TokenKind::Op(lex_operator(&chars[start..end], position)?)
            }
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            '[' => TokenKind::LBracket,
            ']' => TokenKind::RBracket,
            ',' => TokenKind::Comma,
            _ => return fail(position, format!("unexpected character '{c}'")),
        };
        tokens.push(Token {
            kind,
            text: chars[start..end].iter().collect(),
            position,
        });
        start = end;
    }
    let end = Token {
        kind: TokenKind::End,
        text: String::new(),
        position: chars.len() + 1,
    };
    tokens.push(end);
    Ok(tokens)
}

/// Reads the string whose opening quote is at `start`; returns its value and the index after it.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), QueryError> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                let message = format!("unterminated string starting at character {}", start + 1);
                return fail(chars.len() + 1, message);
            }
            Some(&c) if c == quote && chars.get(i + 1) == Some(&quote) => {
                value.push(quote);
                i += 2;
            }
            Some(&c) if c == quote => return Ok((value, i + 1)),
            Some(&c) => {
                value.push(c);
                i += 1;
            }
        }
    }
}

fn lex_integer(chars: &[char], position: usize) -> Result<i64, QueryError> {
    let written: String = chars.iter().collect();
    written.parse().or_else(|_| {
        let digits = written.strip_prefix('-').unwrap_or(&written);
        if digits.chars().all(|c| c.is_ascii_digit()) {
            fail(
                position,
                format!("integer '{written}' does not fit in 64 bits"),
            )
        } else {
            let message = "is not a number: values are quoted strings or whole numbers";
            fail(position, format!("'{written}' {message}"))
        }
    })
}

fn lex_operator(chars: &[char], position: usize) -> Result<CompareOp, QueryError> {
    let written: String = chars.iter().collect();
    let canonical = if written == "!=" {
        "<>"
    } else {
        written.as_str()
    };
    match CompareOp::ALL
        .into_iter()
        .find(|op| op.symbol() == canonical)
    {
        Some(op) => Ok(op),
        None => fail(position, format!("unknown operator '{written}'")),
    }
}

fn describe(token: &Token) -> String {
    match token.kind {
        TokenKind::End => "end of query".to_owned(),
        TokenKind::String(_) => format!("string {}", token.text),
        _ => format!("'{}'", token.text),
    }
}

fn is_keyword(word: &str) -> bool {
    KEYWORDS
        .iter()
        .any(|keyword| word.eq_ignore_ascii_case(keyword))
}

// ---------------------------------------------------------------------------------------------
// Parser: recursive descent, one method per grammar rule.

struct Parser {
    /// Always ends with an `End` token, which `advance` never moves past.
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.next]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::End {
            self.next += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        let token = self.peek();
        token.kind == TokenKind::Word && token.text.eq_ignore_ascii_case(keyword)
    }

    fn enter(&mut self, token: &Token) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            let message = "query nests parentheses and NOT more than";
            return fail(
                token.position,
                format!("{message} {MAX_NESTING_DEPTH} deep"),
            );
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Condition, QueryError> {
        self.parse_chain("OR", Self::parse_and, Condition::Or)
    }

    fn parse_and(&mut self) -> Result<Condition, QueryError> {
        self.parse_chain("AND", Self::parse_not, Condition::And)
    }

    /// `term { keyword term }`, as one node when the keyword occurs at all.
    fn parse_chain(
        &mut self,
        keyword: &str,
        term: fn(&mut Self) -> Result<Condition, QueryError>,
        node: fn(Vec<Condition>) -> Condition,
    ) -> Result<Condition, QueryError> {
        let first = term(self)?;
        if !self.at_keyword(keyword) {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.at_keyword(keyword) {
            self.advance();
            terms.push(term(self)?);
        }
        Ok(node(terms))
    }

    fn parse_not(&mut self) -> Result<Condition, QueryError> {
        if !self.at_keyword("NOT") {
            return self.parse_primary();
        }
        let not = self.advance();
        self.enter(&not)?;
        let inner = self.parse_not()?;
        self.depth -= 1;
        Ok(Condition::Not(Box::new(inner)))
    }

    fn parse_primary(&mut self) -> Result<Condition, QueryError> {
        let token = self.advance();
        match token.kind {
            TokenKind::LParen => {
                self.enter(&token)?;
                let inner = self.parse_or()?;
                self.depth -= 1;
                let close = self.advance();
                if close.kind != TokenKind::RParen {
                    let (open, found) = (token.position, describe(&close));
                    let message = format!("expected ')' to close the '(' at character {open}");
                    return fail(close.position, format!("{message} but found {found}"));
                }
                Ok(inner)
            }
            TokenKind::Word if !is_keyword(&token.text) => self.parse_comparison(&token),
            _ => fail(
                token.position,
                format!("expected a comparison but found {}", describe(&token)),
            ),
        }
    }

    fn parse_comparison(&mut self, reference: &Token) -> Result<Condition, QueryError> {
        let operand = parse_operand(reference)?;
        let op_token = self.advance();
        let op = match op_token.kind {
            TokenKind::Op(op) => op,
            TokenKind::Word if op_token.text.eq_ignore_ascii_case("IN") => {
                return Ok(Condition::In {
                    operand,
                    values: self.parse_in_list()?,
                });
            }
            _ => {
                let found = describe(&op_token);
                let hint = if op_token.text.eq_ignore_ascii_case("NOT") {
                    " (NOT goes before the whole comparison)"
                } else {
                    ""
                };
                let message = format!("expected an operator after '{}'", reference.text);
                return fail(
                    op_token.position,
                    format!("{message} but found {found}{hint}"),
                );
            }
        };
        let token = self.advance();
        let Some(value) = value_of(&token) else {
            let hint = if token.kind == TokenKind::Word {
                " (string values must be quoted)"
            } else {
                ""
            };
            let message = format!("expected a value after '{}'", op_token.text);
            return fail(
                token.position,
                format!("{message} but found {}{hint}", describe(&token)),
            );
        };
        if op != CompareOp::Eq && op != CompareOp::Ne && matches!(value, Value::String(_)) {
            let message = format!("'{}' compares integers only", op_token.text);
            return fail(
                token.position,
                format!("{message} (found string {})", token.text),
            );
        }
        Ok(Condition::Compare { operand, op, value })
    }

    fn parse_in_list(&mut self) -> Result<Vec<Value>, QueryError> {
        let open = self.advance();
        if open.kind != TokenKind::LBracket {
            let hint = if open.kind == TokenKind::LParen {
                " (IN lists are written in square brackets)"
            } else {
                ""
            };
            return fail(
                open.position,
                format!("expected '[' after IN but found {}{hint}", describe(&open)),
            );
        }
        if self.peek().kind == TokenKind::RBracket {
            return fail(open.position, "empty IN list");
        }
        let mut values = Vec::new();
        loop {
            let token = self.advance();
            let Some(value) = value_of(&token) else {
                let message = "expected a value in the IN list but found";
                return fail(token.position, format!("{message} {}", describe(&token)));
            };
            values.push(value);
            let separator = self.advance();
            match separator.kind {
                TokenKind::Comma => {}
                TokenKind::RBracket => return Ok(values),
                _ => {
                    let message = "expected ',' or ']' in the IN list but found";
                    return fail(
                        separator.position,
                        format!("{message} {}", describe(&separator)),
                    );
                }
            }
        }
    }
}

fn value_of(token: &Token) -> Option<Value> {
    match &token.kind {
        TokenKind::Integer(number) => Some(Value::Integer(*number)),
        TokenKind::String(text) => Some(Value::String(text.clone())),
        _ => None,
    }
}

fn parse_operand(token: &Token) -> Result<Operand, QueryError> {
    let word = token.text.as_str();
    if word.eq_ignore_ascii_case(ALL) {
        return fail(token.position, "'$all' must be the whole query");
    }
    if word.eq_ignore_ascii_case(AUTHENTICATION_NAME) {
        return Ok(Operand::AuthenticationName);
    }
    let prefix_len = ATTRIBUTES_PREFIX.len();
    let has_prefix = word
        .get(..prefix_len)
        .is_some_and(|p| p.eq_ignore_ascii_case(ATTRIBUTES_PREFIX));
    let Some(name) = word.get(prefix_len..).filter(|_| has_prefix) else {
        let message = "attribute references must start with 'attributes.'";
        return fail(token.position, format!("{message} (found '{word}')"));
    };
    let name_position = token.position + prefix_len;
    if name.is_empty() {
        return fail(name_position, "missing attribute name after 'attributes.'");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let message = "attribute names may contain only letters, digits and '_'";
        return fail(name_position, format!("{message} (found '{name}')"));
    }
    Ok(Operand::Attribute(name.to_ascii_lowercase()))
}

// ---------------------------------------------------------------------------------------------
// Rendering

impl fmt::Display for ClientGroupQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            Root::All => f.write_str(ALL),
            Root::Condition(condition) => condition.fmt(f),
        }
    }
}

// Parentheses go exactly where the parser needs them to rebuild the same tree: around an `OR`
// inside an `OR`, around an `OR` or `AND` inside an `AND`, and around either under `NOT`.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (terms, separator, wrap_and) = match self {
            Condition::Or(terms) => (terms, " OR ", false),
            Condition::And(terms) => (terms, " AND ", true),
            Condition::Not(inner) => match **inner {
                Condition::Or(_) | Condition::And(_) => return write!(f, "NOT ({inner})"),
                _ => return write!(f, "NOT {inner}"),
            },
            Condition::Compare { operand, op, value } => {
                return write!(f, "{operand} {} {value}", op.symbol());
            }
            Condition::In { operand, values } => {
                let values: Vec<String> = values.iter().map(Value::to_string).collect();
                return write!(f, "{operand} IN [{}]", values.join(", "));
            }
        };
        for (index, term) in terms.iter().enumerate() {
            if index > 0 {
                f.write_str(separator)?;
            }
            match term {
                Condition::Or(_) => write!(f, "({term})")?,
                Condition::And(_) if wrap_and => write!(f, "({term})")?,
                _ => write!(f, "{term}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Attribute(name) => write!(f, "{ATTRIBUTES_PREFIX}{name}"),
            Operand::AuthenticationName => f.write_str(AUTHENTICATION_NAME),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(number) => write!(f, "{number}"),
            Value::String(text) => write!(f, "'{}'", text.replace('\'', "''")),
        }
    }
}

#[cfg(test)]
mod tests;
