//! Reading the archive: what a tenant has archived, and bringing a range back into the hot
//! store. A restore first records a hold on the range (retention leaves it hot until the hold
//! ends), then takes each file that has records in it: marks it `restoring`, writes the
//! range's records back (a record hot under the same id is newer and kept), and rewrites the
//! file without them, or removes it when nothing is left. A restore cut off is finished by the
//! next pass after its lease.

use std::collections::BTreeMap;
use std::path::Path;

use bulkhead_api::{ArchiveListing, ArchiveMonth, ArchiveRestored, RestoreArchive};
use bulkhead_catalog::{Ctx, Life};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::model::TenantStatus;
use bulkhead_core::record::Record;
use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, TenantId};

use crate::files::{aged_at, file_row, write_file};
use crate::format::{self, ColdFile};
use crate::ledger::{self, FileRow, Hold, State};
use crate::{Cold, blocking, remove_all};

/// Days a restored range stays hot when the request names none.
pub const DEFAULT_HOLD_DAYS: u32 = 30;
/// The longest hold a restore may ask for.
pub const MAX_HOLD_DAYS: u32 = 3_650;

const DAY_MICROS: i64 = 86_400_000_000;

fn tenant_not_found(tenant: &TenantId) -> Error {
    Error::not_found(
        "tenant_not_found",
        format!("tenant '{tenant}' does not exist"),
    )
}

/// `GET /v1/tenants/{tenant}/archives[?collection=]`.
pub async fn list(
    cold: &Cold,
    ctx: &Ctx,
    tenant: &TenantId,
    collection: Option<CollectionName>,
) -> Result<ArchiveListing, Error> {
    cold.curator.authorize(
        ctx,
        ControlAction::ReadTenants,
        "archive.list",
        Some(tenant),
    )?;
    let (life, _) = cold
        .curator
        .life_of(tenant)
        .await?
        .ok_or_else(|| tenant_not_found(tenant))?;
    let l = life.clone();
    let rows = cold
        .curator
        .ledger(move |tx| ledger::sealed(tx, &l, collection.as_ref()))
        .await?;
    let mut months: BTreeMap<(CollectionName, String), ArchiveMonth> = BTreeMap::new();
    for row in &rows {
        let entry = months
            .entry((row.collection.clone(), row.month.clone()))
            .or_insert_with(|| ArchiveMonth {
                collection: row.collection.clone(),
                month: row.month.clone(),
                files: 0,
                records: 0,
                bytes: 0,
                from: Timestamp::from_micros(row.min_at),
                to: Timestamp::from_micros(row.max_at),
            });
        entry.files += 1;
        entry.records += row.records;
        entry.bytes += row.bytes;
        entry.from = entry.from.min(Timestamp::from_micros(row.min_at));
        entry.to = entry.to.max(Timestamp::from_micros(row.max_at));
    }
    Ok(ArchiveListing {
        tenant: life.tenant,
        incarnation: life.incarnation,
        records: rows.iter().map(|r| r.records).sum(),
        bytes: rows.iter().map(|r| r.bytes).sum(),
        items: months.into_values().collect(),
    })
}

/// `POST /v1/tenants/{tenant}/archives:restore`.
pub async fn restore(
    cold: &Cold,
    ctx: &Ctx,
    tenant: &TenantId,
    request: RestoreArchive,
) -> Result<ArchiveRestored, Error> {
    cold.curator.authorize(
        ctx,
        ControlAction::ManageTenants,
        "archive.restore",
        Some(tenant),
    )?;
    if request.from >= request.to {
        return Err(Error::bad_request(
            "invalid_range",
            "from must be earlier than to",
        ));
    }
    let hold_days = request.hold_days.unwrap_or(DEFAULT_HOLD_DAYS);
    if hold_days == 0 || hold_days > MAX_HOLD_DAYS {
        return Err(Error::bad_request(
            "invalid_hold",
            format!("hold_days: 1 to {MAX_HOLD_DAYS} (got {hold_days})"),
        ));
    }
    let root = cold.root()?;
    let (life, status) = cold
        .curator
        .life_of(tenant)
        .await?
        .ok_or_else(|| tenant_not_found(tenant))?;
    if status != TenantStatus::Active {
        return Err(Error::conflict(
            "tenant_busy",
            format!(
                "tenant '{tenant}' is {status}; archived records go back to active tenants only"
            ),
        ));
    }
    let _one = cold.running.lock().await;
    let now = cold.now_micros();
    let hold = Hold {
        from: request.from.as_micros(),
        to: request.to.as_micros(),
        until: now.saturating_add(i64::from(hold_days).saturating_mul(DAY_MICROS)),
    };
    let files = {
        let (life, collection, hold) = (life.clone(), request.collection.clone(), hold.clone());
        cold.curator
            .ledger(move |tx| {
                if !ledger::is_current(tx, &life, true)? {
                    return Err(
                        Error::conflict("tenant_busy", "the tenant changed meanwhile").into(),
                    );
                }
                ledger::add_hold(tx, &life, &collection, &hold)?;
                Ok(ledger::sealed(tx, &life, Some(&collection))?
                    .into_iter()
                    .filter(|r| r.min_at < hold.to && r.max_at >= hold.from)
                    .collect::<Vec<_>>())
            })
            .await?
    };
    let mut done = ArchiveRestored {
        tenant: tenant.clone(),
        collection: request.collection.clone(),
        restored: 0,
        already_hot: 0,
        files_changed: 0,
        hold_until: Timestamp::from_micros(hold.until),
    };
    for row in files {
        let (id, until) = (row.id.clone(), cold.lease_until());
        let claimed = cold
            .curator
            .ledger(move |tx| ledger::claim_for_restore(tx, &id, until))
            .await?;
        if !claimed {
            continue;
        }
        let (restored, already, changed) =
            restore_file(cold, &root, &row, &[(hold.from, hold.to)]).await?;
        done.restored += restored;
        done.already_hot += already;
        done.files_changed += u64::from(changed);
    }
    cold.curator
        .audit(
            Some(ctx),
            "archive.restore",
            &life,
            serde_json::json!({
                "collection": request.collection,
                "from": request.from,
                "to": request.to,
                "restored": done.restored,
                "already_hot": done.already_hot,
                "hold_until": done.hold_until,
            }),
        )
        .await?;
    Ok(done)
}

