//! What each tenant uses: `bulkhead usage` (per hour or day: requests, records written, bytes
//! in and out, query work, refusals, storage), `bulkhead usage top` (the heaviest tenants by
//! one measure) and `bulkhead usage sample` (measure storage now).

use bulkhead_api::{Granularity, TopBy, TopQuery, UsagePeriod, UsageQuery, UsageTop};
use bulkhead_client::Client;
use bulkhead_core::TenantId;
use bulkhead_core::time::Timestamp;
use clap::{Args, Subcommand, ValueEnum};

use crate::audit::{Newest, parse_when};
use crate::output;
use crate::printer::{Printer, all_pages};

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UsageArgs {
    #[command(subcommand)]
    pub cmd: Option<UsageCmd>,
    /// Only this tenant (also once it is deleted).
    #[arg(long, value_parser = TenantId::parse)]
    pub tenant_id: Option<TenantId>,
    /// Periods from this time on: RFC 3339, or a time ago (`2h`, `7d`).
    #[arg(long, value_parser = parse_when)]
    pub from: Option<Timestamp>,
    /// Periods starting before this time: RFC 3339, or a time ago.
    #[arg(long, value_parser = parse_when)]
    pub to: Option<Timestamp>,
    /// Count per UTC hour or per UTC day.
    #[arg(long, value_enum, default_value = "hour")]
    pub granularity: GranularityArg,
    #[command(flatten)]
    pub page: Newest,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UsageCmd {
    /// The heaviest tenants by one measure over a window (default: the last 7 days).
    Top {
        /// `records` (written), `bytes` (stored), `stored-records`, `requests`,
        /// `query-time`, `rows-examined`, `bytes-in`, `bytes-out`.
        #[arg(long, value_enum)]
        by: TopArg,
        /// Start of the window: RFC 3339, or a time ago (`7d`).
        #[arg(long, value_parser = parse_when)]
        from: Option<Timestamp>,
        /// End of the window [default: now].
        #[arg(long, value_parser = parse_when)]
        to: Option<Timestamp>,
        /// How many tenants (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Measure storage now: every tenant's, or one tenant's (it is also measured hourly).
    Sample {
        #[arg(long, value_parser = TenantId::parse)]
        tenant_id: Option<TenantId>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GranularityArg {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TopArg {
    Records,
    Bytes,
    StoredRecords,
    Requests,
    QueryTime,
    RowsExamined,
    BytesIn,
    BytesOut,
}

impl From<TopArg> for TopBy {
    fn from(arg: TopArg) -> TopBy {
        match arg {
            TopArg::Records => TopBy::Records,
            TopArg::Bytes => TopBy::Bytes,
            TopArg::StoredRecords => TopBy::StoredRecords,
            TopArg::Requests => TopBy::Requests,
            TopArg::QueryTime => TopBy::QueryTime,
            TopArg::RowsExamined => TopBy::RowsExamined,
            TopArg::BytesIn => TopBy::BytesIn,
            TopArg::BytesOut => TopBy::BytesOut,
        }
    }
}

pub(crate) async fn usage(client: &Client, out: &Printer, args: UsageArgs) -> anyhow::Result<()> {
    match args.cmd {
        Some(UsageCmd::Top {
            by,
            from,
            to,
            limit,
        }) => {
            let top = client
                .usage_top(&TopQuery {
                    by: by.into(),
                    from,
                    to,
                    limit: Some(limit),
                })
                .await?;
            out.show(&top, |t: &UsageTop| output::usage_top(t))
        }
        Some(UsageCmd::Sample { tenant_id }) => {
            let done = client.sample_storage(tenant_id.as_ref()).await?;
            out.show(&done, |d| {
                format!(
                    "measured {} tenant{} in {} ms{}",
                    d.tenants,
                    if d.tenants == 1 { "" } else { "s" },
                    d.elapsed_ms,
                    if d.failed > 0 {
                        format!(" ({} could not be measured; see the server log)", d.failed)
                    } else {
                        String::new()
                    }
                )
            })
        }
        None => {
            let query = UsageQuery {
                tenant: args.tenant_id,
                from: args.from,
                to: args.to,
                granularity: Some(match args.granularity {
                    GranularityArg::Hour => Granularity::Hour,
                    GranularityArg::Day => Granularity::Day,
                }),
                limit: None,
                cursor: None,
            };
            let paging = args.page.paging();
            let page = all_pages(&paging, |limit, cursor| {
                let query = UsageQuery {
                    limit,
                    cursor,
                    ..query.clone()
                };
                async move { client.list_usage(&query).await }
            })
            .await?;
            out.page(&page, |items: &[UsagePeriod]| output::usage(items))
        }
    }
}
