//! Turning command-line text into request bodies: `key=value` labels, `name:type:flags` field
//! specs, and JSON given inline, as `@file` or on standard input. Every error names the
//! argument that was wrong and what was expected.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use bulkhead_core::FieldName;
use bulkhead_core::model::Labels;
use bulkhead_core::schema::{CollectionSpec, FieldSpec, FieldType};
use serde_json::Value;

/// One `--field` argument.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldArg {
    pub name: FieldName,
    pub spec: FieldSpec,
}

/// `key=value` (the value may itself contain `=` and may be empty).
pub fn parse_label(raw: &str) -> Result<(String, String), String> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {raw:?} (no '=')"));
    };
    if key.trim().is_empty() {
        return Err(format!("expected KEY=VALUE, got {raw:?} (empty key)"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Collects labels into a map, refusing a key given twice rather than silently keeping one.
pub fn labels_from(pairs: &[(String, String)]) -> anyhow::Result<Labels> {
    let mut labels = Labels::new();
    for (key, value) in pairs {
        if labels.insert(key.clone(), value.clone()).is_some() {
            bail!("label {key:?} is given more than once");
        }
    }
    Ok(labels)
}

const FIELD_TYPES: &str = "string, text, integer, float, boolean, timestamp, json";

/// `name:type[:required][:unique][:index]`, e.g. `title:text:required`.
pub fn parse_field(raw: &str) -> Result<FieldArg, String> {
    let mut parts = raw.split(':');
    let name = parts.next().unwrap_or_default();
    let name = FieldName::parse(name).map_err(|e| format!("in {raw:?}: {}", e.message))?;
    let Some(type_name) = parts.next() else {
        return Err(format!(
            "expected NAME:TYPE[:required][:unique][:index], got {raw:?} (no type; one of {FIELD_TYPES})"
        ));
    };
    let field_type = match type_name {
        "string" => FieldType::String,
        "text" => FieldType::Text,
        "integer" => FieldType::Integer,
        "float" => FieldType::Float,
        "boolean" => FieldType::Boolean,
        "timestamp" => FieldType::Timestamp,
        "json" => FieldType::Json,
        other => {
            return Err(format!(
                "in {raw:?}: unknown type {other:?}; expected one of {FIELD_TYPES}"
            ));
        }
    };
    let mut spec = FieldSpec {
        field_type,
        required: false,
        unique: false,
        index: false,
        default: None,
    };
    for flag in parts {
        match flag {
            "required" => spec.required = true,
            "unique" => spec.unique = true,
            "index" => spec.index = true,
            other => {
                return Err(format!(
                    "in {raw:?}: unknown flag {other:?}; expected required, unique or index \
                     (use --file for defaults)"
                ));
            }
        }
    }
    Ok(FieldArg { name, spec })
}

/// Builds a collection definition from `--field` arguments.
pub fn spec_from_fields(fields: &[FieldArg]) -> anyhow::Result<CollectionSpec> {
    let mut map = BTreeMap::new();
    for field in fields {
        if map.insert(field.name.clone(), field.spec.clone()).is_some() {
            bail!("field {:?} is given more than once", field.name.as_str());
        }
    }
    Ok(CollectionSpec { fields: map })
}

/// Reads a collection definition (`{"fields": {...}}`) from a file, or stdin for `-`.
pub fn load_collection_spec(path: &Path, stdin: &mut dyn Read) -> anyhow::Result<CollectionSpec> {
    let (text, source) = if path.as_os_str() == "-" {
        (read_stdin(stdin)?, "standard input".to_owned())
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (text, path.display().to_string())
    };
    serde_json::from_str(&text).with_context(|| {
        format!("{source} is not a collection definition like {{\"fields\": {{\"title\": {{\"type\": \"text\"}}}}}}")
    })
}

/// A JSON object given as an argument: inline JSON, `@path` for a file, or `-` for stdin.
pub fn load_json_object(arg: &str, stdin: &mut dyn Read) -> anyhow::Result<Value> {
    let (text, source) = if arg == "-" {
        (read_stdin(stdin)?, "standard input".to_owned())
    } else if let Some(path) = arg.strip_prefix('@') {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read file {path:?}"))?;
        (text, format!("file {path:?}"))
    } else {
        (arg.to_owned(), "the JSON argument".to_owned())
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{source} is not valid JSON"))?;
    if !value.is_object() {
        bail!("{source} must be a JSON object like {{\"title\": \"...\"}}");
    }
    Ok(value)
}

fn read_stdin(stdin: &mut dyn Read) -> anyhow::Result<String> {
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .context("cannot read standard input")?;
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_label("region=eu-west").unwrap(),
            ("region".into(), "eu-west".into())
        );
        assert_eq!(
            parse_label("query=a=b").unwrap(),
            ("query".into(), "a=b".into())
        );
        assert_eq!(
            parse_label("empty=").unwrap(),
            ("empty".into(), String::new())
        );
    }

    #[test]
    fn labels_without_equals_or_key_are_rejected() {
        assert!(parse_label("region").unwrap_err().contains("no '='"));
        assert!(parse_label("=eu").unwrap_err().contains("empty key"));
    }

    #[test]
    fn a_label_key_given_twice_is_rejected() {
        let pairs = [
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(labels_from(&pairs).is_err());
        assert_eq!(
            labels_from(&pairs[..1])
                .unwrap()
                .get("a")
                .map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn field_specs_parse_types_and_flags() {
        let f = parse_field("title:text:required").unwrap();
        assert_eq!(f.name.as_str(), "title");
        assert_eq!(f.spec.field_type, FieldType::Text);
        assert!(f.spec.required && !f.spec.unique && !f.spec.index);

        let f = parse_field("sku:string:unique:index").unwrap();
        assert!(f.spec.unique && f.spec.index && !f.spec.required);

        for (raw, ty) in [
            ("a:integer", FieldType::Integer),
            ("a:float", FieldType::Float),
            ("a:boolean", FieldType::Boolean),
            ("a:timestamp", FieldType::Timestamp),
            ("a:json", FieldType::Json),
        ] {
            assert_eq!(parse_field(raw).unwrap().spec.field_type, ty, "{raw}");
        }
    }

    #[test]
    fn bad_field_specs_say_what_is_wrong() {
        assert!(parse_field("title").unwrap_err().contains("no type"));
        assert!(
            parse_field("title:txt")
                .unwrap_err()
                .contains("unknown type \"txt\"")
        );
        assert!(
            parse_field("title:text:requird")
                .unwrap_err()
                .contains("unknown flag")
        );
        assert!(
            parse_field("Title:text")
                .unwrap_err()
                .contains("invalid field name")
        );
        assert!(parse_field(":text").is_err());
    }

    #[test]
    fn fields_build_a_collection_spec_and_duplicates_are_refused() {
        let fields = [
            parse_field("title:text:required").unwrap(),
            parse_field("n:integer").unwrap(),
        ];
        let spec = spec_from_fields(&fields).unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({"fields": {"n": {"type": "integer"}, "title": {"type": "text", "required": true}}})
        );
        let twice = [fields[0].clone(), fields[0].clone()];
        assert!(spec_from_fields(&twice).is_err());
    }

    #[test]
    fn json_arguments_load_inline_from_files_and_from_stdin() {
        let mut no_stdin: &[u8] = b"";
        let inline = load_json_object(r#"{"title":"a"}"#, &mut no_stdin).unwrap();
        assert_eq!(inline["title"], "a");

        let dir = std::env::temp_dir().join(format!("bulkhead-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("record.json");
        std::fs::write(&file, r#"{"title": "from file"}"#).unwrap();
        let loaded = load_json_object(&format!("@{}", file.display()), &mut no_stdin).unwrap();
        assert_eq!(loaded["title"], "from file");
        std::fs::remove_dir_all(&dir).unwrap();

        let mut stdin: &[u8] = br#"{"title": "piped"}"#;
        assert_eq!(load_json_object("-", &mut stdin).unwrap()["title"], "piped");
    }

    #[test]
    fn bad_json_arguments_are_explained() {
        let mut no_stdin: &[u8] = b"";
        let err = load_json_object("{title:1}", &mut no_stdin).unwrap_err();
        assert!(format!("{err:#}").contains("not valid JSON"), "{err:#}");
        let err = load_json_object("[1,2]", &mut no_stdin).unwrap_err();
        assert!(err.to_string().contains("must be a JSON object"));
        let err = load_json_object("@/nonexistent/bulkhead.json", &mut no_stdin).unwrap_err();
        assert!(err.to_string().contains("cannot read file"));
    }

    #[test]
    fn a_collection_file_is_parsed_strictly() {
        let mut stdin: &[u8] = br#"{"fields": {"title": {"type": "text", "required": true}}}"#;
        let spec = load_collection_spec(Path::new("-"), &mut stdin).unwrap();
        assert!(spec.fields.values().all(|f| f.required));
        let mut stdin: &[u8] = br#"{"fields": {"title": {"type": "text", "requird": true}}}"#;
        assert!(load_collection_spec(Path::new("-"), &mut stdin).is_err());
    }
}
