//! One method per API route: the control plane (tenants, tiers, domains, collections, keys)
//! and the data plane (records). Each names its path once, here.

use bulkhead_api::{
    AuditEntry, AuditQuery, CollectionSpec, CollectionView, CreateKey, CreatePlatformKey,
    CreateTenant, CreatedKey, DoctorReport, DomainSpec, DomainView, Granularity, Health, KeyView,
    MoveListQuery, MoveView, Page, RolloutView, StartMove, StorageSampled, TenantListQuery,
    TenantView, TierSpec, TierView, TopQuery, UpdateTenant, UsagePeriod, UsageQuery, UsageTop,
};
use bulkhead_core::{CollectionName, DomainName, KeyId, RecordId, TenantId, TierName};
use reqwest::Method;
use serde_json::Value;

use crate::{Client, ClientError, json_body};

/// What `PATCH /v1/tenants/{id}` returned: the changed tenant, or the move a tier change
/// started.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum TenantUpdated {
    Moving(Box<MoveView>),
    Applied(Box<TenantView>),
}

impl TenantUpdated {
    /// The changed tenant, when the change was applied (not a move).
    pub fn applied(self) -> Option<TenantView> {
        match self {
            TenantUpdated::Applied(t) => Some(*t),
            TenantUpdated::Moving(_) => None,
        }
    }

    /// The move a tier change started.
    pub fn moving(self) -> Option<MoveView> {
        match self {
            TenantUpdated::Moving(m) => Some(*m),
            TenantUpdated::Applied(_) => None,
        }
    }
}

