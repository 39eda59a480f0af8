//! Delivering the outbox: at least once, one message at a time per webhook and lane (a
//! tenant's messages arrive in order), signed per Standard Webhooks. A claim is a 60-second
//! lease, so a server that dies mid-delivery leaves the message to be sent again (same id).
//! Failures back off exponentially with jitter, for up to 24 hours; a webhook that fails
//! `disable_after` times in a row is disabled (audited, and so a finding).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use bulkhead_catalog::{AuditEvent, Door, WeakDoor, append_audit};
use bulkhead_store::{StoreResult, Tx, params};

use crate::webhooks::{self, Webhook};
use crate::{SecopsSettings, sign, target};
use bulkhead_api::WebhookFormat;
use bulkhead_core::time::Timestamp;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long a claim holds a message.
const LEASE: Duration = Duration::from_secs(60);
/// How long a message is retried before it is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3_600);
/// One attempt's limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages claimed per round.
const CLAIM: i64 = 64;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3_600);

fn client() -> Result<HttpClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(provider)
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A claimed message.
#[derive(Debug, Clone)]
struct Message {
    seq: i64,
    id: String,
    webhook: String,
    event: String,
    body: String,
    attempts: i64,
    created_at: i64,
}

/// Claims due messages: each the oldest pending one of its webhook and lane, of an enabled
/// webhook, not leased by anyone.
fn claim(tx: &dyn Tx, now: Timestamp) -> StoreResult<Vec<Message>> {
    let rows = tx.query(
        "SELECT o.seq, o.id, o.webhook, o.event, o.body, o.attempts, o.created_at FROM outbox o \
         WHERE o.state = 'pending' AND o.next_at <= ?1 \
         AND (o.lease_until IS NULL OR o.lease_until < ?1) \
         AND o.webhook IN (SELECT name FROM webhooks WHERE enabled = 1) \
         AND o.seq = (SELECT min(p.seq) FROM outbox p WHERE p.webhook = o.webhook \
                      AND p.lane = o.lane AND p.state = 'pending') \
         ORDER BY o.seq LIMIT ?2",
        params![now.as_micros(), CLAIM],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let m = Message {
            seq: r.get(0)?,
            id: r.get(1)?,
            webhook: r.get(2)?,
            event: r.get(3)?,
            body: r.get(4)?,
            attempts: r.get(5)?,
            created_at: r.get(6)?,
        };
        tx.execute(
            "UPDATE outbox SET lease_until = ?2 WHERE seq = ?1",
            params![m.seq, now.as_micros() + LEASE.as_micros() as i64],
        )?;
        out.push(m);
    }
    Ok(out)
}

/// The body sent: the stored standard body, or Slack's shape of it.
fn shaped(format: WebhookFormat, body: &str) -> String {
    match format {
        WebhookFormat::Standard => body.to_owned(),
        WebhookFormat::Slack => {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let kind = v["type"].as_str().unwrap_or("event");
            let data = &v["data"];
            let line = match kind {
                "finding.opened" => format!(
                    "*Bulkhead finding* ({}): {}",
                    data["severity"].as_str().unwrap_or("?"),
                    data["summary"].as_str().unwrap_or_default()
                ),
                _ => format!(
                    "*Bulkhead* {kind}: {} by {}",
                    data["target"].as_str().unwrap_or_default(),
                    data["actor"].as_str().unwrap_or_default()
                ),
            };
            let tenant = data["tenant"].as_str().map(|t| format!(" (tenant {t})"));
            let text = format!("{line}{}", tenant.unwrap_or_default());
            json!({
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            })
            .to_string()
        }
    }
}

/// What one attempt came to.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    millis: u64,
}

async fn attempt(
    http: &HttpClient,
    hook: &Webhook,
    m: &Message,
    allow_private: bool,
    now: Timestamp,
) -> Outcome {
    let started = Instant::now();
    let result: Result<u16, String> = async {
        let target = target::check(&hook.spec.url, allow_private)?;
        target::resolve(&target, allow_private).await?;
        let body = shaped(hook.spec.format, &m.body);
        let timestamp = now.as_micros() / 1_000_000;
        let signatures: Vec<String> = hook
            .signing(now)
            .filter_map(|s| sign::key(&s.secret).ok())
            .map(|key| sign::signature(&key, &m.id, timestamp, body.as_bytes()))
            .collect();
        let request = http::Request::post(&hook.spec.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "bulkhead-webhooks")
            .header("webhook-id", &m.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = tokio::time::timeout(ATTEMPT_TIMEOUT, http.request(request))
            .await
            .map_err(|_| format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()))?
            .map_err(|e| format!("sending: {e}"))?;
        Ok(response.status().as_u16())
    }
    .await;
    let millis = started.elapsed().as_millis() as u64;
    match result {
        Ok(status) if (200..300).contains(&status) => Outcome {
            status: Some(status),
            error: None,
            millis,
        },
        Ok(status) => Outcome {
            status: Some(status),
            error: Some(format!("the receiver answered {status}")),
            millis,
        },
        Err(error) => Outcome {
            status: None,
            error: Some(error),
            millis,
        },
    }
}

