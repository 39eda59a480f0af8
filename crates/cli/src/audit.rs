//! What happened: `bulkhead audit list` (the audit log, newest first, filtered by tenant,
//! actor, action, outcome and time); `bulkhead audit verify` (its hash chain, on the server
//! or offline from an export) and `bulkhead audit export` (NDJSON that verifies offline).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bulkhead_api::{AuditEntry, AuditExportQuery, AuditQuery, AuditVerification};
use bulkhead_client::Client;
use bulkhead_core::TenantId;
use bulkhead_core::chain::Link;
use bulkhead_core::time::Timestamp;
use clap::{Args, Subcommand};

use crate::output;
use crate::printer::{Printer, all_pages};

/// Entries shown when neither `--limit` nor `--all` is given.
pub(crate) const DEFAULT_SHOWN: u32 = 50;

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// List audit entries, newest first (platform admins and operators).
    List(AuditArgs),
    /// Check the audit log's hash chain and report its first broken link: on the server, or
    /// offline in an export (`--file`, no server and no credential needed). Exits non-zero
    /// when the chain is broken.
    Verify {
        /// A head the server published earlier (`seq:hash`, from its log): the log must
        /// still hold it, so a cut tail or a rewritten log is caught.
        #[arg(long, value_parser = |s: &str| s.parse::<Link>())]
        head: Option<Link>,
        /// Check this export (`bulkhead audit export`) instead of asking the server.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Write the audit log, oldest first, as NDJSON with each entry's hashes (verifiable
    /// offline with `bulkhead audit verify --file`).
    Export {
        /// From this time on: RFC 3339, or a time ago (`30m`, `2h`, `7d`).
        #[arg(long, value_parser = parse_when)]
        from: Option<Timestamp>,
        /// Before this time: RFC 3339, or a time ago.
        #[arg(long, value_parser = parse_when)]
        to: Option<Timestamp>,
        /// The file to write (`-`: standard output).
        #[arg(short = 'o', long)]
        output: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only entries about this tenant (also once it is deleted).
    #[arg(long, value_parser = TenantId::parse)]
    pub tenant_id: Option<TenantId>,
    /// Only this actor (`key:k…`, `user:u…`, `bootstrap-admin`, `system`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action, or a prefix ending in `*` (`move.*`).
    #[arg(long)]
    pub action: Option<String>,
    /// `ok`, `denied` (any denial) or `denied:<code>`.
    #[arg(long)]
    pub outcome: Option<String>,
    /// From this time on: RFC 3339, or a time ago (`30m`, `2h`, `7d`).
    #[arg(long, value_parser = parse_when)]
    pub from: Option<Timestamp>,
    /// Before this time: RFC 3339, or a time ago.
    #[arg(long, value_parser = parse_when)]
    pub to: Option<Timestamp>,
    #[command(flatten)]
    pub page: Newest,
}

/// Paging of a log-like listing: the newest few, or everything.
#[derive(Debug, Clone, Args)]
pub struct Newest {
    /// Show at most this many (default 50).
    #[arg(long, conflicts_with = "all")]
    pub limit: Option<u32>,
    /// Continue from the cursor a previous listing printed.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow every page instead of showing the newest only.
    #[arg(long)]
    pub all: bool,
}

impl Newest {
    pub(crate) fn paging(self) -> crate::printer::ListArgs {
        let limit = (!self.all).then(|| self.limit.unwrap_or(DEFAULT_SHOWN));
        crate::printer::ListArgs {
            limit,
            cursor: self.cursor,
        }
    }
}

/// An RFC 3339 time, or a span before now: a number with `s`, `m`, `h` or `d`.
pub(crate) fn parse_when(raw: &str) -> Result<Timestamp, String> {
    if let Some(at) = Timestamp::parse_rfc3339(raw) {
        return Ok(at);
    }
    let bad = || format!("{raw:?} is neither an RFC 3339 time nor a span ago like 30m, 2h, 7d");
    let unit = raw.chars().last().ok_or_else(bad)?;
    let seconds: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let count: i64 = raw[..raw.len() - 1].parse().map_err(|_| bad())?;
    if count < 0 {
        return Err(bad());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let now = Timestamp::from_micros(i64::try_from(now.as_micros()).map_err(|e| e.to_string())?);
    Ok(now.plus_seconds(count.saturating_mul(seconds).saturating_neg()))
}

pub(crate) async fn audit(client: &Client, out: &Printer, cmd: AuditCmd) -> anyhow::Result<()> {
    let args = match cmd {
        AuditCmd::List(args) => args,
        AuditCmd::Verify { head, file: None } => {
            let verification = client.verify_audit(head.as_ref()).await?;
            return report(out, &verification);
        }
        AuditCmd::Verify {
            head,
            file: Some(file),
        } => return verify_file(out, &file, head),
        AuditCmd::Export { from, to, output } => {
            let query = AuditExportQuery { from, to };
            if output.as_os_str() == "-" {
                client
                    .export_audit(&query, &mut std::io::stdout().lock())
                    .await?;
            } else {
                let file = std::fs::File::create(&output)
                    .with_context(|| format!("creating {}", output.display()))?;
                let lines = client
                    .export_audit(&query, &mut std::io::BufWriter::new(file))
                    .await?;
                if out.json {
                    println!("{}", serde_json::json!({"entries": lines, "file": output}));
                } else {
                    eprintln!("{lines} audit entries written to {}", output.display());
                }
            }
            return Ok(());
        }
    };
    let query = AuditQuery {
        tenant: args.tenant_id,
        actor: args.actor,
        action: args.action,
        outcome: args.outcome,
        from: args.from,
        to: args.to,
        limit: None,
        cursor: None,
    };
    let paging = args.page.paging();
    let page = all_pages(&paging, |limit, cursor| {
        let query = AuditQuery {
            limit,
            cursor,
            ..query.clone()
        };
        async move { client.list_audit(&query).await }
    })
    .await?;
    out.page(&page, |items: &[AuditEntry]| output::audit(items))
}

/// `bulkhead audit verify --file`: an export checked with no server.
pub fn verify_file(
    out: &Printer,
    file: &std::path::Path,
    head: Option<Link>,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let reader =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let lines = std::io::BufReader::new(reader).lines();
    let verification = AuditEntry::verify_lines(lines, head)
        .map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
    report(out, &verification)
}

/// Prints a verification; a broken chain is an error (non-zero exit).
fn report(out: &Printer, v: &AuditVerification) -> anyhow::Result<()> {
    out.show(v, |v| {
        let head = v
            .head
            .as_ref()
            .map_or("(empty)".to_owned(), Link::to_string);
        match &v.broken {
            None => format!(
                "audit chain intact: {} entries checked, head {head}",
                v.checked
            ),
            Some(b) => format!(
                "audit chain BROKEN at entry {} ({}): {}\n{} entries checked before it",
                b.seq, b.kind, b.detail, v.checked
            ),
        }
    })?;
    match &v.broken {
        None => Ok(()),
        Some(b) => anyhow::bail!("the audit chain is broken at entry {} ({})", b.seq, b.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_rfc3339_or_a_span_ago() {
        let at = parse_when("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-22T10:00:00.000000Z");
        let hour_ago = parse_when("1h").unwrap();
        let minutes_ago = parse_when("59m").unwrap();
        let gap = minutes_ago.as_micros() - hour_ago.as_micros();
        assert!((59_000_000..61_000_000).contains(&gap), "{gap}");
        for bad in ["", "h", "-1h", "2w", "yesterday", "1.5h", "2026-11-22"] {
            assert!(parse_when(bad).is_err(), "{bad}");
        }
    }
}
