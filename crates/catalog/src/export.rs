//! Export: reading a collection out in bulk (`GET …/records:export`), page by page in id
//! order. It needs the `export` action (which a tier's ceiling may forbid), and the caller's
//! record rule and hidden fields apply as on a list. Each later page authenticates the
//! presented credential again and authorizes it afresh, so a revoked key, an expired token, a
//! removed member or a deleted tenant (even one re-created under the same id: the credential
//! belongs to the earlier life) stops an export in progress.

use bulkhead_core::error::Error;
use bulkhead_core::permissions::{self, Action};
use bulkhead_core::query;
use bulkhead_core::record::Record;
use bulkhead_core::{CollectionName, RecordId, TenantId};
use bulkhead_engine::{Keyset, ListQuery};

use crate::{Catalog, Ctx};

/// Records per export page.
pub const EXPORT_PAGE: u32 = 500;

impl Catalog {
    /// One page of an export: up to [`EXPORT_PAGE`] records after `after`, and the id to
    /// continue after when there may be more.
    pub async fn export_page(
        &self,
        ctx: &Ctx,
        named: Option<&TenantId>,
        collection: &CollectionName,
        filter: &str,
        after: Option<RecordId>,
    ) -> Result<(Vec<Record>, Option<RecordId>), Error> {
        let again;
        let ctx = match (&after, &ctx.credential) {
            (Some(_), Some(credential)) => {
                again = self
                    .authenticate(Some(credential.expose()), &ctx.request_id)
                    .await?;
                &again
            }
            _ => ctx,
        };
        let tenant = self
            .open_read(ctx, named, "record.export", collection.as_str())
            .await?;
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
            .then(|| hits.last().map(|h| h.record.id.clone()))
            .flatten();
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
