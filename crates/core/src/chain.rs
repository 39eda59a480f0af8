//! The audit log's hash chain: the canonical encoding of one entry, its SHA-256, and a
//! verifier that walks entries in order and names the first broken link. The server, the
//! CLI's offline check and anyone else verifying an export use this one definition
//! (documented in `docs/security.md`).
//!
//! An entry's hash covers every field of the entry, its position (`seq`) and the hash of
//! the entry before it, so an edited field, a removed, inserted or reordered entry, or a
//! renumbered one breaks the chain where it happened. The chain has no secret: whoever can
//! write the catalog database can rewrite it whole, from the first entry on. A published
//! head (`seq` and hash, logged periodically) is what catches that, and a cut tail.

use sha2::{Digest, Sha256};

/// The hash the first entry of a new log follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tag that starts every encoded entry (a later encoding gets a new tag).
const TAG: &[u8] = b"bulkhead.audit.v1";

/// The fields of one entry that its hash covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    pub seq: i64,
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub tenant: Option<&'a str>,
    pub outcome: &'a str,
    pub request_id: &'a str,
    pub detail: Option<&'a str>,
    /// The client address of a request, where one was recorded.
    pub source: Option<&'a str>,
}

fn text(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            text(out, s);
        }
    }
}

/// The canonical encoding: the tag, then each field in a fixed order — integers as 8 bytes
/// big-endian, text as its length (8 bytes big-endian) and its UTF-8 bytes, an optional
/// text as one byte (0 absent, 1 present) followed by the text when present — and last the
/// previous entry's hash (as its 64 hex characters, length-prefixed like any text).
pub fn encode(fields: &Fields<'_>, prev_hash: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(TAG);
    out.extend_from_slice(&fields.seq.to_be_bytes());
    out.extend_from_slice(&fields.at.to_be_bytes());
    text(&mut out, fields.actor);
    text(&mut out, fields.action);
    text(&mut out, fields.target);
    optional(&mut out, fields.tenant);
    text(&mut out, fields.outcome);
    text(&mut out, fields.request_id);
    optional(&mut out, fields.detail);
    optional(&mut out, fields.source);
    text(&mut out, prev_hash);
    out
}

/// The entry's hash: lower-case hex of the SHA-256 of [`encode`].
pub fn hash(fields: &Fields<'_>, prev_hash: &str) -> String {
    hex::encode(Sha256::digest(encode(fields, prev_hash)))
}

/// How a link is broken.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The entry's content does not match its hash: a field, or its position, was changed.
    Edited,
    /// The entry does not follow the one before it: an entry was removed, inserted or
    /// moved between them.
    Unlinked,
    /// The entry carries no hash: it was written around the server.
    Unchained,
    /// The first entry does not follow the recorded anchor (where the chain starts after
    /// retention): entries at the start were removed or replaced.
    NoAnchor,
    /// The entry at a published head's position has another hash: the log was rewritten.
    HeadRewritten,
    /// The log ends before a published head: its tail was cut off.
    Truncated,
}

impl std::fmt::Display for BreakKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BreakKind::Edited => "edited",
            BreakKind::Unlinked => "unlinked",
            BreakKind::Unchained => "unchained",
            BreakKind::NoAnchor => "no_anchor",
            BreakKind::HeadRewritten => "head_rewritten",
            BreakKind::Truncated => "truncated",
        })
    }
}

/// The first broken link found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Break {
    /// The entry where the chain breaks (for a cut tail: the published head's position).
    pub seq: i64,
    pub kind: BreakKind,
    pub detail: String,
}

