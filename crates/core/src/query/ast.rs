//! The untyped filter tree: what [`super::parse::parse_filter`] reads from the caller's text,
//! before any schema is consulted.
//!
//! Every node that can be the subject of an error carries the byte position where its text
//! starts, so the checker can say where a problem is. Trees built by the parser are normal:
//! `And`/`Or` have at least two children and never hold a child of their own kind (nested
//! conjunctions are flattened, parentheses leave no trace), which is what makes printing and
//! re-parsing a fixed point.

use super::{CmpOp, PathStep};
use crate::time::Timestamp;

/// A node with the byte position (in the filter text) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub pos: usize,
    pub value: T,
}

impl<T> Spanned<T> {
    pub fn new(pos: usize, value: T) -> Self {
        Spanned { pos, value }
    }
}

/// A boolean expression over tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Test(Test),
}

/// `path operator operand`, e.g. `meta.tags contains "red"` or `due exists`.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub path: Path,
    /// Where the operator (`=`, `in`, `exists`, ...) starts.
    pub op_pos: usize,
    pub op: TestOp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestOp {
    Compare(CmpOp, Spanned<Literal>),
    /// Never empty when built by the parser.
    In(Vec<Spanned<Literal>>),
    Contains(Spanned<Literal>),
    StartsWith(Spanned<Literal>),
    Exists,
}

/// A field name followed, for `json` fields, by steps into the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub pos: usize,
    /// `[a-z][a-z0-9_]*`; may name a system field. Not yet checked against any schema.
    pub name: String,
    pub steps: Vec<Spanned<PathStep>>,
}

/// A value written in the filter. New kinds (variables such as `@user.id`) join here.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Literal {
    /// A JSON string, unescaped.
    String(String),
    /// A JSON number without fraction or exponent that fits an `i64`.
    Integer(i64),
    /// Any other JSON number; always finite.
    Float(f64),
    Boolean(bool),
    Null,
    /// A bare RFC 3339 timestamp such as `2026-11-14T00:00:00Z`.
    Timestamp(Timestamp),
    /// A variable such as `@user.id`, `@user.email` or `@user.claims.org`: allowed only in
    /// record rules, which bind it to the caller's value before checking
    /// ([`super::vars::bind`]).
    Variable(Vec<String>),
}

impl Literal {
    /// The kind of value, with its article, for error messages ("found a boolean").
    pub fn kind_phrase(&self) -> &'static str {
        match self {
            Literal::String(_) => "a string",
            Literal::Integer(_) | Literal::Float(_) => "a number",
            Literal::Boolean(_) => "a boolean",
            Literal::Null => "null",
            Literal::Timestamp(_) => "a timestamp",
            Literal::Variable(_) => "a variable",
        }
    }
}

impl Expr {
    /// Where the expression's text starts (its first path).
    pub fn pos(&self) -> usize {
        match self {
            Expr::And(items) | Expr::Or(items) => items.first().map_or(0, Expr::pos),
            Expr::Not(inner) => inner.pos(),
            Expr::Test(test) => test.path.pos,
        }
    }

    /// The same tree with every position set to 0, to compare trees by shape alone (two
    /// spellings of one filter parse to trees that differ only in positions).
    pub fn without_positions(&self) -> Expr {
        let lit = |l: &Spanned<Literal>| Spanned::new(0, l.value.clone());
        match self {
            Expr::And(items) => Expr::And(items.iter().map(Expr::without_positions).collect()),
            Expr::Or(items) => Expr::Or(items.iter().map(Expr::without_positions).collect()),
            Expr::Not(inner) => Expr::Not(Box::new(inner.without_positions())),
            Expr::Test(test) => Expr::Test(Test {
                path: Path {
                    pos: 0,
                    name: test.path.name.clone(),
                    steps: test
                        .path
                        .steps
                        .iter()
                        .map(|s| Spanned::new(0, s.value.clone()))
                        .collect(),
                },
                op_pos: 0,
                op: match &test.op {
                    TestOp::Compare(op, l) => TestOp::Compare(*op, lit(l)),
                    TestOp::In(items) => TestOp::In(items.iter().map(lit).collect()),
                    TestOp::Contains(l) => TestOp::Contains(lit(l)),
                    TestOp::StartsWith(l) => TestOp::StartsWith(lit(l)),
                    TestOp::Exists => TestOp::Exists,
                },
            }),
        }
    }
}
