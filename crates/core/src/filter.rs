//! The equality subset of the filter language: `field = literal (&& field = literal)*`.
//!
//! Literals are JSON-style strings, numbers, `true`/`false`, and strings for timestamps. Each
//! comparison is typed against the collection, and errors give the byte position. The full
//! language (other operators, `||`, `!`, parentheses, json paths) grows from this grammar.

use crate::error::Error;
use crate::ids::FieldName;
use crate::record::{FieldValue, coerce};
use crate::schema::Collection;

pub const MAX_FILTER_BYTES: usize = 4096;
pub const MAX_TERMS: usize = 16;

/// A conjunction of `field = value` terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EqualityFilter {
    pub terms: Vec<(FieldName, FieldValue)>,
}

fn error_at(position: usize, why: impl std::fmt::Display) -> Error {
    Error::bad_request(
        "invalid_filter",
        format!("filter at position {position}: {why}"),
    )
}

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.src[self.pos..].starts_with(|c: char| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn identifier(&mut self) -> Result<(usize, &'a str), Error> {
        self.skip_ws();
        let start = self.pos;
        let len = self.src[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.src.len() - start);
        if len == 0 {
            return Err(error_at(start, "expected a field name"));
        }
        self.pos += len;
        Ok((start, &self.src[start..start + len]))
    }

    /// A JSON literal: string, number, true, false. Uses serde_json on the exact slice, so the
    /// escapes and number forms are JSON's.
    fn literal(&mut self) -> Result<(usize, serde_json::Value), Error> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.src[start..];
        let end = if rest.starts_with('"') {
            let mut escaped = false;
            let mut end = None;
            for (i, c) in rest.char_indices().skip(1) {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => {}
                }
            }
            end.ok_or_else(|| error_at(start, "unterminated string"))?
        } else {
            rest.find(|c: char| c.is_ascii_whitespace() || c == '&')
                .unwrap_or(rest.len())
        };
        if end == 0 {
            return Err(error_at(start, "expected a value"));
        }
        let value = serde_json::from_str(&rest[..end]).map_err(|_| {
            error_at(
                start,
                format!(
                    "expected a string, number or boolean, found {:?}",
                    &rest[..end]
                ),
            )
        })?;
        self.pos += end;
        Ok((start, value))
    }
}

/// Parses and types a filter against a collection.
pub fn parse_equality(src: &str, collection: &Collection) -> Result<EqualityFilter, Error> {
    if src.len() > MAX_FILTER_BYTES {
        return Err(Error::bad_request(
            "invalid_filter",
            format!("filter longer than {MAX_FILTER_BYTES} bytes"),
        ));
    }
    let mut cursor = Cursor { src, pos: 0 };
    let mut filter = EqualityFilter::default();
    loop {
        let (at, name) = cursor.identifier()?;
        let (field, spec) = collection
            .fields
            .iter()
            .find(|(f, _)| f.as_str() == name)
            .ok_or_else(|| {
                error_at(
                    at,
                    format!("unknown field '{name}' in collection '{}'", collection.name),
                )
            })?;
        if !cursor.eat("=") {
            return Err(error_at(
                cursor.pos,
                "expected '=' (only equality is supported here)",
            ));
        }
        let (at, value) = cursor.literal()?;
        if value.is_null() {
            return Err(error_at(at, "null cannot be compared with '='"));
        }
        let typed = coerce(spec.field_type, &value)
            .map_err(|why| error_at(at, format!("{field}: {why}")))?;
        filter.terms.push((field.clone(), typed));
        if filter.terms.len() > MAX_TERMS {
            return Err(error_at(at, format!("at most {MAX_TERMS} terms")));
        }
        cursor.skip_ws();
        if cursor.pos == src.len() {
            return Ok(filter);
        }
        if !cursor.eat("&&") {
            return Err(error_at(
                cursor.pos,
                "expected '&&' or the end of the filter",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CollectionName;
    use crate::schema::{CollectionSpec, plan_change};
    use proptest::prelude::*;

    fn collection() -> Collection {
        let spec: CollectionSpec = serde_json::from_value(serde_json::json!({"fields": {
            "title": {"type": "string"}, "n": {"type": "integer"}, "done": {"type": "boolean"}
        }}))
        .unwrap();
        plan_change(&CollectionName::parse("items").unwrap(), None, &spec)
            .unwrap()
            .collection
    }

    #[test]
    fn parses_typed_conjunctions() {
        let f = parse_equality(
            r#"title = "a \"b\" && c" && n=3 && done = true"#,
            &collection(),
        )
        .unwrap();
        assert_eq!(f.terms.len(), 3);
        assert_eq!(f.terms[0].1, FieldValue::Text("a \"b\" && c".into()));
        assert_eq!(f.terms[1].1, FieldValue::Integer(3));
    }

    #[test]
    fn errors_say_where_and_what() {
        let c = collection();
        assert_eq!(
            parse_equality("nope = 1", &c).unwrap_err().message,
            "filter at position 0: unknown field 'nope' in collection 'items'"
        );
        assert!(
            parse_equality("n = true", &c)
                .unwrap_err()
                .message
                .starts_with("filter at position 4: n: expected integer")
        );
        assert!(
            parse_equality("n > 1", &c)
                .unwrap_err()
                .message
                .contains("position 2")
        );
        assert!(
            parse_equality("title = \"x", &c)
                .unwrap_err()
                .message
                .contains("unterminated")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(src in "\\PC{0,60}") {
            let _ = parse_equality(&src, &collection());
        }

        #[test]
        fn near_valid_input_never_panics(src in "(title|n|done| |=|&&|\"|\\\\|[0-9]|true|é)*") {
            let _ = parse_equality(&src, &collection());
        }
    }
}
