//! Variables in record rules (`owner = @user.id`): a rule is parsed once, then bound to the
//! caller's values before it is typed against the collection.
//!
//! Binding fails closed: when any variable of a rule has no usable value for this caller (an
//! API key has no `@user.id`; a claim may be missing or be an object), the whole rule matches
//! nothing. Replacing only the one test by `false` would not be safe, because a negation
//! around it (`!(owner = @user.id)`) would turn it into `true`.

use serde_json::Value;

use super::ast::{Expr, Literal, Spanned, Test, TestOp};

/// The values `@user.*` variables read.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct UserVars {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub claims: serde_json::Map<String, Value>,
}

impl UserVars {
    /// The literal a variable path stands for, if this caller has a scalar value for it.
    pub fn lookup(&self, path: &[String]) -> Option<Literal> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["user", "id"] => self.id.clone().map(Literal::String),
            ["user", "email"] => self.email.clone().map(Literal::String),
            ["user", "claims", first, rest @ ..] => {
                let mut value = self.claims.get(*first)?;
                for step in rest {
                    value = value.as_object()?.get(*step)?;
                }
                scalar(value)
            }
            _ => None,
        }
    }
}

fn scalar(value: &Value) -> Option<Literal> {
    match value {
        Value::String(s) => Some(Literal::String(s.clone())),
        Value::Bool(b) => Some(Literal::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(Literal::Integer(i)),
            None => n.as_f64().filter(|f| f.is_finite()).map(Literal::Float),
        },
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Whether the expression uses any variable.
pub fn has_variables(expr: &Expr) -> bool {
    let lit = |l: &Spanned<Literal>| matches!(l.value, Literal::Variable(_));
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().any(has_variables),
        Expr::Not(inner) => has_variables(inner),
        Expr::Test(test) => match &test.op {
            TestOp::Compare(_, v) | TestOp::Contains(v) | TestOp::StartsWith(v) => lit(v),
            TestOp::In(values) => values.iter().any(lit),
            TestOp::Exists => false,
        },
    }
}

/// `expr` with every variable replaced by its value, or `None` when some variable has no
/// value for this caller (the rule then matches nothing).
pub fn bind(expr: &Expr, vars: &UserVars) -> Option<Expr> {
    let lit = |l: &Spanned<Literal>| -> Option<Spanned<Literal>> {
        match &l.value {
            Literal::Variable(path) => vars.lookup(path).map(|v| Spanned::new(l.pos, v)),
            _ => Some(l.clone()),
        }
    };
    Some(match expr {
        Expr::And(items) => Expr::And(items.iter().map(|e| bind(e, vars)).collect::<Option<_>>()?),
        Expr::Or(items) => Expr::Or(items.iter().map(|e| bind(e, vars)).collect::<Option<_>>()?),
        Expr::Not(inner) => Expr::Not(Box::new(bind(inner, vars)?)),
        Expr::Test(test) => Expr::Test(Test {
            path: test.path.clone(),
            op_pos: test.op_pos,
            op: match &test.op {
                TestOp::Compare(op, v) => TestOp::Compare(*op, lit(v)?),
                TestOp::Contains(v) => TestOp::Contains(lit(v)?),
                TestOp::StartsWith(v) => TestOp::StartsWith(lit(v)?),
                TestOp::In(values) => TestOp::In(values.iter().map(lit).collect::<Option<_>>()?),
                TestOp::Exists => TestOp::Exists,
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse::parse_filter;

    fn vars() -> UserVars {
        let claims = serde_json::json!({"org": "acme", "level": 3, "nested": {"team": "red"}, "groups": ["a"]});
        UserVars {
            id: Some("u1".into()),
            email: Some("a@example.com".into()),
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn variables_parse_print_and_bind() {
        let expr = parse_filter(
            "owner = @user.id && (team = @user.claims.nested.team || n > @user.claims.level)",
        )
        .unwrap();
        assert!(has_variables(&expr));
        assert_eq!(
            expr.to_string(),
            "owner = @user.id && (team = @user.claims.nested.team || n > @user.claims.level)"
        );
        let bound = bind(&expr, &vars()).unwrap();
        assert!(!has_variables(&bound));
        assert_eq!(
            bound.to_string(),
            "owner = \"u1\" && (team = \"red\" || n > 3)"
        );
    }

    #[test]
    fn unbound_variables_fail_the_whole_rule() {
        let expr = parse_filter("!(owner = @user.id)").unwrap();
        assert!(bind(&expr, &UserVars::default()).is_none());
        let expr = parse_filter("tag = @user.claims.groups").unwrap();
        assert!(bind(&expr, &vars()).is_none(), "arrays are not scalars");
        let expr = parse_filter("tag = @user.claims.missing").unwrap();
        assert!(bind(&expr, &vars()).is_none());
    }

    #[test]
    fn unknown_variables_are_refused_with_a_position() {
        for bad in [
            "owner = @tenant.id",
            "owner = @user",
            "owner = @user.claims",
            "a = @",
        ] {
            let err = parse_filter(bad).unwrap_err();
            assert!(
                err.message.contains("unknown variable"),
                "{bad}: {}",
                err.message
            );
        }
    }
}
