//! How results look on a terminal: one table per resource (comfy-table), or pretty JSON with
//! `--json`. Functions here only format; `commands` decides what to print.

use std::collections::BTreeSet;

use bulkhead_api::{
    AuditEntry, CollectionView, CreatedKey, DomainView, KeyView, MoveView, RolloutView, TenantView,
    TierView, TopBy, UsagePeriod, UsageTop,
};
use bulkhead_core::model::{Isolation, Labels, TierLimits};
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use serde_json::Value;

/// Longest cell shown for a record value before it is cut with "…".
const MAX_CELL_CHARS: usize = 60;

/// Fields every record has; listed after the collection's own fields.
const RECORD_SYSTEM_FIELDS: [&str; 4] = ["id", "version", "created_at", "updated_at"];

pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

/// A two-column property sheet for one object.
fn sheet(rows: Vec<(&str, String)>) -> String {
    let mut table = table(&["property", "value"]);
    for (name, value) in rows {
        table.add_row(vec![name.to_owned(), value]);
    }
    table.to_string()
}

fn labels_cell(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON value as a table cell: strings as they are, `null` as nothing, anything else as
/// compact JSON; long values are shortened.
fn value_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(MAX_CELL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

pub fn empty(what: &str) -> String {
    format!("no {what}")
}

pub fn tenants(tenants: &[TenantView]) -> String {
    if tenants.is_empty() {
        return empty("tenants");
    }
    let mut table = table(&[
        "id",
        "name",
        "tier",
        "status",
        "isolation",
        "namespace",
        "labels",
    ]);
    for t in tenants {
        table.add_row(vec![
            t.id.to_string(),
            t.name.clone(),
            t.tier.to_string(),
            t.status.to_string(),
            t.placement.isolation.to_string(),
            t.placement.namespace.clone(),
            labels_cell(&t.labels),
        ]);
    }
    table.to_string()
}

pub fn tenant(t: &TenantView) -> String {
    let p = &t.placement;
    sheet(vec![
        ("id", t.id.to_string()),
        ("name", t.name.clone()),
        ("tier", t.tier.to_string()),
        ("status", t.status.to_string()),
        ("labels", labels_cell(&t.labels)),
        ("created_at", t.created_at.to_string()),
        ("updated_at", t.updated_at.to_string()),
        ("domain", p.domain.to_string()),
        ("isolation", p.isolation.to_string()),
        ("namespace", p.namespace.clone()),
        ("write_state", p.write_state.to_string()),
        ("epoch", p.epoch.to_string()),
        ("schema_version", p.schema_version.to_string()),
    ])
}

fn where_(p: &bulkhead_core::model::Placement) -> String {
    format!("{} on {} ({})", p.isolation, p.domain, p.namespace)
}

pub fn moved(m: &MoveView) -> String {
    let mut rows = vec![
        ("id", m.id.clone()),
        ("tenant", m.tenant.to_string()),
        ("phase", m.phase.to_string()),
        ("from", where_(&m.source)),
        ("to", where_(&m.target)),
        (
            "rows",
            format!("{} of {} copied", m.rows_copied, m.rows_total),
        ),
        ("rate", format!("{:.0} rows/s", m.rate)),
        ("verified", format!("{} records compared", m.rows_verified)),
    ];
    if let Some(tier) = &m.target_tier {
        rows.push(("new tier", tier.to_string()));
    }
    if let Some(eta) = m.eta_seconds {
        rows.push(("eta", format!("{eta:.0} s")));
    }
    if let Some(ms) = m.freeze_ms {
        rows.push(("writes held", format!("{ms} ms")));
    }
    if let Some(pace) = &m.pace {
        rows.push((
            "pace",
            format!("{:.0} % of the time ({})", pace.duty * 100.0, pace.state),
        ));
        rows.push(("why", pace.reason.clone()));
    }
    if let Some(error) = &m.error {
        rows.push(("error", error.clone()));
    }
    rows.push(("started_by", m.started_by.clone()));
    rows.push(("created_at", m.created_at.to_string()));
    rows.push(("updated_at", m.updated_at.to_string()));
    sheet(rows)
}

pub fn moves(moves: &[MoveView]) -> String {
    if moves.is_empty() {
        return empty("moves");
    }
    let mut table = table(&[
        "id",
        "tenant",
        "phase",
        "from",
        "to",
        "rows",
        "writes held",
        "created_at",
    ]);
    for m in moves {
        table.add_row(vec![
            m.id.clone(),
            m.tenant.to_string(),
            m.phase.to_string(),
            where_(&m.source),
            where_(&m.target),
            format!("{}/{}", m.rows_copied, m.rows_total),
            m.freeze_ms.map(|ms| format!("{ms} ms")).unwrap_or_default(),
            m.created_at.to_string(),
        ]);
    }
    table.to_string()
}

pub fn audit(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return empty("audit entries");
    }
    let mut table = table(&[
        "at", "actor", "action", "target", "tenant", "outcome", "request", "detail",
    ]);
    for e in entries {
        let detail = e.detail.clone().map(Value::String).unwrap_or(Value::Null);
        table.add_row(vec![
            e.at.to_string(),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
            e.tenant.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            e.outcome.clone(),
            e.request_id.clone(),
            value_cell(&detail),
        ]);
    }
    table.to_string()
}

pub fn usage(periods: &[UsagePeriod]) -> String {
    if periods.is_empty() {
        return empty("usage");
    }
    let mut table = table(&[
        "from",
        "tenant",
        "requests",
        "writes",
        "records written",
        "in",
        "out",
        "rows examined",
        "query ms",
        "refused (rate/conc/quota/budget)",
        "records",
        "stored",
        "cold",
    ]);
    for p in periods {
        let r = &p.refused;
        table.add_row(vec![
            p.from.to_string(),
            p.tenant.to_string(),
            p.requests.to_string(),
            p.writes.to_string(),
            p.records_written.to_string(),
            bytes(p.bytes_in),
            bytes(p.bytes_out),
            p.rows_examined.to_string(),
            format!("{:.1}", p.query_ms),
            format!("{}/{}/{}/{}", r.rate, r.concurrency, r.quota, r.budget),
            p.storage
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| s.records.to_string()),
            p.storage
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| bytes(s.bytes)),
            p.storage
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| bytes(s.cold_bytes)),
        ]);
    }
    table.to_string()
}

