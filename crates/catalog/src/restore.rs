//! `POST /v1/tenants/{tenant}/records:restore`: records written exactly as given — ids,
//! timestamps, versions, fields — into a tenant's placement, whatever its model (how
//! `bulkhead tenant import` brings a tenant archive back). Platform admins only; each batch
//! is one engine write, all or none.

use bulkhead_api::{RestoreRecords, RestoredRecords};
use bulkhead_core::access::ControlAction;
use bulkhead_core::error::Error;
use bulkhead_core::permissions::Action;
use bulkhead_core::record::{Record, validate_full};
use bulkhead_core::time::Timestamp;
use bulkhead_core::{RecordId, TenantId};
use serde_json::Value;
use tracing::Instrument;

use crate::handle::TenantHandle;
use crate::{Catalog, Ctx};

/// Records in one restore request at most.
pub const MAX_RESTORE_BATCH: usize = 10_000;

fn bad(line: usize, why: impl std::fmt::Display) -> Error {
    Error::bad_request("invalid_record", format!("records[{line}]: {why}"))
}

fn system_time(
    object: &serde_json::Map<String, Value>,
    key: &str,
    line: usize,
) -> Result<Timestamp, Error> {
    object
        .get(key)
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
        .ok_or_else(|| bad(line, format!("{key} must be an RFC 3339 time")))
}

impl Catalog {
    pub async fn restore_records(
        &self,
        ctx: &Ctx,
        tenant: &TenantId,
        request: RestoreRecords,
    ) -> Result<RestoredRecords, Error> {
        self.authorize(
            ctx,
            ControlAction::RestoreData,
            "record.restore",
            request.collection.as_str(),
            Some(tenant),
        )?;
        if request.records.len() > MAX_RESTORE_BATCH {
            return Err(Error::bad_request(
                "batch_too_large",
                format!("at most {MAX_RESTORE_BATCH} records per request"),
            ));
        }
        let handle = self
            .open_write(
                ctx,
                Some(tenant),
                "record.restore",
                request.collection.as_str(),
            )
            .await?;
        if let Some(life) = &request.incarnation
            && life != &handle.scope().placement().incarnation
        {
            return Err(crate::rows::tenants::life_ended(tenant, life));
        }
        let collection = request.collection.clone();
        handle
            .fenced(&collection, || self.restore_in(&handle, &request))
            .await
    }

    async fn restore_in(
        &self,
        tenant: &TenantHandle,
        request: &RestoreRecords,
    ) -> Result<RestoredRecords, Error> {
        let (_, collection) = tenant.allow(&request.collection, Action::Create)?;
        let mut records = Vec::with_capacity(request.records.len());
        for (line, body) in request.records.iter().enumerate() {
            let object = body
                .as_object()
                .ok_or_else(|| bad(line, "expected an object"))?;
            let (id, fields, pre) = validate_full(&collection, body, None)
                .map_err(|e| tenant.not_yet(&collection, body, bad(line, e.message)))?;
            let id: RecordId = id.ok_or_else(|| bad(line, "id is required"))?;
            let version = pre
                .version
                .ok_or_else(|| bad(line, "version is required"))?;
            if !(1..=Record::MAX_VERSION).contains(&version) {
                return Err(bad(
                    line,
                    format!("version must be from 1 to {}", Record::MAX_VERSION),
                ));
            }
            records.push(Record {
                id,
                created_at: system_time(object, "created_at", line)?,
                updated_at: system_time(object, "updated_at", line)?,
                version,
                fields,
            });
        }
        let count = records.len() as u64;
        let hold = self
            .quota(tenant.scope(), tenant.engine(), count, true)
            .await?;
        for r in &records {
            tenant.before(&collection.name, &r.id).await?;
        }
        let ids: Vec<RecordId> = records.iter().map(|r| r.id.clone()).collect();
        let restored = tenant
            .engine()
            .restore(tenant.scope(), &collection, records)
            .instrument(crate::step_span(|| {
                tracing::info_span!("engine", op = "restore")
            }))
            .await;
        for id in &ids {
            tenant.after(&collection.name, id).await;
        }
        if let Some(hold) = hold {
            hold.settle(if restored.is_ok() { count } else { 0 }, 0);
        }
        tenant.written(&collection.name, restored)?;
        self.inner()
            .feeds
            .resync(tenant.scope().storage_key(), &collection.name, "restored");
        Ok(RestoredRecords { restored: count })
    }
}
