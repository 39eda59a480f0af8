//! `bulkhead record watch`: a collection's change feed on standard output, one line per
//! event, reconnecting (with the last event's id) when the connection drops.

use std::io::Write as _;
use std::time::Duration;

use anyhow::bail;
use bulkhead_client::{Client, ClientError, FeedEvent};
use bulkhead_core::CollectionName;

use crate::printer::Printer;

/// Pause before reconnecting a dropped feed.
const RECONNECT: Duration = Duration::from_secs(1);

pub(crate) async fn follow(
    client: &Client,
    out: &Printer,
    collection: &CollectionName,
    filter: Option<&str>,
    mut after: Option<String>,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let mut seen = 0u64;
    let mut stdout = std::io::stdout().lock();
    loop {
        let mut feed = match client.watch(collection, filter, after.as_deref()).await {
            Ok(feed) => feed,
            Err(ClientError::Transport(e)) => {
                eprintln!("the change feed could not connect ({e}); retrying");
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            let event = match feed.next().await {
                Ok(Some(event)) => event,
                // The server ended the feed or the connection dropped: resume after the last.
                Ok(None) | Err(ClientError::Transport(_)) => break,
                Err(e) => return Err(e.into()),
            };
            if event.event == "closed" {
                let error = &event.data["error"];
                bail!(
                    "the change feed ended: {} ({})",
                    error["message"].as_str().unwrap_or("no reason given"),
                    error["code"].as_str().unwrap_or("closed")
                );
            }
            let line = if out.json {
                serde_json::json!({"event": event.event, "id": event.id, "data": event.data})
                    .to_string()
            } else {
                human(&event)
            };
            if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
            if matches!(event.event.as_str(), "created" | "updated" | "deleted") {
                seen += 1;
                if count.is_some_and(|n| seen >= n) {
                    return Ok(());
                }
            }
        }
        after = feed.last_event_id().map(str::to_owned);
        tokio::time::sleep(RECONNECT).await;
    }
}

fn human(event: &FeedEvent) -> String {
    let id = event.data["id"].as_str().unwrap_or("");
    match event.event.as_str() {
        "created" | "updated" => {
            let mut fields = event.data.as_object().cloned().unwrap_or_default();
            for system in ["id", "created_at", "updated_at", "version"] {
                fields.remove(system);
            }
            format!(
                "{:<8} {id}  v{}  {}",
                event.event,
                event.data["version"],
                serde_json::Value::Object(fields)
            )
        }
        "deleted" => format!("{:<8} {id}", event.event),
        "resync" => format!(
            "resync   reload what you hold ({})",
            event.data["reason"].as_str().unwrap_or("")
        ),
        "ready" => "ready    following changes".to_owned(),
        other => format!("{other:<8} {}", event.data),
    }
}
