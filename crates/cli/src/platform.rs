//! The platform as code: `bulkhead plan -f platform.toml` shows how the declared tiers, domains,
//! webhooks and collections differ from what is live, and `bulkhead apply -f platform.toml`
//! makes them so. A webhook's secret is compared by fingerprint (neither is ever shown).
//!
//! The file declares what it names; what it does not name is left as it is (the API removes
//! no tier, domain or collection). Secrets come from the environment: any string may hold
//! `${NAME}`, replaced by that variable (a missing one is an error naming it), so a domain's
//! URL need not be written in the file.
//!
//! The plan is made from the live state with the server's own rules (the same schema planner
//! and spec checks the server runs), and `apply` changes nothing unless every change is
//! allowed: a lossy schema change, an isolation change of a tier tenants use, an engine change
//! of a domain tenants are placed on, a change to a domain the server configures itself, a
//! tier naming a domain that exists nowhere, or a spec the server would refuse is refused by
//! name. Unchanged items are not sent, so applying twice changes nothing the second time.
//! What only the server can judge (a webhook URL's private target) is sent first; a refusal
//! mid-way names what was and was not applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bulkhead_api::{CollectionSpec, WebhookSpec, WebhookView};
use bulkhead_client::Client;
use bulkhead_core::model::{DomainSpec, TierSpec};
use bulkhead_core::schema::{Collection, SchemaStep, plan_change};
use bulkhead_core::{CollectionName, DomainName, TierName};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets};
use serde::{Deserialize, Serialize};

use crate::printer::Printer;

#[derive(Debug, Clone, Args)]
pub struct PlatformArgs {
    /// The platform file (TOML): `[tiers.NAME]`, `[domains.NAME]`, `[webhooks.NAME]`,
    /// `[collections.NAME]`.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Follow the rollouts the collection changes start until they are done.
    #[arg(long)]
    pub wait: bool,
}

/// What a platform file declares.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Platform {
    #[serde(default)]
    pub tiers: BTreeMap<TierName, TierSpec>,
    #[serde(default)]
    pub domains: BTreeMap<DomainName, DomainSpec>,
    #[serde(default)]
    pub collections: BTreeMap<CollectionName, CollectionSpec>,
    /// Webhooks by name (`[webhooks.<name>]`); secrets as `${ENV_VARS}`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookSpec>,
}

/// What the plan does with one declared item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Create,
    Change,
    Unchanged,
    Refused,
}

/// One line of a plan.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanItem {
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
    /// What the change does (fields, rollouts it starts), or why it is refused.
    pub detail: String,
}

