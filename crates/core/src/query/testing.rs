//! Test fixtures shared by the query modules: a collection with a field of every type, and
//! proptest strategies that build filter trees.

use proptest::prelude::*;

use super::ast::{Expr, Literal, Path, Spanned, Test, TestOp};
use super::{CmpOp, PathStep};
use crate::ids::CollectionName;
use crate::schema::{Collection, CollectionSpec, plan_change};
use crate::time::Timestamp;

/// `items`: `title` (string, required), `body` (text), `n` (integer), `score` (float), `done`
/// (boolean, required), `due` (timestamp), `meta` (json), `tags` (json).
pub(crate) fn collection() -> Collection {
    let spec: CollectionSpec = serde_json::from_value(serde_json::json!({"fields": {
        "title": {"type": "string", "required": true},
        "body": {"type": "text"},
        "n": {"type": "integer"},
        "score": {"type": "float"},
        "done": {"type": "boolean", "required": true, "default": false},
        "due": {"type": "timestamp"},
        "meta": {"type": "json"},
        "tags": {"type": "json"},
    }}))
    .expect("fixture spec is valid");
    plan_change(
        &CollectionName::parse("items").expect("valid name"),
        None,
        &spec,
    )
    .expect("fixture collection is valid")
    .collection
}

pub(crate) const FIELD_NAMES: [&str; 12] = [
    "title",
    "body",
    "n",
    "score",
    "done",
    "due",
    "meta",
    "tags",
    "id",
    "created_at",
    "version",
    "tenant_id",
];

pub(crate) fn arb_literal() -> impl Strategy<Value = Literal> {
    // 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999Z
    let micros = -62_167_219_200_000_000i64..=253_402_300_799_999_999i64;
    prop_oneof![
        any::<String>().prop_map(Literal::String),
        "[a-z \"\\\\é]{0,6}".prop_map(Literal::String),
        any::<i64>().prop_map(Literal::Integer),
        (-1000i64..1000).prop_map(Literal::Integer),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Literal::Float),
        (-100.0f64..100.0).prop_map(Literal::Float),
        any::<bool>().prop_map(Literal::Boolean),
        Just(Literal::Null),
        micros.prop_map(|m| Literal::Timestamp(Timestamp::from_micros(m))),
    ]
}

fn arb_path() -> impl Strategy<Value = Path> {
    let name = prop_oneof![
        proptest::sample::select(&FIELD_NAMES[..]).prop_map(str::to_owned),
        "[a-z][a-z0-9_]{0,6}",
    ];
    let step = prop_oneof![
        "[A-Za-z0-9_]{1,5}".prop_map(PathStep::Key),
        any::<u32>().prop_map(PathStep::Index),
    ];
    (name, proptest::collection::vec(step, 0..3)).prop_map(|(name, steps)| Path {
        pos: 0,
        name,
        steps: steps.into_iter().map(|s| Spanned::new(0, s)).collect(),
    })
}

fn arb_test() -> impl Strategy<Value = Test> {
    let lit = || arb_literal().prop_map(|l| Spanned::new(0, l));
    let op = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
    ];
    let test_op = prop_oneof![
        3 => (op, lit()).prop_map(|(op, l)| TestOp::Compare(op, l)),
        1 => proptest::collection::vec(lit(), 1..4).prop_map(TestOp::In),
        1 => lit().prop_map(TestOp::Contains),
        1 => lit().prop_map(TestOp::StartsWith),
        1 => Just(TestOp::Exists),
    ];
    (arb_path(), test_op).prop_map(|(path, op)| Test {
        path,
        op_pos: 0,
        op,
    })
}

/// Trees of any shape the types allow (not only normal ones), small enough to stay within
/// the parser's limits.
pub(crate) fn arb_expr() -> impl Strategy<Value = Expr> {
    arb_test()
        .prop_map(Expr::Test)
        .prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
        .prop_filter("within the comparison limit", |e| count_tests(e) <= 64)
}

pub(crate) fn count_tests(expr: &Expr) -> usize {
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().map(count_tests).sum(),
        Expr::Not(inner) => count_tests(inner),
        Expr::Test(_) => 1,
    }
}

/// What the parser makes of a tree's printed form: nested `And`/`Or` flattened, positions 0.
pub(crate) fn normalise(expr: &Expr) -> Expr {
    let flat = |items: &[Expr], or: bool| {
        let mut out = Vec::new();
        for item in items.iter().map(normalise) {
            match item {
                Expr::Or(inner) if or => out.extend(inner),
                Expr::And(inner) if !or => out.extend(inner),
                other => out.push(other),
            }
        }
        out
    };
    match expr {
        Expr::And(items) => Expr::And(flat(items, false)),
        Expr::Or(items) => Expr::Or(flat(items, true)),
        Expr::Not(inner) => Expr::Not(Box::new(normalise(inner))),
        Expr::Test(_) => expr.without_positions(),
    }
}
