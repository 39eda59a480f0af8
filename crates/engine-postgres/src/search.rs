//! Full-text search on PostgreSQL: a `tsvector` column per searchable table, indexed with
//! GIN, filled from the shared tokenizer (`core::query::search::tokenize`) — not from
//! PostgreSQL's text parser — so words mean the same on every engine. Diacritics are folded
//! the way the embedded engine's index folds them (`café` finds `cafe`). In a pool each
//! lexeme carries its tenant (`acme_word`), so the tenant is part of the match itself.

use std::collections::BTreeMap;

use bulkhead_core::query::search::tokenize;
use bulkhead_core::query::{SearchQuery, SearchTerm};
use bulkhead_core::record::{FieldValue, Fields};
use bulkhead_core::schema::{Collection, FieldType};
use bytes::{BufMut, BytesMut};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Highest position a tsvector keeps (PostgreSQL's `MAXENTRYPOS - 1`).
const MAX_POSITION: u16 = 16383;
/// Most positions PostgreSQL keeps per lexeme (`MAXNUMPOS`).
const MAX_POSITIONS: usize = 256;

/// Removes diacritics: `crème` → `creme`.
pub fn fold(token: &str) -> String {
    token.nfd().filter(|c| !is_combining_mark(*c)).collect()
}

fn qualify(tenant: Option<&str>, token: &str) -> String {
    match tenant {
        Some(t) => format!("{t}_{}", fold(token)),
        None => fold(token),
    }
}

/// The lexemes of a record with their positions, in byte order (PostgreSQL's own order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lexemes(BTreeMap<String, Vec<u16>>);

impl Lexemes {
    /// Every `text` field of the record through the shared tokenizer, positions counted
    /// across fields in schema order (as the embedded engine indexes one body).
    pub fn of(collection: &Collection, fields: &Fields, tenant: Option<&str>) -> Lexemes {
        let mut map: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        let mut position: u32 = 0;
        for (name, spec) in &collection.fields {
            if spec.field_type != FieldType::Text {
                continue;
            }
            if let Some(FieldValue::Text(text)) = fields.get(name) {
                for token in tokenize(text) {
                    position += 1;
                    let lexeme = qualify(tenant, &token);
                    if lexeme.is_empty() {
                        continue;
                    }
                    let pos = position.min(u32::from(MAX_POSITION)) as u16;
                    let positions = map.entry(lexeme).or_default();
                    if positions.len() < MAX_POSITIONS && positions.last() != Some(&pos) {
                        positions.push(pos);
                    }
                }
            }
        }
        Lexemes(map)
    }

    /// tsvector's binary form: the lexeme count, then each lexeme as a C string with its
    /// positions (weight bits left zero).
    pub fn write_binary(&self, out: &mut BytesMut) -> Result<(), std::num::TryFromIntError> {
        out.put_i32(i32::try_from(self.0.len())?);
        for (lexeme, positions) in &self.0 {
            out.put_slice(lexeme.as_bytes());
            out.put_u8(0);
            out.put_u16(u16::try_from(positions.len())?);
            for p in positions {
                out.put_u16(*p);
            }
        }
        Ok(())
    }
}

/// A tsquery literal: lexemes single-quoted (quotes and backslashes escaped), phrases with
/// `<->`, prefixes with `:*`, all terms required.
pub fn tsquery(search: &SearchQuery, tenant: Option<&str>) -> String {
    let lexeme = |w: &str| {
        let q = qualify(tenant, w);
        format!("'{}'", q.replace('\\', "\\\\").replace('\'', "''"))
    };
    search
        .terms
        .iter()
        .map(|term| match term {
            SearchTerm::Word(w) => lexeme(w),
            SearchTerm::Prefix(p) => format!("{}:*", lexeme(p)),
            SearchTerm::Phrase(words) => format!(
                "({})",
                words
                    .iter()
                    .map(|w| lexeme(w))
                    .collect::<Vec<_>>()
                    .join(" <-> ")
            ),
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_core::query::search::parse_search;

    #[test]
    fn folds_diacritics_and_qualifies_pooled_lexemes() {
        assert_eq!(fold("crème"), "creme");
        assert_eq!(fold("café"), "cafe");
        let q = parse_search("\"brown fox\" qui* Café").expect("q");
        assert_eq!(
            tsquery(&q, Some("acme")),
            "('acme_brown' <-> 'acme_fox') & 'acme_qui':* & 'acme_cafe'"
        );
    }

    #[test]
    fn binary_form_counts_lexemes_and_positions() {
        let mut lex = Lexemes::default();
        lex.0.insert("ab".into(), vec![1, 3]);
        let mut out = BytesMut::new();
        lex.write_binary(&mut out).expect("small");
        assert_eq!(&out[..], &[0, 0, 0, 1, b'a', b'b', 0, 0, 2, 0, 1, 0, 3]);
    }
}
