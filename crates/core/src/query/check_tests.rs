//! Tests of typing filters against the fixture collection.

use proptest::prelude::*;

use super::*;
use crate::ids::FieldName;
use crate::query::parse::parse_filter;
use crate::query::testing::{arb_expr, collection};

fn check(src: &str) -> Predicate {
    let expr = parse_filter(src).unwrap_or_else(|e| panic!("{src:?} should parse: {e}"));
    check_filter(&expr, &collection()).unwrap_or_else(|e| panic!("{src:?} should check: {e}"))
}

fn err(src: &str) -> String {
    let expr = parse_filter(src).unwrap_or_else(|e| panic!("{src:?} should parse: {e}"));
    let e = check_filter(&expr, &collection()).expect_err(src);
    assert_eq!(e.code, "invalid_filter", "{src}");
    e.message
}

fn field(name: &str, field_type: FieldType, not_null: bool) -> Operand {
    Operand::Column(Column::Field {
        name: FieldName::parse(name).unwrap(),
        field_type,
        not_null,
    })
}

fn json_path(name: &str, path: Vec<PathStep>) -> Operand {
    Operand::JsonPath {
        field: FieldName::parse(name).unwrap(),
        path,
    }
}

fn compare(operand: Operand, op: CmpOp, value: FieldValue) -> Predicate {
    Predicate::Compare { operand, op, value }
}

fn ts(text: &str) -> FieldValue {
    FieldValue::Timestamp(crate::time::Timestamp::parse_rfc3339(text).unwrap())
}

