//! Scalar tokens of the filter language: numbers and bare timestamps.
//!
//! Numbers follow JSON's syntax exactly and are parsed with Rust's correctly rounded float
//! parser, so the shortest printed form of a float parses back to the same value.

use super::ast::Literal;
use crate::time::Timestamp;

/// A token that starts with a digit or `-`: an RFC 3339 timestamp when it starts with four
/// digits and `-`, otherwise a JSON number.
pub(super) fn scalar(token: &str) -> Result<Literal, String> {
    let b = token.as_bytes();
    if b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return parse_timestamp(token)
            .map(Literal::Timestamp)
            .ok_or_else(|| {
                format!(
                    "invalid timestamp '{}'; expected RFC 3339, like 2026-11-14T00:00:00Z",
                    shorten(token)
                )
            });
    }
    let invalid = || format!("invalid number '{}'", shorten(token));
    let fractional = json_number_shape(b).ok_or_else(invalid)?;
    if !fractional && let Ok(i) = token.parse::<i64>() {
        return Ok(Literal::Integer(i));
    }
    // Rust's float parsing is correctly rounded, so printing the shortest form and parsing
    // it again gives back the same value.
    match token.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Literal::Float(f)),
        _ => Err(format!("number '{}' is out of range", shorten(token))),
    }
}

/// An RFC 3339 timestamp whose UTC form has a four-digit year (0000 to 9999), so that its
/// canonical text parses again ([`Timestamp::parse_rfc3339`]).
pub(crate) fn parse_timestamp(text: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(text)
}

/// Checks JSON number syntax; `Some(true)` when it has a fraction or exponent.
fn json_number_shape(b: &[u8]) -> Option<bool> {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    let mut fractional = false;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
        fractional = true;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
        fractional = true;
    }
    (i == b.len()).then_some(fractional)
}

pub(super) fn shorten(token: &str) -> String {
    token.chars().take(40).collect()
}