/// Query of `GET /v1/collections/{c}/records`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRecords {
    /// A filter expression in the server's filter language.
    pub filter: Option<String>,
    /// Sort keys, e.g. `-created_at,title`.
    pub sort: Option<String>,
    /// A full-text query: words, "phrases", prefix*.
    pub q: Option<String>,
    /// Fields to return, e.g. `title,n`.
    pub fields: Option<String>,
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Client {
    // ----- health -----------------------------------------------------------------------

    /// `GET /healthz`: the process is up.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, self.url(&["healthz"], &[])?, None, None)
            .await
    }

    /// `GET /readyz`: the process can serve requests (catalog reachable).
    pub async fn ready(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, self.url(&["readyz"], &[])?, None, None)
            .await
    }

    // ----- tenants ----------------------------------------------------------------------

    /// `POST /v1/tenants`: 201 when created, 200 when an identical tenant already existed.
    pub async fn create_tenant(&self, tenant: &CreateTenant) -> Result<TenantView, ClientError> {
        let url = self.url(&["v1", "tenants"], &[])?;
        self.call(Method::POST, url, json_body(tenant)?, None).await
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<TenantView, ClientError> {
        let url = self.url(&["v1", "tenants", id.as_str()], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// One page of tenants; pass the page's `next_cursor` back as `cursor` for the next one.
    pub async fn list_tenants(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<TenantView>, ClientError> {
        self.list_tenants_matching(&TenantListQuery {
            limit,
            cursor: cursor.map(str::to_owned),
            ..TenantListQuery::default()
        })
        .await
    }

    /// One page of the tenants that pass `query`'s filters (`GET /v1/tenants?q=…&tier=…`),
    /// in id order; pass the page's `next_cursor` back in the same query for the next one.
    pub async fn list_tenants_matching(
        &self,
        query: &TenantListQuery,
    ) -> Result<Page<TenantView>, ClientError> {
        let query = [
            ("q", query.q.clone()),
            ("tier", query.tier.as_ref().map(|t| t.as_str().to_owned())),
            ("status", query.status.map(|s| s.as_str().to_owned())),
            (
                "domain",
                query.domain.as_ref().map(|d| d.as_str().to_owned()),
            ),
            ("isolation", query.isolation.map(|i| i.as_str().to_owned())),
            ("limit", query.limit.map(|l| l.to_string())),
            ("cursor", query.cursor.clone()),
        ];
        let url = self.url(&["v1", "tenants"], &query)?;
        self.call(Method::GET, url, None, None).await
    }

    /// `PATCH /v1/tenants/{id}`; a tier in another isolation model starts a move (the server
    /// answers 202 with the move).
    pub async fn update_tenant(
        &self,
        id: &TenantId,
        update: &UpdateTenant,
    ) -> Result<TenantUpdated, ClientError> {
        let url = self.url(&["v1", "tenants", id.as_str()], &[])?;
        self.call(Method::PATCH, url, json_body(update)?, None)
            .await
    }

    // ----- moves ------------------------------------------------------------------------

    /// `POST /v1/tenants/{id}/moves`: starts a live move (202).
    pub async fn start_move(
        &self,
        id: &TenantId,
        request: &StartMove,
    ) -> Result<MoveView, ClientError> {
        let url = self.url(&["v1", "tenants", id.as_str(), "moves"], &[])?;
        self.call(Method::POST, url, json_body(request)?, None)
            .await
    }

    /// `GET /v1/tenants/{id}/moves`: the tenant's moves, newest first.
    pub async fn list_moves(&self, id: &TenantId) -> Result<Page<MoveView>, ClientError> {
        let url = self.url(&["v1", "tenants", id.as_str(), "moves"], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /v1/moves`: one page of every tenant's moves (or `query.tenant`'s), newest first;
    /// `active: Some(true)` keeps those not ended.
    pub async fn list_all_moves(
        &self,
        query: &MoveListQuery,
    ) -> Result<Page<MoveView>, ClientError> {
        let query = [
            ("active", query.active.map(|a| a.to_string())),
            (
                "tenant",
                query.tenant.as_ref().map(|t| t.as_str().to_owned()),
            ),
            ("limit", query.limit.map(|l| l.to_string())),
            ("cursor", query.cursor.clone()),
        ];
        let url = self.url(&["v1", "moves"], &query)?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /v1/audit`: one page of the audit log, newest first.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, ClientError> {
        let text = |v: &Option<String>| v.clone();
        let query = [
            (
                "tenant",
                query.tenant.as_ref().map(|t| t.as_str().to_owned()),
            ),
            ("actor", text(&query.actor)),
            ("action", text(&query.action)),
            ("outcome", text(&query.outcome)),
            ("from", query.from.map(|t| t.to_rfc3339())),
            ("to", query.to.map(|t| t.to_rfc3339())),
            ("limit", query.limit.map(|l| l.to_string())),
            ("cursor", text(&query.cursor)),
        ];
        let url = self.url(&["v1", "audit"], &query)?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /v1/usage`: one page of metered usage, newest period first.
    pub async fn list_usage(&self, query: &UsageQuery) -> Result<Page<UsagePeriod>, ClientError> {
        let granularity = query.granularity.map(|g| match g {
            Granularity::Hour => "hour".to_owned(),
            Granularity::Day => "day".to_owned(),
        });
        let query = [
            (
                "tenant",
                query.tenant.as_ref().map(|t| t.as_str().to_owned()),
            ),
            ("from", query.from.map(|t| t.to_rfc3339())),
            ("to", query.to.map(|t| t.to_rfc3339())),
            ("granularity", granularity),
            ("limit", query.limit.map(|l| l.to_string())),
            ("cursor", query.cursor.clone()),
        ];
        let url = self.url(&["v1", "usage"], &query)?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /v1/usage/top`: the heaviest tenants by one measure over a window.
    pub async fn usage_top(&self, query: &TopQuery) -> Result<UsageTop, ClientError> {
        let by = serde_json::to_value(query.by)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        let query = [
            ("by", by),
            ("from", query.from.map(|t| t.to_rfc3339())),
            ("to", query.to.map(|t| t.to_rfc3339())),
            ("limit", query.limit.map(|l| l.to_string())),
        ];
        let url = self.url(&["v1", "usage", "top"], &query)?;
        self.call(Method::GET, url, None, None).await
    }

    /// `POST /v1/usage/storage`: measures every tenant's storage now (or `tenant`'s).
    pub async fn sample_storage(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<StorageSampled, ClientError> {
        let query = [("tenant", tenant.map(|t| t.as_str().to_owned()))];
        let url = self.url(&["v1", "usage", "storage"], &query)?;
        self.call(Method::POST, url, None, None).await
    }

    /// `GET /v1/quota`: the tenant's use of its storage quota (this client's tenant, or the
    /// one [`Client::with_tenant`] names).
    pub async fn quota(&self) -> Result<bulkhead_api::QuotaView, ClientError> {
        let url = self.url(&["v1", "quota"], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /v1/costs`: cost and margin per domain, tenant and tier over a window.
    pub async fn cost_report(
        &self,
        query: &bulkhead_api::CostQuery,
    ) -> Result<bulkhead_api::CostReport, ClientError> {
        let query = [
            ("from", query.from.map(|t| t.to_rfc3339())),
            ("to", query.to.map(|t| t.to_rfc3339())),
        ];
        let url = self.url(&["v1", "costs"], &query)?;
        self.call(Method::GET, url, None, None).await
    }

    /// `GET /metrics`: the Prometheus exposition, as text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url(&["metrics"], &[])?;
        let bytes = self.send(Method::GET, url, None, None).await?;
        String::from_utf8(bytes)
            .map_err(|e| ClientError::Decode(format!("metrics are not UTF-8: {e}")))
    }

    /// `GET /v1/moves/{move}`.
    pub async fn get_move(&self, id: &str) -> Result<MoveView, ClientError> {
        let url = self.url(&["v1", "moves", id], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// `POST /v1/moves/{move}/cancel`: rolls back a move that has not switched yet.
    pub async fn cancel_move(&self, id: &str) -> Result<MoveView, ClientError> {
        let url = self.url(&["v1", "moves", id, "cancel"], &[])?;
        self.call(Method::POST, url, None, None).await
    }

    /// `DELETE /v1/tenants/{id}`: purges every byte of the tenant's data.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<(), ClientError> {
        let url = self.url(&["v1", "tenants", id.as_str()], &[])?;
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    /// `DELETE /v1/tenants/{id}?incarnation=…`: deletes only that life of the tenant; when
    /// the id names another by now, `409 tenant_life_ended` and nothing is deleted.
    pub async fn delete_tenant_life(
        &self,
        id: &TenantId,
        incarnation: &bulkhead_core::Incarnation,
    ) -> Result<(), ClientError> {
        let url = self.url(
            &["v1", "tenants", id.as_str()],
            &[("incarnation", Some(incarnation.as_str().to_owned()))],
        )?;
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    /// `GET /v1/doctor`: tenant storage no live tenant incarnation owns.
    pub async fn doctor(&self) -> Result<DoctorReport, ClientError> {
        self.call(Method::GET, self.url(&["v1", "doctor"], &[])?, None, None)
            .await
    }

    /// `POST /v1/doctor/clean`: removes what [`Client::doctor`] lists (platform admins).
    pub async fn doctor_clean(&self) -> Result<DoctorReport, ClientError> {
        let url = self.url(&["v1", "doctor", "clean"], &[])?;
        self.call(Method::POST, url, None, None).await
    }

    // ----- tiers and domains ------------------------------------------------------------

    pub async fn list_tiers(&self) -> Result<Page<TierView>, ClientError> {
        self.call(Method::GET, self.url(&["v1", "tiers"], &[])?, None, None)
            .await
    }

    /// `PUT /v1/tiers/{name}`: creates or replaces a tier.
    pub async fn put_tier(
        &self,
        name: &TierName,
        spec: &TierSpec,
    ) -> Result<TierView, ClientError> {
        let url = self.url(&["v1", "tiers", name.as_str()], &[])?;
        self.call(Method::PUT, url, json_body(spec)?, None).await
    }

    /// `GET /v1/domains`: connection URLs come back redacted.
    pub async fn list_domains(&self) -> Result<Page<DomainView>, ClientError> {
        self.call(Method::GET, self.url(&["v1", "domains"], &[])?, None, None)
            .await
    }

    /// `PUT /v1/domains/{name}`: registers or changes a storage domain (platform admin). The
    /// server opens the domain first: an unreachable one is refused (422) and not stored.
    pub async fn put_domain(
        &self,
        name: &DomainName,
        spec: &DomainSpec,
    ) -> Result<DomainView, ClientError> {
        let url = self.url(&["v1", "domains", name.as_str()], &[])?;
        self.call(Method::PUT, url, json_body(spec)?, None).await
    }

    // ----- collections ------------------------------------------------------------------

    /// `PUT /v1/collections/{name}`: creates a collection or rolls out an additive change.
    /// `PUT /v1/collections/{name}`, then waits for the rollout the change started
    /// ([`Client::wait_rollout`]): when this returns `Ok`, every placement has the change.
    /// A rollout pass that could not reach some placements is an error with code
    /// `rollout_incomplete` (the change is saved and retried in the background).
    pub async fn put_collection(
        &self,
        name: &CollectionName,
        spec: &CollectionSpec,
    ) -> Result<CollectionView, ClientError> {
        let mut view = self.submit_collection(name, spec).await?;
        if let Some(rollout) = &view.rollout
            && rollout.placements_left > 0
        {
            view.rollout = Some(self.wait_rollout(&rollout.id).await?);
        }
        Ok(view)
    }

    /// `PUT /v1/collections/{name}` alone: answers at once (`202` while the rollout it
    /// started has placements left; follow it with [`Client::get_rollout`]).
    pub async fn submit_collection(
        &self,
        name: &CollectionName,
        spec: &CollectionSpec,
    ) -> Result<CollectionView, ClientError> {
        let url = self.url(&["v1", "collections", name.as_str()], &[])?;
        self.call(Method::PUT, url, json_body(spec)?, None).await
    }

    /// `GET /v1/rollouts/{id}`.
    pub async fn get_rollout(&self, id: &str) -> Result<RolloutView, ClientError> {
        let url = self.url(&["v1", "rollouts", id], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// `POST /v1/rollouts/{id}/resume`: a stopped or cancelled rollout runs again.
    pub async fn resume_rollout(&self, id: &str) -> Result<RolloutView, ClientError> {
        let url = self.url(&["v1", "rollouts", id, "resume"], &[])?;
        self.call(Method::POST, url, None, None).await
    }

    /// `POST /v1/rollouts/{id}/cancel`.
    pub async fn cancel_rollout(&self, id: &str) -> Result<RolloutView, ClientError> {
        let url = self.url(&["v1", "rollouts", id, "cancel"], &[])?;
        self.call(Method::POST, url, None, None).await
    }

    /// `GET /v1/rollouts`: the newest first.
    pub async fn list_rollouts(&self) -> Result<Page<RolloutView>, ClientError> {
        let url = self.url(&["v1", "rollouts"], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    /// Polls a rollout until no placement is left (`Ok`), or a pass could not reach some
    /// (`rollout_incomplete`, with the last failure; the server keeps retrying).
    pub async fn wait_rollout(&self, id: &str) -> Result<RolloutView, ClientError> {
        loop {
            let rollout = self.get_rollout(id).await?;
            if rollout.placements_left == 0 {
                return Ok(rollout);
            }
            if rollout.state != "running" {
                return Err(ClientError::Api {
                    status: 409,
                    code: format!("rollout_{}", rollout.state),
                    message: format!(
                        "the rollout is {} with {} placements left ({}); resume it with POST /v1/rollouts/{}/resume",
                        rollout.state,
                        rollout.placements_left,
                        rollout
                            .last_error
                            .as_deref()
                            .unwrap_or("no reason recorded"),
                        rollout.id
                    ),
                    request_id: String::new(),
                });
            }
            if rollout.placements_failed > 0 {
                return Err(ClientError::Api {
                    status: 503,
                    code: "rollout_incomplete".into(),
                    message: format!(
                        "the change is saved, but {} placements could not be updated yet (last: {}); they keep serving with the previous definition and are retried in the background",
                        rollout.placements_failed,
                        rollout.last_error.as_deref().unwrap_or("unknown")
                    ),
                    request_id: String::new(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn get_collection(
        &self,
        name: &CollectionName,
    ) -> Result<CollectionView, ClientError> {
        let url = self.url(&["v1", "collections", name.as_str()], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    pub async fn list_collections(&self) -> Result<Page<CollectionView>, ClientError> {
        self.call(
            Method::GET,
            self.url(&["v1", "collections"], &[])?,
            None,
            None,
        )
        .await
    }

    // ----- keys -------------------------------------------------------------------------

    /// `POST /v1/tenants/{tenant}/keys`: the answer is the only time the secret is shown.
    pub async fn create_key(
        &self,
        tenant: &TenantId,
        key: &CreateKey,
    ) -> Result<CreatedKey, ClientError> {
        let url = self.url(&["v1", "tenants", tenant.as_str(), "keys"], &[])?;
        self.call(Method::POST, url, json_body(key)?, None).await
    }

    pub async fn list_keys(&self, tenant: &TenantId) -> Result<Page<KeyView>, ClientError> {
        let url = self.url(&["v1", "tenants", tenant.as_str(), "keys"], &[])?;
        self.call(Method::GET, url, None, None).await
    }

    pub async fn revoke_key(&self, tenant: &TenantId, key: &KeyId) -> Result<(), ClientError> {
        let url = self.url(
            &["v1", "tenants", tenant.as_str(), "keys", key.as_str()],
            &[],
        )?;
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    /// `POST /v1/platform-keys`: the answer is the only time the secret is shown.
    pub async fn create_platform_key(
        &self,
        key: &CreatePlatformKey,
    ) -> Result<CreatedKey, ClientError> {
        let url = self.url(&["v1", "platform-keys"], &[])?;
        self.call(Method::POST, url, json_body(key)?, None).await
    }

    pub async fn list_platform_keys(&self) -> Result<Page<KeyView>, ClientError> {
        self.call(
            Method::GET,
            self.url(&["v1", "platform-keys"], &[])?,
            None,
            None,
        )
        .await
    }

    pub async fn revoke_platform_key(&self, key: &KeyId) -> Result<(), ClientError> {
        let url = self.url(&["v1", "platform-keys", key.as_str()], &[])?;
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    // ----- records ----------------------------------------------------------------------

    /// `POST /v1/collections/{c}/records`: returns the stored record with its system fields.
    pub async fn create_record(
        &self,
        collection: &CollectionName,
        record: &Value,
    ) -> Result<Value, ClientError> {
        let url = self.url(&["v1", "collections", collection.as_str(), "records"], &[])?;
        self.call(Method::POST, url, json_body(record)?, None).await
    }

    pub async fn get_record(
        &self,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Value, ClientError> {
        self.call(Method::GET, self.record_url(collection, id)?, None, None)
            .await
    }

    /// `PUT`: replaces the whole record. With `if_match`, the server refuses (412) unless the
    /// stored version is that one.
    pub async fn replace_record(
        &self,
        collection: &CollectionName,
        id: &RecordId,
        record: &Value,
        if_match: Option<i64>,
    ) -> Result<Value, ClientError> {
        let url = self.record_url(collection, id)?;
        self.call(Method::PUT, url, json_body(record)?, if_match)
            .await
    }

    /// `PATCH`: merges the given fields into the record.
    pub async fn patch_record(
        &self,
        collection: &CollectionName,
        id: &RecordId,
        patch: &Value,
        if_match: Option<i64>,
    ) -> Result<Value, ClientError> {
        let url = self.record_url(collection, id)?;
        self.call(Method::PATCH, url, json_body(patch)?, if_match)
            .await
    }

    pub async fn delete_record(
        &self,
        collection: &CollectionName,
        id: &RecordId,
        if_match: Option<i64>,
    ) -> Result<(), ClientError> {
        let url = self.record_url(collection, id)?;
        self.send(Method::DELETE, url, None, if_match)
            .await
            .map(drop)
    }

    /// One page of records; pass the page's `next_cursor` back in `query.cursor`.
    pub async fn list_records(
        &self,
        collection: &CollectionName,
        query: &ListRecords,
    ) -> Result<Page<Value>, ClientError> {
        let pairs = [
            ("filter", query.filter.clone()),
            ("sort", query.sort.clone()),
            ("q", query.q.clone()),
            ("fields", query.fields.clone()),
            ("limit", query.limit.map(|l| l.to_string())),
            ("cursor", query.cursor.clone()),
        ];
        let url = self.url(
            &["v1", "collections", collection.as_str(), "records"],
            &pairs,
        )?;
        self.call(Method::GET, url, None, None).await
    }

    /// `POST /v1/collections/{c}/aggregate`.
    pub async fn aggregate(
        &self,
        collection: &CollectionName,
        request: &bulkhead_api::AggregateRequest,
    ) -> Result<bulkhead_api::AggregatePage, ClientError> {
        let url = self.url(
            &["v1", "collections", collection.as_str(), "aggregate"],
            &[],
        )?;
        self.call(Method::POST, url, json_body(request)?, None)
            .await
    }

    /// `POST /v1/collections/{c}/records:bulk` with an NDJSON body; `errors_only` asks for
    /// the failed lines only.
    pub async fn bulk(
        &self,
        collection: &CollectionName,
        ndjson: Vec<u8>,
        errors_only: bool,
    ) -> Result<bulkhead_api::BulkReport, ClientError> {
        let results = errors_only.then(|| "errors".to_owned());
        let url = self.url(
            &["v1", "collections", collection.as_str(), "records:bulk"],
            &[("results", results)],
        )?;
        self.call_as(
            Method::POST,
            url,
            Some(("application/x-ndjson", ndjson)),
            None,
        )
        .await
    }

    fn record_url(
        &self,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<reqwest::Url, ClientError> {
        self.url(
            &[
                "v1",
                "collections",
                collection.as_str(),
                "records",
                id.as_str(),
            ],
            &[],
        )
    }
}