/// Brings the records of `row`'s file in any of `ranges` back, then rewrites or removes the
/// file. Returns the records written back, those already hot, and whether the file changed.
async fn restore_file(
    cold: &Cold,
    root: &Path,
    row: &FileRow,
    ranges: &[(i64, i64)],
) -> Result<(u64, u64, bool), Error> {
    let path = root.join(&row.path);
    let file = blocking(move || {
        format::read(&path).map_err(|e| crate::io_error("reading a cold archive file", e))
    })
    .await?;
    let in_range = |r: &Record| {
        aged_at(r, &file.meta.field).is_some_and(|at| {
            let at = at.as_micros();
            ranges.iter().any(|(from, to)| *from <= at && at < *to)
        })
    };
    let (take, keep): (Vec<Record>, Vec<Record>) =
        file.records.iter().cloned().partition(|r| in_range(r));
    if take.is_empty() {
        let id = row.id.clone();
        cold.curator
            .ledger(move |tx| ledger::set_sealed(tx, &id))
            .await?;
        return Ok((0, 0, false));
    }
    let wanted = take.len() as u64;
    let older = file.columns.definition(&row.collection, file.meta.version);
    let restored = cold
        .curator
        .bring_back(&row.life, &row.collection, &older, take)
        .await? as u64;
    cold.crash_point("restored");
    let fresh = if keep.is_empty() {
        None
    } else {
        let mut fresh = file_row(
            &row.batch,
            &row.life,
            &row.collection,
            &row.month,
            &file.meta.field,
            &keep,
            0,
        );
        let rest = ColdFile {
            meta: file.meta.clone(),
            columns: file.columns.clone(),
            records: keep,
        };
        let (root, rel) = (root.to_path_buf(), fresh.path.clone());
        let (bytes, sha) = blocking(move || write_file(&root, &rel, &rest)).await?;
        fresh.bytes = bytes;
        fresh.sha256 = sha;
        fresh.state = State::Sealed;
        Some(fresh)
    };
    let (old, placed, now) = (row.id.clone(), fresh.clone(), cold.now_micros());
    cold.curator
        .ledger(move |tx| {
            ledger::delete(tx, &old)?;
            if let Some(fresh) = &placed {
                ledger::insert(tx, fresh, now)?;
            }
            Ok(())
        })
        .await?;
    remove_all(cold, root, vec![row.path.clone()]).await?;
    Ok((restored, wanted - restored, true))
}

/// Finishes restores whose lease ran out: the ranges still held are brought back.
pub(crate) async fn recover(cold: &Cold, root: &Path, rows: Vec<FileRow>) -> Result<(), Error> {
    for row in rows {
        let life: Life = row.life.clone();
        let (l, collection, now) = (life.clone(), row.collection.clone(), cold.now_micros());
        let (current, holds) = cold
            .curator
            .ledger(move |tx| {
                Ok((
                    ledger::is_current(tx, &l, false)?,
                    ledger::holds(tx, &l, &collection, now)?,
                ))
            })
            .await?;
        if !current {
            let id = row.id.clone();
            cold.curator
                .ledger(move |tx| ledger::delete(tx, &id))
                .await?;
            remove_all(cold, root, vec![row.path.clone()]).await?;
            continue;
        }
        let ranges: Vec<(i64, i64)> = holds.iter().map(|h| (h.from, h.to)).collect();
        restore_file(cold, root, &row, &ranges).await?;
    }
    Ok(())
}
