//! Filter text to an untyped [`Expr`]. The grammar is in `docs/query.md`.
//!
//! A hand-written recursive-descent parser over bytes. Every decision looks only at ASCII
//! bytes and the position only ever moves over whole ASCII bytes or whole string literals, so
//! it always sits on a `char` boundary and slicing never panics on non-ASCII input. Recursion
//! is bounded by [`MAX_DEPTH`], so no input can overflow the stack.

use super::ast::{Expr, Literal, Path, Spanned, Test, TestOp};
use super::literal::{scalar, shorten};
use super::{CmpOp, MAX_FILTER_BYTES, PathStep};
use crate::error::Error;

/// Deepest nesting of parentheses and `!` (a `!` directly before `(` counts once).
pub const MAX_DEPTH: usize = 32;
/// Most tests (`a = 1`, `b in [...]`, `c exists`, ...) in one filter.
pub const MAX_COMPARISONS: usize = 64;
/// Most values in one `in [...]` list.
pub const MAX_LIST_VALUES: usize = 100;

pub(crate) fn error_at(pos: usize, why: impl std::fmt::Display) -> Error {
    Error::bad_request("invalid_filter", format!("filter at position {pos}: {why}"))
}

/// Why a string with NUL is refused, wherever it comes (record values, JSON keys, filters):
/// PostgreSQL cannot store it in text or JSON, so one rule for every engine is to refuse it.
pub const NUL_REFUSED: &str =
    "contains the NUL character (\\u0000), which Bulkhead does not store on any engine";

/// Parses a filter. Errors have code `invalid_filter` and say where and what.
pub fn parse_filter(src: &str) -> Result<Expr, Error> {
    if src.len() > MAX_FILTER_BYTES {
        return Err(Error::bad_request(
            "invalid_filter",
            format!(
                "filter is {} bytes long; at most {MAX_FILTER_BYTES} are accepted",
                src.len()
            ),
        ));
    }
    let mut parser = Parser {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        tests: 0,
    };
    let expr = parser.or_expr(0)?;
    parser.skip_ws();
    if parser.pos < src.len() {
        return Err(parser.unexpected("'&&', '||' or the end of the filter"));
    }
    Ok(expr)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tests: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Bytes that may continue a number or timestamp token; the whole run is then validated, so
/// `12abc` or `1+2` are reported as one bad token rather than as a number and garbage.
fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b':' | b'_')
}

const KEYWORDS: [&str; 7] = [
    "in",
    "contains",
    "starts_with",
    "exists",
    "true",
    "false",
    "null",
];

