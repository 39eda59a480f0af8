//! The canonical text of a filter: one space around binary operators, parentheses only where
//! precedence needs them, `!` always followed by `(` or another `!`, strings re-escaped by
//! JSON rules, numbers in shortest round-trip form, timestamps in UTC with six fractional
//! digits.
//!
//! For every tree the parser builds, parsing the printed text gives the same tree (positions
//! aside), and printing is a fixed point; the property tests check both. The printed text
//! never nests deeper than the text it came from, but may be longer (spaces, canonical
//! timestamps), so a filter near [`super::MAX_FILTER_BYTES`] can print over the limit.

use std::fmt::{self, Display, Formatter, Write};

use super::PathStep;
use super::ast::{Expr, Literal, Path, Test, TestOp};

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) => join(f, items, " || ", |item| matches!(item, Expr::Or(_))),
            Expr::And(items) => join(f, items, " && ", |item| {
                matches!(item, Expr::Or(_) | Expr::And(_))
            }),
            Expr::Not(inner) => match inner.as_ref() {
                Expr::Not(_) => write!(f, "!{inner}"),
                _ => write!(f, "!({inner})"),
            },
            Expr::Test(test) => test.fmt(f),
        }
    }
}

/// Children of the kind that needs parentheses here only occur in hand-built trees (the
/// parser flattens them); they still print as text that parses.
fn join(
    f: &mut Formatter<'_>,
    items: &[Expr],
    separator: &str,
    needs_parens: impl Fn(&Expr) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(item) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

impl Display for Test {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        match &self.op {
            TestOp::Compare(op, value) => write!(f, " {} {}", op.symbol(), value.value),
            TestOp::In(values) => {
                f.write_str(" in [")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", value.value)?;
                }
                f.write_char(']')
            }
            TestOp::Contains(value) => write!(f, " contains {}", value.value),
            TestOp::StartsWith(value) => write!(f, " starts_with {}", value.value),
            TestOp::Exists => f.write_str(" exists"),
        }
    }
}

impl Display for Path {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for step in &self.steps {
            match &step.value {
                PathStep::Key(key) => write!(f, ".{key}")?,
                PathStep::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => {
                // Serialising a `&str` cannot fail; fall back to an empty string regardless.
                let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
                f.write_str(&quoted)
            }
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Float(x) => f.write_str(&format_float(*x)),
            Literal::Boolean(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
            Literal::Timestamp(t) => f.write_str(&t.to_rfc3339()),
            Literal::Variable(path) => write!(f, "@{}", path.join(".")),
        }
    }
}

/// Shortest text that parses back to the same `f64` and still reads as a fraction (so it
/// does not turn into an integer): `0.5`, `100.0`, `1e300`, `-2.5e-7`.
pub(crate) fn format_float(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude == 0.0 || (1e-4..1e15).contains(&magnitude) {
        let plain = format!("{x}");
        if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        }
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse::parse_filter;

    fn canonical(src: &str) -> String {
        parse_filter(src).unwrap().to_string()
    }

    #[test]
    fn prints_operators_with_single_spaces() {
        assert_eq!(canonical("a=1&&b!=2"), "a = 1 && b != 2");
        assert_eq!(
            canonical("a>1||b>=2||c<3||d<=4"),
            "a > 1 || b >= 2 || c < 3 || d <= 4"
        );
        assert_eq!(canonical("t in[1,2 ,3]"), "t in [1, 2, 3]");
        assert_eq!(
            canonical(r#"m.a[2].b contains "x" && t starts_with"p" && u exists"#),
            r#"m.a[2].b contains "x" && t starts_with "p" && u exists"#
        );
    }

    #[test]
    fn prints_parentheses_only_where_precedence_needs_them() {
        assert_eq!(canonical("(a=1 && b=2) || c=3"), "a = 1 && b = 2 || c = 3");
        assert_eq!(
            canonical("a=1 && (b=2 || c=3)"),
            "a = 1 && (b = 2 || c = 3)"
        );
        assert_eq!(canonical("((a=1))"), "a = 1");
        assert_eq!(canonical("!a=1"), "!(a = 1)");
        assert_eq!(canonical("!!a=1"), "!!(a = 1)");
        assert_eq!(canonical("!(a=1 || b=2)"), "!(a = 1 || b = 2)");
    }

    #[test]
    fn prints_literals_canonically() {
        assert_eq!(canonical(r#"a = "q\"\u00e9\n""#), r#"a = "q\"é\n""#);
        assert_eq!(canonical("a = 1.50"), "a = 1.5");
        assert_eq!(canonical("a = 1E2"), "a = 100.0");
        assert_eq!(canonical("a = 1e300"), "a = 1e300");
        assert_eq!(canonical("a = -0.000001"), "a = -1e-6");
        assert_eq!(canonical("a = -0"), "a = 0");
        assert_eq!(canonical("a = null || b = true"), "a = null || b = true");
        assert_eq!(
            canonical("a > 2026-11-14T00:00:00.5+02:00"),
            "a > 2026-11-13T22:00:00.500000Z"
        );
    }

    #[test]
    fn examples_in_the_documentation_hold() {
        assert_eq!(
            canonical("(a=1&&b=2)||!c exists"),
            "a = 1 && b = 2 || !(c exists)"
        );
        assert_eq!(
            canonical("n in[1 ,2]&&(x=1||y=2)"),
            "n in [1, 2] && (x = 1 || y = 2)"
        );
        assert_eq!(
            canonical("due>2026-11-14T00:00:00.5+02:00"),
            "due > 2026-11-13T22:00:00.500000Z"
        );
    }

    #[test]
    fn prints_hand_built_trees_as_text_that_parses() {
        let leaf = parse_filter("a = 1").unwrap();
        let nested = Expr::And(vec![
            Expr::And(vec![leaf.clone(), leaf.clone()]),
            Expr::Or(vec![Expr::Or(vec![leaf.clone(), leaf.clone()]), leaf]),
        ]);
        let text = nested.to_string();
        assert_eq!(text, "(a = 1 && a = 1) && ((a = 1 || a = 1) || a = 1)");
        assert!(parse_filter(&text).is_ok());
    }
}
