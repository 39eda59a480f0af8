//! Tiers: the policy a tenant is placed and limited by. (Domains, where placements live, are
//! in `domains`.)

use bulkhead_api::{Page, TierView};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::model::TierSpec;
use bulkhead_core::{DomainName, TierName};

use crate::rows::domains::read_domains;
use crate::rows::tiers::read_tier;
use crate::store::{malformed, params};
use crate::{Catalog, Ctx};

/// What `new` allows that `old` did not: ceiling entries lifted, custom roles allowed,
/// limits raised or removed.
fn loosened(old: &TierSpec, new: &TierSpec) -> Vec<String> {
    let mut out: Vec<String> = old
        .ceiling
        .forbid
        .difference(&new.ceiling.forbid)
        .map(|a| format!("ceiling (allows {})", a.as_str()))
        .collect();
    if new.ceiling.custom_roles && !old.ceiling.custom_roles {
        out.push("ceiling (allows custom roles)".into());
    }
    fn raised<T: PartialOrd>(old: Option<T>, new: Option<T>) -> bool {
        match (old, new) {
            (Some(_), None) => true,
            (Some(o), Some(n)) => n > o,
            (None, _) => false,
        }
    }
    let (o, n) = (&old.limits, &new.limits);
    for (name, up) in [
        ("query_time_ms", raised(o.query_time_ms, n.query_time_ms)),
        (
            "query_rows_examined",
            raised(o.query_rows_examined, n.query_rows_examined),
        ),
        ("bulk_max_bytes", raised(o.bulk_max_bytes, n.bulk_max_bytes)),
        (
            "requests_per_second",
            raised(o.requests_per_second, n.requests_per_second),
        ),
        ("request_burst", raised(o.request_burst, n.request_burst)),
        (
            "max_concurrent_requests",
            raised(o.max_concurrent_requests, n.max_concurrent_requests),
        ),
        (
            "max_domain_connections",
            raised(o.max_domain_connections, n.max_domain_connections),
        ),
    ] {
        if up {
            out.push(format!("limits.{name}"));
        }
    }
    out
}

impl Catalog {
    pub async fn list_tiers(&self, ctx: &Ctx) -> Result<Page<TierView>, Error> {
        self.authorize(ctx, ControlAction::ReadCatalog, "tier.list", "tiers", None)?;
        let items = self
            .blocking(|store| {
                store.read(|tx| {
                    let mut out = Vec::new();
                    for row in tx.query("SELECT name, spec FROM tiers ORDER BY name", &[])? {
                        let (name, spec): (String, String) = (row.get(0)?, row.get(1)?);
                        out.push(TierView {
                            name: crate::rows::tiers::tier_name(&name)?,
                            spec: crate::rows::tiers::tier_spec_from(&spec)?,
                        });
                    }
                    Ok(out)
                })
            })
            .await?;
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    /// `PUT /v1/tiers/{name}`: creates or updates a tier. Changing an existing tier's isolation
    /// model is refused while tenants use it (that is a move per tenant).
    pub async fn put_tier(
        &self,
        ctx: &Ctx,
        name: &TierName,
        spec: TierSpec,
    ) -> Result<TierView, Error> {
        self.authorize(
            ctx,
            ControlAction::ManageTiers,
            "tier.put",
            name.as_str(),
            None,
        )?;
        let collections = self.collections_snapshot();
        spec.validate(|c| collections.get(c).map(|c| c.as_ref()))?;
        // Operators tune tiers but never loosen what protects tenants: a weaker ceiling or a
        // higher (or removed) limit is for platform admins.
        if ctx.principal.platform_role() == Some(bulkhead_core::access::PlatformRole::Operator) {
            let tier = name.clone();
            let old = self
                .blocking(move |store| store.read(|tx| read_tier(tx, &tier)))
                .await?;
            if let Some(old) = old {
                let loosened = loosened(&old, &spec);
                if !loosened.is_empty() {
                    let err = Error::forbidden(
                        "forbidden",
                        format!(
                            "only platform admins loosen a tier; this change loosens {}",
                            loosened.join(", ")
                        ),
                    );
                    return Err(self.denied(ctx, "tier.put", name.as_str(), None, err));
                }
            }
        }
        let now = self.inner().clock.now();
        let event = self.event(
            ctx,
            "tier.put",
            name.as_str(),
            None,
            serde_json::to_string(&spec).ok(),
        );
        let (tier, stored) = (name.clone(), spec.clone());
        self.blocking(move |store| {
            store.write(|tx| {
                let known: Vec<DomainName> = read_domains(tx)?.into_iter().map(|(n, _)| n).collect();
                if let Some(unknown) = stored.domains.iter().find(|d| !known.contains(d)) {
                    return Err(Error::bad_request("unknown_domain", format!("domains: '{unknown}' does not exist")).into());
                }
                let old = read_tier(tx, &tier)?;
                if let Some(old) = &old {
                    // A weaker ceiling is audited on its own (a security finding).
                    let weakened: Vec<String> = loosened(old, &stored).into_iter().filter(|l| l.starts_with("ceiling")).collect();
                    if !weakened.is_empty() {
                        let mut weaker = event.clone();
                        weaker.action = "tier.ceiling_weakened".into();
                        weaker.detail = Some(weakened.join(", "));
                        crate::rows::audit::insert(tx, &weaker)?;
                    }
                }
                if let Some(old) = old {
                    let used: i64 = tx.query_one("SELECT count(*) FROM tenants WHERE tier = ?1", params![tier.as_str()])?.get(0)?;
                    if old.isolation != stored.isolation && used > 0 {
                        return Err(Error::conflict(
                            "tier_in_use",
                            format!("{used} tenants use tier '{tier}'; its isolation model cannot change under them"),
                        )
                        .into());
                    }
                }
                tx.execute(
                    "INSERT INTO tiers (name, spec, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                    params![tier.as_str(), serde_json::to_string(&stored).map_err(malformed)?, now.as_micros()],
                )?;
                crate::store::changed(tx, "tier", tier.as_str())?;
                crate::rows::audit::insert(tx, &event)
            })
        })
        .await?;
        self.inner().tier_policy.forget(name);
        Ok(TierView {
            name: name.clone(),
            spec,
        })
    }
}
