//! Webhooks: `PUT/GET/DELETE /v1/webhooks/{name}` and their delivery log (platform admins
//! only: a webhook holds a signing secret and sends events out). Messages for them are
//! written to the outbox by the findings reader, in the transaction that reads the event.

use bulkhead_api::{Delivery, WebhookFormat, WebhookSpec, WebhookView, validate_webhook_name};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use bulkhead_catalog::{Ctx, append_audit, page_limit};
use bulkhead_store::{Row, StoreResult, Tx, malformed, params};

use crate::{Secops, sign, target};

/// Server-wide webhook settings (`[webhooks]` in the configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Deliver to loopback and private addresses too (tests, private networks).
    pub allow_private: bool,
}

/// Failed deliveries in a row before a webhook is disabled, unless its spec says.
pub(crate) const DISABLE_AFTER: u32 = 50;
/// How long a replaced secret keeps signing.
const ROTATION_OVERLAP_SECS: i64 = 24 * 3_600;

/// A signing secret and, for a replaced one, when it stops signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Secret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// What is stored of a webhook's spec (its secrets are kept apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Stored {
    pub url: String,
    pub events: Vec<String>,
    pub format: WebhookFormat,
    pub disable_after: u32,
}

/// A webhook row.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub name: String,
    pub spec: Stored,
    pub secrets: Vec<Secret>,
    pub enabled: bool,
    pub failures: i64,
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Webhook {
    /// Whether it subscribes to `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.spec.events.iter().any(|e| e == "*" || e == event)
    }

    /// The secrets that sign now.
    pub fn signing(&self, now: Timestamp) -> impl Iterator<Item = &Secret> {
        self.secrets
            .iter()
            .filter(move |s| s.until.is_none_or(|until| until > now.as_micros()))
    }
}

const COLUMNS: &str =
    "name, spec, secrets, enabled, failures, disabled_reason, created_at, updated_at";

fn webhook(r: &Row) -> StoreResult<Webhook> {
    Ok(Webhook {
        name: r.get(0)?,
        spec: serde_json::from_str(&r.get::<String>(1)?).map_err(malformed)?,
        secrets: serde_json::from_str(&r.get::<String>(2)?).map_err(malformed)?,
        enabled: r.get::<i64>(3)? != 0,
        failures: r.get(4)?,
        disabled_reason: r.get(5)?,
        created_at: Timestamp::from_micros(r.get(6)?),
        updated_at: Timestamp::from_micros(r.get(7)?),
    })
}

pub(crate) fn read(tx: &dyn Tx, name: &str) -> StoreResult<Option<Webhook>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM webhooks WHERE name = ?1"),
        params![name],
    )?
    .as_ref()
    .map(webhook)
    .transpose()
}

pub(crate) fn read_all(tx: &dyn Tx) -> StoreResult<Vec<Webhook>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM webhooks ORDER BY name"),
        &[],
    )?
    .iter()
    .map(webhook)
    .collect()
}

fn pending(tx: &dyn Tx, name: &str) -> StoreResult<u64> {
    let n: i64 = tx
        .query_one(
            "SELECT count(*) FROM outbox WHERE webhook = ?1 AND state = 'pending'",
            params![name],
        )?
        .get(0)?;
    Ok(n.max(0) as u64)
}

fn view(tx: &dyn Tx, w: &Webhook, secret: Option<String>) -> StoreResult<WebhookView> {
    Ok(WebhookView {
        name: w.name.clone(),
        url: w.spec.url.clone(),
        events: w.spec.events.clone(),
        format: w.spec.format,
        disable_after: w.spec.disable_after,
        enabled: w.enabled,
        failures: w.failures.max(0) as u64,
        disabled_reason: w.disabled_reason.clone(),
        secret_fingerprint: w
            .secrets
            .first()
            .map(|s| sign::fingerprint(&s.secret))
            .unwrap_or_default(),
        pending: pending(tx, &w.name)?,
        created_at: w.created_at,
        updated_at: w.updated_at,
        secret,
    })
}

/// The server's checks of a webhook: the spec's own, then its URL against the server's
/// setting for private targets.
fn check_spec(spec: &WebhookSpec, allow_private: bool) -> Result<(), Error> {
    target::check(&spec.url, allow_private)
        .map_err(|why| Error::bad_request("invalid_webhook_url", why))?;
    spec.validate()
}

