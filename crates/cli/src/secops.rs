//! Security operations: `bulkhead findings list|ack` and `bulkhead webhook
//! put|list|get|delete|deliveries`.

use bulkhead_api::{
    Delivery, Finding, FindingKind, FindingQuery, FindingState, WebhookFormat, WebhookSpec,
    WebhookView,
};
use bulkhead_client::Client;
use bulkhead_core::TenantId;
use clap::{Subcommand, ValueEnum};

use crate::audit::Newest;
use crate::output::{empty, table};
use crate::printer::{Printer, all_pages};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Open,
    Acknowledged,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Standard,
    Slack,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FindingsCmd {
    /// List findings, newest first (platform admins and operators).
    List {
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// One kind: probing, enumeration, auth_failures, admin_data_access,
        /// privileged_grant, ceiling_weakened, collection_export, move_rolled_back,
        /// quota_exceeded, chain_broken, webhook_disabled.
        #[arg(long, value_parser = |s: &str| FindingKind::parse(s).ok_or_else(|| format!("{s:?} is not a finding kind")))]
        kind: Option<FindingKind>,
        #[arg(long, value_parser = TenantId::parse)]
        tenant_id: Option<TenantId>,
        #[command(flatten)]
        page: Newest,
    },
    /// Acknowledge a finding: it stops folding repeats (a new one opens for them).
    Ack { id: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCmd {
    /// Create or change a webhook (platform admins). A new one without `--secret` gets a
    /// secret, printed once.
    Put {
        name: String,
        /// Where to deliver (`https://…`); `--url` names the Bulkhead server.
        #[arg(long = "target")]
        target: String,
        /// Event types, comma-separated (`tenant.created,finding.opened`), or `*`.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// `whsec_…`; a new one signs at once and the old one keeps signing for 24 hours.
        #[arg(long, env = "BULKHEAD_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Failed deliveries in a row after which it is disabled [default: 50].
        #[arg(long)]
        disable_after: Option<u32>,
        /// Re-enable a disabled webhook (what waited is delivered).
        #[arg(long)]
        enable: bool,
    },
    /// List webhooks.
    List,
    /// Show one webhook.
    Get { name: String },
    /// Delete a webhook and its waiting messages.
    Delete { name: String },
    /// A webhook's delivery log, newest first.
    Deliveries {
        name: String,
        #[arg(long)]
        limit: Option<u32>,
    },
}

pub(crate) async fn findings(
    client: &Client,
    out: &Printer,
    cmd: FindingsCmd,
) -> anyhow::Result<()> {
    match cmd {
        FindingsCmd::List {
            state,
            kind,
            tenant_id,
            page,
        } => {
            let query = FindingQuery {
                state: state.map(|s| match s {
                    StateArg::Open => FindingState::Open,
                    StateArg::Acknowledged => FindingState::Acknowledged,
                }),
                kind,
                tenant: tenant_id,
                limit: None,
                cursor: None,
            };
            let paging = page.paging();
            let page = all_pages(&paging, |limit, cursor| {
                let query = FindingQuery {
                    limit,
                    cursor,
                    ..query.clone()
                };
                async move { client.list_findings(&query).await }
            })
            .await?;
            out.page(&page, |items: &[Finding]| findings_table(items))
        }
        FindingsCmd::Ack { id } => {
            let finding = client.acknowledge_finding(&id).await?;
            out.show(&finding, |f| findings_table(std::slice::from_ref(f)))
        }
    }
}

fn findings_table(items: &[Finding]) -> String {
    if items.is_empty() {
        return empty("findings");
    }
    let mut t = table(&[
        "id",
        "severity",
        "kind",
        "state",
        "tenant",
        "principal",
        "count",
        "last seen",
        "summary",
    ]);
    for f in items {
        t.add_row(vec![
            f.id.clone(),
            f.severity.as_str().to_owned(),
            f.kind.to_string(),
            match f.state {
                FindingState::Open => "open".to_owned(),
                FindingState::Acknowledged => "acknowledged".to_owned(),
            },
            f.tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            f.principal.clone(),
            f.count.to_string(),
            f.last_seen.to_string(),
            f.summary.clone(),
        ]);
    }
    t.to_string()
}

fn webhooks_table(items: &[WebhookView]) -> String {
    if items.is_empty() {
        return empty("webhooks");
    }
    let mut t = table(&[
        "name", "url", "events", "format", "enabled", "failures", "pending", "secret",
    ]);
    for w in items {
        t.add_row(vec![
            w.name.clone(),
            w.url.clone(),
            w.events.join(","),
            format!("{:?}", w.format).to_lowercase(),
            if w.enabled {
                "yes".to_owned()
            } else {
                format!("no: {}", w.disabled_reason.as_deref().unwrap_or_default())
            },
            w.failures.to_string(),
            w.pending.to_string(),
            format!("fingerprint {}", w.secret_fingerprint),
        ]);
    }
    t.to_string()
}

fn deliveries_table(items: &[Delivery]) -> String {
    if items.is_empty() {
        return empty("deliveries");
    }
    let mut t = table(&["at", "message", "event", "attempt", "status", "ms", "error"]);
    for d in items {
        t.add_row(vec![
            d.at.to_string(),
            d.message.clone(),
            d.event.clone(),
            d.attempt.to_string(),
            d.status.map(|s| s.to_string()).unwrap_or_default(),
            d.millis.to_string(),
            d.error.clone().unwrap_or_default(),
        ]);
    }
    t.to_string()
}

pub(crate) async fn webhook(client: &Client, out: &Printer, cmd: WebhookCmd) -> anyhow::Result<()> {
    match cmd {
        WebhookCmd::Put {
            name,
            target,
            events,
            secret,
            format,
            disable_after,
            enable,
        } => {
            let spec = WebhookSpec {
                url: target,
                events,
                secret,
                format: match format {
                    Some(FormatArg::Slack) => WebhookFormat::Slack,
                    _ => WebhookFormat::Standard,
                },
                disable_after,
                enabled: enable.then_some(true),
            };
            let view = client.put_webhook(&name, &spec).await?;
            out.show(&view, |w| {
                let mut text = webhooks_table(std::slice::from_ref(w));
                if let Some(secret) = &w.secret {
                    text.push_str(&format!(
                        "\nsigning secret (shown once; keep it with the receiver): {secret}"
                    ));
                }
                text
            })
        }
        WebhookCmd::List => {
            let items = client.list_webhooks().await?;
            out.show(&items, |items| webhooks_table(items))
        }
        WebhookCmd::Get { name } => {
            let view = client.get_webhook(&name).await?;
            out.show(&view, |w| webhooks_table(std::slice::from_ref(w)))
        }
        WebhookCmd::Delete { name } => {
            client.delete_webhook(&name).await?;
            out.done_as("deleted", "webhook", &name)
        }
        WebhookCmd::Deliveries { name, limit } => {
            let items = client.webhook_deliveries(&name, limit).await?;
            out.show(&items, |items| deliveries_table(items))
        }
    }
}
