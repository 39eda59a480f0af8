//! Tests of the filter parser (and, through it, the printer's round trip).

use proptest::prelude::*;

use super::*;
use crate::query::testing::{arb_expr, normalise};

fn parse(src: &str) -> Expr {
    parse_filter(src)
        .unwrap_or_else(|e| panic!("{src:?} should parse: {e}"))
        .without_positions()
}

fn err(src: &str) -> String {
    let e = parse_filter(src).expect_err(src);
    assert_eq!(e.code, "invalid_filter", "{src}");
    e.message
}

fn path(name: &str, steps: Vec<PathStep>) -> Path {
    Path {
        pos: 0,
        name: name.into(),
        steps: steps.into_iter().map(|s| Spanned::new(0, s)).collect(),
    }
}

fn lit(value: Literal) -> Spanned<Literal> {
    Spanned::new(0, value)
}

fn cmp(name: &str, op: CmpOp, value: Literal) -> Expr {
    Expr::Test(Test {
        path: path(name, vec![]),
        op_pos: 0,
        op: TestOp::Compare(op, lit(value)),
    })
}

fn int(name: &str, i: i64) -> Expr {
    cmp(name, CmpOp::Eq, Literal::Integer(i))
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

#[test]
fn parses_every_comparison_operator() {
    for (text, op) in [
        ("=", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
    ] {
        assert_eq!(
            parse(&format!("n {text} 5")),
            cmp("n", op, Literal::Integer(5))
        );
        assert_eq!(
            parse(&format!("n{text}5")),
            cmp("n", op, Literal::Integer(5))
        );
    }
}

#[test]
fn parses_word_operators() {
    let test = |p: Path, op: TestOp| {
        Expr::Test(Test {
            path: p,
            op_pos: 0,
            op,
        })
    };
    assert_eq!(
        parse(r#"tags in [1, "a", true, null]"#),
        test(
            path("tags", vec![]),
            TestOp::In(vec![
                lit(Literal::Integer(1)),
                lit(Literal::String("a".into())),
                lit(Literal::Boolean(true)),
                lit(Literal::Null),
            ])
        )
    );
    assert_eq!(
        parse(r#"meta.tags contains "red""#),
        test(
            path("meta", vec![PathStep::Key("tags".into())]),
            TestOp::Contains(lit(Literal::String("red".into())))
        )
    );
    assert_eq!(
        parse(r#"title starts_with "Ab""#),
        test(
            path("title", vec![]),
            TestOp::StartsWith(lit(Literal::String("Ab".into())))
        )
    );
    assert_eq!(
        parse("meta.a[0].B_2[17] exists"),
        test(
            path(
                "meta",
                vec![
                    PathStep::Key("a".into()),
                    PathStep::Index(0),
                    PathStep::Key("B_2".into()),
                    PathStep::Index(17),
                ]
            ),
            TestOp::Exists
        )
    );
}

#[test]
fn keywords_only_matter_where_they_are_expected() {
    // A field may be called `in` or `true`: the position decides.
    assert_eq!(
        parse("in = true"),
        cmp("in", CmpOp::Eq, Literal::Boolean(true))
    );
    assert_eq!(parse("exists exists").to_string(), "exists exists");
}

#[test]
fn precedence_is_not_then_and_then_or() {
    let (a, b, c, d) = (int("a", 1), int("b", 2), int("c", 3), int("d", 4));
    assert_eq!(
        parse("a=1 || b=2 && c=3 || !d=4"),
        Expr::Or(vec![
            a.clone(),
            Expr::And(vec![b.clone(), c.clone()]),
            not(d.clone())
        ])
    );
    assert_eq!(
        parse("(a=1 || b=2) && !(c=3 && d=4)"),
        Expr::And(vec![
            Expr::Or(vec![a.clone(), b.clone()]),
            not(Expr::And(vec![c.clone(), d.clone()]))
        ])
    );
    assert_eq!(parse("!!a=1"), not(not(a.clone())));
    assert_eq!(parse("! ( a=1 )"), not(a));
}

#[test]
fn nested_conjunctions_flatten_and_parentheses_leave_no_trace() {
    let (a, b, c) = (int("a", 1), int("b", 2), int("c", 3));
    let all = Expr::And(vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(parse("a=1 && (b=2 && c=3)"), all);
    assert_eq!(parse("((a=1 && b=2)) && c=3"), all);
    assert_eq!(parse("(((a=1)))"), a);
    assert_eq!(parse("a=1 || (b=2 || c=3)"), Expr::Or(vec![a, b, c]));
}

#[test]
fn parses_literals() {
    let value = |src: &str| match parse(&format!("x = {src}")) {
        Expr::Test(Test {
            op: TestOp::Compare(_, l),
            ..
        }) => l.value,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        value(r#""a\"b\\c\u00e9\n""#),
        Literal::String("a\"b\\cé\n".into())
    );
    assert_eq!(value(r#""日本""#), Literal::String("日本".into()));
    assert_eq!(value("-12"), Literal::Integer(-12));
    assert_eq!(value("0"), Literal::Integer(0));
    assert_eq!(value("1.5"), Literal::Float(1.5));
    assert_eq!(value("-2E-3"), Literal::Float(-0.002));
    assert_eq!(value("1e2"), Literal::Float(100.0));
    assert_eq!(value("9223372036854775807"), Literal::Integer(i64::MAX));
    assert_eq!(
        value("9223372036854775808"),
        Literal::Float(9_223_372_036_854_775_808.0)
    );
    assert_eq!(value("true"), Literal::Boolean(true));
    assert_eq!(value("false"), Literal::Boolean(false));
    assert_eq!(value("null"), Literal::Null);
    let Literal::Timestamp(t) = value("2026-11-14T00:00:00.5+02:00") else {
        panic!("not a timestamp")
    };
    assert_eq!(t.to_rfc3339(), "2026-11-13T22:00:00.500000Z");
    assert!(matches!(
        value("2026-11-14T00:00:00Z"),
        Literal::Timestamp(_)
    ));
    assert!(matches!(
        value("0000-01-01T00:00:00Z"),
        Literal::Timestamp(_)
    ));
}

#[test]
fn errors_say_where_and_what() {
    let cases = [
        (
            "",
            "filter at position 0: expected a field name, '!' or '(', found the end of the filter",
        ),
        (
            "  ",
            "filter at position 2: expected a field name, '!' or '(', found the end of the filter",
        ),
        (
            "n",
            "filter at position 1: expected an operator (=, !=, >, >=, <, <=, in, contains, starts_with, exists), found the end of the filter",
        ),
        (
            "n like 1",
            "filter at position 2: expected an operator (=, !=, >, >=, <, <=, in, contains, starts_with, exists), found 'like'",
        ),
        (
            "n IN [1]",
            "filter at position 2: expected an operator (=, !=, >, >=, <, <=, in, contains, starts_with, exists), found 'IN' (keywords are lower case)",
        ),
        (
            "n == 1",
            "filter at position 2: use '=' to test equality, not '=='",
        ),
        (
            "n =",
            "filter at position 3: expected a value (a \"string\", number, timestamp, true, false or null), found the end of the filter",
        ),
        (
            "n = True",
            "filter at position 4: expected a value (a \"string\", number, timestamp, true, false or null), found 'True' (keywords are lower case)",
        ),
        (
            "n = abc",
            "filter at position 4: expected a value (a \"string\", number, timestamp, true, false or null), found 'abc' (strings take double quotes)",
        ),
        (
            "n = 'a'",
            "filter at position 4: expected a value (a \"string\", number, timestamp, true, false or null), found ''' (strings take double quotes)",
        ),
        (
            "n = 1 and m = 2",
            "filter at position 6: expected '&&', '||' or the end of the filter, found 'and' (use '&&')",
        ),
        (
            "n = 1 & m = 2",
            "filter at position 6: expected '&&', '||' or the end of the filter, found '&'",
        ),
        (
            "n = 1)",
            "filter at position 5: expected '&&', '||' or the end of the filter, found ')'",
        ),
        (
            "(n = 1",
            "filter at position 6: expected ')' to close the '(' at position 0, found the end of the filter",
        ),
        (
            "(n = 1 m",
            "filter at position 7: expected '&&', '||' or ')', found 'm'",
        ),
        ("n = \"abc", "filter at position 4: unterminated string"),
        ("n = \"a\\\"", "filter at position 4: unterminated string"),
        (
            "n = \"\\x\"",
            "filter at position 4: invalid string: invalid escape",
        ),
        (
            "n = \"a\tb\"",
            "filter at position 4: invalid string: control character (\\u0000-\\u001F) found while parsing a string",
        ),
        ("n = 01", "filter at position 4: invalid number '01'"),
        ("n = 1.", "filter at position 4: invalid number '1.'"),
        ("n = -", "filter at position 4: invalid number '-'"),
        ("n = 12abc", "filter at position 4: invalid number '12abc'"),
        ("n = 1+2", "filter at position 4: invalid number '1+2'"),
        (
            "n = 1e999",
            "filter at position 4: number '1e999' is out of range",
        ),
        (
            "at > 2026-13-01T00:00:00Z",
            "filter at position 5: invalid timestamp '2026-13-01T00:00:00Z'; expected RFC 3339, like 2026-11-14T00:00:00Z",
        ),
        (
            "at > 2026-11-14",
            "filter at position 5: invalid timestamp '2026-11-14'; expected RFC 3339, like 2026-11-14T00:00:00Z",
        ),
        (
            "at > 0000-01-01T00:00:00+01:00",
            "filter at position 5: invalid timestamp '0000-01-01T00:00:00+01:00'; expected RFC 3339, like 2026-11-14T00:00:00Z",
        ),
        (
            "Title = 1",
            "filter at position 0: 'Title' is not a field name; field names are lower case letters, digits and '_', starting with a letter",
        ),
        (
            "1 = 1",
            "filter at position 0: '1' is not a field name; field names are lower case letters, digits and '_', starting with a letter",
        ),
        (
            "meta. = 1",
            "filter at position 5: expected a key (letters, digits, '_') after '.', found ' '",
        ),
        (
            "meta.a-b = 1",
            "filter at position 6: expected an operator (=, !=, >, >=, <, <=, in, contains, starts_with, exists), found '-'",
        ),
        (
            "meta[] = 1",
            "filter at position 5: expected an array index (digits) after '[', found ']'",
        ),
        (
            "meta[-1] = 1",
            "filter at position 5: expected an array index (digits) after '[', found '-'",
        ),
        (
            "meta[1 = 1",
            "filter at position 6: expected ']' after the array index, found ' '",
        ),
        (
            "meta[4294967296] = 1",
            "filter at position 5: array index too large; at most 4294967295",
        ),
        (
            "n in 1",
            "filter at position 5: expected '[' to start the list after 'in', found '1'",
        ),
        (
            "n in [ ]",
            "filter at position 5: the list after 'in' needs at least one value",
        ),
        (
            "n in [1,]",
            "filter at position 8: expected a value (a \"string\", number, timestamp, true, false or null), found ']'",
        ),
        (
            "n in [1 2]",
            "filter at position 8: expected ',' or ']', found '2'",
        ),
        (
            "n exists 1",
            "filter at position 9: expected '&&', '||' or the end of the filter, found '1'",
        ),
        (
            "! ",
            "filter at position 2: expected a field name, '!' or '(', found the end of the filter",
        ),
        (
            "é = 1",
            "filter at position 0: expected a field name, '!' or '(', found 'é'",
        ),
        (
            "n = \"é\" && é",
            "filter at position 12: expected a field name, '!' or '(', found 'é'",
        ),
    ];
    for (src, message) in cases {
        assert_eq!(err(src), message, "{src}");
    }
}

#[test]
fn limits_are_enforced() {
    let long = format!("n = \"{}\"", "a".repeat(MAX_FILTER_BYTES));
    assert_eq!(
        err(&long),
        format!(
            "filter is {} bytes long; at most 4096 are accepted",
            MAX_FILTER_BYTES + 6
        )
    );

    let nested = |levels: usize| format!("{}n = 1{}", "(".repeat(levels), ")".repeat(levels));
    assert!(parse_filter(&nested(MAX_DEPTH)).is_ok());
    assert_eq!(
        err(&nested(MAX_DEPTH + 1)),
        "filter at position 32: nested more than 32 levels deep"
    );
    let nots = |levels: usize| format!("{}n = 1", "!".repeat(levels));
    assert!(parse_filter(&nots(MAX_DEPTH)).is_ok());
    assert!(err(&nots(MAX_DEPTH + 1)).contains("nested more than 32 levels deep"));
    // `!(` counts once, so the canonical form of a deep filter is as deep as the original.
    let text = format!(
        "{}(n = 1{}",
        "!(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH)
    );
    let expr = parse_filter(&text).unwrap();
    assert!(parse_filter(&expr.to_string()).is_ok());
    // Deep input fails cleanly instead of overflowing the stack.
    assert!(err(&"(".repeat(4000)).contains("nested more than 32 levels deep"));
    assert!(err(&"!".repeat(4000)).contains("nested more than 32 levels deep"));

    let tests = |count: usize| vec!["n = 1"; count].join(" && ");
    assert!(parse_filter(&tests(MAX_COMPARISONS)).is_ok());
    assert_eq!(
        err(&tests(MAX_COMPARISONS + 1)),
        format!(
            "filter at position {}: a filter holds at most 64 comparisons",
            MAX_COMPARISONS * 9
        )
    );

    let list = |count: usize| format!("n in [{}]", vec!["1"; count].join(","));
    assert!(parse_filter(&list(MAX_LIST_VALUES)).is_ok());
    assert_eq!(
        err(&list(MAX_LIST_VALUES + 1)),
        "filter at position 206: a list holds at most 100 values"
    );
}

#[test]
fn positions_are_byte_offsets() {
    let expr = parse_filter("é = 1").map(|_| ()).unwrap_err();
    assert!(expr.message.contains("position 0"));
    let Expr::And(items) = parse_filter(r#"title = "héllo" && meta.k[2] != 3"#).unwrap() else {
        panic!("not an and")
    };
    let Expr::Test(test) = &items[1] else {
        panic!("not a test")
    };
    assert_eq!(test.path.pos, 20);
    assert_eq!(test.path.steps[0].pos, 24);
    assert_eq!(test.path.steps[1].pos, 26);
    assert_eq!(test.op_pos, 30);
    let TestOp::Compare(_, value) = &test.op else {
        panic!("not a comparison")
    };
    assert_eq!(value.pos, 33);
}

/// `parse(print(e))` is `e` up to positions and normalisation, and the canonical text is a
/// fixed point. For trees from the parser (`parsed`), printing is already canonical.
fn assert_round_trip(expr: &Expr, parsed: bool) -> Result<(), TestCaseError> {
    let reparse = |text: &str| {
        parse_filter(text).map_err(|e| TestCaseError::fail(format!("{text:?} does not parse: {e}")))
    };
    let printed = expr.to_string();
    let reparsed = reparse(&printed)?;
    prop_assert_eq!(reparsed.without_positions(), normalise(expr), "{}", printed);
    let canonical = reparsed.to_string();
    if parsed {
        prop_assert_eq!(&canonical, &printed);
    }
    prop_assert_eq!(reparse(&canonical)?.to_string(), canonical);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics_and_errors_point_into_it(src in "\\PC{0,80}") {
        match parse_filter(&src) {
            Ok(expr) => assert_round_trip(&expr, true)?,
            Err(e) => {
                prop_assert_eq!(&e.code, "invalid_filter");
                let pos: usize = e
                    .message
                    .strip_prefix("filter at position ")
                    .and_then(|rest| rest.split(':').next())
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| TestCaseError::fail(e.message.clone()))?;
                prop_assert!(src.is_char_boundary(pos), "{} in {:?}", pos, src);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let src = String::from_utf8_lossy(&bytes);
        let _ = parse_filter(&src);
    }

    #[test]
    fn generated_trees_print_and_parse_back(expr in arb_expr()) {
        assert_round_trip(&expr, false)?;
    }

    #[test]
    fn near_valid_token_soup_never_panics_and_round_trips(
        src in "(title|n|meta|tags|created_at|Title|\\.a|\\.|\\[0\\]|\\[|\\]|,| |=|==|!=|>|>=|<|<=|in|contains|starts_with|exists|&&|&|\\|\\||!|\\(|\\)|\"x\"|\"|\\\\|\\\\u00e9|1|-1|1\\.5|1e3|2026-11-14T00:00:00Z|2026-|true|false|null|é|\t)*"
    ) {
        if let Ok(expr) = parse_filter(&src) {
            assert_round_trip(&expr, true)?;
        }
    }

    #[test]
    fn valid_filters_built_from_tokens_round_trip(
        parts in proptest::collection::vec(
            (
                "(title|n|meta\\.a|tags\\[1\\]|due|done)",
                "(=|!=|>|>=|<|<=)",
                "(\"[a-z]{0,3}\"|-?[1-9][0-9]{0,3}|0|[0-9]\\.[0-9]{1,3}|true|false|null|2026-11-14T0[0-9]:00:00Z)",
                "( && | \\|\\| |&&!|\\|\\|!)",
            ),
            1..8,
        )
    ) {
        let mut src = String::new();
        for (i, (path, op, value, join)) in parts.iter().enumerate() {
            src.push_str(&format!("{path} {op} {value}"));
            if i + 1 < parts.len() {
                src.push_str(join);
            }
        }
        let expr = parse_filter(&src).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
        assert_round_trip(&expr, true)?;
    }
}
