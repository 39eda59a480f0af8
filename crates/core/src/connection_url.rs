//! [`ConnectionUrl`]: how to reach a database server, which usually carries a password.
//!
//! The full value is kept (the catalog stores it and engines connect with it), but everything
//! that prints it — `Display`, `Debug`, API views, audit records, error messages — uses
//! [`ConnectionUrl::redacted`]. Redaction errs on the side of hiding: when a malformed URL
//! leaves it unclear where a password ends, more than the password is replaced.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What replaces a secret in printed connection strings.
pub const REDACTED: &str = "***";

/// A connection string: a URL (`postgres://user:password@host:5432/db?sslmode=require`) or a
/// key=value list (`host=db user=app password='s e c'`). Prints only in redacted form;
/// [`ConnectionUrl::expose`] gives the real value to the code that connects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    pub fn new(value: impl Into<String>) -> Self {
        ConnectionUrl(value.into())
    }

    /// The full value, password included. Only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value with every password replaced by `***`: the userinfo password of a URL, and
    /// any `…password=` parameter (URL query or key=value form, `sslpassword` too).
    pub fn redacted(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        let mut last = 0;
        for span in secret_spans(&self.0) {
            out.push_str(&self.0[last..span.start]);
            out.push_str(REDACTED);
            last = span.end;
        }
        out.push_str(&self.0[last..]);
        out
    }

    /// This value, redacted, as a `ConnectionUrl` (for views that must never carry secrets).
    pub fn to_redacted(&self) -> ConnectionUrl {
        ConnectionUrl(self.redacted())
    }

    /// Whether any secret is present (so `redacted` differs from the value).
    pub fn has_secret(&self) -> bool {
        !secret_spans(&self.0).is_empty()
    }

    /// Removes this URL's secrets from a text that may quote it, e.g. a driver's error
    /// message: the whole value is replaced by its redacted form, then any remaining copy of
    /// a password (as written, or percent-decoded) by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.0, &self.redacted());
        for span in secret_spans(&self.0) {
            let raw = &self.0[span];
            for secret in [raw.to_owned(), percent_decode(raw)] {
                if !secret.is_empty() {
                    out = out.replace(&secret, REDACTED);
                }
            }
        }
        out
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// The full value: the catalog stores it. API views hold a [`ConnectionUrl::to_redacted`]
/// copy instead, so what they serialize is already redacted.
impl Serialize for ConnectionUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConnectionUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ConnectionUrl)
    }
}

/// Byte ranges of every secret in `s`, sorted and merged.
fn secret_spans(s: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    match url_scheme_end(s) {
        Some(scheme_end) => {
            let rest = scheme_end + 3;
            // The userinfo ends at the last '@': a password with an unencoded '@', '/' or '?'
            // is then still hidden whole (an '@' in the query hides more than needed).
            if let Some(at) = s[rest..].rfind('@')
                && let Some(colon) = s[rest..rest + at].find(':')
                && colon + 1 < at
            {
                spans.push(rest + colon + 1..rest + at);
            }
            query_secrets(s, rest, &mut spans);
        }
        None => key_value_secrets(s, &mut spans),
    }
    spans.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// Where `scheme` ends in `scheme://…`; `None` for a key=value list (which may well contain
/// `://` inside a value).
fn url_scheme_end(s: &str) -> Option<usize> {
    let end = s.find("://")?;
    let scheme = &s[..end];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(end)
}

fn is_secret_key(key: &str) -> bool {
    key.len() >= 8
        && key.is_char_boundary(key.len() - 8)
        && key[key.len() - 8..].eq_ignore_ascii_case("password")
}

/// `?password=…` / `&sslpassword=…` anywhere after the scheme; a value ends at `&` or `#`.
fn query_secrets(s: &str, from: usize, spans: &mut Vec<Range<usize>>) {
    let bytes = s.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'?' || bytes[i] == b'&' {
            let key_start = i + 1;
            let key_end = s[key_start..]
                .find(['=', '&', '#'])
                .map_or(s.len(), |n| key_start + n);
            if key_end < s.len() && bytes[key_end] == b'=' && is_secret_key(&s[key_start..key_end])
            {
                let value_start = key_end + 1;
                let value_end = s[value_start..]
                    .find(['&', '#'])
                    .map_or(s.len(), |n| value_start + n);
                if value_end > value_start {
                    spans.push(value_start..value_end);
                }
                i = value_end;
                continue;
            }
        }
        i += 1;
    }
}

/// `key = value` pairs separated by whitespace; values may be single-quoted with `\` escapes.
/// When the text stops making sense and a password keyword follows, everything after that
/// keyword is treated as secret.
fn key_value_secrets(s: &str, spans: &mut Vec<Range<usize>>) {
    let bytes = s.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    while i < bytes.len() {
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        i = skip_ws(i);
        if i >= bytes.len() || bytes[i] != b'=' {
            return malformed_tail(s, key_start, spans);
        }
        i = skip_ws(i + 1);
        let value_start = i;
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => break,
                    Some(b'\\') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            i = i.min(bytes.len());
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        if is_secret_key(key) && i > value_start {
            spans.push(value_start..i);
        }
        i = skip_ws(i);
    }
}