/// A position in the chain and the hash there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Link {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for Link {
    type Err = String;

    /// `seq:hash`, as the server logs a head.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not seq:hash"))?;
        let seq = seq
            .parse()
            .map_err(|_| format!("{seq:?} is not an entry number"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hash:?} is not a SHA-256 in hex"));
        }
        Ok(Link {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// Walks entries in `seq` order and stops at the first broken link.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The hash the next entry must follow.
    expected_prev: String,
    last: Option<Link>,
    first: Option<i64>,
    head: Option<Link>,
    head_seen: bool,
    checked: u64,
}

impl Verifier {
    /// A walk from `anchor`: the hash the first entry follows (`None`: the log's start,
    /// [`GENESIS`]). `head`, when given, is a published head the log must still hold.
    pub fn new(anchor: Option<&str>, head: Option<Link>) -> Verifier {
        Verifier {
            expected_prev: anchor.unwrap_or(GENESIS).to_owned(),
            last: None,
            first: None,
            head,
            head_seen: false,
            checked: 0,
        }
    }

    /// Checks the next entry.
    pub fn check(
        &mut self,
        fields: &Fields<'_>,
        prev_hash: Option<&str>,
        hash: Option<&str>,
    ) -> Result<(), Break> {
        let seq = fields.seq;
        let broken = |kind, detail: String| Err(Break { seq, kind, detail });
        let (Some(prev), Some(stored)) = (prev_hash, hash) else {
            return broken(BreakKind::Unchained, format!("entry {seq} carries no hash"));
        };
        if let Some(last) = &self.last
            && seq <= last.seq
        {
            return broken(
                BreakKind::Unlinked,
                format!("entry {seq} comes after entry {}", last.seq),
            );
        }
        if self::hash(fields, prev) != stored {
            return broken(
                BreakKind::Edited,
                format!("entry {seq} does not match its hash"),
            );
        }
        if prev != self.expected_prev {
            return match &self.last {
                None if self.first.is_none() => broken(
                    BreakKind::NoAnchor,
                    format!("entry {seq}, the first, does not follow the chain's anchor"),
                ),
                _ => broken(
                    BreakKind::Unlinked,
                    format!(
                        "entry {seq} does not follow entry {}",
                        self.last.as_ref().map_or(0, |l| l.seq)
                    ),
                ),
            };
        }
        if let Some(head) = &self.head
            && head.seq == seq
        {
            if head.hash != stored {
                return broken(
                    BreakKind::HeadRewritten,
                    format!("entry {seq} is not the published head {head}"),
                );
            }
            self.head_seen = true;
        }
        self.first.get_or_insert(seq);
        self.checked += 1;
        self.expected_prev = stored.to_owned();
        self.last = Some(Link {
            seq,
            hash: stored.to_owned(),
        });
        Ok(())
    }

    /// Ends the walk: a published head past the last entry means the tail was cut; one
    /// missing inside the walked range, that the log was rewritten.
    pub fn finish(&self) -> Result<(), Break> {
        if let Some(head) = &self.head
            && !self.head_seen
        {
            let last = self.last.as_ref().map_or(0, |l| l.seq);
            if head.seq > last {
                return Err(Break {
                    seq: head.seq,
                    kind: BreakKind::Truncated,
                    detail: format!(
                        "the log ends at entry {last}, before the published head {head}"
                    ),
                });
            }
            // A head before the first entry walked is not this walk's to judge (an export
            // that starts later, or entries retention removed).
            if self.first.is_some_and(|first| head.seq >= first) {
                return Err(Break {
                    seq: head.seq,
                    kind: BreakKind::HeadRewritten,
                    detail: format!("the published head {head} is no longer in the log"),
                });
            }
        }
        Ok(())
    }

    /// Entries checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The last entry checked.
    pub fn last(&self) -> Option<&Link> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, actor: &str) -> Fields<'_> {
        Fields {
            seq,
            at: 1_000 * seq,
            actor,
            action: "tenant.create",
            target: "acme",
            tenant: Some("acme"),
            outcome: "ok",
            request_id: "r",
            detail: None,
            source: None,
        }
    }

    /// A chain of `n` entries: (fields actor, prev, hash).
    fn chain(n: i64) -> Vec<(i64, String, String)> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let h = hash(&entry(seq, "a"), &prev);
                let row = (seq, prev.clone(), h.clone());
                prev = h;
                row
            })
            .collect()
    }

    fn walk(
        rows: &[(i64, String, String)],
        actor_of: impl Fn(i64) -> &'static str,
    ) -> Result<(), Break> {
        let mut v = Verifier::new(None, None);
        for (seq, prev, h) in rows {
            v.check(&entry(*seq, actor_of(*seq)), Some(prev), Some(h))?;
        }
        v.finish()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(walk(&chain(5), |_| "a"), Ok(()));
    }

    #[test]
    fn each_kind_of_tampering_is_named_where_it_happened() {
        let rows = chain(5);
        let edited = walk(&rows, |s| if s == 3 { "b" } else { "a" }).unwrap_err();
        assert_eq!((edited.seq, edited.kind), (3, BreakKind::Edited));
        let mut removed = rows.clone();
        removed.remove(2);
        let e = walk(&removed, |_| "a").unwrap_err();
        assert_eq!((e.seq, e.kind), (4, BreakKind::Unlinked));
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        assert_eq!(
            walk(&swapped, |_| "a").unwrap_err().kind,
            BreakKind::Unlinked
        );
        let e = walk(&rows[1..], |_| "a").unwrap_err();
        assert_eq!((e.seq, e.kind), (2, BreakKind::NoAnchor));
    }

    #[test]
    fn a_published_head_catches_a_cut_tail_and_a_rewrite() {
        let rows = chain(5);
        let head: Link = format!("5:{}", rows[4].2).parse().unwrap();
        let mut v = Verifier::new(None, Some(head.clone()));
        for (seq, prev, h) in &rows[..3] {
            v.check(&entry(*seq, "a"), Some(prev), Some(h)).unwrap();
        }
        assert_eq!(v.finish().unwrap_err().kind, BreakKind::Truncated);
        let other = Link {
            seq: 5,
            hash: GENESIS.into(),
        };
        let mut v = Verifier::new(None, Some(other));
        let mut last = Ok(());
        for (seq, prev, h) in &rows {
            last = v.check(&entry(*seq, "a"), Some(prev), Some(h));
        }
        assert_eq!(last.unwrap_err().kind, BreakKind::HeadRewritten);
    }

    #[test]
    fn every_field_is_covered() {
        let base = entry(1, "a");
        let h = hash(&base, GENESIS);
        let variants = [
            Fields { seq: 2, ..base },
            Fields { at: 7, ..base },
            Fields { actor: "b", ..base },
            Fields {
                action: "x",
                ..base
            },
            Fields {
                target: "x",
                ..base
            },
            Fields {
                tenant: None,
                ..base
            },
            Fields {
                outcome: "denied:x",
                ..base
            },
            Fields {
                request_id: "x",
                ..base
            },
            Fields {
                detail: Some(""),
                ..base
            },
            Fields {
                source: Some(""),
                ..base
            },
        ];
        for v in variants {
            assert_ne!(hash(&v, GENESIS), h, "{v:?}");
        }
        // Length prefixes keep field boundaries: moving a character between fields changes it.
        let a = Fields {
            actor: "ab",
            action: "c",
            ..base
        };
        let b = Fields {
            actor: "a",
            action: "bc",
            ..base
        };
        assert_ne!(hash(&a, GENESIS), hash(&b, GENESIS));
    }
}
