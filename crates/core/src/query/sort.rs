//! `sort=` and `fields=`: comma-separated lists of field names.
//!
//! Sort keys name system fields or sortable schema fields (not `text`, not `json`), at most
//! [`MAX_SORT_KEYS`], without repeats; the caller appends the `id` tie-break. A projection
//! names schema fields; system fields are always returned, so naming them is accepted and has
//! no effect. Errors give the byte position of the entry at fault.

use super::{Column, SortKey, SystemField};
use crate::error::Error;
use crate::ids::FieldName;
use crate::schema::{Collection, FieldType};

pub const MAX_SORT_KEYS: usize = 8;

/// Splits on `,`, yielding each entry trimmed of ASCII whitespace with the byte position where
/// its text starts (or, for a blank entry, where the entry starts).
fn entries(src: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    src.split(',').map(move |raw| {
        let entry_start = start;
        start += raw.len() + 1;
        let trimmed = raw.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let pos = entry_start + (raw.len() - trimmed.len());
        (
            pos,
            trimmed.trim_end_matches(|c: char| c.is_ascii_whitespace()),
        )
    })
}

fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Parses `sort=-created_at,title`: `-` sorts descending, `+` (or nothing) ascending.
pub fn parse_sort(src: &str, collection: &Collection) -> Result<Vec<SortKey>, Error> {
    let fail = |pos: usize, why: String| {
        Err(Error::bad_request(
            "invalid_sort",
            format!("sort at position {pos}: {why}"),
        ))
    };
    if src
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .is_empty()
    {
        return fail(0, "expected at least one field name".into());
    }
    let mut keys: Vec<SortKey> = Vec::new();
    for (pos, entry) in entries(src) {
        if keys.len() == MAX_SORT_KEYS {
            return fail(pos, format!("at most {MAX_SORT_KEYS} sort keys"));
        }
        let (descending, name, name_pos) = match entry.as_bytes().first() {
            Some(b'-') => (true, &entry[1..], pos + 1),
            Some(b'+') => (false, &entry[1..], pos + 1),
            _ => (false, entry, pos),
        };
        if name.is_empty() {
            return fail(name_pos, "expected a field name".into());
        }
        let column = if let Some(system) = SystemField::parse(name) {
            Column::System(system)
        } else if let Some((field, spec)) = collection
            .fields
            .iter()
            .find(|(field, _)| field.as_str() == name)
        {
            if matches!(spec.field_type, FieldType::Text | FieldType::Json) {
                return fail(
                    name_pos,
                    format!(
                        "{name} is a {} field, which is not sortable; sort by a string, integer, \
                         float, boolean or timestamp field",
                        spec.field_type
                    ),
                );
            }
            Column::Field {
                name: field.clone(),
                field_type: spec.field_type,
                not_null: spec.required,
            }
        } else {
            return fail(
                name_pos,
                format!(
                    "unknown field '{}' in collection '{}'",
                    shown(name),
                    collection.name
                ),
            );
        };
        if keys.iter().any(|k| k.column.name() == column.name()) {
            return fail(name_pos, format!("{name} appears twice"));
        }
        keys.push(SortKey { column, descending });
    }
    Ok(keys)
}