pub fn usage_top(top: &UsageTop) -> String {
    if top.items.is_empty() {
        return empty("usage in that window");
    }
    let by = serde_json::to_value(top.by)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut table = table(&["#", "tenant", &by]);
    for (i, t) in top.items.iter().enumerate() {
        let value = match top.by {
            TopBy::Bytes | TopBy::BytesIn | TopBy::BytesOut => bytes(t.value as u64),
            TopBy::QueryTime => format!("{:.1} ms", t.value),
            _ => format!("{}", t.value as u64),
        };
        table.add_row(vec![(i + 1).to_string(), t.tenant.to_string(), value]);
    }
    format!("{table}\nfrom {} to {}", top.from, top.to)
}

/// Bytes in the largest binary unit that keeps the number at least 1.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A tier's limits in one line; the server's defaults apply to what is not named.
fn limits_cell(limits: &TierLimits) -> String {
    let mut parts = Vec::new();
    if let Some(rate) = limits.requests_per_second {
        let burst = limits.request_burst.unwrap_or(rate);
        parts.push(format!("{rate} req/s (burst {burst})"));
    }
    if let Some(max) = limits.max_concurrent_requests {
        parts.push(format!("{max} in flight"));
    }
    if let Some(ms) = limits.query_time_ms {
        parts.push(format!("query {ms} ms"));
    }
    if let Some(rows) = limits.query_rows_examined {
        parts.push(format!("{rows} rows examined"));
    }
    if let Some(bytes) = limits.bulk_max_bytes {
        parts.push(format!("bulk {bytes} B"));
    }
    if let Some(records) = limits.max_records {
        parts.push(format!("at most {records} records"));
    }
    if let Some(stored) = limits.max_bytes {
        parts.push(format!("at most {} stored", bytes(stored)));
    }
    parts.join(", ")
}

