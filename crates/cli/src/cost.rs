//! `bulkhead cost report`: each domain's cost split among its tenants, each tenant's cost,
//! price and margin, each tier's totals and marginal cost of one more tenant — as tables,
//! JSON (`--json`) or CSV (`--csv`, one row per tenant).

use bulkhead_api::{CostQuery, CostReport};
use bulkhead_client::Client;
use bulkhead_core::time::Timestamp;
use clap::{Args, Subcommand};

use crate::audit::parse_when;
use crate::printer::Printer;

#[derive(Debug, Clone, Subcommand)]
pub enum CostCmd {
    /// Cost and margin per domain, tenant and tier over a window (default: the last 30 days).
    Report(ReportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Start of the window: RFC 3339, or a time ago (`30d`).
    #[arg(long, value_parser = parse_when)]
    pub from: Option<Timestamp>,
    /// End of the window [default: now].
    #[arg(long, value_parser = parse_when)]
    pub to: Option<Timestamp>,
    /// One CSV row per tenant instead of tables.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// (Same as the global --json.)
    #[arg(long, hide = true)]
    pub json: bool,
}

pub(crate) async fn cost(client: &Client, out: &Printer, cmd: CostCmd) -> anyhow::Result<()> {
    let CostCmd::Report(args) = cmd;
    let report = client
        .cost_report(&CostQuery {
            from: args.from,
            to: args.to,
        })
        .await?;
    if args.csv {
        print!("{}", csv(&report));
        return Ok(());
    }
    let out = Printer {
        json: out.json || args.json,
    };
    out.show(&report, tables)
}

fn csv(report: &CostReport) -> String {
    let mut out = String::from(
        "tenant,tier,domain,cost,cost_currency,price,price_currency,margin,bytes,requests,query_ms\n",
    );
    for t in &report.tenants {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{:.3}\n",
            t.tenant,
            t.tier,
            t.domain,
            t.cost,
            t.cost_currency,
            t.price,
            t.price_currency,
            t.margin.as_deref().unwrap_or(""),
            t.bytes,
            t.requests,
            t.query_ms
        ));
    }
    out
}

fn tables(report: &CostReport) -> String {
    use crate::output::table;
    let mut domains = table(&[
        "domain",
        "cost",
        "rule (storage/requests/query time)",
        "tenants",
        "stored",
    ]);
    for d in &report.domains {
        domains.add_row(vec![
            d.domain.to_string(),
            format!("{} {}", d.cost, d.currency),
            format!(
                "{}/{}/{}",
                d.rule.storage, d.rule.requests, d.rule.query_time
            ),
            d.tenants.to_string(),
            crate::output::bytes(d.bytes),
        ]);
    }
    let mut tenants = table(&[
        "tenant", "tier", "domain", "cost", "price", "margin", "stored", "requests", "query ms",
    ]);
    for t in &report.tenants {
        tenants.add_row(vec![
            t.tenant.to_string(),
            t.tier.to_string(),
            t.domain.to_string(),
            format!("{} {}", t.cost, t.cost_currency),
            format!("{} {}", t.price, t.price_currency),
            t.margin.clone().unwrap_or_else(|| "-".into()),
            crate::output::bytes(t.bytes),
            t.requests.to_string(),
            format!("{:.1}", t.query_ms),
        ]);
    }
    let mut tiers = table(&[
        "tier",
        "tenants",
        "cost",
        "price",
        "marginal cost of one more",
        "empty placement",
    ]);
    for t in &report.tiers {
        tiers.add_row(vec![
            t.tier.to_string(),
            t.tenants.to_string(),
            format!("{} {}", t.cost, t.currency),
            format!("{} {}", t.price, t.currency),
            t.marginal_cost.to_string(),
            t.empty_placement_bytes
                .map_or_else(|| "-".into(), crate::output::bytes),
        ]);
    }
    format!(
        "{} to {} ({:.1} hours; monthly amounts over 730 hours)\n{domains}\n{tenants}\n{tiers}",
        report.from, report.to, report.hours
    )
}