impl Secops {
    /// `PUT /v1/webhooks/{name}`: creates or changes a webhook. A new webhook without a
    /// secret gets one, shown in this answer only; a changed secret signs at once and the
    /// previous one keeps signing for 24 hours. Returns the view and whether it was new.
    pub async fn put_webhook(
        &self,
        ctx: &Ctx,
        name: &str,
        spec: WebhookSpec,
    ) -> Result<(WebhookView, bool), Error> {
        self.door.authorize(
            ctx,
            ControlAction::ManageWebhooks,
            "webhook.put",
            name,
            None,
        )?;
        validate_webhook_name(name)?;
        check_spec(&spec, self.settings.webhooks.allow_private)?;
        let generated = match &spec.secret {
            Some(_) => None,
            None => Some(sign::generate().map_err(|e| {
                Error::internal().with_message(format!("random source failed: {e}"))
            })?),
        };
        let now = self.door.now();
        let mut audited = spec.clone();
        audited.secret = audited.secret.as_deref().map(sign::fingerprint);
        let event = self.door.event(
            ctx,
            "webhook.put",
            name,
            None,
            serde_json::to_string(&audited).ok(),
        );
        let name = name.to_owned();
        self.door
            .blocking(move |store| {
                store.write(|tx| {
                    let old = read(tx, &name)?;
                    let stored = Stored {
                        url: spec.url.clone(),
                        events: spec.events.clone(),
                        format: spec.format,
                        disable_after: spec
                            .disable_after
                            .or(old.as_ref().map(|o| o.spec.disable_after))
                            .unwrap_or(DISABLE_AFTER),
                    };
                    let mut shown = None;
                    let secrets = match (&old, &spec.secret) {
                        (None, Some(given)) => vec![Secret {
                            secret: given.clone(),
                            until: None,
                        }],
                        (None, None) => {
                            shown = generated.clone();
                            vec![Secret {
                                secret: generated.clone().unwrap_or_default(),
                                until: None,
                            }]
                        }
                        (Some(old), None) => old.secrets.clone(),
                        (Some(old), Some(given)) => {
                            if old.secrets.first().is_some_and(|s| &s.secret == given) {
                                old.secrets.clone()
                            } else {
                                let mut kept: Vec<Secret> = old
                                    .signing(now)
                                    .take(1)
                                    .map(|s| Secret {
                                        secret: s.secret.clone(),
                                        until: Some(
                                            now.as_micros() + ROTATION_OVERLAP_SECS * 1_000_000,
                                        ),
                                    })
                                    .collect();
                                kept.insert(
                                    0,
                                    Secret {
                                        secret: given.clone(),
                                        until: None,
                                    },
                                );
                                kept
                            }
                        }
                    };
                    let enabled = match (&old, spec.enabled) {
                        (_, Some(enabled)) => enabled,
                        (Some(old), None) => old.enabled,
                        (None, None) => true,
                    };
                    let reenabled = enabled && old.as_ref().is_some_and(|o| !o.enabled);
                    tx.execute(
                    &format!(
                        "INSERT INTO webhooks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, 0, NULL, ?5, ?5) \
                         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                         secrets = excluded.secrets, enabled = excluded.enabled, \
                         updated_at = excluded.updated_at"
                    ),
                    params![
                        &name,
                        serde_json::to_string(&stored).map_err(malformed)?,
                        serde_json::to_string(&secrets).map_err(malformed)?,
                        i64::from(enabled),
                        now.as_micros()
                    ],
                )?;
                    if reenabled {
                        tx.execute(
                        "UPDATE webhooks SET failures = 0, disabled_reason = NULL WHERE name = ?1",
                        params![&name],
                    )?;
                        // What waited while it was disabled is due now.
                        tx.execute(
                        "UPDATE outbox SET next_at = ?2 WHERE webhook = ?1 AND state = 'pending'",
                        params![&name, now.as_micros()],
                    )?;
                    }
                    append_audit(tx, &event)?;
                    let row = read(tx, &name)?.ok_or_else(|| malformed("webhook just written"))?;
                    Ok((view(tx, &row, shown)?, old.is_none()))
                })
            })
            .await
            .inspect(|_| self.wake.notify_one())
    }

