//! The cold archive: `bulkhead archive list|restore|run`. (A tenant's portable archive is
//! `bulkhead tenant export|import`.)

use bulkhead_api::{
    ArchiveListing, ArchiveRestored, RestoreArchive, RetentionReport, RetentionRun, RunRetention,
    RunState,
};
use bulkhead_client::Client;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, TenantId};
use clap::Subcommand;

use crate::audit::parse_when;
use crate::output::{bytes, empty, table};
use crate::printer::Printer;

#[derive(Debug, Clone, Subcommand)]
pub enum ArchiveCmd {
    /// What a tenant has in its cold archive, by collection and month.
    List {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
        #[arg(long, value_parser = CollectionName::parse)]
        collection: Option<CollectionName>,
    },
    /// Bring the records of a collection whose retention field is in [--from, --to) back
    /// into the hot store; retention leaves them hot for --hold-days.
    Restore {
        #[arg(value_parser = TenantId::parse)]
        tenant: TenantId,
        #[arg(long, value_parser = CollectionName::parse)]
        collection: CollectionName,
        /// RFC 3339, or a time ago (`400d`).
        #[arg(long, value_parser = parse_when)]
        from: Timestamp,
        #[arg(long, value_parser = parse_when)]
        to: Timestamp,
        /// Days the range stays hot [default: 30].
        #[arg(long)]
        hold_days: Option<u32>,
    },
    /// Run a retention pass now (all tenants, or one), following it with a progress bar.
    Run {
        #[arg(long, value_parser = TenantId::parse)]
        tenant_id: Option<TenantId>,
        /// Print the started pass and return at once (`bulkhead archive get ID` follows it).
        #[arg(long)]
        no_wait: bool,
    },
    /// Show a retention pass this server runs or ran.
    Get { id: String },
}

pub(crate) async fn archive(client: &Client, out: &Printer, cmd: ArchiveCmd) -> anyhow::Result<()> {
    match cmd {
        ArchiveCmd::List { tenant, collection } => {
            let listing = client.list_archives(&tenant, collection.as_ref()).await?;
            out.show(&listing, listing_table)
        }
        ArchiveCmd::Restore {
            tenant,
            collection,
            from,
            to,
            hold_days,
        } => {
            let request = RestoreArchive {
                collection,
                from,
                to,
                hold_days,
            };
            let done = client.restore_archive(&tenant, &request).await?;
            out.show(&done, restored)
        }
        ArchiveCmd::Run { tenant_id, no_wait } => {
            let request = RunRetention { tenant: tenant_id };
            if no_wait {
                let run = client.run_retention(&request).await?;
                return out.show(&run, run_text);
            }
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} retention {pos}/{len} tenant collections, {msg} [{elapsed}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let run = client
                .run_retention_to_end(&request, |run| {
                    bar.set_length(run.collections_total);
                    bar.set_position(run.collections_done);
                    bar.set_message(format!("{} records archived", run.report.archived));
                })
                .await?;
            bar.finish_and_clear();
            out.show(&run, run_text)?;
            if run.state == RunState::Failed {
                anyhow::bail!(
                    "the retention pass failed: {}",
                    run.error.as_deref().unwrap_or("no reason given")
                );
            }
            Ok(())
        }
        ArchiveCmd::Get { id } => out.show(&client.retention_run(&id).await?, run_text),
    }
}

fn listing_table(listing: &ArchiveListing) -> String {
    if listing.items.is_empty() {
        return empty("archived records");
    }
    let mut t = table(&[
        "collection",
        "month",
        "files",
        "records",
        "bytes",
        "from",
        "to",
    ]);
    for m in &listing.items {
        t.add_row(vec![
            m.collection.to_string(),
            m.month.clone(),
            m.files.to_string(),
            m.records.to_string(),
            bytes(m.bytes),
            m.from.to_string(),
            m.to.to_string(),
        ]);
    }
    format!(
        "{t}\n{} records, {} cold",
        listing.records,
        bytes(listing.bytes)
    )
}

fn restored(done: &ArchiveRestored) -> String {
    format!(
        "{} records of {} back in the hot store ({} already there); {} archive files changed; \
         kept hot until {}",
        done.restored, done.collection, done.already_hot, done.files_changed, done.hold_until
    )
}

fn run_text(run: &RetentionRun) -> String {
    let state = match run.state {
        RunState::Running => format!(
            "running ({}/{} tenant collections)",
            run.collections_done, run.collections_total
        ),
        RunState::Done => "done".to_owned(),
        RunState::Failed => format!("failed: {}", run.error.as_deref().unwrap_or("")),
    };
    format!(
        "retention run {}: {state}\n{}",
        run.id,
        report_text(&run.report)
    )
}

fn report_text(r: &RetentionReport) -> String {
    format!(
        "{} records archived into {} files ({}) over {} collections in {} ms; \
         {} busy, {} failed, {} unfinished batches settled, {} stray files removed",
        r.archived,
        r.files,
        bytes(r.bytes),
        r.collections,
        r.elapsed_ms,
        r.busy,
        r.failed,
        r.recovered,
        r.swept
    )
}
