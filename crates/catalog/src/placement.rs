//! Where a new tenant goes: the domain (by the tier's list and the domains' rules) and the
//! namespace inside it. Runs inside the transaction that creates the tenant, so two
//! concurrent creates cannot overfill a domain or a bridge file.
//!
//! Rules, in order: a domain dedicated to a tenant takes no one else, and is its tenant's
//! first choice when the tier lists it (or lists no domains); silo placements go only to
//! domains that allow silos for the tenant; a domain at capacity is skipped. Placement reads
//! the catalog only — never whether this process has a domain's engine open — so every server
//! sharing a catalog decides alike.

use bulkhead_core::DomainName;
use bulkhead_core::error::{Error, ErrorKind};
use bulkhead_core::model::{Isolation, Placement, TierSpec, WriteState};
use bulkhead_core::{Incarnation, StorageKey, TenantId};

use crate::rows::domains::read_domains;
use crate::rows::tenants::next_epoch;
use crate::store::{StoreResult, Tx, malformed, params};

/// Chooses the domain and namespace for a new placement, inside the creating transaction.
pub(crate) fn allocate(
    tx: &dyn Tx,
    tenant: &TenantId,
    incarnation: &Incarnation,
    tier: &TierSpec,
    schema_version: i64,
) -> StoreResult<Placement> {
    let domains = read_domains(tx)?;
    let mut candidates: Vec<_> = if tier.domains.is_empty() {
        domains
    } else {
        tier.domains
            .iter()
            .filter_map(|d| domains.iter().find(|(n, _)| n == d).cloned())
            .collect()
    };
    candidates.retain(|(_, spec)| spec.accepts(tenant));
    // Stable: otherwise the tier's order (or the names' order) stands.
    candidates.sort_by_key(|(_, spec)| spec.dedicated_to.as_ref() != Some(tenant));
    let mut refused_silo = false;
    for (domain, spec) in candidates {
        if tier.isolation == Isolation::Silo && !spec.allows_silo_for(tenant) {
            refused_silo = true;
            continue;
        }
        if tier.isolation != Isolation::Pool && spec.max_dedicated_tenants > 0 {
            let used: i64 = tx
                .query_one(
                    "SELECT count(*) FROM placements WHERE domain = ?1 AND isolation != 'pool'",
                    params![domain.as_str()],
                )?
                .get(0)?;
            if used >= i64::from(spec.max_dedicated_tenants) {
                continue;
            }
        }
        let namespace = match tier.isolation {
            Isolation::Pool => "pool".to_owned(),
            Isolation::Silo => format!("silo-{}", StorageKey::of(tenant, incarnation)),
            Isolation::Bridge => bridge_namespace(tx, &domain, spec.bridge_tenants_per_file)?,
        };
        return Ok(Placement {
            domain,
            isolation: tier.isolation,
            namespace,
            write_state: WriteState::Open,
            epoch: next_epoch(tx)?,
            schema_version,
            incarnation: incarnation.clone(),
        });
    }
    let message = if refused_silo {
        "no domain allowed by the tier has room for another tenant (domains other than sqlite \
         hold silos only when 'silos' is set or they are dedicated to the tenant)"
    } else {
        "no domain allowed by the tier has room for another tenant"
    };
    Err(Error::new(ErrorKind::QuotaExceeded, "no_capacity", message).into())
}

/// The lowest-numbered bridge file with room, or the next new one.
fn bridge_namespace(tx: &dyn Tx, domain: &DomainName, per_file: u32) -> StoreResult<String> {
    let rows = tx.query(
        "SELECT namespace, count(*) FROM placements WHERE domain = ?1 AND isolation = 'bridge' GROUP BY namespace ORDER BY namespace",
        params![domain.as_str()],
    )?;
    let mut highest = 0u32;
    for row in rows {
        let (namespace, count): (String, i64) = (row.get(0)?, row.get(1)?);
        let n: u32 = namespace
            .strip_prefix("bridge-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| malformed(&namespace))?;
        if count < i64::from(per_file.max(1)) {
            return Ok(namespace);
        }
        highest = highest.max(n);
    }
    Ok(format!("bridge-{:04}", highest + 1))
}
