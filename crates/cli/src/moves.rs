//! Live moves: listing them across tenants (`move list`), and following one with a progress
//! bar of rows copied (with rate and ETA) and the current phase, until the move ends.

use std::time::Duration;

use anyhow::bail;
use bulkhead_api::MoveListQuery;
use bulkhead_client::Client;
use bulkhead_core::TenantId;
use bulkhead_core::model::MovePhase;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output;
use crate::printer::{ListArgs, Printer, all_pages};

/// `bulkhead move list [--active] [--tenant-id T]`: every tenant's moves (or one's), newest
/// first; `--active` keeps those not ended.
pub(crate) async fn list(
    client: &Client,
    out: &Printer,
    active: bool,
    tenant: Option<TenantId>,
    page: &ListArgs,
) -> anyhow::Result<()> {
    let query = MoveListQuery {
        active: active.then_some(true),
        tenant,
        limit: None,
        cursor: None,
    };
    let moves = all_pages(page, |limit, cursor| {
        let query = MoveListQuery {
            limit,
            cursor,
            ..query.clone()
        };
        async move { client.list_all_moves(&query).await }
    })
    .await?;
    out.page(&moves, output::moves)
}

/// Polls the move until it is done or rolled back, drawing its progress; a rolled-back move
/// is an error (exit code 1) naming why.
pub(crate) async fn follow(client: &Client, out: &Printer, id: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {prefix:>11} [{bar:30}] {pos}/{len} rows {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    if out.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let view = loop {
        let view = client.get_move(id).await?;
        bar.set_prefix(view.phase.to_string());
        bar.set_length(view.rows_total.max(view.rows_copied));
        bar.set_position(view.rows_copied);
        let mut msg = format!("{:.0} rows/s", view.rate);
        if let Some(eta) = view.eta_seconds {
            msg.push_str(&format!(" eta {eta:.0}s"));
        }
        if let Some(ms) = view.freeze_ms {
            msg.push_str(&format!(" writes held {ms} ms"));
        }
        if let Some(pace) = &view.pace {
            msg.push_str(&format!(" pace {:.0}% ({})", pace.duty * 100.0, pace.state));
        }
        bar.set_message(msg);
        if view.phase.is_final() {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    out.show(&view, output::moved)?;
    if view.phase == MovePhase::RolledBack {
        bail!(
            "move {} rolled back: {}",
            view.id,
            view.error.as_deref().unwrap_or("no reason recorded")
        );
    }
    Ok(())
}
