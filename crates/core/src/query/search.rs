//! Full-text search: the one tokenizer, used both to index text and to read queries, and the
//! `q=` syntax.
//!
//! Engines depend on [`tokenize`] behaving exactly as documented: a change to it changes what
//! existing indexes mean, so it needs a reindex.

use super::{SearchQuery, SearchTerm};
use crate::error::Error;

/// Longest token kept; longer ones are dropped (they are not words anyone searches for).
pub const MAX_TOKEN_BYTES: usize = 64;
/// Longest `q=` accepted.
pub const MAX_SEARCH_BYTES: usize = 1024;
/// Most terms in one query.
pub const MAX_SEARCH_TERMS: usize = 32;

/// Splits on every char that is not `char::is_alphanumeric()`, lowercases each piece
/// (`to_lowercase`), drops empty pieces and pieces longer than [`MAX_TOKEN_BYTES`] bytes
/// (measured after lowercasing, which is what gets stored).
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .filter(|t| t.len() <= MAX_TOKEN_BYTES)
        .collect()
}

fn error_at(pos: usize, why: impl std::fmt::Display) -> Error {
    Error::bad_request("invalid_search", format!("search at position {pos}: {why}"))
}

/// Parses `q=`: words (all must match), `"quoted phrases"` and `prefix*`.
pub fn parse_search(src: &str) -> Result<SearchQuery, Error> {
    if src.len() > MAX_SEARCH_BYTES {
        return Err(Error::bad_request(
            "invalid_search",
            format!(
                "search is {} bytes long; at most {MAX_SEARCH_BYTES} are accepted",
                src.len()
            ),
        ));
    }
    let mut terms = Vec::new();
    let mut push = |pos: usize, term: SearchTerm| {
        if terms.len() == MAX_SEARCH_TERMS {
            return Err(error_at(
                pos,
                format!("a search holds at most {MAX_SEARCH_TERMS} terms"),
            ));
        }
        terms.push(term);
        Ok(())
    };
    let bytes = src.as_bytes();
    let mut pos = 0;
    // Every boundary below sits next to an ASCII byte (whitespace, '"', '*'), so slicing at
    // it is safe on any UTF-8 input.
    while pos < bytes.len() {
        match bytes[pos] {
            b if b.is_ascii_whitespace() => pos += 1,
            b'"' => {
                let Some(len) = src[pos + 1..].find('"') else {
                    return Err(error_at(pos, "unterminated quote"));
                };
                let mut tokens = tokenize(&src[pos + 1..pos + 1 + len]);
                match tokens.len() {
                    0 => {}
                    1 => push(pos, SearchTerm::Word(tokens.remove(0)))?,
                    _ => push(pos, SearchTerm::Phrase(tokens))?,
                }
                pos += len + 2;
                if bytes.get(pos) == Some(&b'*') {
                    return Err(error_at(
                        pos,
                        "'*' must directly follow a word, not a phrase",
                    ));
                }
            }
            b'*' => return Err(error_at(pos, "'*' must directly follow a word")),
            _ => {
                let len = bytes[pos..]
                    .iter()
                    .take_while(|b| !(b.is_ascii_whitespace() || **b == b'"' || **b == b'*'))
                    .count();
                let word = &src[pos..pos + len];
                let after = pos + len;
                if bytes.get(after) == Some(&b'*') {
                    if bytes
                        .get(after + 1)
                        .is_some_and(|b| !(b.is_ascii_whitespace() || *b == b'"'))
                    {
                        return Err(error_at(after, "'*' marks a prefix and must end the word"));
                    }
                    let mut tokens = tokenize(word);
                    if tokens.len() != 1 {
                        return Err(error_at(
                            pos,
                            format!(
                                "a prefix must be a single word of letters and digits, found \
                                 '{}*'",
                                word.chars().take(40).collect::<String>()
                            ),
                        ));
                    }
                    push(pos, SearchTerm::Prefix(tokens.remove(0)))?;
                    pos = after + 1;
                } else {
                    let mut tokens = tokenize(word);
                    match tokens.len() {
                        0 => {}
                        1 => push(pos, SearchTerm::Word(tokens.remove(0)))?,
                        _ => push(pos, SearchTerm::Phrase(tokens))?,
                    }
                    pos = after;
                }
            }
        }
    }
    if terms.is_empty() {
        return Err(error_at(
            0,
            "expected at least one word (letters or digits) to search for",
        ));
    }
    Ok(SearchQuery { terms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn word(w: &str) -> SearchTerm {
        SearchTerm::Word(w.into())
    }

    fn phrase(words: &[&str]) -> SearchTerm {
        SearchTerm::Phrase(words.iter().map(|w| (*w).to_owned()).collect())
    }

    fn message(src: &str) -> String {
        let err = parse_search(src).unwrap_err();
        assert_eq!(err.code, "invalid_search");
        err.message
    }

    #[test]
    fn tokenize_splits_lowercases_and_drops_long_tokens() {
        assert_eq!(
            tokenize("Hello, WORLD! e-mail naïve ÉCOLE 42x  "),
            vec!["hello", "world", "e", "mail", "naïve", "école", "42x"]
        );
        let long = "a".repeat(65);
        let exact = "b".repeat(64);
        assert_eq!(
            tokenize(&format!("{long} {exact} c")),
            vec![exact.as_str(), "c"]
        );
        assert!(tokenize(" -- !! ").is_empty());
        // Lowercasing may add a combining mark; the token keeps it (indexing does the same).
        assert_eq!(tokenize("İx"), vec!["i\u{307}x"]);
    }

    #[test]
    fn words_phrases_and_prefixes() {
        let q = parse_search(r#"Rust "Borrow  Checker" async* e-mail "one" """#).unwrap();
        assert_eq!(
            q.terms,
            vec![
                word("rust"),
                phrase(&["borrow", "checker"]),
                SearchTerm::Prefix("async".into()),
                phrase(&["e", "mail"]),
                word("one"),
            ]
        );
        let q = parse_search(r#"a*"b c" -- d"#).unwrap();
        assert_eq!(
            q.terms,
            vec![
                SearchTerm::Prefix("a".into()),
                phrase(&["b", "c"]),
                word("d")
            ]
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        assert_eq!(
            message(r#"a "b c"#),
            "search at position 2: unterminated quote"
        );
        assert_eq!(
            message("  -- "),
            "search at position 0: expected at least one word (letters or digits) to search for"
        );
        assert_eq!(message(""), message("\"\""));
        assert_eq!(
            message("a *b"),
            "search at position 2: '*' must directly follow a word"
        );
        assert_eq!(
            message("a* b**"),
            "search at position 4: '*' marks a prefix and must end the word"
        );
        assert_eq!(
            message("fo*o"),
            "search at position 2: '*' marks a prefix and must end the word"
        );
        assert_eq!(
            message(r#""a b"*"#),
            "search at position 5: '*' must directly follow a word, not a phrase"
        );
        assert_eq!(
            message("ok e-mail*"),
            "search at position 3: a prefix must be a single word of letters and digits, found \
             'e-mail*'"
        );
        assert_eq!(
            message(&"w ".repeat(33)),
            "search at position 64: a search holds at most 32 terms"
        );
        assert!(parse_search(&"w ".repeat(32)).is_ok());
        assert_eq!(
            message(&"a".repeat(1025)),
            "search is 1025 bytes long; at most 1024 are accepted"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_search_never_panics(src in "\\PC{0,80}") {
            let _ = parse_search(&src);
            let _ = tokenize(&src);
        }

        #[test]
        fn near_valid_search_never_panics(src in "(\"|\\*|a|bc|é|-| |ß|İ|\u{301})*") {
            if let Ok(q) = parse_search(&src) {
                prop_assert!(!q.terms.is_empty() && q.terms.len() <= MAX_SEARCH_TERMS);
            }
        }

        #[test]
        fn tokens_are_never_empty_or_long(src in "\\PC{0,80}") {
            // Not "alphanumeric only": lowercasing can add marks ('İ' becomes "i\u{307}").
            for token in tokenize(&src) {
                prop_assert!(!token.is_empty() && token.len() <= MAX_TOKEN_BYTES);
            }
        }
    }
}