/// Extra words of advice when a word looks like a keyword from another language.
fn hint_for_word(word: &str) -> &'static str {
    let lower = word.to_ascii_lowercase();
    if lower != word && KEYWORDS.contains(&lower.as_str()) {
        return " (keywords are lower case)";
    }
    match lower.as_str() {
        "and" => " (use '&&')",
        "or" => " (use '||')",
        "not" => " (use '!')",
        _ => "",
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// The run of `[A-Za-z0-9_]` at the current position (possibly empty).
    fn word(&self) -> &'a str {
        let len = self.bytes[self.pos..]
            .iter()
            .take_while(|b| is_word_byte(**b))
            .count();
        &self.rest()[..len]
    }

    /// How to name what sits at the current position in an error message.
    fn found(&self) -> String {
        let rest = self.rest();
        let Some(c) = rest.chars().next() else {
            return "the end of the filter".into();
        };
        let word = self.word();
        if !word.is_empty() {
            let shown = shorten(word);
            format!("'{shown}'{}", hint_for_word(word))
        } else if c == '\'' {
            "''' (strings take double quotes)".into()
        } else {
            format!("'{}'", c.escape_debug())
        }
    }

    fn unexpected(&self, expected: &str) -> Error {
        error_at(
            self.pos,
            format!("expected {expected}, found {}", self.found()),
        )
    }

    fn or_expr(&mut self, depth: usize) -> Result<Expr, Error> {
        let mut items = Vec::new();
        push_flat(&mut items, self.and_expr(depth)?, true);
        while self.eat("||") {
            push_flat(&mut items, self.and_expr(depth)?, true);
        }
        Ok(collapse(items, Expr::Or))
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr, Error> {
        let mut items = Vec::new();
        push_flat(&mut items, self.unary(depth)?, false);
        while self.eat("&&") {
            push_flat(&mut items, self.unary(depth)?, false);
        }
        Ok(collapse(items, Expr::And))
    }

    fn deeper(&self, depth: usize) -> Result<usize, Error> {
        if depth >= MAX_DEPTH {
            return Err(error_at(
                self.pos,
                format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(depth + 1)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, Error> {
        self.skip_ws();
        if self.peek() == Some(b'!') {
            let depth = self.deeper(depth)?;
            self.pos += 1;
            self.skip_ws();
            // `!(...)` is one level, so printing `!a = 1` as `!(a = 1)` never deepens a filter.
            let inner = if self.peek() == Some(b'(') {
                self.group(depth)?
            } else {
                self.unary(depth)?
            };
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek() == Some(b'(') {
            let depth = self.deeper(depth)?;
            return self.group(depth);
        }
        self.test().map(Expr::Test)
    }

    /// `( or_expr )`, at the opening parenthesis; the caller has counted the level.
    fn group(&mut self, depth: usize) -> Result<Expr, Error> {
        let open = self.pos;
        self.pos += 1;
        let inner = self.or_expr(depth)?;
        self.skip_ws();
        match self.peek() {
            Some(b')') => {
                self.pos += 1;
                Ok(inner)
            }
            None => Err(error_at(
                self.pos,
                format!(
                    "expected ')' to close the '(' at position {open}, found the end of the filter"
                ),
            )),
            Some(_) => Err(self.unexpected("'&&', '||' or ')'")),
        }
    }

    fn test(&mut self) -> Result<Test, Error> {
        self.skip_ws();
        let path = self.path()?;
        self.tests += 1;
        if self.tests > MAX_COMPARISONS {
            return Err(error_at(
                path.pos,
                format!("a filter holds at most {MAX_COMPARISONS} comparisons"),
            ));
        }
        self.skip_ws();
        let op_pos = self.pos;
        let rest = self.rest();
        let symbol = [
            ("!=", CmpOp::Ne),
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            ("=", CmpOp::Eq),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ]
        .into_iter()
        .find(|(text, _)| rest.starts_with(text));
        if let Some((text, op)) = symbol {
            if rest.starts_with("==") {
                return Err(error_at(op_pos, "use '=' to test equality, not '=='"));
            }
            self.pos += text.len();
            let value = self.literal()?;
            return Ok(Test {
                path,
                op_pos,
                op: TestOp::Compare(op, value),
            });
        }
        let op = match self.word() {
            "in" => {
                self.pos += 2;
                TestOp::In(self.list()?)
            }
            "contains" => {
                self.pos += "contains".len();
                TestOp::Contains(self.literal()?)
            }
            "starts_with" => {
                self.pos += "starts_with".len();
                TestOp::StartsWith(self.literal()?)
            }
            "exists" => {
                self.pos += "exists".len();
                TestOp::Exists
            }
            _ => {
                return Err(self.unexpected(
                    "an operator (=, !=, >, >=, <, <=, in, contains, starts_with, exists)",
                ));
            }
        };
        Ok(Test { path, op_pos, op })
    }

    /// `name { .key | [index] }`, with no spaces inside.
    fn path(&mut self) -> Result<Path, Error> {
        let pos = self.pos;
        let name = self.word();
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if name.is_empty() {
            return Err(self.unexpected("a field name, '!' or '('"));
        }
        if !valid {
            let shown = shorten(name);
            return Err(error_at(
                pos,
                format!(
                    "'{shown}' is not a field name; field names are lower case letters, digits \
                     and '_', starting with a letter{}",
                    hint_for_word(name)
                ),
            ));
        }
        self.pos += name.len();
        let mut steps = Vec::new();
        loop {
            let step_pos = self.pos;
            match self.peek() {
                Some(b'.') => {
                    self.pos += 1;
                    let key = self.word();
                    if key.is_empty() {
                        return Err(self.unexpected("a key (letters, digits, '_') after '.'"));
                    }
                    self.pos += key.len();
                    steps.push(Spanned::new(step_pos, PathStep::Key(key.to_owned())));
                }
                Some(b'[') => {
                    self.pos += 1;
                    let digits = self.bytes[self.pos..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    if digits == 0 {
                        return Err(self.unexpected("an array index (digits) after '['"));
                    }
                    let index = self.rest()[..digits].parse::<u32>().map_err(|_| {
                        error_at(
                            self.pos,
                            format!("array index too large; at most {}", u32::MAX),
                        )
                    })?;
                    self.pos += digits;
                    if self.peek() != Some(b']') {
                        return Err(self.unexpected("']' after the array index"));
                    }
                    self.pos += 1;
                    steps.push(Spanned::new(step_pos, PathStep::Index(index)));
                }
                _ => break,
            }
        }
        Ok(Path {
            pos,
            name: name.to_owned(),
            steps,
        })
    }

    /// `[ literal { , literal } ]`
    fn list(&mut self) -> Result<Vec<Spanned<Literal>>, Error> {
        self.skip_ws();
        let open = self.pos;
        if self.peek() != Some(b'[') {
            return Err(self.unexpected("'[' to start the list after 'in'"));
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            return Err(error_at(
                open,
                "the list after 'in' needs at least one value",
            ));
        }
        let mut values = Vec::new();
        loop {
            self.skip_ws();
            if values.len() == MAX_LIST_VALUES {
                return Err(error_at(
                    self.pos,
                    format!("a list holds at most {MAX_LIST_VALUES} values"),
                ));
            }
            values.push(self.literal()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(values);
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
    }

    fn literal(&mut self) -> Result<Spanned<Literal>, Error> {
        const EXPECTED: &str = "a value (a \"string\", number, timestamp, true, false or null)";
        self.skip_ws();
        let pos = self.pos;
        let value = match self.peek() {
            Some(b'"') => self.string()?,
            Some(b'@') => self.variable()?,
            Some(b'-' | b'0'..=b'9') => {
                let len = self.bytes[pos..]
                    .iter()
                    .take_while(|b| is_scalar_byte(**b))
                    .count();
                let token = &self.rest()[..len];
                self.pos += len;
                scalar(token).map_err(|why| error_at(pos, why))?
            }
            Some(b) if is_word_byte(b) => {
                let value = match self.word() {
                    "true" => Literal::Boolean(true),
                    "false" => Literal::Boolean(false),
                    "null" => Literal::Null,
                    word => {
                        let hint = hint_for_word(word);
                        let hint = if hint.is_empty() {
                            " (strings take double quotes)"
                        } else {
                            hint
                        };
                        let shown = shorten(word);
                        return Err(error_at(
                            pos,
                            format!("expected {EXPECTED}, found '{shown}'{hint}"),
                        ));
                    }
                };
                self.pos += self.word().len();
                value
            }
            _ => return Err(self.unexpected(EXPECTED)),
        };
        Ok(Spanned::new(pos, value))
    }

    /// A variable at the current `@`: `@user.id`, `@user.email` or `@user.claims.<name>…`
    /// (claim names may hold letters, digits, `_`, `-` and `:`).
    fn variable(&mut self) -> Result<Literal, Error> {
        let start = self.pos;
        let len = self.bytes[start + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'))
            .count();
        let text = self.src.get(start + 1..start + 1 + len).unwrap_or("");
        let path: Vec<String> = text.split('.').map(str::to_owned).collect();
        let known = match path
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["user", "id"] | ["user", "email"] => true,
            ["user", "claims", rest @ ..] => !rest.is_empty() && rest.iter().all(|s| !s.is_empty()),
            _ => false,
        };
        if !known {
            return Err(error_at(
                start,
                format!(
                    "unknown variable '@{}': use @user.id, @user.email or @user.claims.<name>",
                    shorten(text)
                ),
            ));
        }
        self.pos = start + 1 + len;
        Ok(Literal::Variable(path))
    }

    /// A JSON string at the current `"`: find the closing quote, then let serde_json apply
    /// JSON's escape rules to exactly that slice.
    fn string(&mut self) -> Result<Literal, Error> {
        let start = self.pos;
        let mut i = start + 1;
        let end = loop {
            match self.bytes.get(i) {
                None => return Err(error_at(start, "unterminated string")),
                Some(b'\\') => i += 2,
                Some(b'"') => break i + 1,
                Some(_) => i += 1,
            }
        };
        // Both ends sit next to an ASCII quote, so they are char boundaries.
        let slice = self.src.get(start..end).unwrap_or("");
        let text: String = serde_json::from_str(slice).map_err(|e| {
            let why = e.to_string();
            let why = why.split(" at line").next().unwrap_or("invalid");
            error_at(start, format!("invalid string: {why}"))
        })?;
        if text.contains('\0') {
            return Err(error_at(start, NUL_REFUSED));
        }
        self.pos = end;
        Ok(Literal::String(text))
    }
}

/// Adds `item` to the children of an `Or` (`or == true`) or `And`, splicing in a child of the
/// same kind: `a && (b && c)` is `And[a, b, c]`.
fn push_flat(items: &mut Vec<Expr>, item: Expr, or: bool) {
    match item {
        Expr::Or(inner) if or => items.extend(inner),
        Expr::And(inner) if !or => items.extend(inner),
        other => items.push(other),
    }
}

fn collapse(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        items.remove(0)
    } else {
        make(items)
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