/// Parses `fields=title,n`: the schema fields to return. System fields are skipped (they are
/// always returned), repeats are dropped, order of first mention is kept.
pub fn parse_fields(src: &str, collection: &Collection) -> Result<Vec<FieldName>, Error> {
    let fail = |pos: usize, why: String| {
        Err(Error::bad_request(
            "invalid_fields",
            format!("fields at position {pos}: {why}"),
        ))
    };
    let mut fields: Vec<FieldName> = Vec::new();
    for (pos, name) in entries(src) {
        if name.is_empty() {
            return fail(pos, "expected a field name".into());
        }
        if SystemField::parse(name).is_some() {
            continue;
        }
        let Some(field) = collection.fields.keys().find(|f| f.as_str() == name) else {
            return fail(
                pos,
                format!(
                    "unknown field '{}' in collection '{}'",
                    shown(name),
                    collection.name
                ),
            );
        };
        if !fields.contains(field) {
            fields.push(field.clone());
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::testing::collection;
    use proptest::prelude::*;

    fn sort(src: &str) -> Result<Vec<(String, bool)>, String> {
        parse_sort(src, &collection())
            .map(|keys| {
                keys.into_iter()
                    .map(|k| (k.column.name().to_owned(), k.descending))
                    .collect()
            })
            .map_err(|e| {
                assert_eq!(e.code, "invalid_sort");
                e.message
            })
    }

    fn fields(src: &str) -> Result<Vec<String>, String> {
        parse_fields(src, &collection())
            .map(|names| names.iter().map(|n| n.as_str().to_owned()).collect())
            .map_err(|e| {
                assert_eq!(e.code, "invalid_fields");
                e.message
            })
    }

    fn owned(keys: &[(&str, bool)]) -> Vec<(String, bool)> {
        keys.iter().map(|(n, d)| ((*n).to_owned(), *d)).collect()
    }

    #[test]
    fn sort_reads_directions_and_system_fields() {
        assert_eq!(
            sort("-created_at,title, +n ,score,done,due,id,version"),
            Ok(owned(&[
                ("created_at", true),
                ("title", false),
                ("n", false),
                ("score", false),
                ("done", false),
                ("due", false),
                ("id", false),
                ("version", false),
            ]))
        );
        let keys = parse_sort("-title", &collection()).unwrap();
        assert_eq!(
            keys[0].column,
            Column::Field {
                name: FieldName::parse("title").unwrap(),
                field_type: FieldType::String,
                not_null: true,
            }
        );
        assert_eq!(
            parse_sort("updated_at", &collection()).unwrap()[0].column,
            Column::System(SystemField::UpdatedAt)
        );
    }

    #[test]
    fn sort_refuses_what_cannot_be_sorted() {
        assert_eq!(
            sort("title,-body"),
            Err(
                "sort at position 7: body is a text field, which is not sortable; sort by a \
                 string, integer, float, boolean or timestamp field"
                    .into()
            )
        );
        assert!(sort("meta").unwrap_err().contains("meta is a json field"));
        assert_eq!(
            sort("n, nope"),
            Err("sort at position 3: unknown field 'nope' in collection 'items'".into())
        );
        assert_eq!(
            sort("tenant_id"),
            Err("sort at position 0: unknown field 'tenant_id' in collection 'items'".into())
        );
        assert_eq!(
            sort("n,-n"),
            Err("sort at position 3: n appears twice".into())
        );
        assert_eq!(
            sort("n,,title"),
            Err("sort at position 2: expected a field name".into())
        );
        assert_eq!(
            sort("-"),
            Err("sort at position 1: expected a field name".into())
        );
        assert_eq!(
            sort(" "),
            Err("sort at position 0: expected at least one field name".into())
        );
        assert_eq!(
            sort("id,title,n,score,done,due,created_at,updated_at,version"),
            Err("sort at position 48: at most 8 sort keys".into())
        );
    }

    #[test]
    fn fields_skip_system_fields_and_repeats() {
        assert_eq!(
            fields("title, n,id,title,created_at,meta"),
            Ok(vec!["title".into(), "n".into(), "meta".into()])
        );
        assert_eq!(fields("id,version"), Ok(vec![]));
    }

    #[test]
    fn fields_refuse_unknown_and_blank_names() {
        assert_eq!(
            fields("title,nope"),
            Err("fields at position 6: unknown field 'nope' in collection 'items'".into())
        );
        assert_eq!(
            fields("tenant_id"),
            Err("fields at position 0: unknown field 'tenant_id' in collection 'items'".into())
        );
        assert_eq!(
            fields("title,"),
            Err("fields at position 6: expected a field name".into())
        );
        assert_eq!(
            fields(""),
            Err("fields at position 0: expected a field name".into())
        );
    }

    proptest! {
        #[test]
        fn arbitrary_sort_and_fields_never_panic(src in "\\PC{0,80}") {
            let _ = parse_sort(&src, &collection());
            let _ = parse_fields(&src, &collection());
        }

        #[test]
        fn near_valid_sort_and_fields_never_panic(
            src in "(title|n|body|meta|id|é|-|\\+|,| |created_at|nope)*"
        ) {
            let _ = parse_sort(&src, &collection());
            let _ = parse_fields(&src, &collection());
        }
    }
}
