//! Following a collection change's rollout: a progress bar of placements done (with rate,
//! ETA and the current wave) until no placement is left.

use std::time::Duration;

use bulkhead_client::Client;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output;
use crate::printer::Printer;

/// Polls the rollout until no placement is left, drawing its progress. A pass that could
/// not reach some placements is shown on the bar and the follow goes on: the server retries
/// them in the background (interrupt to stop following; the rollout goes on).
pub(crate) async fn follow(client: &Client, out: &Printer, id: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {prefix:>12} [{bar:30}] {pos}/{len} placements {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    if out.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let view = loop {
        let view = client.get_rollout(id).await?;
        bar.set_prefix(view.wave.clone().unwrap_or_else(|| view.state.clone()));
        let total = view.placements_total.max(view.placements_left);
        bar.set_length(total);
        bar.set_position(total - view.placements_left);
        let mut msg = format!("{:.1}/s", view.rate);
        if let Some(eta) = view.eta_seconds {
            msg.push_str(&format!(" eta {eta:.0}s"));
        }
        if view.placements_failed > 0 {
            msg.push_str(&format!(
                " {} failed, retrying (last: {})",
                view.placements_failed,
                view.last_error.as_deref().unwrap_or("unknown")
            ));
        }
        bar.set_message(msg);
        if view.placements_left == 0 || view.state != "running" {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    out.show(&view, output::rollout)
}
