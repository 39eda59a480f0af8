//! Export: reading a collection out in bulk (`GET …/records:export`), page by page in id
//! order. It needs the `export` action (which a tier's ceiling may forbid), and the caller's
//! record rule and hidden fields apply as on a list. Each later page authenticates the
//! presented credential again and authorizes it afresh, so a revoked key, an expired token, a
//! removed member or a deleted tenant stops an export in progress. An export also stays in
//! the life of the tenant its first page was read from: once that tenant is deleted (even if
//! one is re-created under the same id, which a platform key may read too), the next page is
//! `404 tenant_not_found`. A move keeps the life, so an export runs on across it.

use bulkhead_core::error::Error;
use bulkhead_core::permissions::{self, Action};
use bulkhead_core::query;
use bulkhead_core::record::Record;
use bulkhead_core::{CollectionName, Incarnation, RecordId, TenantId};
use bulkhead_engine::{Keyset, ListQuery};

use crate::{Catalog, Ctx};

/// Records per export page.
pub const EXPORT_PAGE: u32 = 500;

/// Where an export goes on: after this record, in this life of the tenant.
#[derive(Debug, Clone)]
pub struct ExportCursor {
    after: RecordId,
    life: Incarnation,
}

impl Catalog {
    /// One page of an export: up to [`EXPORT_PAGE`] records after `cursor` (from the start
    /// without one), and the cursor to go on from when there may be more.
    pub async fn export_page(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        filter: &str,
        cursor: Option<ExportCursor>,
    ) -> Result<(Vec<Record>, Option<ExportCursor>), Error> {
        let again;
        let ctx = if cursor.is_some() {
            again = self.reauthenticate(ctx).await?;
            &again
        } else {
            ctx
        };
        let tenant = self
            .open_read(ctx, named, "record.export", collection.as_str())
            .await?;
        let life = &tenant.scope().placement().incarnation;
        if cursor.as_ref().is_some_and(|c| &c.life != life) {
            return Err(crate::rows::tenants::tenant_not_found());
        }
        let after = cursor.map(|c| c.after);
        let (permission, collection) = tenant.allow(collection, Action::Export)?;
        if after.is_none() && filter.trim().is_empty() {
            // A whole collection leaving: audited once, at its first page.
            self.inner().audit.record_from(
                self.event(
                    ctx,
                    "record.export",
                    collection.name.as_str(),
                    Some(tenant.tenant()),
                    None,
                ),
                ctx.source.clone(),
            );
        }
        let view = permission.view(&collection);
        let filter = permissions::and(query::filter(filter, &view)?, permission.rule(&collection)?);
        let query = ListQuery {
            filter,
            search: None,
            sort: Vec::new(),
            after: after.map(|id| Keyset {
                values: Vec::new(),
                score: None,
                id,
            }),
            limit: EXPORT_PAGE,
            fields: Some(view.fields.keys().cloned().collect()),
            budget: tenant.budget().await?,
        };
        let hits = tenant
            .metered(
                &query.budget,
                tenant.engine().list(tenant.scope(), &collection, &query),
            )
            .await?;
        let next = (hits.len() == EXPORT_PAGE as usize)
            .then(|| hits.last())
            .flatten()
            .map(|h| ExportCursor {
                after: h.record.id.clone(),
                life: life.clone(),
            });
        let records = hits
            .into_iter()
            .map(|hit| {
                let mut record = hit.record;
                permission.redact(&mut record);
                record
            })
            .collect();
        Ok((records, next))
    }
}