    /// `GET /v1/webhooks`.
    pub async fn list_webhooks(&self, ctx: &Ctx) -> Result<Vec<WebhookView>, Error> {
        self.door.authorize(
            ctx,
            ControlAction::ManageWebhooks,
            "webhook.list",
            "webhooks",
            None,
        )?;
        self.door
            .blocking(|store| {
                store.read(|tx| read_all(tx)?.iter().map(|w| view(tx, w, None)).collect())
            })
            .await
    }

    /// `GET /v1/webhooks/{name}`.
    pub async fn get_webhook(&self, ctx: &Ctx, name: &str) -> Result<WebhookView, Error> {
        self.door.authorize(
            ctx,
            ControlAction::ManageWebhooks,
            "webhook.get",
            name,
            None,
        )?;
        let name = name.to_owned();
        self.door
            .blocking(move |store| {
                store.read(|tx| match read(tx, &name)? {
                    Some(w) => view(tx, &w, None),
                    None => Err(not_found().into()),
                })
            })
            .await
    }

    /// `DELETE /v1/webhooks/{name}`: the webhook and its waiting messages go.
    pub async fn delete_webhook(&self, ctx: &Ctx, name: &str) -> Result<(), Error> {
        self.door.authorize(
            ctx,
            ControlAction::ManageWebhooks,
            "webhook.delete",
            name,
            None,
        )?;
        let event = self.door.event(ctx, "webhook.delete", name, None, None);
        let name = name.to_owned();
        self.door
            .blocking(move |store| {
                store.write(|tx| {
                    if tx.execute("DELETE FROM webhooks WHERE name = ?1", params![&name])? == 0 {
                        return Err(not_found().into());
                    }
                    tx.execute("DELETE FROM outbox WHERE webhook = ?1", params![&name])?;
                    append_audit(tx, &event)
                })
            })
            .await
    }

    /// `GET /v1/webhooks/{name}/deliveries`: the newest attempts first (at most `limit`).
    pub async fn webhook_deliveries(
        &self,
        ctx: &Ctx,
        name: &str,
        limit: Option<u32>,
    ) -> Result<Vec<Delivery>, Error> {
        self.door.authorize(
            ctx,
            ControlAction::ManageWebhooks,
            "webhook.deliveries",
            name,
            None,
        )?;
        let limit = page_limit(limit)?;
        let name = name.to_owned();
        self.door
            .blocking(move |store| {
                store.read(|tx| {
                    if read(tx, &name)?.is_none() {
                        return Err(not_found().into());
                    }
                    tx.query(
                        "SELECT message, event, at, attempt, status, error, millis FROM deliveries \
                     WHERE webhook = ?1 ORDER BY seq DESC LIMIT ?2",
                        params![&name, i64::from(limit)],
                    )?
                    .iter()
                    .map(|r| {
                        Ok(Delivery {
                            message: r.get(0)?,
                            event: r.get(1)?,
                            at: Timestamp::from_micros(r.get(2)?),
                            attempt: r.get::<i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
                            status: r.get::<Option<i64>>(4)?.and_then(|s| u16::try_from(s).ok()),
                            error: r.get(5)?,
                            millis: r.get::<i64>(6)?.max(0) as u64,
                        })
                    })
                    .collect()
                })
            })
            .await
    }
}

fn not_found() -> Error {
    Error::not_found("webhook_not_found", "webhook not found")
}

/// Writes one message per subscribed webhook for `event` (in the reader's transaction).
/// `id` is the message id every attempt carries (`webhook-id`); `lane` orders a tenant's
/// messages.
pub(crate) fn enqueue(
    tx: &dyn Tx,
    hooks: &[Webhook],
    event: &str,
    id: &str,
    lane: &str,
    body: &str,
    now: Timestamp,
) -> StoreResult<usize> {
    let mut n = 0;
    for hook in hooks.iter().filter(|h| h.wants(event)) {
        tx.execute(
            "INSERT INTO outbox (id, webhook, lane, event, body, created_at, attempts, next_at, \
             lease_until, state, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6, NULL, 'pending', NULL)",
            params![id, &hook.name, lane, event, body, now.as_micros()],
        )?;
        n += 1;
    }
    Ok(n)
}