/// The wait before attempt `attempts + 1`: 1 s doubling, at most an hour, ±20 % jitter.
fn backoff(attempts: i64) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.clamp(0, 12)).min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    let jitter = 0.8 + 0.4 * (f64::from(byte[0]) / 255.0);
    base.mul_f64(jitter)
}

/// Records an attempt; returns the audit event of a webhook it disabled.
fn record(
    tx: &dyn Tx,
    hook: &Webhook,
    m: &Message,
    outcome: &Outcome,
    now: Timestamp,
) -> StoreResult<Option<AuditEvent>> {
    let attempt = m.attempts + 1;
    tx.execute(
        "INSERT INTO deliveries (webhook, message, event, at, attempt, status, error, millis) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            &m.webhook,
            &m.id,
            &m.event,
            now.as_micros(),
            attempt,
            outcome.status.map(i64::from),
            &outcome.error,
            outcome.millis as i64
        ],
    )?;
    if outcome.error.is_none() {
        tx.execute(
            "UPDATE outbox SET state = 'delivered', attempts = ?2, lease_until = NULL, \
             last_error = NULL WHERE seq = ?1",
            params![m.seq, attempt],
        )?;
        tx.execute(
            "UPDATE webhooks SET failures = 0 WHERE name = ?1",
            params![&m.webhook],
        )?;
        return Ok(None);
    }
    let expired = now.as_micros() - m.created_at > GIVE_UP_AFTER.as_micros() as i64;
    let next = now.as_micros() + backoff(m.attempts).as_micros() as i64;
    tx.execute(
        "UPDATE outbox SET state = ?2, attempts = ?3, next_at = ?4, lease_until = NULL, \
         last_error = ?5 WHERE seq = ?1",
        params![
            m.seq,
            if expired { "failed" } else { "pending" },
            attempt,
            next,
            &outcome.error
        ],
    )?;
    tx.execute(
        "UPDATE webhooks SET failures = failures + 1 WHERE name = ?1",
        params![&m.webhook],
    )?;
    let failures: i64 = tx
        .query_one(
            "SELECT failures FROM webhooks WHERE name = ?1",
            params![&m.webhook],
        )?
        .get(0)?;
    if hook.enabled && failures >= i64::from(hook.spec.disable_after) {
        let reason = format!(
            "{failures} failed deliveries in a row; last: {}",
            outcome.error.as_deref().unwrap_or_default()
        );
        let changed = tx.execute(
            "UPDATE webhooks SET enabled = 0, disabled_reason = ?2 WHERE name = ?1 AND enabled = 1",
            params![&m.webhook, &reason],
        )?;
        if changed > 0 {
            return Ok(Some(AuditEvent {
                at: now,
                actor: "system".into(),
                action: "webhook.disabled".into(),
                target: m.webhook.clone(),
                tenant: None,
                outcome: "ok".into(),
                request_id: String::new(),
                detail: Some(json!({ "reason": reason }).to_string()),
            }));
        }
    }
    Ok(None)
}

/// One round: claim what is due, deliver it concurrently, record each attempt. Returns how
/// many were claimed.
async fn round(
    catalog: &Door,
    settings: &SecopsSettings,
    http: &HttpClient,
) -> Result<usize, bulkhead_core::Error> {
    let now = catalog.now();
    let (claimed, hooks) = catalog
        .blocking(move |store| store.write(|tx| Ok((claim(tx, now)?, webhooks::read_all(tx)?))))
        .await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let allow_private = settings.webhooks.allow_private;
    let attempts = claimed.iter().filter_map(|m| {
        let hook = hooks.iter().find(|h| h.name == m.webhook)?.clone();
        let m = m.clone();
        Some(async move {
            let outcome = attempt(http, &hook, &m, allow_private, now).await;
            (hook, m, outcome)
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    let count = results.len();
    let done = catalog.now();
    catalog
        .blocking(move |store| {
            store.write(|tx| {
                for (hook, m, outcome) in &results {
                    if let Some(event) = record(tx, hook, m, outcome, done)? {
                        append_audit(tx, &event)?;
                    }
                }
                Ok(())
            })
        })
        .await?;
    Ok(count)
}

/// Runs deliveries until the catalog is dropped: at once when woken (a message was
/// written), else every second (retries coming due).
pub(crate) fn spawn(door: WeakDoor, settings: Arc<SecopsSettings>, wake: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let http = match client() {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "webhook deliveries cannot start");
                return;
            }
        };
        loop {
            let Some(catalog) = door.upgrade() else {
                return;
            };
            let claimed = match round(&catalog, &settings, &http).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e.message, "webhook delivery round failed; retried");
                    0
                }
            };
            drop(catalog);
            if claimed == 0 {
                let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            }
        }
    });
}