#[test]
fn types_values_for_each_column_type() {
    let title = || field("title", FieldType::String, true);
    assert_eq!(
        check(r#"title >= "b""#),
        compare(title(), CmpOp::Ge, FieldValue::Text("b".into()))
    );
    assert_eq!(
        check(r#"body != "x""#),
        compare(
            field("body", FieldType::Text, false),
            CmpOp::Ne,
            FieldValue::Text("x".into())
        )
    );
    let n = || field("n", FieldType::Integer, false);
    assert_eq!(
        check("n < -3"),
        compare(n(), CmpOp::Lt, FieldValue::Integer(-3))
    );
    assert_eq!(
        check("n = 3.0"),
        compare(n(), CmpOp::Eq, FieldValue::Integer(3))
    );
    assert_eq!(
        check("n > 2.5"),
        compare(n(), CmpOp::Gt, FieldValue::Float(2.5))
    );
    assert_eq!(
        check("n < 1e19"),
        compare(n(), CmpOp::Lt, FieldValue::Float(1e19))
    );
    let score = || field("score", FieldType::Float, false);
    assert_eq!(
        check("score <= 2"),
        compare(score(), CmpOp::Le, FieldValue::Float(2.0))
    );
    assert_eq!(
        check("score = 0.25"),
        compare(score(), CmpOp::Eq, FieldValue::Float(0.25))
    );
    assert_eq!(
        check("done = false"),
        compare(
            field("done", FieldType::Boolean, true),
            CmpOp::Eq,
            FieldValue::Boolean(false)
        )
    );
    let due = || field("due", FieldType::Timestamp, false);
    assert_eq!(
        check("due > 2026-11-14T00:00:00Z"),
        compare(due(), CmpOp::Gt, ts("2026-11-14T00:00:00Z"))
    );
    assert_eq!(
        check(r#"due > "2026-11-14T01:00:00+01:00""#),
        compare(due(), CmpOp::Gt, ts("2026-11-14T00:00:00Z"))
    );
}

#[test]
fn system_fields_are_columns_and_tenant_id_is_not_a_field() {
    assert_eq!(
        check(r#"id = "abc""#),
        compare(
            Operand::Column(Column::System(SystemField::Id)),
            CmpOp::Eq,
            FieldValue::Text("abc".into())
        )
    );
    assert_eq!(
        check("created_at >= 2026-01-01T00:00:00Z"),
        compare(
            Operand::Column(Column::System(SystemField::CreatedAt)),
            CmpOp::Ge,
            ts("2026-01-01T00:00:00Z")
        )
    );
    assert_eq!(
        check("version != 2"),
        compare(
            Operand::Column(Column::System(SystemField::Version)),
            CmpOp::Ne,
            FieldValue::Integer(2)
        )
    );
    assert!(matches!(check("updated_at exists"), Predicate::Exists(_)));
    assert_eq!(
        err(r#"tenant_id = "acme""#),
        "filter at position 0: unknown field 'tenant_id' in collection 'items'"
    );
}

#[test]
fn json_values_take_the_literals_kind() {
    let at = |key: &str| json_path("meta", vec![PathStep::Key(key.into())]);
    assert_eq!(
        check(r#"meta.a = "x""#),
        compare(at("a"), CmpOp::Eq, FieldValue::Text("x".into()))
    );
    assert_eq!(
        check("meta.a > 7"),
        compare(at("a"), CmpOp::Gt, FieldValue::Integer(7))
    );
    assert_eq!(
        check("meta.a = 7.5"),
        compare(at("a"), CmpOp::Eq, FieldValue::Float(7.5))
    );
    assert_eq!(
        check("meta.a != true"),
        compare(at("a"), CmpOp::Ne, FieldValue::Boolean(true))
    );
    assert_eq!(
        check(r#"tags[2].k in ["a", 1]"#),
        Predicate::In {
            operand: json_path("tags", vec![PathStep::Index(2), PathStep::Key("k".into())]),
            values: vec![FieldValue::Text("a".into()), FieldValue::Integer(1)],
        }
    );
    assert_eq!(
        check(r#"meta.s starts_with "ab""#),
        Predicate::StartsWith {
            operand: at("s"),
            prefix: "ab".into()
        }
    );
}

#[test]
fn null_means_missing() {
    let n = || field("n", FieldType::Integer, false);
    assert_eq!(
        check("n = null"),
        Predicate::Not(Box::new(Predicate::Exists(n())))
    );
    assert_eq!(check("n != null"), Predicate::Exists(n()));
    assert_eq!(
        check("meta = null"),
        Predicate::Not(Box::new(Predicate::Exists(field(
            "meta",
            FieldType::Json,
            false
        ))))
    );
    assert_eq!(
        err("n > null"),
        "filter at position 4: null only goes with '=' or '!=' (meaning 'is missing' and \
         'exists'), not '>'"
    );
    assert_eq!(
        err("n in [1, null]"),
        "filter at position 9: n is an integer; expected a value, found null (use 'exists' or \
         '= null' to test for a value)"
    );
}

#[test]
fn contains_is_substring_on_text_and_membership_on_json() {
    assert_eq!(
        check(r#"body contains "needle""#),
        Predicate::ContainsText {
            operand: field("body", FieldType::Text, false),
            needle: "needle".into()
        }
    );
    assert_eq!(
        check(r#"tags contains "red""#),
        Predicate::ContainsElement {
            operand: field("tags", FieldType::Json, false),
            value: FieldValue::Text("red".into())
        }
    );
    assert_eq!(
        check("meta.list contains 3"),
        Predicate::ContainsElement {
            operand: json_path("meta", vec![PathStep::Key("list".into())]),
            value: FieldValue::Integer(3)
        }
    );
    assert_eq!(
        err("n contains 1"),
        "filter at position 2: n: 'contains' applies to string, text and json fields, and n is \
         an integer"
    );
    assert_eq!(
        err("title contains 1"),
        "filter at position 15: title: 'contains' takes a string, found a number"
    );
    assert_eq!(
        err("tags contains null"),
        "filter at position 14: tags is inside a json field; expected a value, found null (use \
         'exists' or '= null' to test for a value)"
    );
}

#[test]
fn operators_are_refused_where_they_do_not_apply() {
    let cases = [
        (
            "created_at = true",
            "filter at position 13: created_at is a timestamp; expected a timestamp (RFC 3339), \
             found a boolean",
        ),
        (
            "nope = 1",
            "filter at position 0: unknown field 'nope' in collection 'items'",
        ),
        (
            r#"title = "a" && n = "3""#,
            "filter at position 19: n is an integer; expected an integer, found a string",
        ),
        (
            "n = 1.5",
            "filter at position 4: n is an integer; expected an integer, found a fractional \
             number (which only goes with <, <=, > and >=)",
        ),
        (
            "n in [1, 2.5]",
            "filter at position 9: n is an integer; expected an integer, found a fractional \
             number (which only goes with <, <=, > and >=)",
        ),
        (
            "n = 1e19",
            "filter at position 4: n is an integer; expected an integer, found a number outside \
             the 64-bit integer range",
        ),
        (
            "score = \"1\"",
            "filter at position 8: score is a float; expected a number, found a string",
        ),
        (
            "done > false",
            "filter at position 5: done: '>' does not apply to booleans; use '=', '!=' or 'in'",
        ),
        (
            "done = 1",
            "filter at position 7: done is a boolean; expected true or false, found a number",
        ),
        (
            "meta.ok <= true",
            "filter at position 8: meta.ok: '<=' does not apply to booleans; use '=', '!=' or \
             'in'",
        ),
        (
            r#"due = "tomorrow""#,
            "filter at position 6: due is a timestamp; expected a timestamp (RFC 3339), found a \
             string that is not an RFC 3339 timestamp",
        ),
        (
            "due = 5",
            "filter at position 6: due is a timestamp; expected a timestamp (RFC 3339), found a \
             number",
        ),
        (
            "title = 2026-11-14T00:00:00Z",
            "filter at position 8: title is a string; expected a string, found a timestamp",
        ),
        (
            "meta.at > 2026-11-14T00:00:00Z",
            "filter at position 10: meta.at is inside a json field; expected a string, number or \
             boolean, found a timestamp (json has no timestamps; quote it to compare as a string)",
        ),
        (
            "meta = 1",
            "filter at position 5: meta: a json field cannot be compared as a whole; compare a \
             path inside it (like meta.key or meta[0]), or use 'exists' or 'contains'",
        ),
        (
            "meta in [1]",
            "filter at position 5: meta: a json field cannot be compared as a whole; compare a \
             path inside it (like meta.key or meta[0]), or use 'exists' or 'contains'",
        ),
        (
            r#"meta starts_with "a""#,
            "filter at position 5: meta: a json field cannot be compared as a whole; compare a \
             path inside it (like meta.key or meta[0]), or use 'exists' or 'contains'",
        ),
        (
            r#"n starts_with "1""#,
            "filter at position 2: n: 'starts_with' applies to string and text fields and json \
             paths, and n is an integer",
        ),
        (
            "title starts_with 1",
            "filter at position 18: title: 'starts_with' takes a string, found a number",
        ),
        (
            "title.x = 1",
            "filter at position 5: title is a string; only json fields take steps like '.key'",
        ),
        (
            "created_at[0] exists",
            "filter at position 10: created_at is a timestamp; only json fields take steps like \
             '[index]'",
        ),
    ];
    for (src, message) in cases {
        assert_eq!(err(src), message, "{src}");
    }
}

#[test]
fn boolean_structure_is_kept_and_flattened() {
    let n = |i: i64| {
        compare(
            field("n", FieldType::Integer, false),
            CmpOp::Eq,
            FieldValue::Integer(i),
        )
    };
    assert_eq!(
        check("n = 1 && (n = 2 || n = 3) && !(n = 4)"),
        Predicate::And(vec![
            n(1),
            Predicate::Or(vec![n(2), n(3)]),
            Predicate::Not(Box::new(n(4))),
        ])
    );
    // `= null` becomes `Not(Exists)`, which sits inside the conjunction as one child.
    assert_eq!(
        check("n = 1 && n = null"),
        Predicate::And(vec![
            n(1),
            Predicate::Not(Box::new(Predicate::Exists(field(
                "n",
                FieldType::Integer,
                false
            )))),
        ])
    );
}

#[test]
fn hand_built_trees_are_checked_safely() {
    assert!(check_filter(&Expr::And(vec![]), &collection()).is_err());
    let mut deep = parse_filter("n = 1").unwrap();
    for _ in 0..200 {
        deep = Expr::Not(Box::new(deep));
    }
    assert!(
        check_filter(&deep, &collection())
            .unwrap_err()
            .message
            .contains("nested too deeply")
    );
    let Expr::Test(mut test) = parse_filter("n in [1]").unwrap() else {
        panic!("not a test")
    };
    test.op = TestOp::In(vec![]);
    assert!(check_filter(&Expr::Test(test), &collection()).is_err());
}

/// Properties every checked predicate keeps, whatever the input.
fn assert_invariants(predicate: &Predicate) -> Result<(), TestCaseError> {
    match predicate {
        Predicate::And(items) | Predicate::Or(items) => {
            prop_assert!(items.len() >= 2);
            for item in items {
                let same_kind = matches!(
                    (predicate, item),
                    (Predicate::And(_), Predicate::And(_)) | (Predicate::Or(_), Predicate::Or(_))
                );
                prop_assert!(!same_kind);
                assert_invariants(item)?;
            }
        }
        Predicate::Not(inner) => assert_invariants(inner)?,
        Predicate::In { values, .. } => prop_assert!(!values.is_empty()),
        Predicate::ContainsText { operand, .. } => prop_assert!(matches!(
            operand,
            Operand::Column(c) if matches!(c.field_type(), FieldType::String | FieldType::Text)
        )),
        Predicate::Compare { .. }
        | Predicate::Exists(_)
        | Predicate::StartsWith { .. }
        | Predicate::ContainsElement { .. } => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,80}") {
        if let Ok(expr) = parse_filter(&src) {
            let _ = check_filter(&expr, &collection());
        }
        let _ = crate::query::filter(&src, &collection());
    }

    #[test]
    fn generated_trees_check_without_panicking(expr in arb_expr()) {
        match check_filter(&expr, &collection()) {
            Ok(predicate) => assert_invariants(&predicate)?,
            Err(e) => prop_assert!(e.message.starts_with("filter at position ")),
        }
    }

    #[test]
    fn near_valid_filters_check_without_panicking(
        src in "(title|body|n|score|done|due|meta|tags|id|version|tenant_id|\\.a|\\[0\\]| |=|!=|>|<=|in \\[|\\]|,|contains|starts_with|exists|&&|\\|\\||!|\\(|\\)|\"x\"|\"2026-11-14T00:00:00Z\"|1|-1|2\\.5|1e19|2026-11-14T00:00:00Z|true|null)*"
    ) {
        if let Ok(expr) = parse_filter(&src)
            && let Ok(predicate) = check_filter(&expr, &collection())
        {
            assert_invariants(&predicate)?;
        }
    }
}