pub fn tiers(tiers: &[TierView]) -> String {
    if tiers.is_empty() {
        return empty("tiers");
    }
    let mut table = table(&[
        "name",
        "isolation",
        "domains",
        "monthly price",
        "limits",
        "description",
    ]);
    for t in tiers {
        let domains = if t.spec.domains.is_empty() {
            "any".to_owned()
        } else {
            t.spec
                .domains
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.add_row(vec![
            t.name.to_string(),
            t.spec.isolation.to_string(),
            domains,
            format!("{} {}", t.spec.monthly_price, t.spec.currency),
            limits_cell(&t.spec.limits),
            t.spec.description.clone(),
        ]);
    }
    table.to_string()
}

/// Domains; connection URLs arrive redacted from the server and get a column only when some
/// domain has one, as does `dedicated to`.
pub fn domains(domains: &[DomainView]) -> String {
    if domains.is_empty() {
        return empty("domains");
    }
    let with_url = domains.iter().any(|d| d.spec.url.is_some());
    let with_dedicated = domains.iter().any(|d| d.spec.dedicated_to.is_some());
    let mut header = vec!["name", "engine"];
    if with_url {
        header.push("url");
    }
    if with_dedicated {
        header.push("dedicated to");
    }
    header.extend([
        "pool",
        "bridge",
        "silo",
        "silos",
        "ready silos",
        "max dedicated",
        "bridge per file",
        "monthly cost",
        "available",
    ]);
    let mut table = table(&header);
    for d in domains {
        let count = |isolation| d.tenants.get(&isolation).copied().unwrap_or(0).to_string();
        let max = match d.spec.max_dedicated_tenants {
            0 => "unlimited".to_owned(),
            n => n.to_string(),
        };
        let yes_no = |on: bool| if on { "yes" } else { "no" }.to_owned();
        let silos = d.spec.engine == bulkhead_core::model::ENGINE_SQLITE || d.spec.silos;
        let mut row = vec![d.name.to_string(), d.spec.engine.clone()];
        if with_url {
            // Redacted by the server already; redacting again costs nothing and guards an
            // older server.
            row.push(
                d.spec
                    .url
                    .as_ref()
                    .map(|u| u.redacted())
                    .unwrap_or_default(),
            );
        }
        if with_dedicated {
            row.push(
                d.spec
                    .dedicated_to
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            );
        }
        row.extend([
            count(Isolation::Pool),
            count(Isolation::Bridge),
            count(Isolation::Silo),
            yes_no(silos),
            format!("{}/{}", d.spares_ready, d.spec.ready_silos),
            max,
            d.spec.bridge_tenants_per_file.to_string(),
            format!("{} {}", d.spec.monthly_cost, d.spec.currency),
            yes_no(d.available),
        ]);
        table.add_row(row);
    }
    table.to_string()
}

pub fn collections(collections: &[CollectionView]) -> String {
    if collections.is_empty() {
        return empty("collections");
    }
    let mut table = table(&["name", "version", "fields"]);
    for c in collections {
        let fields = c
            .fields
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        table.add_row(vec![c.name.to_string(), c.version.to_string(), fields]);
    }
    table.to_string()
}

pub fn collection(c: &CollectionView) -> String {
    let mut table = table(&["field", "type", "required", "unique", "index", "default"]);
    let mark = |on: bool| if on { "yes" } else { "" }.to_owned();
    for (name, f) in &c.fields {
        table.add_row(vec![
            name.to_string(),
            f.field_type.to_string(),
            mark(f.required),
            mark(f.unique),
            mark(f.indexed()),
            f.default.as_ref().map(value_cell).unwrap_or_default(),
        ]);
    }
    let mut out = format!("collection {} (version {})\n{table}", c.name, c.version);
    if let Some(r) = &c.rollout {
        if r.placements_left == 0 {
            out.push_str(&format!("\nrollout {}: done", r.id));
        } else {
            out.push_str(&format!(
                "\nrollout {}: {} ({} of {} placements left; follow with `bulkhead rollout get {} --wait`)",
                r.id, r.state, r.placements_left, r.placements_total, r.id
            ));
        }
    }
    if let Some(behind) = c.placements_behind.filter(|n| *n > 0) {
        out.push_str(&format!(
            "\n{behind} placements do not have this version yet"
        ));
    }
    out
}

pub fn rollout(r: &RolloutView) -> String {
    rollouts(std::slice::from_ref(r))
}

pub fn rollouts(rollouts: &[RolloutView]) -> String {
    if rollouts.is_empty() {
        return empty("rollouts");
    }
    let mut table = table(&[
        "id",
        "collection",
        "version",
        "state",
        "done",
        "left",
        "failed",
        "wave",
        "rate/s",
        "eta s",
        "last error",
    ]);
    for r in rollouts {
        table.add_row(vec![
            r.id.clone(),
            r.collection.to_string(),
            r.version.to_string(),
            r.state.clone(),
            r.placements_done.to_string(),
            r.placements_left.to_string(),
            r.placements_failed.to_string(),
            r.wave.clone().unwrap_or_default(),
            format!("{:.1}", r.rate),
            r.eta_seconds.map(|s| format!("{s:.0}")).unwrap_or_default(),
            r.last_error.clone().unwrap_or_default(),
        ]);
    }
    table.to_string()
}

pub fn keys(keys: &[KeyView]) -> String {
    if keys.is_empty() {
        return empty("keys");
    }
    let mut table = table(&[
        "id", "name", "role", "tenant", "created", "expires", "revoked",
    ]);
    for k in keys {
        table.add_row(vec![
            k.id.to_string(),
            k.name.clone(),
            k.role.clone(),
            k.tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            k.created_at.to_string(),
            k.expires_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "never".to_owned()),
            if k.revoked { "yes" } else { "" }.to_owned(),
        ]);
    }
    table.to_string()
}