/// Replaces every `${NAME}` in `text` by the environment variable `NAME`.
fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("an unclosed ${{ in {text:?}");
        };
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("${{{name}}} is not an environment variable name");
        }
        let value = env(name).with_context(|| {
            format!("environment variable {name} is not set (named as ${{{name}}})")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute_all(
    value: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    match value {
        toml::Value::String(text) => *text = substitute(text, env)?,
        toml::Value::Array(items) => {
            for item in items {
                substitute_all(item, env)?;
            }
        }
        toml::Value::Table(table) => {
            for (_, item) in table.iter_mut() {
                substitute_all(item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Platform {
    /// Parses a platform file's text, taking `${NAME}` from `env`.
    pub(crate) fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Platform> {
        let mut value: toml::Value = toml::from_str(text)?;
        substitute_all(&mut value, env)?;
        let platform: Platform = value.try_into()?;
        for (name, spec) in &platform.domains {
            spec.clone()
                .with_engine_defaults()
                .validate()
                .map_err(|e| anyhow::anyhow!("domains.{name}: {}", e.message))?;
        }
        for (name, spec) in &platform.collections {
            spec.validate()
                .map_err(|e| anyhow::anyhow!("collections.{name}: {}", e.message))?;
        }
        Ok(platform)
    }

    pub(crate) fn read(path: &Path) -> anyhow::Result<Platform> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Platform::parse(&text, &|name| std::env::var(name).ok())
            .with_context(|| format!("in {}", path.display()))
    }
}

/// What is live, as far as a plan needs it.
pub(crate) struct Live {
    pub tiers: BTreeMap<TierName, TierSpec>,
    pub domains: BTreeMap<DomainName, (DomainSpec, u64)>,
    pub collections: BTreeMap<CollectionName, Collection>,
    /// Tenants per tier.
    pub tenants: BTreeMap<TierName, u64>,
    /// Read only when the file declares webhooks (they are for platform admins).
    pub webhooks: BTreeMap<String, WebhookView>,
}

impl Live {
    pub(crate) async fn read(client: &Client, declared: &Platform) -> anyhow::Result<Live> {
        let tiers = client
            .list_tiers()
            .await?
            .items
            .into_iter()
            .map(|t| (t.name, t.spec))
            .collect();
        let domains = client
            .list_domains()
            .await?
            .items
            .into_iter()
            .map(|d| {
                let placed = d.tenants.values().sum();
                (d.name, (d.spec, placed))
            })
            .collect();
        let collections = client
            .list_collections()
            .await?
            .items
            .into_iter()
            .map(|c| {
                let collection = Collection {
                    name: c.name.clone(),
                    version: c.version,
                    fields: c.fields,
                };
                (c.name, collection)
            })
            .collect();
        let mut tenants: BTreeMap<TierName, u64> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = client.list_tenants(Some(1000), cursor.as_deref()).await?;
            for tenant in &page.items {
                *tenants.entry(tenant.tier.clone()).or_default() += 1;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let webhooks = if declared.webhooks.is_empty() {
            BTreeMap::new()
        } else {
            client
                .list_webhooks()
                .await?
                .into_iter()
                .map(|w| (w.name.clone(), w))
                .collect()
        };
        Ok(Live {
            tiers,
            domains,
            collections,
            tenants,
            webhooks,
        })
    }
}

/// The domains a server configures itself (its own data directory or catalog database):
/// stored, but not put through the API.
const SERVER_DOMAINS: &[&str] = &["local"];

/// Compares `declared` with `live`: one item per declared webhook, domain, tier and
/// collection, in the order `apply` sends them. Each is checked as the server checks it
/// (a tier's retention rules against its collections as the file leaves them), so `apply`
/// refuses before it changes anything.
pub(crate) fn plan(declared: &Platform, live: &Live) -> Vec<PlanItem> {
    let mut items = Vec::new();
    let placements: u64 = live.tenants.values().sum();
    let changes: BTreeMap<&CollectionName, _> = declared
        .collections
        .iter()
        .map(|(name, spec)| (name, plan_change(name, live.collections.get(name), spec)))
        .collect();
    // The collections as they are once the file is applied.
    let mut after: BTreeMap<CollectionName, Collection> = live.collections.clone();
    for (name, change) in &changes {
        if let Ok(plan) = change {
            after.insert((*name).clone(), plan.collection.clone());
        }
    }
    for (name, spec) in &declared.webhooks {
        let item = |action, detail: String| PlanItem {
            kind: "webhook",
            name: name.clone(),
            action,
            detail,
        };
        let invalid = bulkhead_api::validate_webhook_name(name)
            .and_then(|()| spec.validate())
            .err();
        items.push(match (invalid, live.webhooks.get(name)) {
            (Some(e), _) => item(Action::Refused, e.message),
            (None, None) => item(
                Action::Create,
                format!("to {} for {}", spec.url, spec.events.join(",")),
            ),
            (None, Some(current)) => {
                let mut changed = Vec::new();
                if current.url != spec.url {
                    changed.push(format!("url {} → {}", current.url, spec.url));
                }
                if current.events != spec.events {
                    changed.push(format!(
                        "events {} → {}",
                        current.events.join(","),
                        spec.events.join(",")
                    ));
                }
                if current.format != spec.format {
                    changed.push(format!("format {:?} → {:?}", current.format, spec.format));
                }
                if spec
                    .disable_after
                    .is_some_and(|n| n != current.disable_after)
                {
                    changed.push("disable_after".into());
                }
                if spec.enabled.is_some_and(|e| e != current.enabled) {
                    changed.push(
                        if current.enabled {
                            "disabled"
                        } else {
                            "re-enabled"
                        }
                        .into(),
                    );
                }
                // Secrets are compared by fingerprint: neither side is ever shown.
                if spec.secret.as_deref().is_some_and(|s| {
                    bulkhead_core::keys::fingerprint(s) != current.secret_fingerprint
                }) {
                    changed.push("secret rotated (the old one signs for 24 h more)".into());
                }
                if changed.is_empty() {
                    item(Action::Unchanged, String::new())
                } else {
                    item(Action::Change, changed.join("; "))
                }
            }
        });
    }
    for (name, spec) in &declared.domains {
        let spec = spec.clone().with_engine_defaults();
        let item = |action, detail: String| PlanItem {
            kind: "domain",
            name: name.to_string(),
            action,
            detail,
        };
        items.push(match live.domains.get(name) {
            None => item(Action::Create, format!("{} domain", spec.engine)),
            // Views redact URLs: compare the redacted forms.
            Some((current, _)) if *current == spec.redacted() => {
                item(Action::Unchanged, String::new())
            }
            Some(_) if SERVER_DOMAINS.contains(&name.as_str()) => item(
                Action::Refused,
                "configured by the server at start (its settings come from the server's configuration)".into(),
            ),
            Some((current, placed)) if current.engine != spec.engine && *placed > 0 => item(
                Action::Refused,
                format!(
                    "{placed} tenants are placed on it; its engine cannot change from {} to {}",
                    current.engine, spec.engine
                ),
            ),
            Some((current, _)) => item(Action::Change, differences(current, &spec.redacted())),
        });
    }
    for (name, spec) in &declared.tiers {
        let item = |action, detail: String| PlanItem {
            kind: "tier",
            name: name.to_string(),
            action,
            detail,
        };
        let missing = spec
            .domains
            .iter()
            .find(|d| !live.domains.contains_key(*d) && !declared.domains.contains_key(*d));
        let used = live.tenants.get(name).copied().unwrap_or(0);
        let invalid = spec.validate(|c| after.get(c)).err();
        items.push(match (live.tiers.get(name), missing) {
            _ if invalid.is_some() => item(
                Action::Refused,
                invalid.map(|e| e.message).unwrap_or_default(),
            ),
            (_, Some(domain)) => item(
                Action::Refused,
                format!("names domain '{domain}', which is neither live nor declared"),
            ),
            (None, None) => item(Action::Create, format!("{} tier", spec.isolation)),
            (Some(current), None) if current == spec => item(Action::Unchanged, String::new()),
            (Some(current), None) if current.isolation != spec.isolation && used > 0 => item(
                Action::Refused,
                format!(
                    "{used} tenants use it; its isolation cannot change from {} to {} under them \
                     (move them to another tier first)",
                    current.isolation, spec.isolation
                ),
            ),
            (Some(current), None) => item(Action::Change, differences(current, spec)),
        });
    }
    for name in declared.collections.keys() {
        let item = |action, detail: String| PlanItem {
            kind: "collection",
            name: name.to_string(),
            action,
            detail,
        };
        let current = live.collections.get(name);
        items.push(match &changes[name] {
            Err(e) => item(Action::Refused, e.message.clone()),
            Ok(plan) if !plan.changed => item(Action::Unchanged, String::new()),
            Ok(plan) => {
                let steps: Vec<String> = plan.steps.iter().map(step).collect();
                let action = if current.is_none() {
                    Action::Create
                } else {
                    Action::Change
                };
                item(
                    action,
                    format!(
                        "version {}: {}; starts a rollout to the storage of {placements} tenants",
                        plan.collection.version,
                        steps.join(", ")
                    ),
                )
            }
        });
    }
    items
}

/// One schema step, as an operator reads it.
fn step(step: &SchemaStep) -> String {
    match step {
        SchemaStep::CreateCollection => "create the collection".to_owned(),
        SchemaStep::AddField { field, spec } => format!("add field {field} ({})", spec.field_type),
        SchemaStep::CreateIndex {
            field,
            unique: true,
        } => format!("unique index on {field}"),
        SchemaStep::CreateIndex {
            field,
            unique: false,
        } => format!("index on {field}"),
        SchemaStep::DropIndex { field } => format!("drop the index on {field}"),
    }
}

/// The top-level fields that differ between two values of one type, by name.
fn differences<T: Serialize>(current: &T, wanted: &T) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(current), serde_json::to_value(wanted))
    else {
        return "changed".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                v.map_or_else(|| "(unset)".to_owned(), serde_json::Value::to_string)
            };
            format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
        })
        .collect();
    changed.join("; ")
}

fn table(items: &[PlanItem]) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["kind", "name", "action", "detail"]);
    for item in items {
        let action = serde_json::to_value(item.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        table.add_row(vec![
            item.kind.to_owned(),
            item.name.clone(),
            action,
            item.detail.clone(),
        ]);
    }
    let count = |a| items.iter().filter(|i| i.action == a).count();
    format!(
        "{table}\n{} to create, {} to change, {} unchanged, {} refused",
        count(Action::Create),
        count(Action::Change),
        count(Action::Unchanged),
        count(Action::Refused)
    )
}

/// `bulkhead plan -f FILE`: the differences, changing nothing.
pub(crate) async fn show_plan(
    client: &Client,
    out: &Printer,
    args: PlatformArgs,
) -> anyhow::Result<()> {
    let declared = Platform::read(&args.file)?;
    let live = Live::read(client, &declared).await?;
    let items = plan(&declared, &live);
    out.show(&items, |items| table(items))
}

/// `bulkhead apply -f FILE`: every change of the plan, or none when one is refused.
pub(crate) async fn apply(client: &Client, out: &Printer, args: ApplyArgs) -> anyhow::Result<()> {
    let declared = Platform::read(&args.platform.file)?;
    let live = Live::read(client, &declared).await?;
    let items = plan(&declared, &live);
    let refused: Vec<&PlanItem> = items
        .iter()
        .filter(|i| i.action == Action::Refused)
        .collect();
    if !refused.is_empty() {
        let names: Vec<String> = refused
            .iter()
            .map(|i| format!("{} {}: {}", i.kind, i.name, i.detail))
            .collect();
        bail!("nothing applied; refused:\n  {}", names.join("\n  "));
    }
    // In the plan's order: webhooks first (they hear of everything the rest starts, and
    // only the server knows whether their URL may be private), then domains, tiers (which
    // name domains) and collections.
    let mut done: Vec<String> = Vec::new();
    let mut rollouts = Vec::new();
    let todo: Vec<&PlanItem> = items
        .iter()
        .filter(|i| matches!(i.action, Action::Create | Action::Change))
        .collect();
    for (at, item) in todo.iter().enumerate() {
        let sent = send(client, &declared, item).await;
        match sent {
            Ok(rollout) => {
                rollouts.extend(rollout);
                done.push(format!("{} {}", item.kind, item.name));
            }
            Err(e) => {
                let left: Vec<String> = todo[at + 1..]
                    .iter()
                    .map(|i| format!("{} {}", i.kind, i.name))
                    .collect();
                let list = |names: &[String]| {
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                };
                bail!(
                    "{} {} was refused: {e:#}\n  applied before it: {}\n  not applied: {}\n\
                     (apply the file again once it is fixed: what is applied shows as unchanged)",
                    item.kind,
                    item.name,
                    list(&done),
                    list(&left)
                );
            }
        }
    }
    out.show(&items, |items| table(items))?;
    if args.wait {
        for id in rollouts {
            crate::rollouts::follow(client, out, &id).await?;
        }
    } else if !rollouts.is_empty() && !out.json {
        eprintln!(
            "rollouts started: {} (follow with `bulkhead rollout get ID --wait`)",
            rollouts.join(", ")
        );
    }
    Ok(())
}

/// Sends one planned change; a collection change answers the rollout it starts, if any.
async fn send(
    client: &Client,
    declared: &Platform,
    item: &PlanItem,
) -> anyhow::Result<Option<String>> {
    let name = item.name.as_str();
    match item.kind {
        "webhook" => {
            let view = client.put_webhook(name, &declared.webhooks[name]).await?;
            if let Some(secret) = view.secret {
                eprintln!("webhook {name}: signing secret (shown once): {secret}");
            }
        }
        "domain" => {
            let key = DomainName::parse(name)?;
            client.put_domain(&key, &declared.domains[&key]).await?;
        }
        "tier" => {
            let key = TierName::parse(name)?;
            client.put_tier(&key, &declared.tiers[&key]).await?;
        }
        "collection" => {
            let key = CollectionName::parse(name)?;
            let view = client
                .submit_collection(&key, &declared.collections[&key])
                .await?;
            return Ok(view.rollout.filter(|r| r.placements_left > 0).map(|r| r.id));
        }
        other => bail!("a plan item of unknown kind {other}"),
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "EAST_URL").then(|| "postgres://bk:s3cret@east:5432/bk".to_owned())
    }

    #[test]
    fn secrets_come_from_the_environment_and_a_missing_one_is_named() {
        let text = r#"
            [domains.east]
            engine = "postgres"
            url = "${EAST_URL}"
            silos = true
        "#;
        let platform = Platform::parse(text, &env).unwrap();
        let east = &platform.domains[&DomainName::parse("east").unwrap()];
        assert_eq!(
            east.url.as_ref().unwrap().expose(),
            "postgres://bk:s3cret@east:5432/bk"
        );
        let missing = Platform::parse(&text.replace("EAST_URL", "WEST_URL"), &env).unwrap_err();
        assert!(format!("{missing:#}").contains("WEST_URL"), "{missing:#}");
        let bad = Platform::parse(&text.replace("${EAST_URL}", "${EAST"), &env).unwrap_err();
        assert!(format!("{bad:#}").contains("unclosed"), "{bad:#}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err =
            Platform::parse("[tiers.free]\nisolation = \"pool\"\ncolour = 1\n", &env).unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
        let err = Platform::parse("[webhooks.x]\n", &env).unwrap_err();
        assert!(format!("{err:#}").contains("webhooks"), "{err:#}");
    }

    fn empty_live() -> Live {
        Live {
            tiers: BTreeMap::new(),
            domains: BTreeMap::new(),
            collections: BTreeMap::new(),
            tenants: BTreeMap::new(),
            webhooks: BTreeMap::new(),
        }
    }

    fn refusals(text: &str) -> Vec<(String, String)> {
        let declared = Platform::parse(text, &env).unwrap();
        plan(&declared, &empty_live())
            .into_iter()
            .filter(|i| i.action == Action::Refused)
            .map(|i| (format!("{} {}", i.kind, i.name), i.detail))
            .collect()
    }

    /// What the server would refuse is refused by the plan, so `apply` stops before it
    /// changes anything: a retention rule on a field the file declares as text, a webhook
    /// event that does not exist, a malformed secret.
    #[test]
    fn the_plan_refuses_what_the_server_would() {
        let text = r#"
            [tiers.gold]
            isolation = "silo"
            retention.notes = { field = "title", hot_days = 30 }

            [collections.notes.fields]
            title = { type = "text" }
            seen = { type = "timestamp" }

            [webhooks.billing]
            url = "https://hooks.example.com/in"
            events = ["tenant.exploded"]

            [webhooks.Bad]
            url = "https://hooks.example.com/in"
            events = ["*"]

            [webhooks.short]
            url = "https://hooks.example.com/in"
            events = ["*"]
            secret = "whsec_c2hvcnQ="
        "#;
        let refused = refusals(text);
        let names: Vec<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "webhook Bad",
                "webhook billing",
                "webhook short",
                "tier gold"
            ],
            "{refused:?}"
        );
        assert!(refused[0].1.contains("a-z"), "{refused:?}");
        assert!(refused[1].1.contains("tenant.exploded"), "{refused:?}");
        assert!(refused[2].1.contains("24 to 64 bytes"), "{refused:?}");
        assert!(
            refused[3].1.contains("title is a text field"),
            "{refused:?}"
        );
        // The same rule on the timestamp field the file declares is fine.
        let fixed = text
            .replace("field = \"title\"", "field = \"seen\"")
            .replace("tenant.exploded", "tenant.created")
            .replace("[webhooks.Bad]", "[webhooks.bad]")
            .replace(
                "whsec_c2hvcnQ=",
                "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3",
            );
        assert_eq!(refusals(&fixed), []);
    }

    proptest::proptest! {
        /// Text without `${` comes back as it is; any text either substitutes or errors,
        /// never panics.
        #[test]
        fn substitution_never_panics(text in ".{0,80}") {
            let out = substitute(&text, &env);
            if !text.contains("${") {
                proptest::prop_assert_eq!(out.unwrap(), text);
            }
        }
    }
}