fn malformed_tail(s: &str, from: usize, spans: &mut Vec<Range<usize>>) {
    let lower = s[from..].to_ascii_lowercase();
    if let Some(n) = lower.find("password") {
        let start = from + n + "password".len();
        if start < s.len() {
            spans.push(start..s.len());
        }
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn red(s: &str) -> String {
        ConnectionUrl::new(s).redacted()
    }

    #[test]
    fn url_passwords_are_replaced_and_the_rest_kept() {
        assert_eq!(
            red("postgres://app:s3cret@db.internal:5432/main?sslmode=require"),
            "postgres://app:***@db.internal:5432/main?sslmode=require"
        );
        assert_eq!(red("postgresql://app@db/main"), "postgresql://app@db/main");
        assert_eq!(red("postgres://db:5432/main"), "postgres://db:5432/main");
        assert_eq!(red("postgres://:pw@db/x"), "postgres://:***@db/x");
        assert_eq!(
            red("postgres://u:p@ss/w?rd#x@db/main"),
            "postgres://u:***@db/main"
        );
        assert_eq!(
            red("postgres://u@db/main?sslmode=require&password=hunter2&x=1"),
            "postgres://u@db/main?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            red("postgres://db/main?sslpassword=k3y"),
            "postgres://db/main?sslpassword=***"
        );
        assert_eq!(red(""), "");
    }

    #[test]
    fn key_value_passwords_are_replaced() {
        assert_eq!(
            red("host=db user=app password=s3cret dbname=main"),
            "host=db user=app password=*** dbname=main"
        );
        assert_eq!(
            red("host=db PASSWORD = 'a b\\'c' dbname=main"),
            "host=db PASSWORD = *** dbname=main"
        );
        assert_eq!(red("host=db user=app"), "host=db user=app");
        assert_eq!(red("host=db password"), "host=db password");
        assert_eq!(
            red("host=db garbage password x"),
            "host=db garbage password***"
        );
        assert_eq!(red("password='unterminated"), "password=***");
        assert_eq!(
            red("host=db password='Zq9://x@y' user=app"),
            "host=db password=*** user=app"
        );
    }

    #[test]
    fn printing_never_shows_the_password_but_serde_keeps_it() {
        let url = ConnectionUrl::new("postgres://app:s3cret@db/main");
        assert!(!format!("{url}").contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.has_secret());
        assert!(!ConnectionUrl::new("postgres://db/main").has_secret());
        let json = serde_json::to_string(&url).unwrap();
        assert!(json.contains("s3cret"));
        assert_eq!(serde_json::from_str::<ConnectionUrl>(&json).unwrap(), url);
        assert!(
            !serde_json::to_string(&url.to_redacted())
                .unwrap()
                .contains("s3cret")
        );
    }

    #[test]
    fn scrub_removes_quoted_urls_and_bare_passwords() {
        let url = ConnectionUrl::new("postgres://app:p%40ss@db/main");
        let text = "connect postgres://app:p%40ss@db/main failed; auth p@ss rejected (p%40ss)";
        let scrubbed = url.scrub(text);
        assert!(
            !scrubbed.contains("p@ss") && !scrubbed.contains("p%40ss"),
            "{scrubbed}"
        );
        assert!(
            scrubbed.contains("postgres://app:***@db/main"),
            "{scrubbed}"
        );
    }

    /// A password that cannot occur by chance in the other parts (they use `[a-z]` only).
    fn password() -> impl Strategy<Value = String> {
        "Zq9[A-Za-z0-9!#$%&'()*+,;=:@/?~ ._\\\\-]{0,24}"
    }

    fn encode(raw: &str) -> String {
        raw.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn url_userinfo_passwords_never_survive_redaction(
            user in "[a-z]{1,8}", host in "[a-z]{1,12}", db in "[a-z]{1,8}",
            pw in password(), encoded in any::<bool>(), port in proptest::option::of(1u16..),
        ) {
            let pw = if encoded { encode(&pw) } else { pw };
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("postgres://{user}:{pw}@{host}{port}/{db}?sslmode=require");
            let out = red(&url);
            prop_assert!(!out.contains(&pw), "{out}");
            prop_assert!(out.starts_with(&format!("postgres://{user}:***@{host}{port}/{db}")), "{out}");
            prop_assert_eq!(ConnectionUrl::new(url.as_str()).scrub(&url), out);
        }

        #[test]
        fn url_query_passwords_never_survive_redaction(
            host in "[a-z]{1,12}", pw in password(), key in "(password|sslpassword|PASSWORD)",
        ) {
            let pw = encode(&pw);
            let url = format!("postgresql://{host}/main?{key}={pw}&sslmode=require");
            let out = red(&url);
            prop_assert!(!out.contains(&pw), "{out}");
            prop_assert_eq!(out, format!("postgresql://{host}/main?{key}=***&sslmode=require"));
        }

        #[test]
        fn key_value_passwords_never_survive_redaction(
            host in "[a-z]{1,12}", db in "[a-z]{1,8}", pw in password(), spaced in any::<bool>(),
        ) {
            let quoted = pw.replace('\\', "\\\\").replace('\'', "\\'");
            let eq = if spaced { " = " } else { "=" };
            let dsn = format!("host={host} password{eq}'{quoted}' dbname={db}");
            let out = red(&dsn);
            prop_assert!(!out.contains(&pw), "{out}");
            prop_assert_eq!(out, format!("host={host} password{eq}*** dbname={db}"));
            if !pw.contains(|c: char| c.is_ascii_whitespace()) {
                let bare = format!("host={host} password={pw} dbname={db}");
                prop_assert_eq!(red(&bare), format!("host={host} password=*** dbname={db}"));
            }
        }

        #[test]
        fn redaction_never_panics_on_any_text(s in "\\PC{0,60}") {
            let url = ConnectionUrl::new(s.as_str());
            let _ = (url.redacted(), url.scrub(&s), url.has_secret());
        }
    }
}