/// The one time a secret is shown: set apart on its own line so it is hard to miss.
pub fn created_key(created: &CreatedKey) -> String {
    let k = &created.view;
    let owner = match &k.tenant {
        Some(tenant) => format!("tenant {tenant}"),
        None => "platform".to_owned(),
    };
    let expires = k
        .expires_at
        .map(|t| format!(", expires {t}"))
        .unwrap_or_default();
    format!(
        "created key {} ({:?}, role {}, {owner}{expires})\n\n    {}\n\n\
         this secret will not be shown again: store it now",
        k.id, k.name, k.role, created.key
    )
}

pub fn records(records: &[Value]) -> String {
    if records.is_empty() {
        return empty("records");
    }
    let mut fields = BTreeSet::new();
    for record in records {
        if let Value::Object(map) = record {
            fields.extend(
                map.keys()
                    .filter(|k| !RECORD_SYSTEM_FIELDS.contains(&k.as_str()))
                    .cloned(),
            );
        }
    }
    let mut columns = vec!["id".to_owned()];
    columns.extend(fields);
    columns.extend(["version".to_owned(), "updated_at".to_owned()]);
    let mut table = table(&columns.iter().map(String::as_str).collect::<Vec<_>>());
    for record in records {
        table.add_row(
            columns
                .iter()
                .map(|c| record.get(c).map(value_cell).unwrap_or_default())
                .collect::<Vec<_>>(),
        );
    }
    table.to_string()
}

/// Aggregation groups: one column per group key and metric, nothing else.
pub fn groups(groups: &[serde_json::Map<String, Value>]) -> String {
    if groups.is_empty() {
        return empty("groups");
    }
    let mut columns: Vec<&str> = Vec::new();
    for group in groups {
        for key in group.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let mut table = table(&columns);
    for group in groups {
        table.add_row(
            columns
                .iter()
                .map(|c| group.get(*c).map(value_cell).unwrap_or_default())
                .collect::<Vec<_>>(),
        );
    }
    table.to_string()
}

pub fn record(record: &Value) -> String {
    let Value::Object(map) = record else {
        return value_cell(record);
    };
    let mut rows: Vec<(&str, String)> = Vec::new();
    let system = RECORD_SYSTEM_FIELDS
        .iter()
        .filter_map(|k| map.get_key_value(*k));
    let own = map
        .iter()
        .filter(|(k, _)| !RECORD_SYSTEM_FIELDS.contains(&k.as_str()));
    for (name, value) in system.chain(own) {
        rows.push((name.as_str(), value_cell(value)));
    }
    sheet(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_cells_show_strings_plainly_and_other_values_as_compact_json() {
        assert_eq!(value_cell(&json!("plain")), "plain");
        assert_eq!(value_cell(&json!(null)), "");
        assert_eq!(value_cell(&json!({"a": [1, 2]})), r#"{"a":[1,2]}"#);
        let long = value_cell(&json!("x".repeat(100)));
        assert_eq!(long.chars().count(), MAX_CELL_CHARS + 1);
    }

    #[test]
    fn a_record_table_has_id_then_every_field_of_any_record() {
        let out = records(&[
            json!({"id": "r1", "title": "first", "version": 1, "updated_at": "t"}),
            json!({"id": "r2", "n": 5, "version": 2, "updated_at": "t"}),
        ]);
        let header = out.lines().nth(1).unwrap();
        let positions: Vec<usize> = ["id", "n", "title", "version", "updated_at"]
            .iter()
            .map(|c| header.find(c).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{header}");
        assert!(out.contains("first") && out.contains('5'));
    }

    #[test]
    fn the_created_key_secret_stands_on_its_own_line_with_a_warning() {
        let created: CreatedKey = serde_json::from_value(json!({
            "id": "k0123456789abcdef", "name": "ci", "role": "admin", "tenant": "acme",
            "created_at": "2025-01-01T00:00:00.000000Z", "revoked": false, "key": "bk_secret"
        }))
        .unwrap();
        let out = created_key(&created);
        assert!(out.lines().any(|l| l.trim() == "bk_secret"), "{out}");
        assert!(out.contains("will not be shown again"));
    }
}
