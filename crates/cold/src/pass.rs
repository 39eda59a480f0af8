//! One retention pass: settle what a crashed pass left, sweep files no life owns, then archive
//! every retained collection of every active tenant, month by month from its oldest aged
//! record, a batch at a time (`batch`).

use std::path::Path;

use bulkhead_catalog::Life;
use bulkhead_core::error::Error;
use bulkhead_core::model::{Retention, TenantStatus};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{CollectionName, RecordId, TenantId};

use crate::Cold;
use crate::batch::{Done, archive_batch};
use crate::files::{aged_at, month_start, next_month};
use crate::format::{Columns, FileMeta};
use crate::ledger;
use crate::progress::Progress;
use crate::recover::{recover, sweep};

const DAY_MICROS: i64 = 86_400_000_000;

/// One pass, over every tenant or only `only`.
pub(crate) async fn pass(
    cold: &Cold,
    only: Option<&TenantId>,
    progress: &Progress,
) -> Result<(), Error> {
    let root = cold.root()?;
    let _one = cold.running.lock().await;
    let recovered = recover(cold, &root).await?;
    let swept = sweep(cold, &root).await?;
    progress.report(cold, |r| {
        r.recovered = recovered;
        r.swept = swept;
    });
    let retained: Vec<_> = cold
        .curator
        .retained()
        .await?
        .into_iter()
        .filter(|r| only.is_none_or(|t| *t == r.life.tenant))
        .collect();
    let total = retained
        .iter()
        .filter(|r| r.status == TenantStatus::Active)
        .map(|r| r.rules.len() as u64)
        .sum();
    progress.update(cold, |run| run.collections_total = total);
    for retained in retained {
        if retained.status != TenantStatus::Active {
            progress.report(cold, |r| r.busy += 1);
            continue;
        }
        for (collection, rule) in &retained.rules {
            let result =
                archive_collection(cold, &root, &retained.life, collection, rule, progress).await;
            progress.update(cold, |run| {
                run.collections_done += 1;
                run.report.collections += 1;
                match &result {
                    Ok(()) => {}
                    Err(e) if e.code == "tenant_busy" => run.report.busy += 1,
                    Err(e) if e.code == "tenant_life_ended" => {}
                    Err(_) => run.report.failed += 1,
                }
            });
            if let Err(e) = result
                && !matches!(&*e.code, "tenant_busy" | "tenant_life_ended")
            {
                tracing::warn!(
                    tenant = %retained.life.tenant,
                    collection = %collection,
                    error = %e,
                    "retention: archiving failed; tried again next pass"
                );
            }
        }
    }
    Ok(())
}

async fn archive_collection(
    cold: &Cold,
    root: &Path,
    life: &Life,
    collection: &CollectionName,
    rule: &Retention,
    progress: &Progress,
) -> Result<(), Error> {
    let definition = cold.curator.definition(life, collection).await?;
    rule.validate(collection, Some(&definition))?;
    let now = cold.now_micros();
    let cutoff = Timestamp::from_micros(
        now.saturating_sub(i64::from(rule.hot_days.get()).saturating_mul(DAY_MICROS)),
    );
    let holds = {
        let (life, collection) = (life.clone(), collection.clone());
        cold.curator
            .ledger(move |tx| ledger::holds(tx, &life, &collection, now))
            .await?
    };
    let field = rule.field.as_str();
    let mut filter = format!("{field} < {}", cutoff.to_rfc3339());
    for hold in &holds {
        filter.push_str(&format!(
            " && !({field} >= {} && {field} < {})",
            Timestamp::from_micros(hold.from).to_rfc3339(),
            Timestamp::from_micros(hold.to).to_rfc3339()
        ));
    }
    // Month by month from the oldest aged record, so each batch fills one month's file.
    let oldest = cold
        .curator
        .first(life, collection, &filter, field)
        .await?
        .and_then(|r| aged_at(&r, field));
    let mut month = oldest.map(month_start);
    let mut after: Option<RecordId> = None;
    let mut here = Done::default();
    let result = loop {
        let Some(from) = month.filter(|m| *m < cutoff) else {
            break Ok(());
        };
        let to = next_month(from);
        let bounded = format!(
            "{filter} && {field} >= {} && {field} < {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        );
        let page = match cold
            .curator
            .page(
                life,
                collection,
                &bounded,
                after.clone(),
                cold.settings.batch,
            )
            .await
        {
            Ok(page) => page,
            Err(e) => break Err(e),
        };
        let full = page.len() == cold.settings.batch as usize;
        let Some(last) = page.last() else {
            (month, after) = (Some(to), None);
            continue;
        };
        after = Some(last.id.clone());
        let meta = FileMeta {
            tenant: life.tenant.to_string(),
            incarnation: life.incarnation.to_string(),
            collection: collection.to_string(),
            version: definition.version,
            field: field.to_owned(),
        };
        let done = match archive_batch(cold, root, life, meta, Columns::of(&definition), page).await
        {
            Ok(done) => done,
            Err(e) => break Err(e),
        };
        here.records += done.records;
        here.files += done.files;
        here.bytes += done.bytes;
        progress.report(cold, |r| {
            r.archived += done.records;
            r.files += done.files;
            r.bytes += done.bytes;
        });
        if !full {
            (month, after) = (Some(to), None);
        }
    };
    if here.records > 0 {
        cold.curator
            .audit(
                None,
                "retention.archive",
                life,
                serde_json::json!({
                    "collection": collection,
                    "records": here.records,
                    "files": here.files,
                    "bytes": here.bytes,
                    "before": cutoff,
                }),
            )
            .await?;
    }
    result
}
